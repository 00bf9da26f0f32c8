"""Several objectives on one ladder: which one's downstream error saturates first.

Per objective, a power law (L = E + A x^-alpha) and a saturating law
(L = c + a (x + d)^-b) are fitted, with bootstrap intervals, to its own final
eval loss and to its downstream error (test error of a classifier; linear-probe
test error on the frozen features of a generative model), each against
parameters N and against compute C. AIC, BIC and a likelihood-ratio test
(fit.compare) say which law fits each curve better.

"Saturates earlier" is read off the downstream-error power-law fits:
- saturation scale x* = (A / E)^(1 / alpha), where the fitted reducible error
  A x^-alpha has fallen to the floor E: past x* more scale buys less than the
  floor it cannot remove;
- floor share at the largest rung, E / L(x_max): how much of the error left at
  the top of the ladder is the floor.
One objective saturates earlier than another when the 95% bootstrap interval
of its x* lies wholly below the other's; when the intervals overlap, the data
cannot tell. Floors E and exponents alpha, with their intervals, and the AIC
preference are reported beside it as evidence, not folded into the verdict.

Every fitted point is a row of the trials DataFrame. An error rate of 0 has no
logarithm (both laws are fitted in log space): it is raised to 1 / n_eval when
the summary says how many examples were evaluated (`eval_examples`), else the
rung is left out of that fit, and either is noted.
"""
import numpy as np
import pandas as pd

from analysis import fit as fit_lib
from analysis import laws

OBJECTIVE = "objective"  # trials column naming a trial's objective
UNNAMED = "(unnamed)"  # label of trials without one, beside trials with one
LOSS = "final_eval_loss"
# objective_kind -> its downstream error column and what that number is.
DOWNSTREAM = {
    "discriminative": ("final_eval_error", "test classification error"),
    "generative": ("final_probe_error", "linear-probe test error"),
}
EVAL_EXAMPLES = "eval_examples"  # the summary's count of evaluated examples: n_eval
LAWS = (laws.POWER, laws.SATURATING)
SYMBOL = {"params_non_embedding": "N", "params_total": "N", "flops": "C", "flops_6n": "C"}


# Grouping ------------------------------------------------------------------------

def has_values(rows: pd.DataFrame, column: str) -> bool:
  """True if `column` exists and holds at least one number."""
  return column in rows and pd.to_numeric(rows[column], errors="coerce").notna().any()


def labels(trials: pd.DataFrame) -> pd.Series:
  """Each trial's objective; None throughout when the column is absent (one group)."""
  if OBJECTIVE not in trials:
    return pd.Series([None] * len(trials), index=trials.index, dtype=object)
  return trials[OBJECTIVE].where(trials[OBJECTIVE].notna(), None)


def groups(trials: pd.DataFrame) -> dict:
  """objective -> its rows, in order of first appearance; {None: trials} without the column."""
  names = labels(trials)
  order = list(dict.fromkeys(names))
  return {name: trials[names.map(lambda v: v == name)] for name in order} if order else {None: trials}


def kind_of(rows: pd.DataFrame):
  """'discriminative', 'generative', or None; from objective_kind, else from which error is logged."""
  if "objective_kind" in rows and rows.objective_kind.notna().any():
    return str(rows.objective_kind.dropna().iloc[0])
  for kind, (column, _) in DOWNSTREAM.items():
    if has_values(rows, column):
      return kind
  return None


def unit_of(rows: pd.DataFrame, default: str = "nats/token") -> str:
  """The objective's loss unit (summary's loss_unit), default for sweeps that predate it."""
  if "loss_unit" in rows and rows.loss_unit.notna().any():
    return str(rows.loss_unit.dropna().iloc[0])
  return default


def applies(trials: pd.DataFrame) -> bool:
  """True for several objectives, or one that logs a downstream error (a vision objective)."""
  named = [g for g in groups(trials) if g is not None]
  if len(named) > 1:
    return True
  return any(has_values(trials, c) for c, _ in DOWNSTREAM.values())


# Fitting -------------------------------------------------------------------------

def _n_eval(rows):
  return pd.to_numeric(rows[EVAL_EXAMPLES], errors="coerce") if has_values(rows, EVAL_EXAMPLES) else None


def curve_points(rows, y_column, x_column):
  """(trial_ids, x, y, raised, notes) for one curve: rows with finite positive x and y.

  An error of 0 is raised to 1 / n_eval when n_eval is known (`raised` marks
  those points), else dropped.
  """
  x = pd.to_numeric(rows[x_column], errors="coerce") if x_column in rows else pd.Series(np.nan, index=rows.index)
  y = pd.to_numeric(rows[y_column], errors="coerce") if y_column in rows else pd.Series(np.nan, index=rows.index)
  notes = []
  zero = y.notna() & (y <= 0) & (y_column != LOSS)
  raised = pd.Series(False, index=y.index)
  if zero.any():
    n_eval = _n_eval(rows)
    if n_eval is not None and n_eval[zero].notna().all():
      y, raised = y.where(~zero, 1.0 / n_eval), zero
      notes.append(f"{int(zero.sum())} rung(s) with {y_column} = 0 raised to 1/n_eval")
    else:
      notes.append(f"{int(zero.sum())} rung(s) with {y_column} = 0 left out (log-space fit; "
                   f"n_eval not in the summary, so it cannot be raised to 1/n_eval)")
  keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
  return (list(rows.trial_id[keep]), x[keep].to_numpy(float), y[keep].to_numpy(float),
          raised[keep].to_numpy(bool), notes)


def _x_star(law_name):
  """Saturation scale: where the fitted reducible part equals the floor.

  A fit whose error does not fall with x (alpha <= 0) is saturated before the ladder starts: x* = 0.
  """
  if law_name == "power":
    return lambda p: np.where(np.asarray(p["alpha"]) > 0, (p["A"] / p["E"]) ** (1.0 / np.abs(p["alpha"])), 0.0)
  return lambda p: np.where(np.asarray(p["b"]) > 0, (p["a"] / p["c"]) ** (1.0 / np.maximum(p["b"], 1e-300)) - p["d"],
                            0.0)


def _floor_share(law_name, x_max):
  if law_name == "power":
    return lambda p: p["E"] / (p["E"] + p["A"] * x_max ** -p["alpha"])
  return lambda p: p["c"] / (p["c"] + p["a"] * (x_max + p["d"]) ** -p["b"])


def _triple(value):
  return [float(v) for v in value]


def _d_at_bound(result):
  """'lower' or 'upper' when the saturating law's d sits on its box (laws._saturating_bounds), else None."""
  x = result.inputs[0]
  d = result.params["d"]
  if d <= 1.01e-4 * x.min():
    return "lower"
  return "upper" if d >= 0.99 * 100 * x.max() else None


def fit_curve(x, y, bootstrap, seed=0) -> dict:
  """Both laws on one curve: {'results': law -> FitResult|None, 'summary': JSON-ready dict}."""
  results, summary = {}, {"n_points": int(len(x)), "x_range": [float(x.min()), float(x.max())] if len(x) else None}
  for law in LAWS:
    needed = law.n_params + 1
    results[law.name] = None
    if len(x) < needed:
      summary[law.name] = {"not_fitted": f"needs {needed} rungs, has {len(x)}"}
      continue
    try:
      # Bootstrap refits far out on a ridge overflow in raw units; alpha = 0 divides by 0 in x*.
      with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        result = fit_lib.fit_law(law, x, y, bootstrap=bootstrap, seed=seed)
        derived = {"x_star": _triple(result.interval(_x_star(law.name))),
                   "floor_share_at_largest": _triple(result.interval(_floor_share(law.name, float(x.max()))))}
    except fit_lib.FitError as e:
      summary[law.name] = {"not_fitted": str(e)}
      continue
    results[law.name] = result
    summary[law.name] = {**result.to_dict(), **derived}
    if law is laws.SATURATING:
      summary[law.name]["d_at_bound"] = _d_at_bound(result)
  if results["power"] is not None and results["saturating"] is not None:
    c = fit_lib.compare(results["power"], results["saturating"])
    summary["comparison"] = {k: c[k] for k in ("delta_aic", "delta_bic", "preferred_aic", "preferred_bic", "lr_p")
                             if k in c}
  return {"results": results, "summary": summary}


def analyze(done: pd.DataFrame, params_column: str, compute_column: str, bootstrap: int) -> tuple[dict, dict]:
  """Fits every objective's loss and downstream error vs N and C; compares the kinds.

  Returns (summary for fits.json["objectives"], curves for the plots:
  objective -> metric column -> x column -> {'results', 'trial_ids', 'x', 'y', 'raised'}).
  """
  x_columns = [params_column, compute_column]
  per_objective, curves = {}, {}
  for seed, (name, rows) in enumerate(groups(done).items()):
    label = name if name is not None else UNNAMED
    kind = kind_of(rows)
    error_column, error_meaning = DOWNSTREAM.get(kind, (None, None))
    entry = {"kind": kind, "loss_unit": unit_of(rows), "n_done": int(len(rows)),
             "downstream": error_column, "downstream_meaning": error_meaning, "fits": {}, "notes": []}
    curves[label] = {}
    metrics = [LOSS] + ([error_column] if error_column and error_column in rows else [])
    if error_column is None:
      entry["notes"].append("no downstream error: the objective's kind is unknown")
    elif error_column not in rows or pd.to_numeric(rows[error_column], errors="coerce").isna().all():
      entry["notes"].append(f"no downstream error: {error_column} is not logged")
    for metric in metrics:
      entry["fits"][metric], curves[label][metric] = {}, {}
      for x_column in x_columns:
        ids, x, y, raised, notes = curve_points(rows, metric, x_column)
        entry["notes"] += [f"{metric} vs {x_column}: {n}" for n in notes]
        curve = fit_curve(x, y, bootstrap, seed=seed)
        entry["fits"][metric][x_column] = curve["summary"]
        curves[label][metric][x_column] = {"results": curve["results"], "trial_ids": ids, "x": x, "y": y,
                                           "raised": raised}
    per_objective[label] = entry
  comparisons = [compare_kinds(per_objective, d, g, x_column)
                 for x_column in x_columns
                 for d in per_objective if per_objective[d]["kind"] == "discriminative"
                 for g in per_objective if per_objective[g]["kind"] == "generative"]
  summary = {"x_columns": x_columns, "bootstrap": int(bootstrap), "per_objective": per_objective,
             "comparisons": comparisons}
  return summary, curves


# Verdict -------------------------------------------------------------------------

def _downstream_power(entry, x_column):
  column = entry["downstream"]
  fits = entry["fits"].get(column, {}).get(x_column) if column else None
  if fits is None:
    return None, f"{column or 'downstream error'} not fitted"
  power = fits["power"]
  if "not_fitted" in power:
    return None, f"power law on {column} not fitted: {power['not_fitted']}"
  return power, None


def _overlap(a, b):
  return not (a[1] < b[0] or b[1] < a[0])


def compare_kinds(per_objective, discriminative, generative, x_column) -> dict:
  """Does `discriminative`'s downstream error saturate at a smaller x than `generative`'s?"""
  out = {"discriminative": discriminative, "generative": generative, "x_column": x_column}
  fits, ranges = {}, []
  for name in (discriminative, generative):
    power, why = _downstream_power(per_objective[name], x_column)
    if power is None:
      return out | {"answer": "not_assessed", "reason": f"{name}: {why}"}
    fits[name] = power
    ranges.append(per_objective[name]["fits"][per_objective[name]["downstream"]][x_column]["x_range"])
  ci = {n: f["x_star"][1:] for n, f in fits.items()}
  if not all(np.isfinite(v).all() for v in ci.values()):
    return out | {"answer": "not_assessed", "reason": "no bootstrap intervals (bootstrap = 0 or every refit failed)"}
  d, g = ci[discriminative], ci[generative]
  answer = ("discriminative_earlier" if d[1] < g[0] else "generative_earlier" if g[1] < d[0] else "cannot_tell")
  out |= {"answer": answer,
          "x_range": [min(r[0] for r in ranges), max(r[1] for r in ranges)],
          "x_star": {n: f["x_star"] for n, f in fits.items()},
          "floor_E": {n: [f["params"]["E"], *f["ci"]["E"]] for n, f in fits.items()},
          "alpha": {n: [f["params"]["alpha"], *f["ci"]["alpha"]] for n, f in fits.items()},
          "floor_share_at_largest": {n: f["floor_share_at_largest"] for n, f in fits.items()},
          "floors_overlap": _overlap(fits[discriminative]["ci"]["E"], fits[generative]["ci"]["E"]),
          "exponents_overlap": _overlap(fits[discriminative]["ci"]["alpha"], fits[generative]["ci"]["alpha"])}
  return out


# Report ---------------------------------------------------------------------------

def _g(v, digits=3):
  return f"{v:.{digits}g}"


def _ci(triple, digits=3, pct=False):
  value, lo, hi = triple
  f = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: _g(v, digits))
  return f"{f(value)} [{f(lo)}, {f(hi)}]" if np.isfinite(lo) else f(value)


def _fit_phrase(fits, symbol):
  """One curve's two laws in a phrase: power-law parameters, saturation scale, AIC preference."""
  power, saturating = fits["power"], fits["saturating"]
  if "not_fitted" in power:
    return f"power law not fitted: {power['not_fitted']}"
  p, ci = power["params"], power["ci"]
  text = (f"E = {_ci([p['E'], *ci['E']])}, alpha = {_ci([p['alpha'], *ci['alpha']])}, "
          f"{symbol}* = {_ci(power['x_star'])}, "
          f"floor share at the largest rung {_ci(power['floor_share_at_largest'], pct=True)}")
  if "not_fitted" in saturating:
    text += f"; saturating law not fitted: {saturating['not_fitted']}"
  else:
    s, sci = saturating["params"], saturating["ci"]
    cmp = fits["comparison"]
    onset = f"onset d = {_ci([s['d'], *sci['d']])}"
    if saturating["d_at_bound"]:
      onset = ("d at its lower bound (no flat start)" if saturating["d_at_bound"] == "lower"
               else onset + " (at its upper bound)")
    text += (f"; saturating law c = {_ci([s['c'], *sci['c']])}, {onset}; "
             f"AIC prefers the {cmp['preferred_aic']} law (AIC(saturating) - AIC(power) = {cmp['delta_aic']:+.2f})")
  return text


def _verdict_sentence(c, symbol):
  d, g = f"`{c['discriminative']}`", f"`{c['generative']}`"
  if c["answer"] == "not_assessed":
    return f"Whether {d} saturates earlier than {g} against {c['x_column']} is not assessed: {c['reason']}."
  xd, xg = c["x_star"][c["discriminative"]], c["x_star"][c["generative"]]
  intervals = f"{symbol}* {_ci(xd)} vs {_ci(xg)}; the ladder spans {_g(c['x_range'][0])} to {_g(c['x_range'][1])}"
  floors = ("their floors E overlap" if c["floors_overlap"] else "their floors E do not overlap")
  if c["answer"] == "cannot_tell":
    return (f"Against `{c['x_column']}` the data cannot tell whether the discriminative {d} saturates earlier than "
            f"the generative {g}: the 95% intervals of the saturation scale overlap ({intervals}); {floors}.")
  earlier, later = (d, g) if c["answer"] == "discriminative_earlier" else (g, d)
  kind = "discriminative" if c["answer"] == "discriminative_earlier" else "generative"
  return (f"Against `{c['x_column']}` the {kind} {earlier} saturates earlier than {later} on this ladder: "
          f"the 95% interval of its saturation scale lies wholly below the other's ({intervals}); {floors}.")


def markdown(summary) -> list:
  """Report lines: per objective the fits of its downstream error and own loss, then the verdicts."""
  intervals = (f"with {summary['bootstrap']} bootstrap resamples (95% intervals)" if summary["bootstrap"]
               else "without bootstrap (no intervals)")
  lines = ["## Objectives: downstream error and own loss vs scale", "",
           "Per objective, L = E + A X^-alpha (power) and L = c + a (X + d)^-b (saturating), fitted in log space "
           f"{intervals}. X* = (A / E)^(1/alpha) is the "
           "saturation scale, where the fitted reducible part has fallen to the floor E; the floor share is "
           "E / L at the largest rung.", ""]
  for name, entry in summary["per_objective"].items():
    head = f"- `{name}` ({entry['kind'] or 'kind unknown'}; own loss in {entry['loss_unit']}; {entry['n_done']} rungs)"
    lines.append(head)
    for metric, by_x in entry["fits"].items():
      what = (f"{metric} ({entry['downstream_meaning']})" if metric == entry["downstream"]
              else f"{metric} ({entry['loss_unit']})")
      for x_column, fits in by_x.items():
        lines.append(f"  - {what} vs `{x_column}`: {_fit_phrase(fits, SYMBOL.get(x_column, 'X'))}")
    lines += [f"  - note: {n}" for n in entry["notes"]]
  lines.append("")
  if summary["comparisons"]:
    lines += ["### Does the discriminative curve saturate earlier than the generative one?", ""]
    for c in summary["comparisons"]:
      lines += [_verdict_sentence(c, SYMBOL.get(c["x_column"], "X")), ""]
  else:
    lines += ["No discriminative/generative pair of objectives in this sweep: nothing to compare.", ""]
  return lines
