"""Learning-curve forecasts: catch bad trials early.

Fit a trial's loss-vs-step curve on its early part (saturating power law
L = c + a (step + d)^-b by default, Zhai et al. 2022), forecast the rest with
a predictive band, and flag a trial whose observed curve leaves the band:

- divergence: the loss went non-finite, or stays above the band and has risen
  above the best loss the trial already reached;
- plateau: the loss stays above the band but near its best: it stopped
  improving while the forecast kept falling;
- spike: a transient excursion well above the band that came back.

The band adds in quadrature, in log space: the spread of bootstrap fits
(parameter uncertainty), the residual noise of the fitted part, and a drift
term for extrapolation error that grows with ln(step / last fitted step).
The drift rate is measured on the fit window itself: refit on its first
`_INNER_FRACTION` of points, predict the rest, and take the error in excess
of the noise per unit of ln horizon. A law that extrapolated badly inside the
window is trusted less beyond it, and a band of only noise + parameters would
cover ~50% of held-out points on the Alabdulmohsin et al. vision curves.

Only excursions above the band are flagged: a learning-rate decay (cosine,
linear-to-zero) makes the loss fall faster near the end than these laws
predict, which lands below the band and is not a problem.
"""
import dataclasses

import numpy as np
import pandas as pd
from scipy import stats

from analysis import fit, laws


_INNER_FRACTION = 0.6


@dataclasses.dataclass
class CurveForecast:
  fit: fit.FitResult
  fit_until_step: float     # last step used for fitting
  drift: float = 0.0        # extrapolation error (log loss) per unit ln horizon
  level: float = 0.95

  @property
  def noise(self) -> float:
    """std of log residuals on the fitted part."""
    return self.fit.noise

  def predict(self, steps) -> np.ndarray:
    return self.fit.predict(np.asarray(steps, dtype=float))

  def band(self, steps, level: float | None = None):
    """(lo, hi) predictive band of the loss at `steps`."""
    level = level or self.level
    steps = np.asarray(steps, dtype=float)
    lo, hi = self.fit.predict_interval(steps, level, noise=True)
    horizon = np.log(np.maximum(steps / self.fit_until_step, 1.0))
    spread = stats.norm.ppf(0.5 + level / 2) * self.drift * horizon
    log_mid = np.log(self.predict(steps))
    return (np.exp(log_mid - np.hypot(log_mid - np.log(lo), spread)),
            np.exp(log_mid + np.hypot(np.log(hi) - log_mid, spread)))


def forecast_curve(steps, loss, *, fit_fraction: float = 0.5,
                   fit_until_step: float | None = None,
                   law: laws.Law = laws.SATURATING, bootstrap: int = 100,
                   seed: int = 0, level: float = 0.95) -> CurveForecast:
  """Fits `law` to the points with step <= fit_until_step.

  steps: optimizer steps (or tokens/examples seen); steps <= 0 are dropped
  since the laws use log(step). loss: loss at those steps (nats). By default
  the fit uses the first `fit_fraction` of the observed step range.
  """
  steps, loss = _clean(steps, loss)
  if fit_until_step is None:
    fit_until_step = steps.min() + fit_fraction * (steps.max() - steps.min())
  early = (steps <= fit_until_step) & np.isfinite(loss)
  result = fit.fit_law(law, steps[early], loss[early], bootstrap=bootstrap,
                       seed=seed, level=level)
  return CurveForecast(fit=result, fit_until_step=float(steps[early].max()),
                       drift=_drift_rate(law, steps[early], loss[early], result.noise),
                       level=level)


def _drift_rate(law, steps, loss, noise) -> float:
  """Extrapolation error per unit ln horizon, from an inner backtest."""
  n_inner = int(_INNER_FRACTION * steps.size)
  if n_inner < law.n_params + 2 or steps.size - n_inner < 2:
    return 0.0
  try:
    inner = fit.fit_law(law, steps[:n_inner], loss[:n_inner])
  except fit.FitError:
    return 0.0
  rest = slice(n_inner, None)
  error = np.log(inner.predict(steps[rest])) - np.log(loss[rest])
  horizon = np.log(steps[rest] / steps[n_inner - 1])
  excess = max(float(np.mean(error ** 2)) - noise ** 2, 0.0)
  return float(np.sqrt(excess / np.mean(horizon ** 2)))


def _clean(steps, loss):
  steps = np.asarray(steps, dtype=float)
  loss = np.asarray(loss, dtype=float)
  keep = np.isfinite(steps) & (steps > 0)
  order = np.argsort(steps[keep], kind="stable")
  return steps[keep][order], loss[keep][order]


@dataclasses.dataclass
class CurveFlag:
  status: str                # ok | spike | plateau | divergence
  first_step: float | None   # first step outside the band (or non-finite)
  fraction_above: float      # of the points after the fit window
  message: str


def flag_curve(forecast: CurveForecast, steps, loss, *, tail_points: int = 5,
               spike_margin: float | None = None) -> CurveFlag:
  """Compares the points after the fit window with the forecast band.

  tail_points: how many final points must all sit above the band to call a
  persistent problem (plateau/divergence). spike_margin: log excess over the
  band's upper edge that counts as a spike (default max(3 * noise, 0.02));
  small excursions are expected from a 95% band and are ignored.
  """
  steps, loss = _clean(steps, loss)
  after = steps > forecast.fit_until_step
  steps, loss = steps[after], loss[after]
  if steps.size == 0:
    return CurveFlag("ok", None, 0.0, "no points after the fit window yet")
  bad = ~np.isfinite(loss)
  if bad.any():
    step = float(steps[np.argmax(bad)])
    return CurveFlag("divergence", step, float(bad.mean()),
                     f"loss is NaN/inf from step {step:g}")
  _, hi = forecast.band(steps)
  excess = np.log(loss) - np.log(hi)
  above = excess > 0
  margin = spike_margin if spike_margin is not None else max(3 * forecast.noise, 0.02)
  fraction = float(above.mean())
  tail = min(tail_points, steps.size)
  if above[-tail:].all():
    run_start = len(above) - tail
    while run_start > 0 and above[run_start - 1]:  # Start of the final excursion.
      run_start -= 1
    first = float(steps[run_start])
    best_before = np.min(np.concatenate([forecast.fit.y, loss[:run_start]]))
    now = float(np.median(loss[-tail:]))
    if np.log(now / best_before) > margin:
      return CurveFlag("divergence", first, fraction,
                       f"loss rose to {now:.4g} from a best of {best_before:.4g} "
                       f"and has been above the forecast band since step {first:g}")
    return CurveFlag("plateau", first, fraction,
                     f"loss stalled near {now:.4g} above the forecast band "
                     f"since step {first:g}")
  spikes = excess > margin
  if spikes.any():
    step = float(steps[np.argmax(spikes)])
    return CurveFlag("spike", step, fraction,
                     f"loss spiked to {np.exp(excess.max()):.3g}x the band's "
                     f"upper edge at step {step:g} and came back")
  return CurveFlag("ok", None, fraction, "inside the forecast band")


def forecast_trials(df: pd.DataFrame, *, trial: str = "trial",
                    step: str = "step", loss: str = "loss",
                    final_step: float | None = None, **kwargs) -> pd.DataFrame:
  """forecast_curve + flag_curve per trial; one row per trial.

  final_step: where to forecast (default: each trial's last step). kwargs go
  to forecast_curve. Trials that cannot be fitted (too short, constant) get
  status 'not_fitted' and the reason in `message`. The `forecast` and `flag`
  columns hold the CurveForecast and CurveFlag objects (for
  fit_plots.curve_forecasts).
  """
  rows = []
  for trial_id, group in df.groupby(trial, sort=False):
    steps, losses = group[step].to_numpy(float), group[loss].to_numpy(float)
    target = float(final_step if final_step is not None else np.nanmax(steps))
    row = {trial: trial_id, "final_step": target,
           "observed_final": float(losses[np.nanargmax(steps)])}
    try:
      forecast = forecast_curve(steps, losses, **kwargs)
    except fit.FitError as err:
      rows.append(row | {"status": "not_fitted", "message": str(err),
                         "forecast": None, "flag": None})
      continue
    lo, hi = forecast.band([target])
    flag = flag_curve(forecast, steps, losses)
    rows.append(row | {
        "fit_until_step": forecast.fit_until_step,
        "predicted_final": float(forecast.predict([target])[0]),
        "predicted_final_lo": float(lo[0]), "predicted_final_hi": float(hi[0]),
        "status": flag.status, "flag_step": flag.first_step,
        "message": flag.message, "forecast": forecast, "flag": flag})
  return pd.DataFrame(rows)
