"""A micro-sweep through the command line: YAML -> trials -> run dirs -> fits -> plots and report."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import ROOT, write

pytestmark = pytest.mark.slow  # whole sweeps through the real commands

MICRO = """\
# A 4-rung micro ladder for the end-to-end test.
name: micro
model:
  family: gpt
  size: [1, 2, 3, 4]
  options: {aspect_ratio: 8, head_dim: 8}
data:
  kind: markov
  vocab_size: 8
  order: 2
  mix: [0.2, 0.3, 0.5]
train:
  seq_len: 16
  batch_size: 8
  horizon: {tokens: 3840}
  eval_every: 10
  eval_batches: 2
optimizer:
  lr: 1e-2
  warmup_steps: 5
"""


def cli(*args, timeout=600):
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_micro_sweep_end_to_end(tmp_path):
  path = write(tmp_path, "micro.yaml", MICRO)
  out = tmp_path / "runs"
  validated = cli("-m", "sweeps", "validate", path)
  assert validated.returncode == 0 and "4 trial(s)" in validated.stdout

  result = cli("-m", "sweeps", "run", path, "--out", str(out), "--no-progress")
  assert result.returncode == 0, result.stderr[-3000:]
  sweep_dir = out / "micro"
  manifest = json.loads((sweep_dir / "sweep.json").read_text())
  ids = [t["id"] for t in manifest["trials"]]
  assert len(ids) == 4 and [t["axes"]["model.size"] for t in manifest["trials"]] == [1, 2, 3, 4]
  for trial_id in ids:
    summary = json.loads((sweep_dir / trial_id / "summary.json").read_text())
    assert summary["status"] == "done" and summary["steps"] == 30

  analysis = sweep_dir / "analysis"
  for name in ("report.md", "fits.json", "trials.csv", "steps.csv", "loss_vs_compute.png", "loss_vs_params.png"):
    assert (analysis / name).stat().st_size > 0, name
  assert "backtest (largest rung held out)" in result.stdout
  trials = pd.read_csv(analysis / "trials.csv")
  assert sorted(trials.trial_id) == sorted(ids)  # every plotted point is a row
  fits = json.loads((analysis / "fits.json").read_text())
  assert set(fits["fits"]["params_non_embedding"]["params"]) == {"E", "A", "alpha"}
  assert fits["backtest"]["held_out_trial"] == trials.sort_values("params_non_embedding").trial_id.iloc[-1]
  assert "## Backtest" in (analysis / "report.md").read_text()

  # A second run skips every finished trial and leaves them untouched.
  stamps = {i: os.stat(sweep_dir / i / "summary.json").st_mtime_ns for i in ids}
  again = cli("-m", "sweeps", "run", path, "--out", str(out), "--no-progress", "--no-analysis")
  assert again.returncode == 0 and "4/4 trials done" in again.stdout
  assert stamps == {i: os.stat(sweep_dir / i / "summary.json").st_mtime_ns for i in ids}

  replot = cli("-m", "analysis", "plot", str(sweep_dir), "--params", "params_total", "--compute", "flops_6n")
  assert replot.returncode == 0, replot.stderr[-2000:]


def test_plot_of_a_non_sweep_directory_fails_cleanly(tmp_path):
  result = cli("-m", "analysis", "plot", str(tmp_path))
  assert result.returncode == 2 and "Traceback" not in result.stderr and str(tmp_path) in result.stderr
