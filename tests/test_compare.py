"""`python -m analysis compare`: the effective compute multiplier of recipe B over A, and whether B scales better.

Fake sweep directories hold trials whose final losses come from known power laws in compute, so the
multiplier and the exponents are known.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from analysis import compare
from tests.test_objectives_report import write_sweep

REPO = pathlib.Path(__file__).resolve().parents[1]
A = {"E": 1.5, "A": 2.0e3, "alpha": 0.25}


def _loss(params, flops):
  return params["E"] + params["A"] * flops ** -params["alpha"]


def _sweep(directory, name, params, flops, noise=0.004, seed=0):
  rng = np.random.default_rng(seed)
  losses = _loss(params, flops) * np.exp(noise * rng.standard_normal(len(flops)))
  rungs = [(None, i + 1, {"params_non_embedding": 1e3 * (i + 1), "flops": float(c), "final_eval_loss": float(l)})
           for i, (c, l) in enumerate(zip(flops, losses))]
  return write_sweep(str(directory / name), name, rungs, curve_steps=4)


def _run(*argv):
  return subprocess.run([sys.executable, "-m", "analysis", "compare", *map(str, argv)], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


def test_a_known_constant_multiplier_is_recovered_and_called_a_constant_factor(tmp_path):
  k = 4.0
  b_params = {**A, "A": A["A"] * k ** -A["alpha"]}  # L_B(C) = L_A(k C)
  dir_a = _sweep(tmp_path, "dense", A, np.logspace(12, 16, 8), seed=1)
  dir_b = _sweep(tmp_path, "recipe_b", b_params, np.logspace(12.5, 16.5, 8), seed=2)
  done = _run(dir_a, dir_b, "--bootstrap", "200")
  assert done.returncode == 0, done.stderr
  out = json.loads(done.stdout)
  assert out["x"] == "flops" and len(out["budgets"]) >= 8 and out["largest"] == out["budgets"][-1]
  for row in out["budgets"]:
    assert 1e12 <= row["x"] <= 1e16 * 1.01
    lo, hi = row["multiplier_ci"]
    assert lo < k < hi and lo < row["multiplier"] < hi, row
  lo, hi = out["exponent_difference_ci"]
  assert lo < 0 < hi and out["verdict"].startswith("same exponent") and out["same_exponent_p"] > 0.05
  assert os.path.getsize(out["plot"]) > 10_000 and out["plot"].startswith(str(dir_b))


def test_identical_sweeps_give_a_multiplier_whose_interval_holds_one(tmp_path):
  a = compare.sweep_points(_sweep(tmp_path, "one", A, np.logspace(12, 16, 8), seed=3), "flops")
  out, _ = compare.compare(a, dict(a), bootstrap=100)
  for row in out["budgets"]:
    assert row["multiplier"] == pytest.approx(1.0) and row["multiplier_ci"][0] < 1 < row["multiplier_ci"][1]


def test_a_steeper_recipe_scales_better(tmp_path):
  a = compare.sweep_points(_sweep(tmp_path, "a", A, np.logspace(12, 16, 8), seed=4), "flops")
  steeper = {"E": 1.5, "A": 2.0e3 * 10 ** (12 * 0.1), "alpha": 0.35}  # equal at 1e12, better beyond
  b = compare.sweep_points(_sweep(tmp_path, "b", steeper, np.logspace(12, 16, 8), seed=5), "flops")
  out, _ = compare.compare(a, b, bootstrap=100)
  assert out["verdict"] == "B scales better (larger exponent)" and out["exponent_difference_ci"][0] > 0
  ks = [row["multiplier"] for row in out["budgets"]]
  assert ks[0] == pytest.approx(1.0, rel=0.2) and ks[-1] > 3 * ks[0]  # the gain grows with compute


@pytest.mark.parametrize("case, message", [
    ("disjoint", "the sweeps cover no x in common"),
    ("two_trials", "2 distinct flops values among its finished trials"),
    ("not_a_sweep", "not a directory"),
])
def test_bad_input_is_one_clear_line(tmp_path, case, message):
  dir_a = _sweep(tmp_path, "a", A, np.logspace(12, 14, 5))
  dir_b = {"disjoint": lambda: _sweep(tmp_path, "b", A, np.logspace(15, 17, 5)),
           "two_trials": lambda: _sweep(tmp_path, "b", A, np.logspace(12, 13, 2)),
           "not_a_sweep": lambda: str(tmp_path / "missing")}[case]()
  with pytest.raises(compare.UsageError, match=message):
    compare.compare(compare.sweep_points(dir_a, "flops"), compare.sweep_points(dir_b, "flops"), bootstrap=20)


def test_bad_input_exits_2_with_one_line(tmp_path):
  done = _run(_sweep(tmp_path, "a", A, np.logspace(12, 14, 5)), _sweep(tmp_path, "b", A, np.logspace(15, 17, 5)),
              "--bootstrap", "20")
  assert done.returncode == 2 and done.stderr.count("\n") == 1 and "cover no x in common" in done.stderr, done.stderr


def test_the_fit_uses_the_frontier_so_an_isoflop_grid_counts_by_its_best_size():
  x = np.array([1e12, 1e12, 1e12, 1e13, 1e13, 1e14, 2e14])
  loss = np.array([3.0, 2.5, 2.8, 2.6, 2.2, 2.3, 2.0])  # 2.6 at 1e13 and 2.3 at 1e14 are beaten by less compute
  kept_x, kept_loss = compare.frontier(x, loss)
  assert list(kept_x) == [1e12, 1e13, 2e14] and list(kept_loss) == [2.5, 2.2, 2.0]
