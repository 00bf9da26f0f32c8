"""`python -m analysis plan`: compute-optimal N, D and loss per budget from a CSV or a sweep directory."""
import json
import re
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from analysis import isoflop, plan_cli
from tests.test_objectives_report import write_sweep

REPO = pathlib.Path(__file__).resolve().parents[1]


def plan(*argv):
  return subprocess.run([sys.executable, "-m", "analysis", "plan", *map(str, argv)], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory):
  path = tmp_path_factory.mktemp("plan") / "runs.csv"
  isoflop.synthetic_runs(budgets=np.logspace(18, 21, 6), sizes_per_budget=8, noise=0.01, seed=0).to_csv(
      path, index=False)
  return path


def test_parametric_plan_is_the_closed_form_frontier_of_the_fitted_law(runs_csv):
  done = plan("--csv", runs_csv, "--budget", "1e21,1e23", "--bootstrap", "30")
  assert done.returncode == 0, done.stderr
  out = json.loads(done.stdout)
  assert out["method"] == "parametric" and out["n_points"] == 48 and out["fit"]["law"] == "chinchilla"
  for budget, row in zip((1e21, 1e23), out["budgets"]):
    n, d, loss = isoflop.frontier(out["fit"]["params"], budget)
    assert row["flops"] == budget
    assert row["n_params"] == pytest.approx(n, rel=1e-9) and row["tokens"] == pytest.approx(d, rel=1e-9)
    assert row["loss"] == pytest.approx(loss, rel=1e-9)
    assert row["tokens_per_param"] == pytest.approx(d / n, rel=1e-9)
    assert 6 * row["n_params"] * row["tokens"] == pytest.approx(budget, rel=1e-9)
    for key in ("n_params", "tokens", "tokens_per_param", "loss"):
      lo, hi = row[key + "_ci"]
      assert lo < row[key] < hi, key
  # The truth (Epoch's fit of Chinchilla) lies inside the plan's intervals at a budget 100x beyond the data.
  n_true, d_true, _ = isoflop.frontier(isoflop.EPOCH_PARAMS, 1e23)
  assert out["budgets"][1]["n_params_ci"][0] < n_true < out["budgets"][1]["n_params_ci"][1]


def test_isoflop_plan_follows_the_vertices(runs_csv):
  done = plan("--csv", runs_csv, "--budget", "1e22", "--method", "isoflop", "--bootstrap", "50")
  assert done.returncode == 0, done.stderr
  out = json.loads(done.stdout)
  assert len(out["fit"]["profiles"]) == 6 and "loss" not in out["budgets"][0]
  row = out["budgets"][0]
  n_true, d_true, _ = isoflop.frontier(isoflop.EPOCH_PARAMS, 1e22)
  assert row["n_params_ci"][0] < n_true < row["n_params_ci"][1]
  assert row["exponent_n"] + row["exponent_d"] == pytest.approx(1.0)


@pytest.mark.parametrize("argv, message", [
    (["--budget", "1e20"], "give a sweep directory or --csv FILE"),
    (["--csv", "{csv}", "--budget", "1e20,lots"], "--budget: 'lots' is not a number of FLOPs"),
    (["--csv", "{csv}", "--budget", "0"], "--budget: '0' must be a positive"),
    (["--csv", "{csv}", "--budget", "-1e12"], "--budget: '-1e12' must be a positive"),  # not "expected one argument"
    (["--csv", "{csv}", "--budget", "1e20", "--method", "cubic"], "plan: argument --method"),  # not "fit: ..."
    (["--csv", "{csv}", "--budget", "1e20", "--bootstrap", "-1"], "--bootstrap -1: must be 0 to"),
    (["--csv", "{csv}", "--budget", "1e20", "--method", "isoflop", "--drop-highest", "44"],
     "too few for the isoflop method"),
    (["{sweep}", "--budget", "1e20"], "2 finished trials: too few for the parametric method"),
    (["{sweep}", "--budget", "1e20", "--y", "loss"], "a sweep directory's columns are fixed"),
])
def test_bad_input_is_one_clear_line(runs_csv, tmp_path, argv, message):
  sweep = write_sweep(str(tmp_path / "tiny"), "tiny", [(None, 1, {"params_non_embedding": 1e5, "final_eval_loss": 3.0}),
                                                       (None, 2, {"params_non_embedding": 2e5, "final_eval_loss": 2.9})],
                      curve_steps=4)
  with pytest.raises(plan_cli.UsageError, match=re.escape(message)):
    plan_cli.run([a.format(csv=runs_csv, sweep=sweep) for a in argv])


def test_bad_input_exits_2_with_one_line(runs_csv):
  done = plan("--csv", runs_csv, "--budget", "-5")
  assert done.returncode == 2 and done.stderr.count("\n") == 1 and "must be a positive" in done.stderr, done.stderr


def test_a_fit_in_which_loss_rises_with_n_has_no_frontier_and_says_so(tmp_path):
  """Loss growing with N fits alpha < 0; the closed-form frontier of such a law is a complex number
  (once an OverflowError traceback), so the plan refuses it in one line naming the parameter."""
  n = np.repeat(np.logspace(6, 9, 4), 3)
  d = np.tile(np.logspace(9, 11, 3), 4)
  loss = 2.0 + 1e-3 * n ** 0.3 + 400 / d ** 0.3
  path = tmp_path / "rising.csv"
  path.write_text("params,tokens,loss\n" + "".join(f"{a:g},{b:g},{c}\n" for a, b, c in zip(n, d, loss)))
  with pytest.raises(plan_cli.UsageError, match=r"alpha = -[0-9.]+: loss does not fall with both N and D"):
    plan_cli.run(["--csv", str(path), "--budget", "1e20", "--bootstrap", "0"])
