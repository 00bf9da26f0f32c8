"""Backtests: fit below a threshold, score the held-out points above it."""
import numpy as np
import pytest

from analysis import backtest, fit, isoflop, laws


def test_a_true_law_extrapolates_well_and_a_wrong_one_does_not():
  x = np.logspace(17, 22, 20)
  rng = np.random.default_rng(0)
  y = laws.POWER.predict({"E": 1.8, "A": 3e3, "alpha": 0.18}, x) * np.exp(0.003 * rng.standard_normal(20))
  good = backtest.backtest(laws.POWER, x, y, bootstrap=100)
  bad = backtest.backtest(laws.PURE_POWER, x, y)
  assert good.n_holdout == 5 and good.n_fit == 15
  assert good.threshold == pytest.approx(x[14])
  assert good.rmsle < 0.01 < bad.rmsle
  assert good.coverage >= 0.6
  assert set(good.to_dict()) >= {"rmsle", "n_fit", "n_holdout", "threshold"}


def test_chinchilla_backtest_splits_on_compute():
  runs = isoflop.synthetic_runs(budgets=np.logspace(18, 21, 4), sizes_per_budget=6,
                                noise=0.005, seed=1)
  result = backtest.backtest(laws.CHINCHILLA, runs[["params", "tokens"]], runs["loss"],
                             holdout_fraction=0.25)
  assert result.split_values.min() > result.threshold
  assert result.rmsle < 0.05


def test_explicit_threshold_and_errors():
  x = np.logspace(1, 4, 10)
  y = 2 + 10 * x ** -0.5
  result = backtest.backtest(laws.POWER, x, y, threshold=x[6])
  assert result.n_fit == 7 and result.n_holdout == 3
  with pytest.raises(fit.FitError, match="no points above"):
    backtest.backtest(laws.POWER, x, y, threshold=x[-1])
  with pytest.raises(fit.FitError, match="3 parameters"):
    backtest.backtest(laws.POWER, x, y, threshold=x[1])
