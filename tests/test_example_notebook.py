"""analysis/example.ipynb runs top to bottom (its code cells, in order, in a
fresh interpreter) and writes its figures."""
import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_example_notebook_executes(tmp_path):
  notebook = json.loads((REPO / "analysis" / "example.ipynb").read_text())
  cells = ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]
  assert cells and all(not cell["outputs"] for cell in notebook["cells"]
                       if cell["cell_type"] == "code"), "commit the notebook without outputs"
  script = tmp_path / "notebook.py"
  script.write_text("\n\n".join(cells) + "\n")
  env = {"PYTHONPATH": str(REPO), "ANALYSIS_EXAMPLE_OUT": str(tmp_path / "out"),
         "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"}
  done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  written = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
  assert written == ["chinchilla_residuals.png", "curve_forecasts.png", "isoflop_parabolas.png",
                     "loss_vs_compute.png", "optimal_allocation.png"]
