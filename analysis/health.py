"""Live health of a running trial: its forecast final loss with a band, and whether its curve left it.

The learning-curve forecaster (analysis/forecast.py) is fitted to the first half of the steps
logged so far and extrapolated to the planned last step; the second half is checked against
the band. `sweeps status` shows the forecast and the flag; with `train.stop_when_off_forecast`
the train loop ends a trial whose curve stays above its band (plateau, divergence) early, as
`flagged`, so the sweep's budget goes to the others. A spike that came back is shown, not
stopped for: the run recovered (on the vision quickstart, seed 1, two classifiers spiked 1.1-1.2x
above the band at one step and finished normally). A loss below the band is never a flag: a
decaying learning rate makes the end of a curve fall faster than the laws extrapolate.
"""
import dataclasses
import numpy as np

from analysis import fit, forecast

FLAGS = ("spike", "plateau", "divergence")
STOPS = ("plateau", "divergence")  # what train.stop_when_off_forecast stops a trial for
MIN_POINTS = 40          # logged steps before any forecast is made
MIN_FRACTION = 0.3       # of the planned steps
_BINS = 200              # a longer curve is averaged into this many bins of consecutive steps
_BOOTSTRAP = 50


@dataclasses.dataclass
class Health:
  status: str                 # ok | spike | plateau | divergence | too early | not fitted
  message: str
  forecast: float | None = None  # the loss forecast at the planned last step
  lo: float | None = None        # its 95% band
  hi: float | None = None

  @property
  def flagged(self) -> bool:
    return self.status in FLAGS

  @property
  def stops(self) -> bool:
    return self.status in STOPS

  def describe(self) -> str:
    if self.forecast is None:
      return self.status
    band = f"{self.forecast:.3f} [{self.lo:.3f}, {self.hi:.3f}]"
    return band if self.status == "ok" else f"{band} {self.status.upper()}"


def assess(steps, losses, steps_planned: int, warmup_steps: int = 0) -> Health:
  """The health of a curve (training loss per step) that is planned to reach `steps_planned`.

  Steps of the learning-rate warmup are left out of the fit: a curve is not a power law there.
  The per-step losses are averaged in bins of consecutive steps (at most _BINS of them), which
  bounds the fit's cost and keeps one noisy batch from looking like a spike.
  """
  steps, losses = np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)
  bad = ~np.isfinite(losses)
  if bad.any():
    return Health("divergence", f"loss is NaN/inf from step {steps[np.argmax(bad)]:g}")
  after = steps > warmup_steps
  steps, losses = steps[after], losses[after]
  if steps.size < MIN_POINTS or steps.max() < MIN_FRACTION * steps_planned:
    return Health("too early", f"forecasts start {MIN_POINTS} steps after warmup and {MIN_FRACTION:.0%} into the run")
  bins = np.array_split(np.arange(steps.size), min(_BINS, steps.size))
  steps = np.array([steps[b].mean() for b in bins])
  losses = np.array([losses[b].mean() for b in bins])
  try:
    curve = forecast.forecast_curve(steps, losses, bootstrap=_BOOTSTRAP)
  except fit.FitError as e:
    return Health("not fitted", str(e))
  lo, hi = curve.band([steps_planned])
  flag = forecast.flag_curve(curve, steps, losses)
  return Health(flag.status, flag.message, float(curve.predict([steps_planned])[0]), float(lo[0]), float(hi[0]))
