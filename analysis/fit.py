"""Generic scaling-law fitter: multi-start fits, bootstrap, model comparison.

The procedure, for any law in analysis/laws.py (for Chinchilla it is the one
of Hoffmann et al. 2022, App. D.2, as replicated by Besiroglu et al. 2024):

1. Objective: sum over points of loss(r_i), r_i = f_theta(x_i) - t_i, where f
   is the law's log prediction and t_i = log y_i (y itself for accuracies).
   Chinchilla: Huber loss with delta 1e-3, summed, not averaged (a mean
   shrinks the objective 240-fold, so L-BFGS stops on its tolerances long
   before it has converged, one of the errors Besiroglu et al. found). Other
   laws: 0.5 r^2, i.e. least squares in log space.
2. Start from every point of the law's grid (Chinchilla: the paper's 4500),
   all starts at once in one batched numpy optimiser: L-BFGS for Huber loss
   (`minimize_batched`), Levenberg-Marquardt for squared loss
   (`least_squares_batched`). Inputs are centred (laws.py), an exact change
   of variables.
3. Huber loss: polish the best distinct optima with scipy's L-BFGS-B (ftol
   1e-13, gtol 1e-10) and keep the lowest objective. Least squares: LM has
   already run to ftol 1e-13.
4. Bootstrap: resample the points with replacement R times (as multinomial
   weights on the objective) and refit every resample from the best theta,
   all at once (L-BFGS starts with the full-data inverse Hessian). Intervals
   are percentiles of the refits (2.5 and 97.5 for 95%).

`fit_law` fits one dataset; `fit_many` fits several that share their inputs in
one batch (simulation studies, trials logged at the same steps).
"""
import dataclasses
import warnings
from typing import Callable

import numpy as np
from scipy import optimize, stats

from analysis import laws


class FitError(ValueError):
  """Input that cannot give a meaningful fit (says why in one sentence)."""


# Batched L-BFGS -----------------------------------------------------------------

def _start_in_box(theta0, lower, upper):
  """Starts [B, P] as floats, clipped into the bounds; bounds broadcast to [B, P] (None: unbounded)."""
  theta = np.array(theta0, dtype=float, copy=True)
  lower = np.broadcast_to(-np.inf if lower is None else lower, theta.shape)
  upper = np.broadcast_to(np.inf if upper is None else upper, theta.shape)
  return np.clip(theta, lower, upper), lower, upper


def minimize_batched(value_and_grad: Callable, theta0: np.ndarray, *,
                     lower=None, upper=None, inverse_hessian=None,
                     max_iter: int = 1000, history: int = 10,
                     gtol: float = 1e-10, ftol: float = 1e-13,
                     max_backtracks: int = 40):
  """Minimises many independent smooth objectives at once with L-BFGS.

  value_and_grad(theta[m, P], rows[m]) -> (value[m], grad[m, P]) evaluates the
  objectives of problems `rows` at `theta`. Unfinished problems live in
  compact working arrays, re-compacted when a tenth of them have finished, so
  the cost follows the problems still running.
  Line search: backtracking Armijo (c1 = 1e-4) with quadratic interpolation.
  Every iteration writes one curvature pair per problem into a ring buffer
  shared by all problems; a pair with s.y <= 0 is written as zeros (a no-op
  in the two-loop recursion), which keeps the inverse Hessian positive
  definite. Optional box bounds lower/upper ([P] or per problem [B, P]) are
  kept by projection: coordinates held at a bound by the gradient are frozen
  for the step, and trial points are clipped into the box. inverse_hessian
  ([P, P] or [B, P, P]), if given, replaces the scaled identity as L-BFGS's
  initial inverse Hessian (bootstrap refits pass the full-data one, which
  they nearly share).

  Stops a problem when max|projected grad| <= gtol, or the objective fell by
  no more than ftol * |objective| in an iteration, or no step along steepest
  descent decreases it any more (round-off floor).

  Returns (theta[B, P], value[B], n_iter[B]).
  """
  theta_all, lower_all, upper_all = _start_in_box(theta0, lower, upper)
  n_problems, n_dims = theta_all.shape
  value_all, grad_all = value_and_grad(theta_all, np.arange(n_problems))
  value_all = np.where(np.isfinite(value_all), value_all, np.inf)
  n_iter_all = np.zeros(n_problems, dtype=int)

  def held(theta, grad, lower, upper):
    """Coordinates at a bound whose gradient pushes out of the box."""
    return ((theta <= lower) & (grad > 0)) | ((theta >= upper) & (grad < 0))

  start = np.isfinite(value_all) & np.isfinite(grad_all).all(1)
  start &= np.abs(np.where(held(theta_all, grad_all, lower_all, upper_all),
                           0.0, grad_all)).max(1) > gtol

  # Working set: state of the unfinished problems, ids into the full arrays.
  ids = np.flatnonzero(start)
  work = {"theta": theta_all[ids], "value": value_all[ids], "grad": grad_all[ids],
          "lower": lower_all[ids], "upper": upper_all[ids],
          "s": np.zeros((ids.size, history, n_dims)),
          "y": np.zeros((ids.size, history, n_dims)),
          "rho": np.zeros((ids.size, history)),
          "gamma": np.ones(ids.size), "n_iter": np.zeros(ids.size, dtype=int)}
  if inverse_hessian is not None:
    work["h0"] = np.broadcast_to(inverse_hessian, (n_problems, n_dims, n_dims))[ids]
  alive = np.ones(ids.size, dtype=bool)

  def retire(local):
    """Copies finished problems back into the full arrays."""
    theta_all[ids[local]] = work["theta"][local]
    value_all[ids[local]] = work["value"][local]
    grad_all[ids[local]] = work["grad"][local]
    n_iter_all[ids[local]] = work["n_iter"][local]

  for iteration in range(max_iter):
    if not alive.any():
      break
    if alive.mean() < 0.9:  # Compact: drop finished problems from the arrays.
      ids = ids[alive]
      work = {k: v[alive] for k, v in work.items()}
      alive = alive[alive]
    rows = slice(None) if alive.all() else np.flatnonzero(alive)
    # The two-loop recursion runs over the whole working set (finished rows
    # included, at most a tenth): cheaper than gathering their histories.
    frozen_all = held(work["theta"], work["grad"], work["lower"], work["upper"])
    pg_all = np.where(frozen_all, 0.0, work["grad"])
    newest_first = [(iteration - 1 - j) % history for j in range(history)]
    direction = -_two_loop(pg_all, work["s"], work["y"], work["rho"], newest_first,
                           work["gamma"], work.get("h0"))[rows]
    w = {k: work[k][rows] for k in ("theta", "value", "grad", "lower", "upper",
                                    "rho", "gamma")}
    g, theta, frozen, pg = w["grad"], w["theta"], frozen_all[rows], pg_all[rows]
    direction[frozen] = 0.0
    slope = np.einsum("bp,bp->b", g, direction)
    uphill = ~(slope < 0)
    fresh = (w["rho"] == 0).all(1) | uphill
    if uphill.any():  # Stale curvature: this step is steepest descent.
      direction[uphill] = -pg[uphill]
      slope[uphill] = -np.einsum("bp,bp->b", pg[uphill], pg[uphill])
    step = np.ones(len(theta))
    if inverse_hessian is None:  # Unscaled first step: keep it short.
      step[fresh] = np.minimum(1.0, 1.0 / np.linalg.norm(pg[fresh], axis=1))

    new_theta, new_value, new_grad = theta.copy(), w["value"].copy(), g.copy()
    accepted = np.zeros(len(theta), dtype=bool)
    searching = np.arange(len(theta))
    global_rows = ids[rows]
    for _ in range(max_backtracks):
      origin = theta[searching]
      trial = np.clip(origin + step[searching, None] * direction[searching],
                      w["lower"][searching], w["upper"][searching])
      with np.errstate(all="ignore"):
        trial_value, trial_grad = value_and_grad(trial, global_rows[searching])
      base = w["value"][searching]
      # Armijo on the step actually taken (clipping can shorten it).
      expected = np.einsum("bp,bp->b", g[searching], trial - origin)
      ok = (np.isfinite(trial_value) & np.isfinite(trial_grad).all(1)
            & (trial_value <= base + 1e-4 * expected))
      hit = searching[ok]
      new_theta[hit], new_value[hit], new_grad[hit] = (
          trial[ok], trial_value[ok], trial_grad[ok])
      accepted[hit] = True
      missed = ~ok
      searching = searching[missed]
      if searching.size == 0:
        break
      # Minimiser of the quadratic through f(0), f'(0), f(t), kept in [0.1t, 0.5t].
      t, f0, d0 = step[searching], base[missed], slope[searching]
      with np.errstate(all="ignore"):
        t_quad = -d0 * t * t / (2.0 * (trial_value[missed] - f0 - d0 * t))
      t_quad = np.where(np.isfinite(t_quad), t_quad, 0.1 * t)
      step[searching] = np.clip(t_quad, 0.1 * t, 0.5 * t)

    s = new_theta - theta
    y = new_grad - g
    sy = np.einsum("bp,bp->b", s, y)
    yy = np.einsum("bp,bp->b", y, y)
    keep = accepted & (sy > 1e-12 * np.sqrt(np.einsum("bp,bp->b", s, s) * yy))
    keep &= sy > 1e-200  # 1 / s.y must stay finite.
    slot = iteration % history
    work["s"][rows, slot] = np.where(keep[:, None], s, 0.0)
    work["y"][rows, slot] = np.where(keep[:, None], y, 0.0)
    work["rho"][rows, slot] = np.where(keep, 1.0 / np.where(keep, sy, 1.0), 0.0)
    keep_scale = keep & (yy > 0)
    work["gamma"][rows] = np.where(keep_scale, sy / np.where(keep_scale, yy, 1.0), w["gamma"])
    # A failed line search ends a problem only from steepest descent; after an
    # L-BFGS direction it first drops the curvature history and retries.
    failed = ~accepted
    reset = failed & ~fresh
    if reset.any():
      local = np.arange(len(alive))[rows][reset]
      work["rho"][local] = 0.0
      work["gamma"][local] = 1.0
    decrease = w["value"] - new_value
    work["theta"][rows], work["value"][rows], work["grad"][rows] = (
        new_theta, new_value, new_grad)
    work["n_iter"][rows] += 1
    small_grad = np.abs(np.where(held(new_theta, new_grad, w["lower"], w["upper"]),
                                 0.0, new_grad)).max(1) <= gtol
    done = ((failed & fresh) | small_grad
            | (accepted & (decrease <= ftol * np.abs(new_value))))
    if done.any():
      local = np.arange(len(alive))[rows][done]
      alive[local] = False
      retire(local)
  retire(np.flatnonzero(alive))
  return theta_all, value_all, n_iter_all


def _two_loop(grad, s_hist, y_hist, rho, newest_first, gamma, inverse_hessian=None):
  """L-BFGS two-loop recursion, batched over problems.

  History lives in ring-buffer slots visited newest_first; empty or skipped
  slots hold zeros and rho = 0, which makes them no-ops. gamma = s.y / y.y of
  each problem's newest kept pair scales the initial inverse Hessian unless
  inverse_hessian [m, P, P] is given.
  """
  q = grad.copy()
  alpha = {}
  for j in newest_first:
    alpha[j] = rho[:, j] * np.einsum("bp,bp->b", s_hist[:, j], q)
    q -= alpha[j][:, None] * y_hist[:, j]
  if inverse_hessian is not None:
    r = np.einsum("bpq,bq->bp", inverse_hessian, q)
  else:
    r = gamma[:, None] * q
  for j in reversed(newest_first):
    beta = rho[:, j] * np.einsum("bp,bp->b", y_hist[:, j], r)
    r += s_hist[:, j] * (alpha[j] - beta)[:, None]
  return r


def inverse_hessian_at(value_and_grad, theta, step: float = 1e-5):
  """Positive-definite inverse of the Hessian at theta (central differences
  of the gradient, eigenvalues floored at 1e-10 of the largest), or None."""
  n_dims = theta.size
  probes = theta + step * np.concatenate([np.eye(n_dims), -np.eye(n_dims)])
  _, grads = value_and_grad(probes, np.zeros(2 * n_dims, dtype=int))
  hessian = (grads[:n_dims] - grads[n_dims:]) / (2 * step)
  hessian = 0.5 * (hessian + hessian.T)
  if not np.isfinite(hessian).all():
    return None
  eigval, eigvec = np.linalg.eigh(hessian)
  if eigval.max() <= 0:
    return None
  eigval = np.maximum(eigval, 1e-10 * eigval.max())
  return (eigvec / eigval) @ eigvec.T


# Batched Levenberg-Marquardt (squared loss) -----------------------------------

def least_squares_batched(gauss_newton: Callable, theta0: np.ndarray, *,
                          lower=None, upper=None, max_iter: int = 300,
                          gtol: float = 1e-10, ftol: float = 1e-13):
  """Minimises many weighted least-squares objectives at once (Levenberg-Marquardt).

  gauss_newton(theta[m, P], rows[m]) -> (value[m], grad[m, P], JtWJ[m, P, P]).
  Steps solve (JtWJ + lambda diag(JtWJ)) delta = -grad, clipped into the box
  [lower, upper]; lambda shrinks 3x on success and grows 4x on failure. Power
  laws with a floor have long curved valleys (floor, amplitude and exponent
  trade off), where Gauss-Newton steps need ~10x fewer iterations than
  L-BFGS. Stops a problem when max|projected grad| <= gtol, an accepted step
  lowers the objective by no more than ftol * objective, or lambda > 1e12.

  Returns (theta[B, P], value[B], n_iter[B]).
  """
  theta, lower, upper = _start_in_box(theta0, lower, upper)
  n_problems, n_dims = theta.shape
  value, grad, gn = gauss_newton(theta, np.arange(n_problems))
  value = np.where(np.isfinite(value), value, np.inf)
  damping = np.full(n_problems, 1e-3)
  n_iter = np.zeros(n_problems, dtype=int)
  eye = np.eye(n_dims)

  def held(theta, grad, rows):
    """Coordinates at a bound whose gradient pushes out of the box."""
    return (((theta <= lower[rows]) & (grad > 0))
            | ((theta >= upper[rows]) & (grad < 0)))

  def projected_max(theta, grad, rows):
    return np.abs(np.where(held(theta, grad, rows), 0.0, grad)).max(1)

  active = np.isfinite(value) & np.isfinite(grad).all(1)
  active &= projected_max(theta, grad, slice(None)) > gtol
  for _ in range(max_iter):
    rows = np.flatnonzero(active)
    if rows.size == 0:
      break
    a = gn[rows]
    diag = np.einsum("bii->bi", a)
    scale = np.maximum(diag, 1e-12 * diag.max(1, keepdims=True) + 1e-300)
    system = a + damping[rows, None, None] * scale[:, :, None] * eye
    # Coordinates held at a bound leave the system (their step is 0), so the
    # free ones still move instead of every step being clipped away.
    free = ~held(theta[rows], grad[rows], rows)
    system = np.where(free[:, :, None] & free[:, None, :], system, eye)
    rhs = np.where(free, -grad[rows], 0.0)
    with np.errstate(all="ignore"):
      try:
        delta = np.linalg.solve(system, rhs[:, :, None])[:, :, 0]
      except np.linalg.LinAlgError:  # A singular system: fall back per problem.
        delta = np.stack([np.linalg.lstsq(m, g, rcond=None)[0]
                          for m, g in zip(system, rhs)])
    trial = np.clip(theta[rows] + delta, lower[rows], upper[rows])
    trial_value, trial_grad, trial_gn = gauss_newton(trial, rows)
    better = (np.isfinite(trial_value) & np.isfinite(trial_grad).all(1)
              & (trial_value < value[rows]))
    decrease = np.where(better, value[rows] - trial_value, np.inf)
    won = rows[better]
    theta[won], value[won] = trial[better], trial_value[better]
    grad[won], gn[won] = trial_grad[better], trial_gn[better]
    damping[rows] = np.where(better, np.maximum(damping[rows] / 3, 1e-12),
                             damping[rows] * 4)
    n_iter[rows] += 1
    done = ((projected_max(theta[rows], grad[rows], rows) <= gtol)
            | (better & (decrease <= ftol * np.abs(value[rows])))
            | (damping[rows] > 1e12))
    active[rows[done]] = False
  return theta, value, n_iter


# Objective --------------------------------------------------------------------

def loss_terms(law: laws.Law, residual: np.ndarray):
  """Per-point loss and its derivative with respect to the residual."""
  if law.loss == "huber":
    delta = law.huber_delta
    clipped = np.minimum(np.maximum(residual, -delta), delta)
    return clipped * (residual - 0.5 * clipped), clipped
  if law.loss == "squared":
    return 0.5 * residual * residual, residual
  raise ValueError(f"unknown loss {law.loss!r} for law {law.name}")


# Rows of theta evaluated together: keeps each [rows, n_points] temporary under
# 96 KiB, below glibc's mmap threshold, so numpy reuses heap memory instead of
# faulting in fresh pages on every array (3x faster at 4500 x 240 here).
_CHUNK_ELEMENTS = 12000


class _Objective:
  """Objective of many fits sharing inputs log_x, evaluated in row chunks.

  target: [1, n] shared by all problems, or [B, n] per problem (several
  datasets at once); weights: None or [B, n] bootstrap counts. Problem `rows`
  index into target and weights.
  """

  def __init__(self, law, log_x, target, weights=None):
    self.law, self.log_x, self.target, self.weights = law, log_x, target, weights
    self.chunk = max(1, _CHUNK_ELEMENTS // log_x.shape[1])

  def _terms(self, theta, rows):
    f, partials = self.law.model(theta, self.log_x)
    target = self.target if self.target.shape[0] == 1 else self.target[rows]
    residual = f - target
    rho, drho = loss_terms(self.law, residual)
    w = None if self.weights is None else self.weights[rows]
    if w is not None:
      rho, drho = rho * w, drho * w
    grad = np.stack([(drho * p).sum(1) for p in partials], axis=1)
    return rho.sum(1), grad, partials, w

  def _chunked(self, fn, theta, rows):
    with np.errstate(all="ignore"):
      if len(theta) <= self.chunk:
        return fn(theta, rows)
      parts = [fn(theta[i:i + self.chunk], rows[i:i + self.chunk])
               for i in range(0, len(theta), self.chunk)]
    return tuple(np.concatenate(p) for p in zip(*parts))

  def value_and_grad(self, theta, rows):
    """(value[m], grad[m, P]) for minimize_batched."""
    return self._chunked(lambda t, r: self._terms(t, r)[:2], theta, rows)

  def gauss_newton(self, theta, rows):
    """(value[m], grad[m, P], J^T W J [m, P, P]) for squared loss."""
    def fn(t, r):
      value, grad, partials, w = self._terms(t, r)
      n_dims = len(partials)
      gn = np.empty((len(t), n_dims, n_dims))
      for i in range(n_dims):
        weighted = partials[i] if w is None else partials[i] * w
        for j in range(i + 1):
          gn[:, i, j] = gn[:, j, i] = np.broadcast_to(
              weighted * partials[j], (len(t), self.log_x.shape[1])).sum(1)
      return value, grad, gn
    return self._chunked(fn, theta, rows)


# Results ----------------------------------------------------------------------

@dataclasses.dataclass
class FitResult:
  """A fitted law. params/ci are in raw units (x as given, y as given)."""
  law: laws.Law
  params: dict
  ci: dict
  objective: float
  n_points: int
  theta: np.ndarray            # [P] fit-space optimum
  log_scale: np.ndarray        # [n_inputs] log x_scale used in fit space
  inputs: np.ndarray           # [n_inputs, n] raw inputs fitted
  y: np.ndarray                # [n] targets fitted
  bootstrap_theta: np.ndarray  # [R, P] fit-space optima of the resamples
  level: float = 0.95
  n_starts: int = 0

  @property
  def bootstrap_params(self) -> dict:
    """name -> [R] raw parameter values over bootstrap resamples."""
    raw = self.law.to_params(self.bootstrap_theta, self.log_scale)
    return {name: raw[:, i] for i, name in enumerate(self.law.param_names)}

  def _evaluate(self, theta, x) -> np.ndarray:
    log_x = np.log(laws.as_inputs(self.law, x)) - self.log_scale[:, None]
    with np.errstate(all="ignore"):
      f, _ = self.law.model(np.atleast_2d(theta), log_x)
    return laws.from_target(self.law, f)

  def predict(self, x) -> np.ndarray:
    """Best-fit y at x (raw units; same input form as the fit)."""
    return self._evaluate(self.theta, x)[0]

  def predict_samples(self, x) -> np.ndarray:
    """[R, n] predictions of the bootstrap fits."""
    if not len(self.bootstrap_theta):
      raise ValueError("no bootstrap fits: call fit_law with bootstrap > 0")
    return self._evaluate(self.bootstrap_theta, x)

  def predict_interval(self, x, level: float | None = None, *,
                       noise: bool = False):
    """(lo, hi) band at x from the bootstrap fits' percentiles.

    noise=False: a confidence band for the law itself. noise=True: a band for
    a new observation: the residual noise (`noise`, z-scaled) is added in
    quadrature to each half-width, in the target space (log y for losses).
    """
    level = level or self.level
    mid = self._evaluate(self.theta, x)[0]
    if len(self.bootstrap_theta):
      lo, hi = percentile_interval(self.predict_samples(x), level)
    elif noise:
      lo = hi = mid
    else:
      raise ValueError("no bootstrap fits: call fit_law with bootstrap > 0")
    if not noise:
      return lo, hi
    to_t, from_t = ((np.log, np.exp) if self.law.target == "log"
                    else (lambda v: v, lambda v: v))
    with np.errstate(all="ignore"):
      t_mid = to_t(mid)
      half_lo = np.nan_to_num(t_mid - to_t(lo))
      half_hi = np.nan_to_num(to_t(hi) - t_mid)
    z = stats.norm.ppf(0.5 + level / 2) * self.noise
    return from_t(t_mid - np.hypot(half_lo, z)), from_t(t_mid + np.hypot(half_hi, z))

  @property
  def noise(self) -> float:
    """Residual standard deviation in the target space, n - P degrees of freedom."""
    dof = max(self.n_points - self.law.n_params, 1)
    return float(np.sqrt(np.sum(self.residuals() ** 2) / dof))

  def interval(self, derived: Callable, level: float | None = None):
    """(value, lo, hi) of a derived quantity, e.g. beta / (alpha + beta).

    derived(params) takes a dict name -> value (floats for the best fit,
    [R] arrays for the bootstrap) and returns a float or array.
    """
    value = derived(dict(self.params))
    if not len(self.bootstrap_theta):
      return value, np.nan, np.nan
    with np.errstate(all="ignore"):
      samples = np.asarray(derived(self.bootstrap_params), dtype=float)
    lo, hi = percentile_interval(samples, level or self.level)
    return value, lo, hi

  def residuals(self) -> np.ndarray:
    """Fitted minus observed, in the law's target space (log y for losses)."""
    f = self._evaluate(self.theta, self.inputs)[0]
    if self.law.target == "log":
      return np.log(f) - np.log(self.y)
    return f - self.y

  def to_dict(self) -> dict:
    return {
        "law": self.law.name,
        "params": {k: float(v) for k, v in self.params.items()},
        "ci": {k: [float(lo), float(hi)] for k, (lo, hi) in self.ci.items()},
        "objective": float(self.objective),
        "n_points": int(self.n_points),
    }


def percentile_interval(samples, level):
  """Percentile interval over axis 0, ignoring fits that failed (non-finite)."""
  samples = np.where(np.isfinite(samples), samples, np.nan)
  tail = 50.0 * (1.0 - level)
  with warnings.catch_warnings():  # All-NaN columns give NaN, which is right.
    warnings.simplefilter("ignore", RuntimeWarning)
    lo, hi = np.nanpercentile(samples, [tail, 100.0 - tail], axis=0)
  return lo, hi


# Fitting ----------------------------------------------------------------------

def check_inputs(law: laws.Law, x, y):
  """Raw inputs [k, n] and y [n] as float arrays, or FitError saying why not."""
  try:
    inputs = laws.as_inputs(law, x)
    y = np.asarray(y, dtype=float).reshape(-1)
  except (TypeError, ValueError) as err:
    raise FitError(f"cannot read the inputs of the {law.name} law: {err}") from None
  n = y.size
  if inputs.shape[1] != n:
    raise FitError(f"x has {inputs.shape[1]} points but y has {n}")
  if n < law.n_params:
    raise FitError(f"the {law.name} law has {law.n_params} parameters "
                   f"({', '.join(law.param_names)}) but only {n} points were given")
  for name, column in zip(law.input_names, inputs):
    bad = ~np.isfinite(column)
    if bad.any():
      raise FitError(f"input {name} has {bad.sum()} NaN/inf values")
    if (column <= 0).any():
      raise FitError(f"input {name} must be positive (the {law.name} law uses "
                     f"its log), got min {column.min():g}")
  if not np.isfinite(y).all():
    raise FitError(f"y has {(~np.isfinite(y)).sum()} NaN/inf values")
  if law.target == "log" and (y <= 0).any():
    raise FitError(f"y must be positive for the {law.name} law (fitted in log "
                   f"space), got min {y.min():g}")
  if np.ptp(y) <= 1e-12 * np.max(np.abs(y)):
    raise FitError(f"y is constant ({y[0]:g}): a {law.name} law is not "
                   "identifiable from it")
  problem = distinct_inputs_problem(law, inputs)
  if problem:
    raise FitError(problem)
  return inputs, y


def distinct_inputs_problem(law: laws.Law, inputs, names=None) -> str | None:
  """Why inputs [k, n] cannot identify `law`'s parameters, or None.

  Fewer distinct x values (distinct input tuples for multi-input laws) than
  the law has parameters leave some parameter free, and the fit and its
  bootstrap pile up on a bound (one size and three seeds: alpha = 0.05
  [0.05, 0.05]); a multi-input law also needs every input to vary. names:
  what to call the inputs in the message (default: the law's input names).
  """
  names = list(law.input_names if names is None else names)
  inputs = np.asarray(inputs, dtype=float)
  for name, column in zip(names, inputs):
    if law.n_inputs > 1 and np.unique(column).size < 2:
      return (f"input {name} is constant ({column[0]:g}): the {law.name} law "
              "needs it to vary")
  distinct = np.unique(inputs.T, axis=0).shape[0]
  if distinct < law.n_params:
    what = f"{names[0]} value" if law.n_inputs == 1 else f"({', '.join(names)}) point"
    return (f"only {distinct} distinct {what}{'s' * (distinct != 1)} but the "
            f"{law.name} law has {law.n_params} parameters "
            f"({', '.join(law.param_names)}): it needs at least {law.n_params} "
            f"distinct {what}s")
  return None


# Huber-loss laws (Chinchilla) run L-BFGS, as in the paper. The grid stage only
# has to rank basins (the best few are then polished with L-BFGS-B), and starts
# stuck on the flat ridge alpha, beta ~ 0 crawl for ever, so it stops at a
# relative decrease of 1e-10 per iteration or 500 iterations. Bootstrap refits
# start at the optimum and get no polish, so they run tighter.
_GRID_TOLERANCES = dict(ftol=1e-10, gtol=1e-10, max_iter=500)
_BOOTSTRAP_TOLERANCES = dict(ftol=1e-12, gtol=1e-10, max_iter=1000)
# Squared-loss laws run Levenberg-Marquardt to tight tolerances throughout.
_LEAST_SQUARES_TOLERANCES = dict(ftol=1e-13, gtol=1e-10, max_iter=300)


def _minimize(law, objective, theta0, lower, upper, *, warm=None, bootstrap=False):
  """The optimiser for `law`'s loss; warm: full-data inverse Hessians [B, P, P]."""
  if law.loss == "squared":
    return least_squares_batched(objective.gauss_newton, theta0, lower=lower,
                                 upper=upper, **_LEAST_SQUARES_TOLERANCES)
  tolerances = _BOOTSTRAP_TOLERANCES if bootstrap else _GRID_TOLERANCES
  return minimize_batched(objective.value_and_grad, theta0, lower=lower,
                          upper=upper, inverse_hessian=warm, **tolerances)


def fit_law(law: laws.Law, x, y, *, bootstrap: int = 0, seed: int = 0,
            level: float = 0.95, starts: np.ndarray | None = None,
            n_polish: int = 3) -> FitResult:
  """Fits `law` to (x, y) and bootstraps it; see the module docstring.

  x: 1-D array (or dict / 2-D array for multi-input laws like chinchilla);
  y: 1-D array. bootstrap: number of resamples R (0: no intervals).
  starts: optional fit-space start grid [S, P] replacing the law's own.
  """
  return fit_many(law, x, np.asarray(y, dtype=float).reshape(1, -1),
                  bootstrap=bootstrap, seed=seed, level=level, starts=starts,
                  n_polish=n_polish)[0]


def fit_many(law: laws.Law, x, ys, *, bootstrap: int = 0, seed: int = 0,
             level: float = 0.95, starts: np.ndarray | None = None,
             n_polish: int = 3) -> list[FitResult]:
  """fit_law on several datasets that share their inputs, in one batch.

  ys: [D, n], one row per dataset (simulation studies; trials logged at the
  same steps). Every dataset gets its own start grid, polish and bootstrap
  resamples; the batched optimiser runs them all together.
  """
  ys = np.atleast_2d(np.asarray(ys, dtype=float))
  checked = [check_inputs(law, x, y) for y in ys]
  inputs = checked[0][0]
  ys = np.stack([y for _, y in checked])
  n_sets, n = ys.shape
  log_x = np.log(inputs)
  log_scale = laws.log_scale_of(law, log_x)
  log_x = log_x - log_scale[:, None]
  targets = np.log(ys) if law.target == "log" else ys

  def bounds_of(y):
    if law.bounds is None:
      return np.full(law.n_params, -np.inf), np.full(law.n_params, np.inf)
    return law.bounds(log_x, y)
  bounds = [bounds_of(y) for y in ys]
  grids = [law.starts(log_x, y, log_scale) if starts is None else np.atleast_2d(starts)
           for y in ys]
  owner = np.concatenate([np.full(len(g), d) for d, g in enumerate(grids)])
  lower = np.stack([bounds[d][0] for d in owner])
  upper = np.stack([bounds[d][1] for d in owner])

  theta, value, _ = _minimize(law, _Objective(law, log_x, targets[owner]),
                              np.concatenate(grids), lower, upper)
  best_theta, best_value = np.zeros((n_sets, law.n_params)), np.zeros(n_sets)
  for d in range(n_sets):
    mine = owner == d
    if not np.isfinite(value[mine]).any():
      raise FitError(f"the {law.name} law could not be evaluated at any start; "
                     "check the scale of x and y")
    if law.loss == "squared":  # Levenberg-Marquardt already ran to tight tolerances.
      best = np.argmin(np.where(np.isfinite(value[mine]), value[mine], np.inf))
      best_theta[d], best_value[d] = theta[mine][best], value[mine][best]
    else:
      best_theta[d], best_value[d] = _polish(
          _Objective(law, log_x, targets[d:d + 1]).value_and_grad, theta[mine],
          value[mine], n_polish, *bounds[d])

  boot_theta = np.zeros((n_sets, 0, law.n_params))
  if bootstrap > 0:
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_sets * bootstrap)
    owner = np.repeat(np.arange(n_sets), bootstrap)
    warm = None
    if law.loss != "squared":
      hessians = [inverse_hessian_at(
          _Objective(law, log_x, targets[d:d + 1]).value_and_grad, best_theta[d])
          for d in range(n_sets)]
      warm = np.stack([np.eye(law.n_params) if h is None else h
                       for h in hessians])[owner]
    flat_theta, flat_value, _ = _minimize(
        law, _Objective(law, log_x, targets[owner], weights.astype(float)),
        best_theta[owner], np.stack([bounds[d][0] for d in owner]),
        np.stack([bounds[d][1] for d in owner]), warm=warm, bootstrap=True)
    flat_theta[~np.isfinite(flat_value)] = np.nan
    boot_theta = flat_theta.reshape(n_sets, bootstrap, law.n_params)

  results = []
  for d in range(n_sets):
    params_row = law.to_params(best_theta[d][None], log_scale)[0]
    ci = {k: (np.nan, np.nan) for k in law.param_names}
    if bootstrap > 0:
      lo, hi = percentile_interval(law.to_params(boot_theta[d], log_scale), level)
      ci = {k: (float(a), float(b)) for k, a, b in zip(law.param_names, lo, hi)}
    results.append(FitResult(
        law=law,
        params={k: float(v) for k, v in zip(law.param_names, params_row)},
        ci=ci,
        objective=float(best_value[d]),
        n_points=int(n),
        theta=best_theta[d],
        log_scale=log_scale,
        inputs=inputs,
        y=ys[d],
        bootstrap_theta=boot_theta[d],
        level=level,
        n_starts=len(grids[d]),
    ))
  return results


def _polish(objective, theta, value, n_polish, lower, upper):
  """Refines the best distinct optima with scipy's L-BFGS-B; returns the best.

  Candidates: up to n_polish distinct optima within 1e-4 (relative) of the
  best objective. Worse ones already stalled at the grid stage's tolerance and
  cannot overtake the best by polishing.
  """
  order = np.argsort(value)
  order = order[np.isfinite(value[order])]
  best = value[order[0]]
  picked = []
  for i in order:
    if value[i] > best + 1e-4 * abs(best):
      break
    # Starts that reached the same optimum count once.
    if all(abs(value[i] - value[j]) > 1e-9 * abs(value[j]) or
           np.abs(theta[i] - theta[j]).max() > 1e-4 for j in picked):
      picked.append(i)
    if len(picked) == n_polish:
      break

  def scalar(t):
    v, g = objective(t[None], np.zeros(1, dtype=int))
    return (float(v[0]), g[0]) if np.isfinite(v[0]) else (np.inf, np.zeros_like(t))

  bounds = optimize.Bounds(lower, upper)
  best_theta, best_value = theta[order[0]], value[order[0]]
  for i in picked:
    res = optimize.minimize(scalar, theta[i], jac=True, method="L-BFGS-B",
                            bounds=bounds,
                            options={"maxiter": 1000, "maxcor": 20,
                                     "ftol": 1e-13, "gtol": 1e-10})
    if np.isfinite(res.fun) and res.fun < best_value:
      best_theta, best_value = res.x, float(res.fun)
  return np.asarray(best_theta, dtype=float), float(best_value)


# Model comparison ---------------------------------------------------------------

# (simpler, richer): the richer law reduces to the simpler one on a boundary
# or at a parameter value, so a likelihood-ratio test applies.
NESTED = {
    ("pure_power", "power"), ("pure_power", "saturating"),
    ("pure_power", "bnsl"), ("power", "saturating"), ("power", "bnsl"),
}


def compare(simple: FitResult, rich: FitResult) -> dict:
  """Says whether `rich` fits the same data better than `simple`.

  Uses a Gaussian likelihood of the target-space residuals (log residuals for
  losses) with the noise variance profiled out, whatever loss fitted them:
  AIC and BIC for any pair, and a likelihood-ratio test when the laws are
  nested (NESTED). Where the simpler law sits on a boundary of the richer one
  (d = 0, E = 0) the chi-square p-value is conservative.
  """
  if simple.n_points != rich.n_points or not np.allclose(simple.y, rich.y):
    raise ValueError("compare needs two fits of the same data")
  n = simple.n_points
  out = {"laws": [simple.law.name, rich.law.name]}
  for key, res in (("simple", simple), ("rich", rich)):
    rss = float(np.sum(res.residuals() ** 2))
    k = res.law.n_params + 1  # + noise variance
    loglik = -0.5 * n * (np.log(2 * np.pi * max(rss, 1e-300) / n) + 1)
    out[key] = {"law": res.law.name, "rss": rss, "loglik": loglik,
                "aic": 2 * k - 2 * loglik, "bic": k * np.log(n) - 2 * loglik}
  out["delta_aic"] = out["rich"]["aic"] - out["simple"]["aic"]
  out["delta_bic"] = out["rich"]["bic"] - out["simple"]["bic"]
  out["preferred_aic"] = (rich if out["delta_aic"] < 0 else simple).law.name
  out["preferred_bic"] = (rich if out["delta_bic"] < 0 else simple).law.name
  pair = (simple.law.name, rich.law.name)
  if pair in NESTED:
    stat = max(2.0 * (out["rich"]["loglik"] - out["simple"]["loglik"]), 0.0)
    df = rich.law.n_params - simple.law.n_params
    out["lr_stat"], out["lr_df"] = stat, df
    out["lr_p"] = float(stats.chi2.sf(stat, df))
  return out


# Two-step prediction: compute -> loss -> accuracy (OLMo model ladder) ------------

@dataclasses.dataclass
class Ladder:
  """Bhagia et al. 2024: predict a task's accuracy at a target scale in two
  steps: a scaling law for its loss, then a sigmoid from loss to accuracy."""
  loss_fit: FitResult
  accuracy_fit: FitResult

  def predict(self, x) -> np.ndarray:
    return self.accuracy_fit.predict(self.loss_fit.predict(x))

  def predict_interval(self, x, level: float = 0.95):
    """Band from pairing bootstrap fits of the two steps (independent resamples)."""
    losses = self.loss_fit.predict_samples(x)
    acc = self.accuracy_fit
    n = min(len(losses), len(acc.bootstrap_theta))
    samples = np.stack([acc._evaluate(acc.bootstrap_theta[i], losses[i])[0]
                        for i in range(n)])
    return percentile_interval(samples, level)


def fit_ladder(x, loss, accuracy, *, loss_law: laws.Law = laws.POWER,
               bootstrap: int = 200, seed: int = 0) -> Ladder:
  """x: compute (or {n_params, tokens} for loss_law=CHINCHILLA) of the ladder
  models; loss: their task loss (nats); accuracy: their task accuracy."""
  return Ladder(
      loss_fit=fit_law(loss_law, x, loss, bootstrap=bootstrap, seed=seed),
      accuracy_fit=fit_law(laws.SIGMOID, loss, accuracy, bootstrap=bootstrap,
                           seed=seed + 1))
