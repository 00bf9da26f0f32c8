"""`python -m sweeps extend`: plan a budget beyond the sweep's, write the follow-up sweep and its prediction; the
follow-up's report sets the outcome against the prediction (analysis/prediction_check.py).

The fitted sweep is a fake directory (real configs of the GPT ladder, losses from a known L(N, D)), so no
trial trains here; `sweeps extend` itself is run with --no-run.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from analysis import isoflop, report
from models import counting, registry
from scaling import metrics as metrics_lib
from sweeps import expand, extend
from tests.conftest import write

REPO = pathlib.Path(__file__).resolve().parents[1]
TRUTH = {"E": 1.6, "A": 10.0, "B": 28.6, "alpha": 0.35, "beta": 0.35}  # D*/N* = 20 on the frontier
SWEEP = """\
name: iso
model: {family: gpt, size: 1, options: {aspect_ratio: 8, head_dim: 4}}
data: {kind: markov, vocab_size: 12}
train: {seq_len: 32, batch_size: 8, horizon: {flops: 1e10, flop_count: 6n}}
runtime: {checkpoint_every: 0}
"""


def _fake_sweep(tmp_path, budgets=(1e9, 3e9, 1e10), sizes=range(1, 7), name="iso", noise=0.003):
  template = expand.load(write(tmp_path, "template.yaml", SWEEP)).trials[0].config()
  family = registry.get("gpt")
  directory = tmp_path / name
  rng = np.random.default_rng(0)
  trials = []
  for size in sizes:
    n = counting.abstract_counts(family, family.ladder(size, vocab_size=12, seq_len=32, aspect_ratio=8,
                                                       head_dim=4))["params_non_embedding"]
    for budget in budgets:
      config = json.loads(json.dumps(template))
      config["model"]["size"], config["train"]["horizon"]["flops"] = size, budget
      trial_id = expand.config_id(config)
      tokens = budget / (6 * n)
      loss = float((TRUTH["E"] + TRUTH["A"] / n ** TRUTH["alpha"] + TRUTH["B"] / tokens ** TRUTH["beta"])
                   * np.exp(noise * rng.standard_normal()))
      os.makedirs(directory / trial_id)
      metrics_lib.write_json_atomic(str(directory / trial_id / "config.json"), config)
      metrics_lib.write_json_atomic(str(directory / trial_id / "summary.json"), {
          "status": "done", "trial_id": trial_id, "params_non_embedding": n, "params_total": n + 500, "tokens": tokens,
          "flops": budget, "flops_6n": budget, "steps": 10, "final_eval_loss": loss})
      (directory / trial_id / "metrics.jsonl").write_text(json.dumps({"step": 10, "tokens": tokens, "loss": loss}) + "\n")
      trials.append({"id": trial_id, "axes": {"model.size": size, "train.horizon.flops": budget}})
  metrics_lib.write_json_atomic(str(directory / "sweep.json"), {"name": name, "trials": trials})
  (directory / "sweep.yaml").write_text(SWEEP)
  return str(directory)


def _extend(*argv):
  return subprocess.run([sys.executable, "-m", "sweeps", "extend", *map(str, argv)], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
  """A fake fitted sweep and `sweeps extend --no-run` at 4x its largest budget: (tmp_path, the command's result)."""
  tmp_path = tmp_path_factory.mktemp("extend")
  return tmp_path, _extend(_fake_sweep(tmp_path), "--budget", "4e10", "--bootstrap", "30", "--no-run")


def test_extend_writes_the_predicted_optimum_and_half_and_double_it(extended):
  tmp_path, done = extended
  assert done.returncode == 0, done.stderr
  follow_up = tmp_path / "iso_extend_4e10.yaml"
  sweep = expand.load(str(follow_up))  # a valid sweep file, as a user could edit and re-run
  sizes = sorted(t.config()["model"]["size"] for t in sweep.trials)
  horizons = [t.config()["train"]["horizon"] for t in sweep.trials]
  assert len(sizes) == 3 and all(h["flops"] == 4e10 and h["flop_count"] == "6n" for h in horizons)
  prediction = metrics_lib.read_json(str(tmp_path / "iso_extend_4e10" / "prediction.json"))
  n_star = prediction["frontier"]["n_params"]
  assert n_star == pytest.approx(isoflop.frontier(TRUTH, 4e10)[0], rel=0.05)  # the fit recovers the law
  trials = {t["size"]: t for t in prediction["trials"]}
  optimal = [t for t in trials.values() if t["predicted_optimal"]]
  assert len(optimal) == 1 and sorted(trials) == sizes
  below, above = min(trials.values(), key=lambda t: t["params_non_embedding"]), max(
      trials.values(), key=lambda t: t["params_non_embedding"])
  assert below["params_non_embedding"] < optimal[0]["params_non_embedding"] < above["params_non_embedding"]
  assert prediction["budget_ratio"] == pytest.approx(4.0)
  for t in trials.values():
    assert t["predicted_loss_ci"][0] < t["predicted_loss"] < t["predicted_loss_ci"][1]


def test_the_follow_up_report_sets_the_outcome_against_the_prediction(extended, tmp_path):
  done = extended[1]
  assert done.returncode == 0, done.stderr
  prediction = metrics_lib.read_json(str(extended[0] / "iso_extend_4e10" / "prediction.json"))
  # The follow-up's trials "finish" exactly on the truth: the predicted optimum must be the best of the three.
  sizes = [t["size"] for t in prediction["trials"]]
  os.makedirs(tmp_path / "f")
  follow = _fake_sweep(tmp_path / "f", budgets=(4e10,), sizes=sizes, name="iso_extend_4e10", noise=0.0)
  metrics_lib.write_json_atomic(os.path.join(follow, "prediction.json"), prediction)
  summary = report.analyze(follow, bootstrap=0)
  check = summary["prediction_check"]
  assert check["predicted_optimum_won"] is True
  assert all(r["inside_interval"] and abs(r["error_pct"]) < 1 for r in check["trials"])
  with open(os.path.join(follow, "analysis", "report.md")) as f:
    assert "## Predict, then verify" in f.read()


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
  sweep_dir = _fake_sweep(tmp_path)
  done = _extend(sweep_dir, "--budget", "lots", "--no-run")
  assert done.returncode == 2 and done.stderr.count("\n") == 1 and "argument --budget: invalid float value" in \
      done.stderr, done.stderr
  from sweeps import __main__ as sweeps_cli
  for budget in ("-1e12", "-3", "-inf"):  # a negative number is the flag's value, refused with the reason
    capsys.readouterr()
    assert sweeps_cli.main(["extend", str(sweep_dir), "--budget", budget, "--no-run"]) == 2
    assert "must be a positive number of FLOPs" in capsys.readouterr().err
  for budget, message in ((5e9, "not beyond the fitted trials"), (-1.0, "must be a positive number of FLOPs")):
    with pytest.raises(extend.ExtendError, match=message):
      extend.plan(sweep_dir, budget, bootstrap=0)
  with pytest.raises(extend.ExtendError, match="2 finished trials"):
    (tmp_path / "few").mkdir()
    extend.plan(_fake_sweep(tmp_path / "few", budgets=(1e9,), sizes=(1, 2)), 1e12, bootstrap=0)
