"""Live health: a curve's forecast band, flags when it leaves it, and train.stop_when_off_forecast."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from analysis import health
from sweeps import status
from tests.conftest import ROOT, write


def _curve(seed, steps=400, jump_at=None):
  rng = np.random.default_rng(seed)
  step = np.arange(1, steps + 1)
  loss = 2.0 + 3.0 * step ** -0.5
  if jump_at:
    loss = np.where(step > jump_at, loss + 0.8, loss)
  return step, loss * np.exp(rng.normal(0, 0.03, steps))


@pytest.mark.parametrize("seed", range(5))
def test_a_healthy_noisy_curve_is_never_flagged(seed):
  step, loss = _curve(seed)
  for n in (120, 200, 280, 400):
    result = health.assess(step[:n], loss[:n], 400, warmup_steps=10)
    assert result.status == "ok", (n, result)
    assert result.lo < 2.0 + 3.0 * 400 ** -0.5 < result.hi  # the band holds the true final loss


def test_a_jump_is_flagged_and_nan_is_divergence():
  step, loss = _curve(0, jump_at=250)
  assert health.assess(step[:240], loss[:240], 400).status == "ok"
  assert health.assess(step[:290], loss[:290], 400).flagged
  loss[300] = np.nan
  assert health.assess(step, loss, 400).status == "divergence"
  assert health.assess(step[:20], loss[:20], 400).status == "too early"


SWEEP = """\
name: health
model: {{family: gpt, size: 2, options: {{aspect_ratio: 16, head_dim: 8}}}}
data: {{kind: markov, vocab_size: 32, order: 2, mix: [0.2, 0.3, 0.5]}}
train: {{seq_len: 32, batch_size: 16, horizon: {{tokens: 204800}}, eval_every: 1000, eval_batches: 1,
         inject_corruption_at_step: [null, 250], stop_when_off_forecast: {stop}}}
optimizer: {{lr: 0.003, warmup_steps: 40}}
runtime: {{tensorboard: false, checkpoint_every: 100}}
"""


def _run(path, out):
  return subprocess.run([sys.executable, "-m", "sweeps", "run", path, "--out", out, "--no-progress", "--no-analysis"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def flagged(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("health")
  path = write(tmp, "health.yaml", SWEEP.format(stop="true"))
  result = _run(path, str(tmp / "runs"))
  assert result.returncode == 0, result.stderr[-3000:]
  return tmp, result, str(tmp / "runs" / "health")


def _summaries(sweep_dir):
  out = {}
  for trial in json.load(open(os.path.join(sweep_dir, "sweep.json")))["trials"]:
    with open(os.path.join(sweep_dir, trial["id"], "summary.json")) as f:
      out[trial["axes"]["train.inject_corruption_at_step"]] = json.load(f)
  return out


@pytest.mark.slow  # a whole flagged sweep
def test_a_corrupted_trial_is_stopped_as_flagged_and_the_sweep_goes_on(flagged):
  _, result, sweep_dir = flagged
  assert "1/2 trials done (1 flagged)" in result.stdout, result.stdout
  summaries = _summaries(sweep_dir)
  assert summaries[None]["status"] == "done" and summaries[None]["steps"] == 400
  corrupted = summaries[250]
  assert corrupted["status"] == "flagged" and corrupted["steps"] == 280  # the first check after the corruption
  assert "off its forecast at step 280" in corrupted["reason"]
  table = status.format_table(status.rows(sweep_dir))
  assert "flagged" in table and "off its forecast" in table and "goodput" in table.splitlines()[0]


@pytest.mark.slow  # a whole flagged sweep
def test_an_unfinished_trial_shows_its_forecast_in_status(flagged, tmp_path):
  _, _, sweep_dir = flagged
  copy = str(tmp_path / "health")
  shutil.copytree(sweep_dir, copy)
  trial = next(t["id"] for t in json.load(open(os.path.join(copy, "sweep.json")))["trials"]
               if t["axes"]["train.inject_corruption_at_step"] is None)
  summary_path = os.path.join(copy, trial, "summary.json")
  summary = json.load(open(summary_path))
  with open(summary_path, "w") as f:  # what a killed process leaves: status "running", nobody holding the claim
    json.dump({**summary, "status": "running"}, f)
  (row,) = [r for r in status.rows(copy) if r["trial"] == trial]
  assert row["state"] == "pending" and row["health"].count("[") == 1  # "forecast [lo, hi]"
  assert "SPIKE" not in row["health"] and "PLATEAU" not in row["health"]


@pytest.mark.slow  # a whole flagged sweep
def test_turning_the_option_off_resumes_the_flagged_trial_to_the_end(flagged):
  tmp, _, sweep_dir = flagged
  path = write(tmp, "health_off.yaml", SWEEP.format(stop="false"))
  result = _run(path, str(tmp / "runs"))
  assert result.returncode == 0 and "2/2 trials done" in result.stdout, result.stdout + result.stderr[-2000:]
  corrupted = _summaries(sweep_dir)[250]
  assert corrupted["status"] == "done" and corrupted["steps"] == 400 and corrupted["resumed_from_step"] == 280


@pytest.mark.slow  # a whole trial per cadence (about 13 s)
def test_the_check_runs_at_the_first_flush_past_each_tenth(tmp_path):
  # Flushes every 3 steps (counted from the last flush, which checkpoints also cause) rarely land on the tenths
  # (multiples of 40); the check past step 280 comes at the first flush within 3 steps of it.
  sweep = SWEEP.format(stop="true").replace("[null, 250]", "250").replace(
      "checkpoint_every: 100}", "checkpoint_every: 100, flush_every: 3}")
  path = write(tmp_path, "health.yaml", sweep)
  result = _run(path, str(tmp_path / "runs"))
  assert result.returncode == 0, result.stderr[-3000:]
  (trial,) = json.load(open(tmp_path / "runs" / "health" / "sweep.json"))["trials"]
  summary = json.load(open(tmp_path / "runs" / "health" / trial["id"] / "summary.json"))
  assert summary["status"] == "flagged" and 280 <= summary["steps"] < 283, summary.get("reason")
