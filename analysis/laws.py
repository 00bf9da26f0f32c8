"""Scaling-law families as small objects that one generic fitter can fit.

A `Law` is a formula, its parameter names, a start grid, and a map between the
fit-space vector `theta` (unconstrained: log amplitudes, log scales, exponents)
and the reported parameters. `analysis/fit.py` fits any law the same way and
never looks inside one.

Conventions shared by every law:
- Inputs (parameters, tokens, FLOPs, steps) are positive; a law's `model`
  sees log(x / x_scale), shape [n_inputs, n_points], where x_scale is the
  geometric mean of each fitted input. With raw log N ~ 20 an amplitude and its
  exponent are nearly collinear, which makes L-BFGS several times slower.
  Centring is an exact change of variables (for Chinchilla a' = a - alpha *
  mean log N), so the objective and its minima do not change; `to_params` maps
  theta back to raw units, and Chinchilla's start grid is the paper's grid on
  raw (e, a, b, alpha, beta) mapped through the same change.
- `target="log"`: the law predicts log y and residuals are log residuals
  (losses, error rates); `target="linear"`: it predicts y itself (accuracies,
  which can be 0).
- `model(theta[B, P], log_x[k, n]) -> (f[B, n], partials)` evaluates B
  parameter vectors at once; `partials` is the list of the P derivatives
  df/dtheta_p, each broadcastable to [B, n], written by hand so the fitter
  needs no autodiff and no compilation (tests/test_laws.py checks them).
"""
import dataclasses
import itertools
from typing import Callable, Mapping

import numpy as np
from scipy import special


@dataclasses.dataclass(frozen=True)
class Law:
  """A scaling-law family; see the module docstring for the conventions."""
  name: str
  formula: str
  param_names: tuple[str, ...]
  input_names: tuple[str, ...]
  model: Callable
  to_params: Callable    # (theta[B, P], log_scale[k]) -> params[B, P]
  from_params: Callable  # (params[B, P], log_scale[k]) -> theta[B, P]
  starts: Callable       # (log_x[k, n] rescaled, y[n], log_scale[k]) -> theta[S, P]
  # (log_x, y) -> (lower[P], upper[P]) box on theta, or None for unbounded.
  # Used only to cut off limits where a law degenerates into another shape.
  bounds: Callable | None = None
  target: str = "log"
  loss: str = "squared"  # "squared": sum of r^2 / 2; "huber": sum of Huber_delta(r)
  huber_delta: float = 1e-3
  # (log x raw [k, n]) -> log x_scale [k], or None for each input's own mean.
  # A law whose formula uses a ratio of two inputs (tokens / unique tokens)
  # centres both by one scale, which keeps the ratio exact in fit space.
  centring: Callable | None = None

  @property
  def n_params(self) -> int:
    return len(self.param_names)

  @property
  def n_inputs(self) -> int:
    return len(self.input_names)

  def predict(self, params, x) -> np.ndarray:
    """y at inputs x (raw units) for params (dict name -> value, or [P] array)."""
    if isinstance(params, Mapping):
      params = [params[name] for name in self.param_names]
    params = np.asarray(params, dtype=float)[None]
    log_x = np.log(as_inputs(self, x))
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
      theta = self.from_params(params, np.zeros(self.n_inputs))
      f, _ = self.model(theta, log_x)
    return from_target(self, f[0])


def log_scale_of(law: Law, log_x: np.ndarray) -> np.ndarray:
  """log x_scale [k] by which the fitter centres raw log inputs [k, n]."""
  return log_x.mean(1) if law.centring is None else law.centring(log_x)


def from_target(law: Law, f: np.ndarray) -> np.ndarray:
  """Maps a law's output (log y or y) to y."""
  return np.exp(f) if law.target == "log" else f


# Input handling ----------------------------------------------------------------

# Names under which callers pass the inputs of multi-input laws (CSV columns,
# DataFrame columns, dict keys). Matched case-insensitively.
_INPUT_ALIASES = {
    "n_params": ("n_params", "params", "n", "parameters", "model_size",
                 "n_params_non_embedding", "params_non_embedding", "num_params"),
    "tokens": ("tokens", "d", "n_tokens", "tokens_seen", "data", "num_tokens"),
    "unique_tokens": ("unique_tokens", "u", "unique", "u_d", "unique_data",
                      "n_unique_tokens", "num_unique_tokens"),
    "experts": ("experts", "e", "n_experts", "num_experts"),
}


def as_inputs(law: Law, x) -> np.ndarray:
  """Raw inputs as float array [n_inputs, n_points].

  x: 1-D array for one-input laws; for k-input laws a dict/DataFrame keyed by
  input name (or an alias like 'params'/'N', 'tokens'/'D', 'unique_tokens'/'U'),
  or a 2-D array of shape [n, k] or [k, n].
  """
  if law.n_inputs == 1:
    if isinstance(x, Mapping) or hasattr(x, "columns"):
      keys = list(x.keys())
      if len(keys) != 1:
        raise ValueError(f"the {law.name} law takes one input, got {keys}")
      x = x[keys[0]]
    return np.asarray(x, dtype=float).reshape(1, -1)
  if isinstance(x, Mapping) or hasattr(x, "columns"):
    return np.stack([np.asarray(v, dtype=float).reshape(-1)
                     for v in _match_inputs(law, list(x.keys()), x)])
  x = np.asarray(x, dtype=float)
  k = law.n_inputs
  if x.ndim != 2 or k not in x.shape:
    raise ValueError(f"the {law.name} law takes {k} inputs "
                     f"{law.input_names}; pass a dict or an array [n, {k}]")
  return x if x.shape[0] == k and x.shape[1] != k else x.T


def _match_inputs(law: Law, keys: list, x) -> list:
  """Picks the columns of x that hold each of the law's inputs."""
  chosen = []
  for name in law.input_names:
    aliases = _INPUT_ALIASES.get(name, (name,))
    hits = [key for key in keys if str(key).lower() in aliases]
    if len(hits) != 1:
      break
    chosen.append(x[hits[0]])
  else:
    return chosen
  if len(keys) == law.n_inputs:  # Unrecognised names: trust the order given.
    return [x[key] for key in keys]
  raise ValueError(f"cannot tell which of {keys} are the {law.name} law's "
                   f"inputs {law.input_names}")


# Small helpers -----------------------------------------------------------------

def _columns(theta, n):
  """Splits theta [B, P] into n column vectors [B, 1] (broadcast over points)."""
  return [theta[:, i:i + 1] for i in range(n)]


def _grid(*axes) -> np.ndarray:
  return np.array(list(itertools.product(*axes)), dtype=float)


def _floor_grid(y, fractions):
  """log of candidate floors (irreducible loss) as fractions of min(y)."""
  return np.log(np.min(y) * np.asarray(fractions))


def _log_amplitude(y, floor_log):
  """log of the amplitude that puts the curve at median(y) at x = x_scale."""
  gap = np.median(y) - np.exp(floor_log)
  return np.log(np.maximum(gap, 1e-3 * np.median(y)))


# Power law with a floor: L = E + A x^-alpha -------------------------------------

def _power_model(theta, log_x):
  e, a, alpha = _columns(theta, 3)
  lx = log_x[0]
  floor = np.exp(e)
  term = np.exp(a - alpha * lx)
  total = floor + term  # == exp(logsumexp(e, a - alpha lx)); see _chinchilla_model.
  share = term / total
  return np.log(total), [floor / total, share, -share * lx]


def _power_starts(log_x, y, log_scale):
  rows = []
  for e in _floor_grid(y, [1e-3, 0.5, 0.8, 0.95]):
    for alpha in (0.05, 0.2, 0.5, 1.0, 2.0):
      rows.append((e, _log_amplitude(y, e), alpha))
  return np.array(rows)


def _power_bounds(log_x, y):
  """E >= 1e-6 min(y): below that E is 0 for all practical purposes, and the
  fit would crawl towards log E = -infinity when the data show no floor."""
  lower = np.array([np.log(np.min(y) * 1e-6), -np.inf, -np.inf])
  return lower, np.full(3, np.inf)


def _power_to_params(theta, log_scale):
  with np.errstate(over="ignore"):  # A degenerate bootstrap fit has A = inf: a value, not a fault.
    return np.stack([np.exp(theta[:, 0]), np.exp(theta[:, 1] + theta[:, 2] * log_scale[0]), theta[:, 2]], axis=1)


POWER = Law(
    name="power",
    formula="L = E + A * x^-alpha",
    param_names=("E", "A", "alpha"),
    input_names=("x",),
    model=_power_model,
    # theta = (log E, log A at x = x_scale, alpha).
    to_params=lambda t, s: _power_to_params(t, s),
    from_params=lambda p, s: np.stack(
        [np.log(p[:, 0]), np.log(p[:, 1]) - p[:, 2] * s[0], p[:, 2]], axis=1),
    starts=_power_starts,
    bounds=_power_bounds,
)


# Pure power law (no floor): L = A x^-alpha, a straight line in log-log ---------

def _pure_power_model(theta, log_x):
  a, alpha = _columns(theta, 2)
  lx = log_x[0:1]
  return a - alpha * lx, [np.ones_like(lx), -lx]


PURE_POWER = Law(
    name="pure_power",
    formula="L = A * x^-alpha",
    param_names=("A", "alpha"),
    input_names=("x",),
    model=_pure_power_model,
    to_params=lambda t, s: np.stack(
        [np.exp(t[:, 0] + t[:, 1] * s[0]), t[:, 1]], axis=1),
    from_params=lambda p, s: np.stack(
        [np.log(p[:, 0]) - p[:, 1] * s[0], p[:, 1]], axis=1),
    starts=lambda log_x, y, log_scale: _grid([np.log(np.median(y))], [0.1, 0.5]),
)


# Chinchilla: L(N, D) = E + A / N^alpha + B / D^beta -------------------------------

def _chinchilla_model(theta, log_x):
  """log L = LSE(e, a - alpha log N, b - beta log D) (Hoffmann et al. App. D.2),

  with a, b here the centred a', b' (module docstring) and log N, log D
  centred to match.

  The sum of exponentials is formed directly rather than max-shifted: in
  float64 it equals the shifted log-sum-exp unless a term passes e^709, and
  such a step gives an infinite objective that the line search rejects.
  """
  e, a, b, alpha, beta = _columns(theta, 5)
  log_n, log_d = log_x
  floor = np.exp(e)
  term_n = np.exp(a - alpha * log_n)
  term_d = np.exp(b - beta * log_d)
  total = floor + term_n + term_d
  share_n, share_d = term_n / total, term_d / total
  return np.log(total), [floor / total, share_n, share_d,
                         -share_n * log_n, -share_d * log_d]


def _chinchilla_starts(log_x, y, log_scale):
  """The paper's grid (as in Epoch's replication): 5 * 5 * 5 * 6 * 6 = 4500.

  Grid values are the paper's (e, a, b, alpha, beta) on raw log N, log D,
  mapped exactly into the centred fit space.
  """
  alpha = beta = np.arange(0.0, 2.01, 0.5)
  e = np.arange(-1.0, 1.01, 0.5)
  a = b = np.arange(0.0, 25.1, 5.0)
  grid = _grid(alpha, beta, e, a, b)
  alpha, beta, e, a, b = grid.T
  return np.stack([e, a - alpha * log_scale[0], b - beta * log_scale[1],
                   alpha, beta], axis=1)


def _chinchilla_to_params(theta, log_scale):
  e, a, b, alpha, beta = theta.T
  with np.errstate(over="ignore"):  # A degenerate bootstrap fit (alpha ~ 20) has A = inf: a value, not a fault.
    return np.stack([np.exp(e), np.exp(a + alpha * log_scale[0]),
                     np.exp(b + beta * log_scale[1]), alpha, beta], axis=1)


def _chinchilla_from_params(params, log_scale):
  big_e, big_a, big_b, alpha, beta = params.T
  return np.stack([np.log(big_e), np.log(big_a) - alpha * log_scale[0],
                   np.log(big_b) - beta * log_scale[1], alpha, beta], axis=1)


CHINCHILLA = Law(
    name="chinchilla",
    formula="L = E + A / N^alpha + B / D^beta",
    param_names=("E", "A", "B", "alpha", "beta"),
    input_names=("n_params", "tokens"),
    model=_chinchilla_model,
    to_params=_chinchilla_to_params,
    from_params=_chinchilla_from_params,
    starts=_chinchilla_starts,
    loss="huber",
    huber_delta=1e-3,
)


# Data-constrained (Muennighoff et al. 2023): Chinchilla in effective data D' ----
#
# Two forms. DATA_CONSTRAINED is the paper's D-side law, L = E + A / N^alpha + B / D'^beta with
# N' = N: the paper's exactly for models no larger than compute-optimal for their unique data
# (U_N = N, R_N = 0); for larger ones it charges excess parameters nothing, and A, alpha absorb
# the discount. DATA_CONSTRAINED_FULL (below) adds the paper's excess-parameter term with its
# R*_N (5.3 in the paper). Its U_N = min(N, N_opt(U_D)) needs N_opt, which in the paper comes
# from a separate Chinchilla fit; here it is an input (a fixed tokens-per-parameter ratio or a
# column), so both laws stay functions of their inputs and smooth in their parameters.

def effective_data(tokens, unique_tokens, r_star):
  """Effective data D' (tokens) of D tokens drawn from U unique ones.

  D' = U + U R* (1 - exp(-R_D / R*)), R_D = D / U - 1 the epochs repeated
  beyond the first (Muennighoff et al. 2023, eq. 5); D' = D when D <= U. Each
  repeated token is worth exp(-R_D / R*) of a new one, so D' rises from D at
  the first repeat to U (1 + R*) as R_D -> infinity.
  """
  tokens, unique_tokens = np.asarray(tokens, float), np.asarray(unique_tokens, float)
  repeats = np.maximum(tokens / unique_tokens - 1.0, 0.0)
  gained = r_star * -np.expm1(-repeats / r_star)
  return np.where(repeats > 0, unique_tokens * (1.0 + gained), tokens)


def half_worth_epochs(r_star):
  """Epochs after which one more repeated token is worth half a new one.

  dD'/dD = exp(-R_D / R*) = 1/2 at R_D = R* ln 2, i.e. 1 + R* ln 2 epochs.
  """
  return 1.0 + np.asarray(r_star, dtype=float) * np.log(2.0)


def _log_effective_data(log_d, log_u, log_r_star):
  """(log D', dlog D'/dlog R*) with D and U in one unit (shared centring)."""
  repeats = np.maximum(np.exp(log_d - log_u) - 1.0, 0.0)
  r_star = np.exp(log_r_star)
  decay = np.exp(-repeats / r_star)
  gained = r_star * -np.expm1(-repeats / r_star)
  repeated = repeats > 0
  log_dprime = np.where(repeated, log_u + np.log1p(gained), log_d)
  # d gained / d log R* = R* (1 - decay) - R_D decay = gained - R_D decay.
  slope = np.where(repeated, (gained - repeats * decay) / (1.0 + gained), 0.0)
  return log_dprime, slope


def _data_constrained_model(theta, log_x):
  """log L = LSE(e, a - alpha log N, b - beta log D'), as _chinchilla_model
  with log D' in place of log D; theta = (e, a, b, alpha, beta, log R*)."""
  e, a, b, alpha, beta, log_r_star = _columns(theta, 6)
  log_n, log_d, log_u = log_x
  log_dprime, dprime_slope = _log_effective_data(log_d, log_u, log_r_star)
  floor = np.exp(e)
  term_n = np.exp(a - alpha * log_n)
  term_d = np.exp(b - beta * log_dprime)
  total = floor + term_n + term_d
  share_n, share_d = term_n / total, term_d / total
  return np.log(total), [floor / total, share_n, share_d, -share_n * log_n,
                         -share_d * log_dprime, -share_d * beta * dprime_slope]


def _data_constrained_centring(log_x):
  """N by its own geometric mean; D and U by one shared scale, so that
  D / U (the epochs) is the same in fit space as in raw units."""
  shared = 0.5 * (log_x[1].mean() + log_x[2].mean())
  return np.array([log_x[0].mean(), shared, shared])


# Starts for R*: a few epochs' worth to many (the paper fits R*_D = 15.4).
_R_STAR_STARTS = (2.0, 10.0, 50.0)


def _data_constrained_starts(log_x, y, log_scale):
  """Chinchilla's grid (4500) times _R_STAR_STARTS: 13,500 starts."""
  chinchilla = _chinchilla_starts(log_x, y, log_scale[:2])
  log_r = np.log(_R_STAR_STARTS)
  return np.concatenate([np.repeat(chinchilla, len(log_r), axis=0),
                         np.tile(log_r, len(chinchilla))[:, None]], axis=1)


def r_star_limits(max_repeats):
  """The range the fitter searches for R* given the most epochs repeated (max R_D): [0.01, 100 max(R_D)].
  Below, repeated data are worth nothing and D' = U for all practical purposes; above, D' is within 0.5%
  of D at every point and R* no longer moves the fit. A bootstrap interval that reaches the upper limit
  means the data set no upper bound on R*."""
  return 1e-2, max(100.0 * float(max_repeats), 1.0)


def _data_constrained_bounds(log_x, y):
  """R* within r_star_limits; the other parameters are free."""
  lower = np.full(6, -np.inf)
  upper = np.full(6, np.inf)
  lower[5], upper[5] = np.log(r_star_limits(np.max(np.exp(log_x[1] - log_x[2])) - 1.0))
  return lower, upper


def _data_constrained_to_params(theta, log_scale):
  return np.concatenate([_chinchilla_to_params(theta[:, :5], log_scale[:2]),
                         np.exp(theta[:, 5:6])], axis=1)


def _data_constrained_from_params(params, log_scale):
  return np.concatenate([_chinchilla_from_params(params[:, :5], log_scale[:2]),
                         np.log(params[:, 5:6])], axis=1)


DATA_CONSTRAINED = Law(
    name="data_constrained",
    formula=("L = E + A / N^alpha + B / D'^beta, "
             "D' = U + U R_D_star (1 - exp(-(D / U - 1) / R_D_star))"),
    param_names=("E", "A", "B", "alpha", "beta", "R_D_star"),
    input_names=("n_params", "tokens", "unique_tokens"),
    model=_data_constrained_model,
    to_params=_data_constrained_to_params,
    from_params=_data_constrained_from_params,
    starts=_data_constrained_starts,
    bounds=_data_constrained_bounds,
    loss="huber",
    huber_delta=1e-3,
    centring=_data_constrained_centring,
)


# With excess parameters too (the paper's full law): N' = U_N + U_N R*_N (1 - exp(-R_N / R*_N)),
# R_N = N / U_N - 1, where U_N = min(N, N_opt(U)) is the compute-optimal size for the unique data.
# U_N comes in as a fourth input, so the law stays a function of its inputs: fit_cli and the
# report compute it as min(N, U / tokens_per_param) (Chinchilla: ~20 tokens per parameter) or
# read it from a column. R_N = 0 (N <= U_N) gives N' = N.

def _data_constrained_full_model(theta, log_x):
  """theta = (e, a, b, alpha, beta, log R*_D, log R*_N); log_x = (N, D, U, U_N), N and U_N on one scale."""
  e, a, b, alpha, beta, log_r_d, log_r_n = _columns(theta, 7)
  log_n, log_d, log_u, log_un = log_x
  log_dprime, d_slope = _log_effective_data(log_d, log_u, log_r_d)
  log_nprime, n_slope = _log_effective_data(log_n, log_un, log_r_n)
  floor = np.exp(e)
  term_n = np.exp(a - alpha * log_nprime)
  term_d = np.exp(b - beta * log_dprime)
  total = floor + term_n + term_d
  share_n, share_d = term_n / total, term_d / total
  return np.log(total), [floor / total, share_n, share_d, -share_n * log_nprime, -share_d * log_dprime,
                         -share_d * beta * d_slope, -share_n * alpha * n_slope]


def _data_constrained_full_centring(log_x):
  """N and U_N by one scale, D and U by another: both ratios stay exact in fit space."""
  n_scale, d_scale = 0.5 * (log_x[0].mean() + log_x[3].mean()), 0.5 * (log_x[1].mean() + log_x[2].mean())
  return np.array([n_scale, d_scale, d_scale, n_scale])


_R_STAR_N_STARTS = (1.0, 10.0)  # the paper fits R*_N = 5.3


def _data_constrained_full_starts(log_x, y, log_scale):
  """A coarser Chinchilla grid (3 alpha x 3 beta x 3 e x 6 a x 6 b = 972) times _R_STAR_STARTS times
  _R_STAR_N_STARTS: 5832 starts. The full 4500-point grid times 6 cost 3x the time and found the
  same optima on the tests' designs."""
  alpha = beta = np.array([0.25, 0.75, 1.5])
  e = np.array([-1.0, 0.0, 1.0])
  a = b = np.arange(0.0, 25.1, 5.0)
  alpha, beta, e, a, b = _grid(alpha, beta, e, a, b).T
  chinchilla = np.stack([e, a - alpha * log_scale[0], b - beta * log_scale[1], alpha, beta], axis=1)
  log_r = np.array(list(itertools.product(np.log(_R_STAR_STARTS), np.log(_R_STAR_N_STARTS))))
  return np.concatenate([np.repeat(chinchilla, len(log_r), axis=0), np.tile(log_r, (len(chinchilla), 1))], axis=1)


def _data_constrained_full_bounds(log_x, y):
  """R*_D and R*_N each within r_star_limits of their own largest repeat count."""
  lower, upper = np.full(7, -np.inf), np.full(7, np.inf)
  lower[5], upper[5] = np.log(r_star_limits(np.max(np.exp(log_x[1] - log_x[2])) - 1.0))
  lower[6], upper[6] = np.log(r_star_limits(np.max(np.exp(log_x[0] - log_x[3])) - 1.0))
  return lower, upper


def _data_constrained_full_to_params(theta, log_scale):
  return np.concatenate([_chinchilla_to_params(theta[:, :5], log_scale[:2]), np.exp(theta[:, 5:7])], axis=1)


def _data_constrained_full_from_params(params, log_scale):
  return np.concatenate([_chinchilla_from_params(params[:, :5], log_scale[:2]), np.log(params[:, 5:7])], axis=1)


DATA_CONSTRAINED_FULL = Law(
    name="data_constrained_full",
    formula=("L = E + A / N'^alpha + B / D'^beta, "
             "D' = U + U R_D_star (1 - exp(-(D / U - 1) / R_D_star)), "
             "N' = U_N + U_N R_N_star (1 - exp(-(N / U_N - 1) / R_N_star))"),
    param_names=("E", "A", "B", "alpha", "beta", "R_D_star", "R_N_star"),
    input_names=("n_params", "tokens", "unique_tokens", "unique_params"),
    model=_data_constrained_full_model,
    to_params=_data_constrained_full_to_params,
    from_params=_data_constrained_full_from_params,
    starts=_data_constrained_full_starts,
    bounds=_data_constrained_full_bounds,
    loss="huber",
    huber_delta=1e-3,
    centring=_data_constrained_full_centring,
)


def unique_params(n_params, unique_tokens, tokens_per_param):
  """U_N = min(N, U / tokens_per_param): the compute-optimal size for U unique tokens, capped at N."""
  return np.minimum(np.asarray(n_params, float), np.asarray(unique_tokens, float) / float(tokens_per_param))


# Saturating power law (Zhai et al. 2022): L = c + a (x + d)^-b --------------------

def _saturating_model(theta, log_x):
  la, b, lc, ld = _columns(theta, 4)
  x = np.exp(log_x[0])
  offset = np.exp(ld)
  shifted = x + offset
  u = np.log(shifted)
  floor = np.exp(lc)
  term = np.exp(la - b * u)
  total = floor + term
  share = term / total
  return np.log(total), [share, -share * u, floor / total,
                         -share * (b * offset) / shifted]


def _saturating_starts(log_x, y, log_scale):
  x_min = np.exp(np.min(log_x[0]))
  rows = []
  for lc in _floor_grid(y, [1e-3, 0.5, 0.8, 0.95]):
    for b in (0.1, 0.3, 0.7, 1.5):
      for offset in (1e-2 * x_min, x_min, 1.0):
        la = _log_amplitude(y, lc) + b * np.log1p(offset)
        rows.append((la, b, lc, np.log(offset)))
  return np.array(rows)


def _saturating_bounds(log_x, y):
  """Cuts off two degenerate limits the fit would otherwise crawl towards:
  b <= 10 and d <= 100 max(x), beyond which (x + d)^-b is an exponential decay
  with a -> infinity over the data (seen on few-shot error curves); and
  d >= 1e-4 min(x), c >= 1e-6 min(y), below which d and c are 0 for all
  practical purposes (the pure power law limit)."""
  lx = log_x[0]
  floor_min = np.log(np.min(y) * 1e-6)
  lower = np.array([-np.inf, 0.0, floor_min, np.min(lx) + np.log(1e-4)])
  upper = np.array([np.inf, 10.0, np.inf, np.max(lx) + np.log(100.0)])
  return lower, upper


SATURATING = Law(
    name="saturating",
    formula="L = c + a * (x + d)^-b",
    param_names=("a", "b", "c", "d"),
    input_names=("x",),
    model=_saturating_model,
    # theta = (log a at x_scale units, b, log c, log d in x_scale units).
    to_params=lambda t, s: np.stack(
        [np.exp(t[:, 0] + t[:, 1] * s[0]), t[:, 1], np.exp(t[:, 2]),
         np.exp(t[:, 3] + s[0])], axis=1),
    from_params=lambda p, s: np.stack(
        [np.log(p[:, 0]) - p[:, 1] * s[0], p[:, 1], np.log(p[:, 2]),
         np.log(p[:, 3]) - s[0]], axis=1),
    starts=_saturating_starts,
    bounds=_saturating_bounds,
)


# Broken power law (Caballero et al. 2023, BNSL) ------------------------------------

# Starts of the BNSL grid: the full product for 1 break (243), a seeded sample
# of it beyond (the product grows as 9 * 27^breaks).
_BNSL_MAX_STARTS = 600
# Most breaks the CLI accepts (each adds 3 parameters); the library takes any.
MAX_BREAKS = 10

def bnsl(n_breaks: int = 1) -> Law:
  """y = a + b x^-c0 prod_i (1 + (x / d_i)^(1 / f_i))^(-c_i f_i).

  theta = (log a, log b, c0, then per break: c_i, log d_i, log f_i), with b and
  d_i in x_scale units. Each break bends the log-log slope from -c0 - sum of
  earlier c by -c_i around x = d_i, over a width set by f_i (in decades * ln 10).
  """
  if n_breaks < 1:
    raise ValueError(f"a broken power law needs at least 1 break, got {n_breaks}")
  names = ["a", "b", "c0"]
  for i in range(1, n_breaks + 1):
    names += [f"c{i}", f"d{i}", f"f{i}"]

  def model(theta, log_x):
    lx = log_x[0]
    la, lb, c0 = _columns(theta[:, :3], 3)
    breaks = []
    log_term = lb - c0 * lx
    for i in range(n_breaks):
      ci, ldi, lfi = _columns(theta[:, 3 + 3 * i: 6 + 3 * i], 3)
      fi = np.exp(lfi)
      z = (lx - ldi) / fi
      soft = np.logaddexp(0.0, z)  # log(1 + (x / d_i)^(1 / f_i))
      log_term = log_term - ci * fi * soft
      breaks.append((ci, fi, z, soft))
    floor = np.exp(la)
    term = np.exp(log_term)
    total = floor + term
    share = term / total
    partials = [floor / total, share, -share * lx]
    for ci, fi, z, soft in breaks:
      sig = special.expit(z)
      partials += [-share * fi * soft, share * ci * sig,
                   -share * (ci * fi) * (soft - z * sig)]
    return np.log(total), partials

  def to_params(theta, log_scale):
    out = theta.copy()
    out[:, 0] = np.exp(theta[:, 0])
    out[:, 1] = np.exp(theta[:, 1] + theta[:, 2] * log_scale[0])
    for i in range(n_breaks):
      out[:, 4 + 3 * i] = np.exp(theta[:, 4 + 3 * i] + log_scale[0])
      out[:, 5 + 3 * i] = np.exp(theta[:, 5 + 3 * i])
    return out

  def from_params(params, log_scale):
    out = params.copy()
    out[:, 0] = np.log(params[:, 0])
    out[:, 1] = np.log(params[:, 1]) - params[:, 2] * log_scale[0]
    for i in range(n_breaks):
      out[:, 4 + 3 * i] = np.log(params[:, 4 + 3 * i]) - log_scale[0]
      out[:, 5 + 3 * i] = np.log(params[:, 5 + 3 * i])
    return out

  def starts(log_x, y, log_scale):
    """The product of a head grid (floor a, amplitude b, c0: 9 rows) and one
    27-point grid per break, or _BNSL_MAX_STARTS of its rows drawn with a
    fixed seed when it is larger (9 * 27^breaks: 6561 rows for 2 breaks).
    Rows are decoded from their index in the product, which is never built,
    so memory and time stay bounded for any number of breaks; the rows are
    those of the full product in itertools.product order, subsampled as
    `rng.choice(len(product), _BNSL_MAX_STARTS)` would, sorted."""
    lx = log_x[0]
    per_break = _grid([-0.3, 0.3, 1.0],                        # c_i
                      np.quantile(lx, [0.25, 0.5, 0.75]),      # log d_i
                      np.log([0.1, 0.5, 1.5]))                 # log f_i
    heads = []
    for la in _floor_grid(y, [1e-3, 0.5, 0.9]):
      lb = _log_amplitude(y, la)
      for c0 in (0.05, 0.3, 1.0):
        heads.append((la, lb, c0))
    heads = np.array(heads)
    n_per = len(per_break)
    total = len(heads) * n_per ** n_breaks  # A Python int: exact for any breaks.
    rng = np.random.default_rng(0)
    if total <= _BNSL_MAX_STARTS:
      head_idx = np.repeat(np.arange(len(heads)), total // len(heads))
      digits = _grid(*[range(n_per)] * n_breaks).astype(np.int64)
      digits = np.tile(digits, (len(heads), 1))
    elif total < 2 ** 62:
      index = np.sort(rng.choice(total, _BNSL_MAX_STARTS, replace=False))
      head_idx, rest = np.divmod(index, n_per ** n_breaks)
      digits = np.empty((len(index), n_breaks), dtype=np.int64)
      for i in range(n_breaks - 1, -1, -1):  # Last break is the fastest digit.
        rest, digits[:, i] = np.divmod(rest, n_per)
    else:  # Beyond int64 indices: draw each digit (repeats are negligible).
      head_idx = rng.integers(len(heads), size=_BNSL_MAX_STARTS)
      digits = rng.integers(n_per, size=(_BNSL_MAX_STARTS, n_breaks))
    return np.concatenate([heads[head_idx],
                           per_break[digits].reshape(len(head_idx), -1)], axis=1)

  def bounds(log_x, y):
    """Breaks inside the data (+-2 in ln x) with widths f in [0.01, 100];
    exponents in [-10, 10]; floor a >= 1e-6 min(y). Outside, a break is
    unidentifiable (see _saturating_bounds for the floor)."""
    lx = log_x[0]
    floor_min = np.log(np.min(y) * 1e-6)
    lower = [floor_min, -np.inf, -10.0] + [-10.0, lx.min() - 2, np.log(0.01)] * n_breaks
    upper = [np.inf, np.inf, 10.0] + [10.0, lx.max() + 2, np.log(100.0)] * n_breaks
    return np.array(lower), np.array(upper)

  return Law(
      name="bnsl",
      formula=("y = a + b * x^-c0 * prod_i (1 + (x / d_i)^(1 / f_i))"
               "^(-c_i * f_i)"),
      param_names=tuple(names),
      input_names=("x",),
      model=model,
      to_params=to_params,
      from_params=from_params,
      starts=starts,
      bounds=bounds,
  )


BNSL = bnsl(1)


# Sigmoid in log x (accuracies; OLMo's loss -> accuracy step) ------------------------

def _sigmoid_model(theta, log_x):
  floor, ceiling, slope, m = _columns(theta, 4)
  lx = log_x[0]
  sig = special.expit(slope * (lx - m))
  span = ceiling - floor
  bend = span * sig * (1 - sig)
  return floor + span * sig, [1 - sig, sig, bend * (lx - m), -bend * slope]


def _sigmoid_starts(log_x, y, log_scale):
  lo, hi = np.min(y), np.max(y)
  span = hi - lo
  return _grid([lo, lo - span], [hi, hi + span],
               [-3.0, -1.0, -0.3, 0.3, 1.0, 3.0],
               np.quantile(log_x[0], [0.1, 0.5, 0.9]))


SIGMOID = Law(
    name="sigmoid",
    formula="y = floor + (ceiling - floor) / (1 + (x / x_mid)^-slope)",
    param_names=("floor", "ceiling", "slope", "x_mid"),
    input_names=("x",),
    model=_sigmoid_model,
    # slope is per unit of ln x: positive rises with x (accuracy vs compute),
    # negative falls (accuracy vs loss).
    to_params=lambda t, s: np.stack(
        [t[:, 0], t[:, 1], t[:, 2], np.exp(t[:, 3] + s[0])], axis=1),
    from_params=lambda p, s: np.stack(
        [p[:, 0], p[:, 1], p[:, 2], np.log(p[:, 3]) - s[0]], axis=1),
    starts=_sigmoid_starts,
    # Midpoint within 5 (ln x) of the data; |slope| <= 50 per ln x.
    bounds=lambda log_x, y: (
        np.array([-np.inf, -np.inf, -50.0, log_x[0].min() - 5]),
        np.array([np.inf, np.inf, 50.0, log_x[0].max() + 5])),
    target="linear",
)


# Routed (Clark et al. 2022): log L = a log N + b log E + c log N log E + d --------
#
# N the active (dense-equivalent) parameters, E the number of experts (1 for a dense model,
# where the law is the pure power law L = e^d N^a). Unified Scaling Laws for Routed Language
# Models, eq. 1: b < 0 is the gain from experts at fixed N, c > 0 shrinks it as N grows. Linear
# in its parameters; centring log N -> log N - s0, log E -> log E - s1 is exact with
# a' = a + c s1, b' = b + c s0, d' = d + a s0 + b s1 + c s0 s1.

def _routed_model(theta, log_x):
  a, b, c, d = _columns(theta, 4)
  log_n, log_e = log_x[0:1], log_x[1:2]
  return a * log_n + b * log_e + c * log_n * log_e + d, [log_n, log_e, log_n * log_e, np.ones_like(log_n)]


def _routed_to_params(theta, log_scale):
  a, b, c, d = theta.T
  s0, s1 = log_scale
  raw_a, raw_b = a - c * s1, b - c * s0
  return np.stack([raw_a, raw_b, c, d - raw_a * s0 - raw_b * s1 - c * s0 * s1], axis=1)


def _routed_from_params(params, log_scale):
  a, b, c, d = params.T
  s0, s1 = log_scale
  return np.stack([a + c * s1, b + c * s0, c, d + a * s0 + b * s1 + c * s0 * s1], axis=1)


def _routed_starts(log_x, y, log_scale):
  """The least-squares solution (the law is linear in theta), and a flat start beside it."""
  design = np.stack([log_x[0], log_x[1], log_x[0] * log_x[1], np.ones(log_x.shape[1])], axis=1)
  solution = np.linalg.lstsq(design, np.log(y), rcond=None)[0]
  return np.stack([solution, [0.0, 0.0, 0.0, float(np.mean(np.log(y)))]])


ROUTED = Law(
    name="routed",
    formula="log L = a log N + b log E + c log N log E + d",
    param_names=("a", "b", "c", "d"),
    input_names=("n_params", "experts"),
    model=_routed_model,
    to_params=_routed_to_params,
    from_params=_routed_from_params,
    starts=_routed_starts,
)


def routed_loss_gain(params, n_params, experts):
  """L(N, E) / L(N, 1) under the routed law: the loss factor E experts buy at active size N."""
  log_e = np.log(experts)
  return np.exp(params["b"] * log_e + params["c"] * np.log(n_params) * log_e)


LAWS = {law.name: law for law in
        (POWER, PURE_POWER, CHINCHILLA, DATA_CONSTRAINED, DATA_CONSTRAINED_FULL,
         SATURATING, BNSL, SIGMOID, ROUTED)}


def get(name: str, breaks: int = 1) -> Law:
  """Law by name; `breaks` sets the number of breaks of 'bnsl'."""
  if name == "bnsl":
    return bnsl(breaks)
  if name not in LAWS:
    raise ValueError(f"unknown law {name!r}; choose one of {sorted(LAWS)}")
  return LAWS[name]
