"""Compute-optimal allocation: IsoFLOP profiles, the parametric frontier, a planner.

Training compute is C = 6 N D FLOPs (N parameters, D tokens; the 6 is
`FLOPS_PER_PARAM_TOKEN`, forward + backward of a dense transformer).

- Approach 2 of Hoffmann et al. 2022 (`fit_isoflop`): for each compute budget,
  a parabola of loss in ln N; its vertex is N_opt(C). Then
  N_opt = k_n C^a and D_opt = k_d C^b by least squares in log-log.
- Approach 3 closed form (`frontier`): minimising E + A/N^alpha + B/D^beta
  subject to 6 N D = C gives
  N_opt = G (C/6)^(beta/(alpha+beta)), D_opt = (C/6) / N_opt,
  G = (alpha A / (beta B))^(1/(alpha+beta)).
- `plan`: N, D and loss to use at a FLOP budget, with bootstrap intervals,
  from either fit.
"""
import dataclasses

import numpy as np
import pandas as pd

from analysis import fit, laws

FLOPS_PER_PARAM_TOKEN = 6.0

# Besiroglu et al. 2024 (arXiv 2404.10102): their refit of Chinchilla's
# approach 3 on the data behind the paper's Figure 4 (5 outliers dropped).
EPOCH_PARAMS = {"E": 1.82, "A": 482.01, "B": 2085.43,
                "alpha": 0.3478, "beta": 0.3658}
# Hoffmann et al. 2022 as published (rounded).
CHINCHILLA_PAPER_PARAMS = {"E": 1.69, "A": 406.4, "B": 410.7,
                           "alpha": 0.34, "beta": 0.28}


# Synthetic runs ------------------------------------------------------------------

def synthetic_runs(params: dict = EPOCH_PARAMS, *, budgets=None,
                   sizes_per_budget: int = 12, noise: float = 0.02,
                   seed: int = 0) -> pd.DataFrame:
  """IsoFLOP-design runs drawn from a known L(N, D) with log-normal noise.

  budgets: FLOPs (default 10 budgets from 1e18 to 1e22). Each budget gets
  `sizes_per_budget` model sizes spread over tokens/params from 1 to 1000
  (jittered), loss = L(N, D) * exp(noise * standard normal).
  Columns: params, tokens, flops, loss.
  """
  rng = np.random.default_rng(seed)
  budgets = np.logspace(18, 22, 10) if budgets is None else np.asarray(budgets)
  rows = []
  for flops in budgets:
    log_ratio = np.linspace(0, 3, sizes_per_budget)
    log_ratio = log_ratio + rng.uniform(-0.1, 0.1, sizes_per_budget)
    n_params = np.sqrt(flops / FLOPS_PER_PARAM_TOKEN / 10 ** log_ratio)
    tokens = flops / FLOPS_PER_PARAM_TOKEN / n_params
    rows.append(pd.DataFrame({"params": n_params, "tokens": tokens,
                              "flops": np.full(sizes_per_budget, flops)}))
  df = pd.concat(rows, ignore_index=True)
  mean = laws.CHINCHILLA.predict(params, df[["params", "tokens"]])
  df["loss"] = mean * np.exp(noise * rng.standard_normal(len(df)))
  return df


# Approach 3 closed form ----------------------------------------------------------

def frontier(params: dict, flops, flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN):
  """(n_opt, tokens_opt, loss_opt) on the compute-optimal frontier at `flops`.

  params: dict of E, A, B, alpha, beta; values may be arrays (bootstrap
  samples), which broadcast against flops.
  """
  e, a, b = params["E"], params["A"], params["B"]
  alpha, beta = params["alpha"], params["beta"]
  ntok = np.asarray(flops, dtype=float) / flops_per_param_token  # N * D
  with np.errstate(all="ignore"):
    g = (alpha * a / (beta * b)) ** (1.0 / (alpha + beta))
    n_opt = g * ntok ** (beta / (alpha + beta))
    d_opt = ntok / n_opt
    loss_opt = e + a * n_opt ** -alpha + b * d_opt ** -beta
  return n_opt, d_opt, loss_opt


def allocation_exponents(params: dict):
  """(a, b): N_opt ~ C^a and D_opt ~ C^b with a = beta/(alpha+beta), b = 1 - a."""
  a = params["beta"] / (params["alpha"] + params["beta"])
  return a, 1.0 - a


# Approach 2: IsoFLOP profiles ----------------------------------------------------

@dataclasses.dataclass
class IsoFlopResult:
  """Per-budget parabola vertices and the power laws through them.

  profiles: one row per budget with flops, n_opt, tokens_opt, loss_opt,
  curvature (d^2 loss / d (ln N)^2), n_points, in_range (vertex inside the
  sampled N), used (went into the exponent fit), and the parabola
  coefficients c2, c1, c0 in ln N.
  """
  profiles: pd.DataFrame
  runs: pd.DataFrame                # params, tokens, flops, loss, budget (row of profiles)
  exponent_n: float                 # a in N_opt = k_n C^a
  log_coef_n: float                 # ln k_n
  bootstrap: np.ndarray             # [R, 2] (a, ln k_n) over resamples
  flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN
  level: float = 0.95

  @property
  def exponent_d(self) -> float:
    """b in D_opt = k_d C^b; b = 1 - a since D_opt = C / (6 N_opt)."""
    return 1.0 - self.exponent_n

  @property
  def ci(self) -> dict:
    if not len(self.bootstrap):
      return {"exponent_n": (np.nan, np.nan), "exponent_d": (np.nan, np.nan)}
    lo, hi = fit.percentile_interval(self.bootstrap[:, 0], self.level)
    return {"exponent_n": (float(lo), float(hi)),
            "exponent_d": (float(1 - hi), float(1 - lo))}

  def n_opt(self, flops, samples: bool = False):
    """N_opt at flops (best fit, or [R, n] over bootstrap fits)."""
    log_c = np.log(np.atleast_1d(np.asarray(flops, dtype=float)))
    if samples:
      return np.exp(self.bootstrap[:, 1:2] + self.bootstrap[:, 0:1] * log_c)
    return np.exp(self.log_coef_n + self.exponent_n * log_c)

  def tokens_opt(self, flops, samples: bool = False):
    flops = np.atleast_1d(np.asarray(flops, dtype=float))
    return flops / self.flops_per_param_token / self.n_opt(flops, samples)


def bucket_budgets(flops, tolerance_decades: float = 0.05) -> np.ndarray:
  """Integer budget label per run: runs within `tolerance_decades` of their
  neighbour in log10 FLOPs share a budget (absorbs 6ND rounding)."""
  log_c = np.log10(np.asarray(flops, dtype=float))
  order = np.argsort(log_c)
  labels = np.empty(len(log_c), dtype=int)
  labels[order] = np.concatenate(
      [[0], np.cumsum(np.diff(log_c[order]) > tolerance_decades)])
  return labels


def _vertices(log_n, loss, budget, weights=None):
  """Per-budget parabola fits; returns a list of dicts (one per budget)."""
  out = []
  for label in np.unique(budget):
    mask = budget == label
    w = None if weights is None else weights[mask]
    ln, ls = log_n[mask], loss[mask]
    if w is not None:
      keep = w > 0
      ln, ls, w = ln[keep], ls[keep], w[keep]
    row = {"label": label, "n_points": int(ln.size)}
    if np.unique(ln).size < 3:
      out.append(row | {"c2": np.nan, "c1": np.nan, "c0": np.nan})
      continue
    c2, c1, c0 = np.polyfit(ln, ls, 2, w=None if w is None else np.sqrt(w))
    row |= {"c2": c2, "c1": c1, "c0": c0,
            "ln_min": ln.min(), "ln_max": ln.max()}
    out.append(row)
  return out


def _exponent_fit(rows, budget_flops):
  """Least-squares ln N_opt = a ln C + ln k over usable vertices."""
  log_c, log_nopt, in_range = [], [], []
  for row in rows:
    if not row.get("c2", np.nan) > 0:  # Concave or missing: no minimum.
      continue
    vertex = -row["c1"] / (2 * row["c2"])
    log_c.append(np.log(budget_flops[row["label"]]))
    log_nopt.append(vertex)
    in_range.append(row["ln_min"] <= vertex <= row["ln_max"])
  log_c, log_nopt, in_range = map(np.asarray, (log_c, log_nopt, in_range))
  use = in_range if in_range.sum() >= 2 else np.ones(len(log_c), dtype=bool)
  if use.sum() < 2:
    return np.nan, np.nan
  a, log_k = np.polyfit(log_c[use], log_nopt[use], 1)
  return a, log_k


def fit_isoflop(n_params, tokens, loss, *, flops=None, budget=None,
                bootstrap: int = 200, seed: int = 0, level: float = 0.95,
                flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN) -> IsoFlopResult:
  """Chinchilla approach 2 on runs (arrays of equal length).

  flops: per-run training FLOPs (default 6 N D). budget: per-run budget labels;
  by default runs are grouped by `bucket_budgets(flops)`. Each budget's FLOPs
  is the geometric mean of its runs' FLOPs. Budgets need >= 3 distinct N.
  Vertices outside their budget's sampled N range are reported but left out
  of the exponent fit (when at least two in-range ones remain), because
  there the parabola extrapolates. Bootstrap: resample runs within each
  budget, refit parabolas and the power law.
  """
  n_params, tokens, loss = (np.asarray(v, dtype=float) for v in (n_params, tokens, loss))
  flops = (flops_per_param_token * n_params * tokens if flops is None
           else np.asarray(flops, dtype=float))
  if not n_params.shape == tokens.shape == loss.shape == flops.shape:
    raise fit.FitError("n_params, tokens, loss (and flops) must have one value per run")
  for name, v in (("n_params", n_params), ("tokens", tokens), ("flops", flops)):
    if not (np.isfinite(v).all() and (v > 0).all()):
      raise fit.FitError(f"{name} must be finite and positive for IsoFLOP profiles")
  if not np.isfinite(loss).all():
    raise fit.FitError("loss has NaN/inf values")
  budget = bucket_budgets(flops) if budget is None else np.unique(
      np.asarray(budget), return_inverse=True)[1]
  budget_flops = np.exp(pd.Series(np.log(flops)).groupby(budget).mean()).to_numpy()
  log_n = np.log(n_params)

  rows = _vertices(log_n, loss, budget)
  a, log_k = _exponent_fit(rows, budget_flops)
  if not np.isfinite(a):
    raise fit.FitError("need at least two budgets with >= 3 distinct model "
                       "sizes and a convex loss profile")

  profiles = []
  for row in rows:
    c2, c1, c0 = row["c2"], row["c1"], row["c0"]
    convex = c2 > 0
    vertex = -c1 / (2 * c2) if convex else np.nan
    c = budget_flops[row["label"]]
    in_range = bool(convex and row["ln_min"] <= vertex <= row["ln_max"])
    profiles.append({
        "flops": c, "n_opt": np.exp(vertex),
        "tokens_opt": c / flops_per_param_token / np.exp(vertex),
        "loss_opt": c0 - c1 * c1 / (4 * c2) if convex else np.nan,
        "curvature": 2 * c2, "n_points": row["n_points"],
        "in_range": in_range, "c2": c2, "c1": c1, "c0": c0})
  profiles = pd.DataFrame(profiles)
  n_in_range = profiles["in_range"].sum()
  profiles["used"] = profiles["in_range"] if n_in_range >= 2 else profiles["curvature"] > 0

  samples = np.zeros((0, 2))
  if bootstrap > 0:
    rng = np.random.default_rng(seed)
    samples = np.full((bootstrap, 2), np.nan)
    for r in range(bootstrap):
      weights = np.zeros(len(loss))
      for label in np.unique(budget):  # Resample within each budget.
        idx = np.flatnonzero(budget == label)
        np.add.at(weights, rng.choice(idx, idx.size), 1.0)
      samples[r] = _exponent_fit(_vertices(log_n, loss, budget, weights), budget_flops)
  runs = pd.DataFrame({"params": n_params, "tokens": tokens, "flops": flops,
                       "loss": loss, "budget": budget})
  return IsoFlopResult(profiles=profiles, runs=runs, exponent_n=float(a),
                       log_coef_n=float(log_k),
                       bootstrap=samples, flops_per_param_token=flops_per_param_token,
                       level=level)


# Planner ----------------------------------------------------------------------

def plan(budget_flops: float, result, level: float = 0.95) -> dict:
  """Recommended model size and tokens for a FLOP budget, with intervals.

  result: a chinchilla FitResult (approach 3: closed-form frontier, intervals
  from its bootstrap fits) or an IsoFlopResult (approach 2). Returns a dict of
  n_params, tokens, tokens_per_param, loss (approach 3 only) and exponent_n,
  exponent_d, each value with an interval under the key + "_ci".
  """
  budget = float(budget_flops)
  out = {"flops": budget, "level": level}
  if isinstance(result, IsoFlopResult):
    out["method"] = "isoflop"
    best = {"n_params": result.n_opt(budget)[0],
            "tokens": result.tokens_opt(budget)[0],
            "exponent_n": result.exponent_n}
    samples = {}
    if len(result.bootstrap):
      samples = {"n_params": result.n_opt(budget, samples=True)[:, 0],
                 "tokens": result.tokens_opt(budget, samples=True)[:, 0],
                 "exponent_n": result.bootstrap[:, 0]}
  elif isinstance(result, fit.FitResult) and result.law.name == "chinchilla":
    out["method"] = "parametric"
    n_opt, d_opt, loss_opt = frontier(result.params, budget)
    best = {"n_params": n_opt, "tokens": d_opt, "loss": loss_opt,
            "exponent_n": allocation_exponents(result.params)[0]}
    samples = {}
    if len(result.bootstrap_theta):
      boot = result.bootstrap_params
      n_s, d_s, l_s = frontier(boot, budget)
      samples = {"n_params": n_s, "tokens": d_s, "loss": l_s,
                 "exponent_n": allocation_exponents(boot)[0]}
  else:
    raise TypeError("plan needs a chinchilla FitResult or an IsoFlopResult")
  best["tokens_per_param"] = best["tokens"] / best["n_params"]
  best["exponent_d"] = 1.0 - best["exponent_n"]
  if samples:
    samples["tokens_per_param"] = samples["tokens"] / samples["n_params"]
    samples["exponent_d"] = 1.0 - samples["exponent_n"]
  for key, value in best.items():
    out[key] = float(value)
    lo, hi = (fit.percentile_interval(samples[key], level) if key in samples
              else (np.nan, np.nan))
    out[key + "_ci"] = (float(lo), float(hi))
  return out
