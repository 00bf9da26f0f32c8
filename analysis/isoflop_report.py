"""An IsoFLOP sweep in the report: Chinchilla's approaches 2 and 3 on the same runs.

A sweep whose trials set `train.horizon.flops` groups its trials by budget. For each
parameter-counting convention (non-embedding, total) this fits, with C = 6 N D in that
convention:

- approach 2: per budget, a parabola of the final eval loss in ln N; its vertex is N*(C), and
  a power law through the vertices gives N* ~ C^a and D* ~ C^(1-a) (analysis/isoflop.py);
- approach 3: L(N, D) = E + A / N^alpha + B / D^beta on the same runs, whose closed-form
  frontier gives a = beta / (alpha + beta);

and reports both exponents with their 95% intervals, whether the intervals overlap, whether
each budget's loss-vs-size curve has an interior minimum, and the compute-optimal tokens per
parameter at each budget under each approach and convention (the ratio moves with the
convention: nanochat measured ~4 vs ~17).
"""
import numpy as np
import pandas as pd

from analysis import fit as fit_lib
from analysis import isoflop, laws

BUDGET = "config.train.horizon.flops"
CONVENTIONS = {"non_embedding": "params_non_embedding", "total": "params_total"}


def applies(done: pd.DataFrame) -> bool:
  """Trials declared by FLOP budget, at least two budgets."""
  return BUDGET in done and pd.to_numeric(done[BUDGET], errors="coerce").dropna().nunique() >= 2


def _rows(done, column):
  rows = pd.DataFrame({"trial_id": done.trial_id, "budget": pd.to_numeric(done[BUDGET], errors="coerce"),
                       "params": pd.to_numeric(done.get(column), errors="coerce"),
                       "tokens": pd.to_numeric(done.tokens, errors="coerce"),
                       "loss": pd.to_numeric(done.final_eval_loss, errors="coerce")})
  ok = np.isfinite(rows[["budget", "params", "tokens", "loss"]].to_numpy(float)).all(axis=1)
  return rows[ok & (rows.params > 0) & (rows.tokens > 0)].reset_index(drop=True)


def _interval(lo, hi):
  return [float(lo), float(hi)] if np.isfinite(lo) and np.isfinite(hi) else [None, None]


def _minima(rows) -> list:
  """Per budget: the sizes tried and whether the lowest loss is at neither end (an interior minimum)."""
  out = []
  for budget, g in rows.groupby("budget", sort=True):
    g = g.sort_values("params")
    best = int(np.argmin(g.loss.to_numpy()))
    out.append({"budget": float(budget), "n_sizes": int(g.params.nunique()), "best_params": float(g.params.iloc[best]),
                "best_loss": float(g.loss.iloc[best]), "interior_minimum": bool(0 < best < len(g) - 1)})
  return out


def _convention(rows, bootstrap) -> tuple[dict, dict]:
  n, d, y = (rows[c].to_numpy(float) for c in ("params", "tokens", "loss"))
  out, drawn = {}, {"rows": rows}
  try:
    iso = isoflop.fit_isoflop(n, d, y, budget=rows.budget.to_numpy(), bootstrap=bootstrap, seed=0)
  except fit_lib.FitError as e:
    iso, out["approach2_error"] = None, str(e)
  try:
    problem = fit_lib.distinct_inputs_problem(laws.CHINCHILLA, np.stack([n, d]), ["N", "D"])
    if problem:
      raise fit_lib.FitError(problem)
    parametric = fit_lib.fit_law(laws.CHINCHILLA, np.stack([n, d]), y, bootstrap=bootstrap, seed=0)
  except fit_lib.FitError as e:
    parametric, out["approach3_error"] = None, str(e)
  drawn |= {"isoflop": iso, "parametric": parametric}
  if iso is not None:
    lo, hi = iso.ci["exponent_n"]
    profiles = iso.profiles[["flops", "n_opt", "tokens_opt", "loss_opt", "n_points", "in_range", "used"]].copy()
    profiles["tokens_per_param"] = profiles.tokens_opt / profiles.n_opt
    out["approach2"] = {"exponent_n": float(iso.exponent_n), "exponent_n_ci": _interval(lo, hi),
                        "exponent_d": float(iso.exponent_d), "exponent_d_ci": _interval(1 - hi, 1 - lo),
                        "profiles": profiles.to_dict(orient="records")}
  if parametric is not None:
    value, lo, hi = parametric.interval(lambda p: p["beta"] / (p["alpha"] + p["beta"]))
    budgets = iso.profiles.flops.to_numpy() if iso is not None else np.exp(
        pd.Series(np.log(6 * n * d)).groupby(rows.budget.to_numpy()).mean().to_numpy())
    plans = [isoflop.plan(c, parametric) for c in budgets]
    out["approach3"] = {"params": {k: float(v) for k, v in parametric.params.items()},
                        "ci": {k: _interval(*parametric.ci[k]) for k in parametric.params},
                        "exponent_n": float(value), "exponent_n_ci": _interval(lo, hi),
                        "exponent_d": float(1 - value), "exponent_d_ci": _interval(1 - hi, 1 - lo),
                        "frontier": [{"flops": p["flops"], "n_opt": p["n_params"], "tokens_opt": p["tokens"],
                                      "tokens_per_param": p["tokens_per_param"],
                                      "tokens_per_param_ci": _interval(*p["tokens_per_param_ci"]),
                                      "loss_opt": p["loss"]} for p in plans]}
  if "approach2" in out and "approach3" in out:
    (a_lo, a_hi), (b_lo, b_hi) = out["approach2"]["exponent_n_ci"], out["approach3"]["exponent_n_ci"]
    out["agree"] = None if None in (a_lo, a_hi, b_lo, b_hi) else bool(a_lo <= b_hi and b_lo <= a_hi)
  return out, drawn


def analyze(done: pd.DataFrame, bootstrap: int) -> tuple[dict, dict]:
  """(what fits.json holds under "isoflop", what the plot needs per convention)."""
  section, drawn = {"budgets_declared": sorted(float(b) for b in pd.to_numeric(done[BUDGET]).dropna().unique())}, {}
  for name, column in CONVENTIONS.items():
    if column not in done:
      continue
    rows = _rows(done, column)
    section[name], drawn[name] = _convention(rows, bootstrap)
    section[name]["minima"] = _minima(rows)
  return section, drawn


def _fmt_ci(value, ci, spec=".3f"):
  lo, hi = ci
  return f"{value:{spec}}" + (f" [{lo:{spec}}, {hi:{spec}}]" if lo is not None else "")


def markdown(section: dict) -> list:
  lines = ["## IsoFLOP: compute-optimal allocation, approaches 2 and 3 on the same runs", "",
           "Budgets declared (`train.horizon.flops`): " + ", ".join(f"{b:.3g}" for b in section["budgets_declared"])
           + ". Below, C = 6 N D with N under each counting convention; 95% bootstrap intervals.", ""]
  for name in CONVENTIONS:
    if name not in section:
      continue
    s = section[name]
    lines += [f"### N = {name.replace('_', '-')} parameters", ""]
    minima = s["minima"]
    interior = sum(m["interior_minimum"] for m in minima)
    lines.append(f"Interior minimum (best size at neither end of the sizes tried) at {interior} of {len(minima)} "
                 "budgets: " + ", ".join(f"{m['budget']:.3g}: {'yes' if m['interior_minimum'] else 'no'} "
                                         f"(best {m['best_params']:,.0f} params)" for m in minima) + ".")
    lines.append("")
    for key, label in (("approach2", "Approach 2 (IsoFLOP parabolas)"), ("approach3", "Approach 3 (parametric L(N, D))")):
      if key in s:
        a = s[key]
        lines.append(f"- {label}: N* ~ C^{_fmt_ci(a['exponent_n'], a['exponent_n_ci'])}, "
                     f"D* ~ C^{_fmt_ci(a['exponent_d'], a['exponent_d_ci'])}")
      else:
        lines.append(f"- {label}: not fitted: {s[key + '_error']}")
    if "agree" in s:
      lines.append(f"- The two approaches' N* exponents {'agree' if s['agree'] else 'do not agree'} within their "
                   "intervals." if s["agree"] is not None else "- Agreement: no intervals (no bootstrap).")
    if "approach2" in s or "approach3" in s:
      lines += ["", "| budget C (6ND) | N* (approach 2) | D*/N* (approach 2) | N* (approach 3) | D*/N* (approach 3) |",
                "|---:|---:|---:|---:|---:|"]
      two = {round(np.log(p["flops"]), 6): p for p in s.get("approach2", {}).get("profiles", [])}
      three = {round(np.log(p["flops"]), 6): p for p in s.get("approach3", {}).get("frontier", [])}
      for key in sorted(set(two) | set(three)):
        p2, p3 = two.get(key), three.get(key)
        flops = (p2 or p3)["flops"]
        cell2 = (f"{p2['n_opt']:,.0f}" + ("" if p2["in_range"] else " (outside the sizes)"), f"{p2['tokens_per_param']:.3g}") \
            if p2 and np.isfinite(p2["n_opt"]) else ("-", "-")
        cell3 = (f"{p3['n_opt']:,.0f}", _fmt_ci(p3["tokens_per_param"], p3["tokens_per_param_ci"], ".3g")) if p3 else ("-", "-")
        lines.append(f"| {flops:.3g} | {cell2[0]} | {cell2[1]} | {cell3[0]} | {cell3[1]} |")
    lines.append("")
  lines += ["`isoflop.png`: loss against size per budget with each parabola and its vertex, and N* against C "
            "from both approaches.", ""]
  return lines


def console_line(section: dict) -> str:
  """Both approaches' N* exponents (non-embedding parameters) in one line."""
  s = section.get("non_embedding", {})
  parts = [f"{label} N* ~ C^{_fmt_ci(s[key]['exponent_n'], s[key]['exponent_n_ci'])}"
           for key, label in (("approach2", "approach 2:"), ("approach3", "approach 3:")) if key in s]
  interior = sum(m["interior_minimum"] for m in s.get("minima", []))
  return (f"isoflop: {'; '.join(parts) or 'not fitted'}; interior minimum at {interior} of "
          f"{len(s.get('minima', []))} budgets")
