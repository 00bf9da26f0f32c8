"""The generic fitter on one-input laws: the spine's interface, comparison, ladder."""
import numpy as np
import pytest

from analysis import fit, laws


def noisy(law, params, x, noise, seed):
  rng = np.random.default_rng(seed)
  y = law.predict(params, x)
  if law.target == "log":
    return y * np.exp(noise * rng.standard_normal(y.size))
  return y + noise * rng.standard_normal(y.size)


def test_power_law_interface_used_by_reports():
  x = np.logspace(6, 9, 10)
  truth = {"E": 2.0, "A": 400.0, "alpha": 0.3}
  y = noisy(laws.POWER, truth, x, 0.005, seed=0)
  result = fit.fit_law(laws.POWER, x, y, bootstrap=200, seed=0)
  assert set(result.params) == set(result.ci) == {"E", "A", "alpha"}
  assert result.n_points == 10 and result.objective > 0
  for name, value in truth.items():
    lo, hi = result.ci[name]
    assert lo < value < hi, name
  grid = np.logspace(6, 10, 5)
  lo, hi = result.predict_interval(grid)
  mid = result.predict(grid)
  assert mid.shape == lo.shape == hi.shape == (5,)
  assert (lo <= mid).all() and (mid <= hi).all()
  wide_lo, wide_hi = result.predict_interval(grid, noise=True)
  assert (wide_lo < lo).all() and (wide_hi > hi).all()
  assert result.to_dict()["params"]["alpha"] == pytest.approx(result.params["alpha"])


def test_without_bootstrap_intervals_are_nan_and_bands_refused():
  x = np.logspace(6, 9, 8)
  result = fit.fit_law(laws.POWER, x, noisy(laws.POWER, {"E": 1, "A": 50, "alpha": 0.2}, x, 0.01, 1))
  assert all(np.isnan(lo) and np.isnan(hi) for lo, hi in result.ci.values())
  with pytest.raises(ValueError, match="bootstrap"):
    result.predict_interval(x)


@pytest.mark.parametrize("law, truth, noise", [
    (laws.SATURATING, {"a": 30.0, "b": 0.5, "c": 1.5, "d": 300.0}, 0.002),
    (laws.BNSL, {"a": 0.5, "b": 20.0, "c0": 0.1, "c1": 0.6, "d1": 1e4, "f1": 0.3}, 0.002),
    (laws.SIGMOID, {"floor": 0.25, "ceiling": 0.85, "slope": 1.2, "x_mid": 1e20}, 0.003),
])
def test_each_law_recovers_its_own_curve(law, truth, noise):
  x = np.logspace(1, 6, 40) if law is not laws.SIGMOID else np.logspace(17, 23, 40)
  y = noisy(law, truth, x, noise, seed=2)
  result = fit.fit_law(law, x, y)
  fitted = law.predict(result.params, x)
  rms = np.sqrt(np.mean((fitted - law.predict(truth, x)) ** 2)) / np.mean(np.abs(y))
  assert rms < 3 * noise


@pytest.mark.parametrize("x, y, message", [
    ([1.0, 2.0], [3.0, 2.0], "3 parameters"),
    ([1.0, 2.0, np.nan, 4.0], [3.0, 2.0, 1.5, 1.2], "NaN"),
    ([1.0, 2.0, 3.0, 4.0], [3.0, np.inf, 1.5, 1.2], "NaN/inf"),
    ([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0], "constant"),
    ([-1.0, 2.0, 3.0, 4.0], [3.0, 2.0, 1.5, 1.2], "positive"),
    ([0.0, 2.0, 3.0, 4.0], [3.0, 2.0, 1.5, 1.2], "positive"),
    ([1.0, 2.0, 3.0, 4.0], [3.0, 0.0, 1.5, 1.2], "positive"),
])
def test_degenerate_one_input_data(x, y, message):
  with pytest.raises(fit.FitError, match=message):
    fit.fit_law(laws.POWER, np.array(x), np.array(y))


def test_sigmoid_accepts_zero_accuracy_but_not_zero_x():
  x = np.logspace(18, 22, 8)
  y = np.array([0.0, 0.0, 0.02, 0.1, 0.3, 0.5, 0.6, 0.62])
  fit.fit_law(laws.SIGMOID, x, y)
  with pytest.raises(fit.FitError, match="positive"):
    fit.fit_law(laws.SIGMOID, np.r_[0.0, x[1:]], y)


def test_compare_prefers_the_floor_only_when_the_data_have_one():
  x = np.logspace(6, 10, 30)
  with_floor = noisy(laws.POWER, {"E": 2.0, "A": 300.0, "alpha": 0.35}, x, 0.003, 3)
  verdict = fit.compare(fit.fit_law(laws.PURE_POWER, x, with_floor),
                        fit.fit_law(laws.POWER, x, with_floor))
  assert verdict["preferred_aic"] == "power" and verdict["lr_p"] < 1e-6
  assert verdict["lr_df"] == 1

  straight = noisy(laws.PURE_POWER, {"A": 30.0, "alpha": 0.1}, x, 0.01, 4)
  verdict = fit.compare(fit.fit_law(laws.PURE_POWER, x, straight),
                        fit.fit_law(laws.POWER, x, straight))
  assert verdict["preferred_bic"] == "pure_power" and verdict["lr_p"] > 0.01

  with pytest.raises(ValueError, match="same data"):
    fit.compare(fit.fit_law(laws.POWER, x, straight), fit.fit_law(laws.POWER, x, with_floor))


def test_ladder_predicts_accuracy_through_loss():
  compute = np.logspace(18, 21, 8)
  loss = laws.POWER.predict({"E": 1.8, "A": 2e3, "alpha": 0.17}, compute)
  accuracy_of = lambda l: laws.SIGMOID.predict(
      {"floor": 0.25, "ceiling": 0.9, "slope": -12.0, "x_mid": 2.6}, l)
  rng = np.random.default_rng(5)
  accuracy = accuracy_of(loss) + 0.003 * rng.standard_normal(loss.size)
  ladder = fit.fit_ladder(compute, loss * np.exp(0.002 * rng.standard_normal(8)),
                          accuracy, bootstrap=100)
  target = np.array([1e22])
  expected = accuracy_of(laws.POWER.predict({"E": 1.8, "A": 2e3, "alpha": 0.17}, target))
  lo, hi = ladder.predict_interval(target)
  assert ladder.predict(target)[0] == pytest.approx(expected[0], abs=0.03)
  assert lo[0] <= ladder.predict(target)[0] <= hi[0]
