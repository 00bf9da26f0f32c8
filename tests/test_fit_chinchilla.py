"""Chinchilla approach 3: the paper's procedure recovers known parameters."""
import numpy as np
import pytest
from scipy import optimize

from analysis import fit, isoflop, laws


@pytest.fixture(scope="module")
def runs():
  """240 IsoFLOP-design runs from Epoch's refit, 0.5% log-normal noise."""
  return isoflop.synthetic_runs(
      isoflop.EPOCH_PARAMS, budgets=np.logspace(np.log10(6e18), np.log10(3e22), 12),
      sizes_per_budget=20, noise=0.005, seed=3)


@pytest.fixture(scope="module")
def result(runs):
  return fit.fit_law(laws.CHINCHILLA, runs[["params", "tokens"]], runs["loss"],
                     bootstrap=200, seed=0)


def test_full_grid_recovers_epochs_parameters(result):
  assert result.n_starts == 4500 and result.n_points == 240
  truth = isoflop.EPOCH_PARAMS
  for name, tolerance in (("E", 0.01), ("alpha", 0.03), ("beta", 0.03),
                          ("A", 0.25), ("B", 0.25)):
    assert result.params[name] == pytest.approx(truth[name], rel=tolerance), name
    lo, hi = result.ci[name]
    assert lo < result.params[name] < hi


def huber_sum(theta_raw, runs):
  """The paper's objective written out independently, on raw (e, a, b, alpha, beta)."""
  e, a, b, alpha, beta = theta_raw
  log_n, log_d = np.log(runs["params"].to_numpy()), np.log(runs["tokens"].to_numpy())
  pred = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e)
  r = pred - np.log(runs["loss"].to_numpy())
  small = np.abs(r) <= 1e-3
  return np.sum(np.where(small, 0.5 * r ** 2, 1e-3 * (np.abs(r) - 0.5e-3)))


def test_objective_is_summed_huber_and_cannot_be_improved(result, runs):
  p = result.params
  theta_raw = np.array([np.log(p["E"]), np.log(p["A"]), np.log(p["B"]), p["alpha"], p["beta"]])
  assert result.objective == pytest.approx(huber_sum(theta_raw, runs), rel=1e-9)
  # scipy's L-BFGS-B on the raw parametrisation, tight tolerances, from our optimum.
  res = optimize.minimize(huber_sum, theta_raw, args=(runs,), method="L-BFGS-B",
                          options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000})
  assert res.fun >= result.objective * (1 - 1e-7)


def test_derived_quantities_have_bootstrap_intervals(result):
  a, lo, hi = result.interval(lambda p: p["beta"] / (p["alpha"] + p["beta"]))
  truth_a, _ = isoflop.allocation_exponents(isoflop.EPOCH_PARAMS)
  assert lo < a < hi
  assert a == pytest.approx(truth_a, abs=0.02)
  x = {"params": np.array([1e9, 7e10]), "tokens": np.array([2e10, 1.4e12])}
  lo, hi = result.predict_interval(x)
  mid = result.predict(x)
  assert (lo < mid).all() and (mid < hi).all()
  truth = laws.CHINCHILLA.predict(isoflop.EPOCH_PARAMS, x)
  np.testing.assert_allclose(mid, truth, rtol=0.01)


def test_bootstrap_is_reproducible_and_seeded(runs):
  x, y = runs["flops"].to_numpy(), runs["loss"].to_numpy()
  one = fit.fit_law(laws.POWER, x, y, bootstrap=20, seed=5)
  two = fit.fit_law(laws.POWER, x, y, bootstrap=20, seed=5)
  other = fit.fit_law(laws.POWER, x, y, bootstrap=20, seed=6)
  assert one.ci == two.ci
  assert one.params == other.params and one.ci != other.ci


@pytest.mark.parametrize("n_params, tokens, loss, message", [
    ([1e8, 2e8], [1e9, 2e9], [3.0, 2.9], "5 parameters"),
    ([1e8, 2e8, 3e8, 4e8, np.nan, 6e8], [1e9] * 6, [3, 2.9, 2.8, 2.7, 2.6, 2.5], "NaN"),
    ([1e8, 2e8, 3e8, 4e8, 5e8, 6e8], [1e9] * 6, [3, 2.9, np.inf, 2.7, 2.6, 2.5], "NaN/inf"),
    ([1e8, 2e8, 3e8, 4e8, 5e8, 6e8], [1e9] * 6, [2.5] * 6, "constant"),
    ([1e8, -2e8, 3e8, 4e8, 5e8, 6e8], [1e9] * 6, [3, 2.9, 2.8, 2.7, 2.6, 2.5], "positive"),
    ([1e8, 2e8, 3e8, 4e8, 5e8, 6e8], [0.0] * 6, [3, 2.9, 2.8, 2.7, 2.6, 2.5], "positive"),
    ([1e8, 2e8, 3e8, 4e8, 5e8, 6e8], [1e9] * 6, [3, 2.9, -2.8, 2.7, 2.6, 2.5], "positive"),
    ([1e8, 2e8, 3e8, 4e8, 5e8, 6e8], [1e9] * 6, [3, 2.9, 2.8, 2.7, 2.6], "6 points but y has 5"),
    ([1e8, 2e8, 3e8, 4e8, 5e8, 6e8], [1e9] * 5, [3, 2.9, 2.8, 2.7, 2.6, 2.5], "cannot read"),
])
def test_degenerate_input_raises_one_clear_error(n_params, tokens, loss, message):
  with pytest.raises(fit.FitError, match=message) as err:
    fit.fit_law(laws.CHINCHILLA, {"params": n_params, "tokens": tokens}, loss)
  assert "\n" not in str(err.value)
  assert isinstance(err.value, ValueError)
