"""`python -m analysis fit`: one JSON object out, or exit 2 with one line."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis import fit_cli, isoflop

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory):
  path = tmp_path_factory.mktemp("cli") / "runs.csv"
  isoflop.synthetic_runs(budgets=np.logspace(18, 21, 4), sizes_per_budget=6,
                         noise=0.005, seed=0).to_csv(path, index=False)
  return path


def run(argv, capsys):
  code = fit_cli.main(argv)
  out, err = capsys.readouterr()
  return code, out, err


def test_power_law_json(runs_csv, capsys):
  code, out, err = run(["--csv", str(runs_csv), "--law", "power", "--x", "flops",
                        "--bootstrap", "50", "--predict-at", "1e22,1e23"], capsys)
  assert code == 0, err
  result = json.loads(out)
  assert set(result) >= {"law", "params", "ci", "objective", "n_points", "predictions"}
  assert result["law"] == "power" and result["n_points"] == 24
  assert set(result["params"]) == set(result["ci"]) == {"E", "A", "alpha"}
  assert all(lo <= result["params"][k] <= hi for k, (lo, hi) in result["ci"].items())
  assert len(result["predictions"]) == 2 and result["predictions"][1] < result["predictions"][0]
  assert result["predict_at"] == [1e22, 1e23]


def test_chinchilla_with_default_columns_and_drop_highest(runs_csv, capsys):
  code, out, err = run(["--csv", str(runs_csv), "--law", "chinchilla", "--bootstrap", "0",
                        "--drop-highest", "2", "--predict-at", "7e10:1.4e12"], capsys)
  assert code == 0, err
  result = json.loads(out)
  assert result["n_points"] == 22
  assert list(result["params"]) == ["E", "A", "B", "alpha", "beta"]
  assert result["ci"]["E"] == [None, None]  # No bootstrap: JSON null, not NaN.
  assert len(result["predictions"]) == 1


def test_bnsl_breaks_name_their_parameters(tmp_path, capsys):
  x = np.logspace(1, 5, 30)
  y = 0.1 + 20 * x ** -0.2 * (1 + (x / 1e3) ** 2) ** (-0.25)
  path = tmp_path / "curve.csv"
  pd.DataFrame({"step": x, "loss": y}).to_csv(path, index=False)
  code, out, err = run(["--csv", str(path), "--law", "bnsl", "--x", "step",
                        "--breaks", "2", "--bootstrap", "0"], capsys)
  assert code == 0, err
  assert list(json.loads(out)["params"]) == ["a", "b", "c0", "c1", "d1", "f1", "c2", "d2", "f2"]


@pytest.mark.parametrize("argv, expected", [
    (["--law", "power"], ["--csv"]),
    (["--csv", "{csv}", "--law", "cubic"], ["--law"]),
    (["--csv", "{missing}", "--law", "power"], ["missing.csv", "--csv"]),
    (["--csv", "{csv}", "--law", "power", "--x", "steps"], ["bad.csv", "'steps'", "--x"]),
    (["--csv", "{csv}", "--law", "power", "--y", "nan_loss"], ["bad.csv", "'nan_loss'", "--y"]),
    (["--csv", "{csv}", "--law", "power", "--y", "const"], ["bad.csv", "'const'", "constant"]),
    (["--csv", "{csv}", "--law", "power", "--x", "negative"], ["bad.csv", "'negative'", "positive"]),
    (["--csv", "{csv}", "--law", "chinchilla", "--d", "negative"], ["bad.csv", "--d"]),
    (["--csv", "{csv}", "--law", "power", "--drop-highest", "22"], ["bad.csv", "3 parameters", "--drop-highest"]),
    (["--csv", "{csv}", "--law", "power", "--predict-at", "1e9,abc"], ["--predict-at", "'abc'"]),
    (["--csv", "{csv}", "--law", "chinchilla", "--predict-at", "1e9"], ["--predict-at", "N:D"]),
    (["--csv", "{csv}", "--law", "bnsl", "--breaks", "0"], ["--breaks"]),
])
def test_bad_input_exits_2_with_one_line(argv, expected, runs_csv, tmp_path, capsys):
  df = pd.read_csv(runs_csv)
  df["nan_loss"] = df["loss"].where(df.index != 3)
  df["const"] = 2.5
  df["negative"] = -df["params"]
  bad = tmp_path / "bad.csv"
  df.to_csv(bad, index=False)
  argv = [a.format(csv=bad, missing=tmp_path / "missing.csv") for a in argv]
  code, out, err = run(argv, capsys)
  assert code == 2 and out == ""
  assert err.count("\n") == 1 and "Traceback" not in err
  for text in expected:
    assert text in err


def test_module_entry_point(runs_csv):
  ok = subprocess.run([sys.executable, "-m", "analysis", "fit", "--csv", str(runs_csv),
                       "--law", "power", "--x", "flops", "--bootstrap", "20"],
                      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert ok.returncode == 0, ok.stderr
  assert json.loads(ok.stdout)["law"] == "power"
  bad = subprocess.run([sys.executable, "-m", "analysis", "fit", "--csv", str(runs_csv),
                        "--law", "power", "--x", "nope"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
  assert bad.returncode == 2 and bad.stdout == ""
  assert bad.stderr.strip().count("\n") == 0 and "'nope'" in bad.stderr
