"""Emergence: at what scale an ability appears, and whether the jump is in the model or in the metric.

For one metric against scale x (parameters, FLOPs, or any column), with any number of
replicates (seeds) per scale:

- `rungs`: the mean, spread and count of the metric at each distinct x.
- `monotone`: false when the metric falls as x grows by more than its noise: some rung's mean
  lies below the best earlier rung's by more than 3 standard errors of the difference (3, not 2:
  every rung is compared, so 2 would flag flat plateaus by chance). The noise is
  the replicates' pooled spread where there are replicates, else a robust estimate from second
  differences of the rung means. A fall under 5% of the spread of the rung means never counts: two or
  three seeds per rung can underestimate the noise several-fold, and a plateau then looks like a fall.
- `sigmoid`: y = floor + (ceiling - floor) / (1 + exp(-slope (t - t_mid))), t = ln x (log_x) or x,
  fitted by the library's fitter with bootstrap intervals (analysis/laws.py SIGMOID). The
  emergence point is x at t_mid: the scale of half the fitted rise. When the whole rise fits
  between two adjacent rungs, its interval spans at least those two rungs (`between_rungs`):
  the data cannot say where in the gap the jump is.
- `rise_width`: how much of the scale range the rise takes: from 10% to 90% of the fitted rise
  is 2 ln 9 / |slope| in t, and rise_fraction is that over the t-span of the data. A metric
  rises when the fitted curve changes across the data by more than twice its noise and by at
  least a third of the spread of its rung means. Its `shape` is sharp when the rise fraction's
  95% bootstrap interval lies wholly under SHARP_FRACTION, smooth when wholly at or above it,
  else undetermined. With six rungs evenly spaced in ln x, a jump between two adjacent rungs
  gives a fraction of about 0.1, a rise linear in ln x about 1 or more.
- `verdict` (with a continuous metric of the same outputs, e.g. the answer's log-probability):
  "metric-induced" (sharp in the metric, smooth in the continuous one: Schaeffer et al. 2023),
  "sharp in both", "smooth in both", "sharp only in the continuous metric", "undetermined" (a
  shape the intervals cannot decide), "no rise" or "not monotone".
"""
import numpy as np
import pandas as pd

from analysis import fit as fit_lib
from analysis import laws

SHARP_FRACTION = 0.3  # a rise taking less than this share of the (log-)scale range covered is sharp
MIN_SCALES = 4  # distinct x a sigmoid (4 parameters) needs
FALL_SES = 3  # a fall counts when larger than this many standard errors (one of many rung pairs: not 2)
MIN_FALL = 0.05  # ... and than this share of the spread of the rung means (a few seeds underestimate the noise)
_RISE_10_90 = 2 * np.log(9.0)


def rungs(x, y) -> pd.DataFrame:
  """One row per distinct x (ascending): x, n, mean, std (ddof 1; 0 for one replicate), min, max."""
  frame = pd.DataFrame({"x": np.asarray(x, float), "y": np.asarray(y, float)})
  grouped = frame.groupby("x", sort=True).y
  out = grouped.agg(["count", "mean", "std", "min", "max"]).reset_index().rename(columns={"count": "n"})
  out["std"] = out["std"].fillna(0.0)
  return out


def noise(table: pd.DataFrame) -> float:
  """The metric's noise (standard deviation of one observation): pooled over replicates, else robust."""
  dof = (table.n - 1).clip(lower=0)
  if dof.sum() > 0:
    return float(np.sqrt((dof * table["std"] ** 2).sum() / dof.sum()))
  means = table["mean"].to_numpy()
  if len(means) < 3:
    return 0.0
  second = np.diff(means, 2)  # for independent noise sigma: var(second difference) = 6 sigma^2
  return float(np.median(np.abs(second)) / 0.6745 / np.sqrt(6))


def monotone_check(table: pd.DataFrame, sigma: float) -> tuple:
  """(monotone, warning or None): the largest fall of a later rung below an earlier one, against its noise."""
  means, counts, xs = table["mean"].to_numpy(), table.n.to_numpy(), table.x.to_numpy()
  spread = means.max() - means.min() if len(means) else 0.0
  worst, where = 0.0, None
  for j in range(1, len(means)):
    i = int(np.argmax(means[:j]))
    fall = means[i] - means[j]
    tolerance = max(FALL_SES * sigma * np.sqrt(1 / counts[i] + 1 / counts[j]), MIN_FALL * spread)
    if fall > tolerance and fall - tolerance > worst:
      worst, where = fall - tolerance, (i, j, fall, tolerance)
  if where is None:
    return True, None
  i, j, fall, tolerance = where
  return False, (f"not monotone: the metric falls from {means[i]:.4g} at x = {xs[i]:.4g} to {means[j]:.4g} at "
                 f"x = {xs[j]:.4g}, by {fall:.3g}, more than its noise allows ({tolerance:.3g}); a sigmoid does "
                 "not describe it and no emergence point is given")


class _Scale:
  """x <-> the input the sigmoid law takes (it works in ln of its input): ln x itself, or a linear x mapped
  through exp of a standardised x, so that t = x up to a shift and scale."""

  def __init__(self, x, log_x: bool):
    self.log_x = log_x
    self.shift, self.unit = (0.0, 1.0) if log_x else (float(np.min(x)), float(np.ptp(x)) or 1.0)

  def law_input(self, x):
    x = np.asarray(x, float)
    return x if self.log_x else np.exp((x - self.shift) / self.unit)

  def t(self, x):  # the axis the sigmoid is logistic in
    return np.log(x) if self.log_x else np.asarray(x, float)

  def from_law_input(self, v):
    v = np.asarray(v, float)
    return v if self.log_x else self.shift + self.unit * np.log(v)

  def slope_per_t(self, slope):
    return slope if self.log_x else slope / self.unit


def fit_sigmoid(x, y, *, log_x: bool = True, bootstrap: int = 200, seed: int = 0) -> dict:
  """The sigmoid fit in t (ln x or x) with 95% intervals, in the units of x; `result` holds the FitResult."""
  scale = _Scale(x, log_x)
  result = fit_lib.fit_law(laws.SIGMOID, scale.law_input(x), y, bootstrap=bootstrap, seed=seed)
  boot = result.bootstrap_params

  def value_ci(name, transform):
    value = float(transform(result.params[name]))
    if not len(result.bootstrap_theta):
      return value, [float("nan"), float("nan")]
    lo, hi = fit_lib.percentile_interval(transform(boot[name]), result.level)
    return value, [float(lo), float(hi)]

  floor, floor_ci = value_ci("floor", lambda v: v)
  ceiling, ceiling_ci = value_ci("ceiling", lambda v: v)
  slope, slope_ci = value_ci("slope", scale.slope_per_t)
  x_mid, x_mid_ci = value_ci("x_mid", scale.from_law_input)
  t = scale.t(x)
  span_t = float(np.ptp(t)) or 1.0
  width = float(_RISE_10_90 / abs(slope)) if slope else float("inf")
  fraction_ci = [float("nan"), float("nan")]
  if len(result.bootstrap_theta):
    with np.errstate(divide="ignore"):
      fractions = _RISE_10_90 / np.abs(scale.slope_per_t(boot["slope"])) / span_t
    fraction_ci = [float(v) for v in fit_lib.percentile_interval(fractions, result.level)]
  return {"params": {"floor": floor, "ceiling": ceiling, "slope": slope, "x_mid": x_mid},
          "ci": {"floor": floor_ci, "ceiling": ceiling_ci, "slope": slope_ci, "x_mid": x_mid_ci},
          "slope_per": "ln x" if log_x else "x", "rise_width": width, "rise_fraction": width / span_t,
          "rise_fraction_ci": fraction_ci,
          "rmse": float(np.sqrt(np.mean(result.residuals() ** 2))), "result": result, "scale": scale}


def _rise_within_data(sig: dict, x) -> float:
  """Fitted change of the metric across the data's x range (not the asymptotes far outside it)."""
  scale = sig["scale"]
  ends = sig["result"].predict(scale.law_input(np.array([np.min(x), np.max(x)], float)))
  return float(ends[1] - ends[0])


def describe(x, y, *, log_x: bool = True, bootstrap: int = 200, seed: int = 0) -> dict:
  """Everything this module says about one metric against scale (see the module docstring)."""
  x, y = np.asarray(x, float), np.asarray(y, float)
  table = rungs(x, y)
  sigma = noise(table)
  monotone, warning = monotone_check(table, sigma)
  entry = {"n_points": int(len(y)), "n_scales": int(len(table)), "x_range": [float(x.min()), float(x.max())],
           "noise": sigma, "monotone": monotone, "warning": warning,
           "rungs": [{k: float(v) if k != "n" else int(v) for k, v in r.items()} for r in table.to_dict("records")],
           "sigmoid": None, "emergence_point": None, "emergence_point_ci": None, "shape": None, "sharp": None}
  if len(table) < MIN_SCALES:
    entry["warning"] = warning or f"{len(table)} distinct scales; a sigmoid needs at least {MIN_SCALES}"
    return entry
  try:
    sig = fit_sigmoid(x, y, log_x=log_x, bootstrap=bootstrap, seed=seed)
  except fit_lib.FitError as e:
    entry["warning"] = warning or f"the sigmoid fit failed: {e}"
    return entry
  rise = _rise_within_data(sig, x)
  spread = float(table["mean"].max() - table["mean"].min())
  rises = rise > max(2 * sigma, 1e-12) and rise >= spread / 3
  entry["sigmoid"] = {k: v for k, v in sig.items() if k not in ("result", "scale")} | {
      "rise_within_data": rise, "good_fit": bool(monotone and rises)}
  entry["_fit"] = sig  # for plots and the report; dropped from JSON
  entry["shape"] = "not monotone" if not monotone else _shape(sig) if rises else "no rise"
  entry["sharp"] = {"sharp": True, "smooth": False}.get(entry["shape"])
  if not rises and monotone:
    entry["warning"] = (f"no rise: the fitted sigmoid changes by {rise:.3g} over the data, within the noise "
                        f"({sigma:.3g}) or under a third of the metric's range ({spread:.3g})")
  if monotone and rises:
    entry["emergence_point"] = sig["params"]["x_mid"]
    entry["emergence_point_ci"] = _widened_to_rungs(sig, table.x.to_numpy(), entry)
    entry["extrapolated"] = bool(not x.min() <= entry["emergence_point"] <= x.max())
    if entry["extrapolated"]:
      entry["warning"] = (f"the fitted midpoint {entry['emergence_point']:.4g} lies outside the scales covered "
                          f"[{x.min():.4g}, {x.max():.4g}]: an extrapolation, not a measurement")
  return entry


def _shape(sig: dict) -> str:
  """sharp / smooth when the rise fraction's interval lies wholly below / above SHARP_FRACTION, else
  undetermined (the point estimate alone decides when there is no bootstrap)."""
  lo, hi = sig["rise_fraction_ci"]
  if not (np.isfinite(lo) and np.isfinite(hi)):
    lo = hi = sig["rise_fraction"]
  return "sharp" if hi < SHARP_FRACTION else "smooth" if lo >= SHARP_FRACTION else "undetermined"


def _widened_to_rungs(sig: dict, xs: np.ndarray, entry: dict) -> list:
  """The midpoint's interval; when the whole rise fits between two adjacent rungs, the data cannot place it
  inside that gap (any midpoint there fits as well), so the interval spans at least the two rungs
  (and `between_rungs` names them)."""
  lo, hi = sig["ci"]["x_mid"]
  x_mid = sig["params"]["x_mid"]
  below, above = xs[xs <= x_mid], xs[xs >= x_mid]
  if not len(below) or not len(above):
    return [lo, hi]
  scale = sig["scale"]
  gap = float(scale.t(above.min()) - scale.t(below.max()))
  if sig["rise_width"] >= gap:
    return [lo, hi]
  entry["between_rungs"] = [float(below.max()), float(above.min())]
  return [float(np.nanmin([lo, below.max()])), float(np.nanmax([hi, above.min()]))]


def verdict(metric: dict, continuous: dict) -> str:
  """Whether a jump in `metric` is in the model (the continuous metric jumps too) or in the metric."""
  m, c = metric.get("shape") or "no rise", continuous.get("shape") or "no rise"
  if m in ("no rise", "not monotone"):
    return m
  if "undetermined" in (m, c) or c == "not monotone":
    return "undetermined"
  if m == "sharp":
    return "sharp in both" if c == "sharp" else "metric-induced"  # (no rise at all in c: also the metric's)
  return "sharp only in the continuous metric" if c == "sharp" else "smooth in both"


def analyze(x, metric, continuous=None, *, log_x: bool = True, bootstrap: int = 200, seed: int = 0) -> dict:
  """One entry: the metric described, and with a continuous metric of the same outputs, it too and the verdict."""
  entry = describe(x, metric, log_x=log_x, bootstrap=bootstrap, seed=seed)
  if continuous is not None:
    entry["continuous"] = describe(x, continuous, log_x=log_x, bootstrap=bootstrap, seed=seed + 1)
    entry["verdict"] = verdict(entry, entry["continuous"])
  return entry


def jsonable(entry: dict) -> dict:
  """The entry without its fit objects, for JSON."""
  out = {k: v for k, v in entry.items() if not k.startswith("_")}
  if isinstance(out.get("continuous"), dict):
    out["continuous"] = jsonable(out["continuous"])
  return out
