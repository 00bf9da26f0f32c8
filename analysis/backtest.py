"""Backtests: fit a law on the small end of a sweep, predict the large end.

A scaling law earns trust by predicting runs it has not seen. `backtest` fits
on the points whose split value (x itself, or compute 6 N D for Chinchilla) is
at or below a threshold and reports the held-out RMSLE,
sqrt(mean((log y_hat - log y)^2)), of the points above it.
"""
import dataclasses

import numpy as np

from analysis import fit, laws


@dataclasses.dataclass
class Backtest:
  law: str
  threshold: float           # fitted: split value <= threshold
  n_fit: int
  n_holdout: int
  rmsle: float               # on held-out points (nan if any y <= 0)
  rmse: float                # on held-out points, in y units
  coverage: float            # held-out points inside the 95% predictive band (nan without bootstrap)
  predicted: np.ndarray      # [n_holdout]
  observed: np.ndarray       # [n_holdout]
  split_values: np.ndarray   # [n_holdout] the held-out points' split values
  fit: fit.FitResult

  def to_dict(self) -> dict:
    return {"law": self.law, "threshold": self.threshold, "n_fit": self.n_fit,
            "n_holdout": self.n_holdout, "rmsle": self.rmsle, "rmse": self.rmse,
            "coverage": self.coverage}


def split_values(law: laws.Law, x) -> np.ndarray:
  """What to threshold on: x for one-input laws, 6 N D FLOPs for Chinchilla."""
  inputs = laws.as_inputs(law, x)
  if law.n_inputs == 1:
    return inputs[0]
  return 6.0 * inputs[0] * inputs[1]


def backtest(law: laws.Law, x, y, *, threshold: float | None = None,
             holdout_fraction: float = 0.25, split=None, bootstrap: int = 0,
             seed: int = 0) -> Backtest:
  """Fits on split <= threshold, predicts split > threshold.

  threshold: default holds out the largest `holdout_fraction` of the distinct
  split values (at least one). split: per-point values to threshold on
  (default `split_values(law, x)`). bootstrap > 0 adds the fraction of held-out
  points inside the fit's 95% predictive band (curve + residual noise). Raises fit.FitError when either side is
  too small.
  """
  inputs = laws.as_inputs(law, x)
  y = np.asarray(y, dtype=float).reshape(-1)
  split = split_values(law, inputs) if split is None else np.asarray(split, float)
  if threshold is None:
    distinct = np.unique(split[np.isfinite(split)])
    n_out = max(1, int(round(holdout_fraction * distinct.size)))
    if distinct.size <= n_out:
      raise fit.FitError(f"backtest needs at least 2 distinct x values, got {distinct.size}")
    threshold = float(distinct[-n_out - 1])
  train = split <= threshold
  held = split > threshold
  if not held.any():
    raise fit.FitError(f"no points above the backtest threshold {threshold:g}")
  result = fit.fit_law(law, inputs[:, train], y[train], bootstrap=bootstrap, seed=seed)
  predicted = result.predict(inputs[:, held])
  observed = y[held]
  with np.errstate(all="ignore"):
    rmsle = (float(np.sqrt(np.mean((np.log(predicted) - np.log(observed)) ** 2)))
             if (observed > 0).all() and (predicted > 0).all() else np.nan)
  coverage = np.nan
  if bootstrap:
    lo, hi = result.predict_interval(inputs[:, held], noise=True)
    coverage = float(np.mean((observed >= lo) & (observed <= hi)))
  return Backtest(
      law=law.name, threshold=float(threshold), n_fit=int(train.sum()),
      n_holdout=int(held.sum()), rmsle=rmsle,
      rmse=float(np.sqrt(np.mean((predicted - observed) ** 2))),
      coverage=coverage, predicted=predicted, observed=observed,
      split_values=split[held], fit=result)
