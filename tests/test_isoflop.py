"""IsoFLOP profiles (approach 2), the closed-form frontier and the planner."""
import numpy as np
import pytest
from scipy import optimize

from analysis import fit, isoflop, laws


@pytest.fixture(scope="module")
def runs():
  return isoflop.synthetic_runs(isoflop.EPOCH_PARAMS, noise=0.005, seed=4)


@pytest.fixture(scope="module")
def iso(runs):
  return isoflop.fit_isoflop(runs["params"], runs["tokens"], runs["loss"],
                             bootstrap=200, seed=0)


def test_frontier_closed_form_is_the_constrained_minimum():
  params = isoflop.EPOCH_PARAMS
  for flops in (1e19, 5.76e23):
    n_opt, d_opt, loss_opt = isoflop.frontier(params, flops)
    assert 6 * n_opt * d_opt == pytest.approx(flops)
    # Minimise L(N, C / 6N) over ln N numerically.
    loss_at = lambda ln: laws.CHINCHILLA.predict(
        params, {"params": [np.exp(ln)], "tokens": [flops / 6 / np.exp(ln)]})[0]
    res = optimize.minimize_scalar(loss_at, bounds=(np.log(1e6), np.log(1e14)),
                                   method="bounded", options={"xatol": 1e-10})
    assert n_opt == pytest.approx(np.exp(res.x), rel=1e-4)
    assert loss_opt == pytest.approx(res.fun, rel=1e-9)
  a, b = isoflop.allocation_exponents(params)
  assert a + b == pytest.approx(1.0)
  assert a == pytest.approx(0.3658 / (0.3478 + 0.3658))


def test_isoflop_vertices_follow_the_true_frontier(iso):
  truth_a, _ = isoflop.allocation_exponents(isoflop.EPOCH_PARAMS)
  assert iso.exponent_n == pytest.approx(truth_a, abs=0.03)
  lo, hi = iso.ci["exponent_n"]
  assert lo < truth_a < hi
  assert iso.exponent_d == pytest.approx(1 - iso.exponent_n)
  profiles = iso.profiles
  assert len(profiles) == 10 and profiles["used"].all()
  true_n, _, true_loss = isoflop.frontier(isoflop.EPOCH_PARAMS, profiles["flops"].to_numpy())
  np.testing.assert_allclose(profiles["n_opt"], true_n, rtol=0.25)
  np.testing.assert_allclose(profiles["loss_opt"], true_loss, rtol=0.01)


def test_plans_from_both_approaches_land_near_the_truth(iso, runs):
  budget = 1e23
  true_n, true_d, true_loss = isoflop.frontier(isoflop.EPOCH_PARAMS, budget)
  chinchilla = fit.fit_law(laws.CHINCHILLA, runs[["params", "tokens"]], runs["loss"],
                           bootstrap=100, seed=0)
  # Interval coverage itself is tested in test_fit_coverage.py; here the plan
  # must be near the truth and its intervals must hold its own estimate.
  for result in (iso, chinchilla):
    plan = isoflop.plan(budget, result)
    for key, truth in (("n_params", true_n), ("tokens", true_d)):
      assert plan[key] == pytest.approx(truth, rel=0.15), (plan["method"], key)
      lo, hi = plan[key + "_ci"]
      assert lo < plan[key] < hi and hi / lo < 3
    assert plan["n_params"] * plan["tokens"] * 6 == pytest.approx(budget)
    assert plan["tokens_per_param"] == pytest.approx(plan["tokens"] / plan["n_params"])
  parametric = isoflop.plan(budget, chinchilla)
  assert parametric["loss"] == pytest.approx(true_loss, rel=0.01)
  with pytest.raises(TypeError):
    isoflop.plan(budget, fit.fit_law(laws.POWER, runs["flops"], runs["loss"]))


def test_budgets_are_grouped_despite_rounding():
  flops = np.array([1e18, 1.02e18, 0.99e18, 1e19, 1.01e19, 1e20])
  labels = isoflop.bucket_budgets(flops)
  assert labels.tolist() == [0, 0, 0, 1, 1, 2]


def test_too_few_budgets_is_a_fit_error():
  with pytest.raises(fit.FitError, match="two budgets"):
    isoflop.fit_isoflop([1e8, 2e8, 4e8], [1e9, 5e8, 2.5e8], [3.0, 2.9, 3.1])
  with pytest.raises(fit.FitError, match="positive"):
    isoflop.fit_isoflop([1e8, -2e8, 4e8], [1e9, 5e8, 2.5e8], [3.0, 2.9, 3.1])
