"""Mixture of experts against dense, in a sweep's report (Clark et al. 2022).

A sweep whose trials set `model.options.experts` (0 or absent: dense) gets

- the routed law log L = a log N + b log E + c log N log E + d fitted to every finished trial's
  final eval loss, N its active non-embedding parameters and E its experts (1 for dense), with
  bootstrap intervals: b < 0 is what experts buy at fixed active size, c > 0 how that gain
  shrinks as N grows;
- per expert count, the effective compute multiplier over the dense ladder: the k with
  L_E(C) = L_dense(k C), C the training FLOPs (the active path, router included), from the
  recipe comparison (analysis/compare.py) of the two ladders' frontiers, at every shared budget
  and at the largest, with paired-bootstrap intervals;
- per trial, the share of routed assignments dropped at capacity and the experts' load entropy,
  averaged over its training steps.
"""
import json

import numpy as np
import pandas as pd

from analysis import compare
from analysis import fit as fit_lib
from analysis import laws, objectives
from analysis.fit_cli import UsageError, fit_json, json_number

EXPERTS = "config.model.options.experts"
TOP_K = "config.model.options.top_k"


def applies(done: pd.DataFrame) -> bool:
  return EXPERTS in done and bool((pd.to_numeric(done[EXPERTS], errors="coerce") > 0).any())


def _routing(done: pd.DataFrame) -> tuple:
  """Each trial's experts (0: dense) and top_k (1 where unset), as int Series."""
  experts = pd.to_numeric(done[EXPERTS], errors="coerce").fillna(0).astype(int)
  top_k = pd.to_numeric(done.get(TOP_K, pd.Series(1, index=done.index)), errors="coerce").fillna(1).astype(int)
  return experts, top_k


def groups(done: pd.DataFrame) -> dict:
  """The finished trials by ladder: "dense" and one "E=<experts>" (",k=<top_k>" when not 1) per expert count."""
  experts, top_k = _routing(done)
  labels = [_label(e, k) for e, k in zip(experts, top_k)]
  return {label: done[[x == label for x in labels]] for label in sorted(set(labels), key=_order)}


def _label(experts, top_k) -> str:
  return "dense" if experts <= 0 else f"E={experts}" + (f",k={top_k}" if top_k != 1 else "")


def _order(label):
  return (0, 0, "") if label == "dense" else (1, int(label.split(",")[0][2:]), label)


def table(done: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
  """One row per finished trial: E (1 for dense), k, N active non-embedding, totals, FLOPs, loss, routing stats."""
  experts, top_k = _routing(done)
  active = pd.to_numeric(done.get("params_active", done.params_total), errors="coerce")
  rows = pd.DataFrame({
      "trial_id": done.trial_id, "size": done.get("config.model.size"),
      "experts": np.where(experts > 0, experts, 1), "routed": experts > 0, "top_k": np.where(experts > 0, top_k, 1),
      "params_active_non_embedding": active - pd.to_numeric(done.params_embedding, errors="coerce"),
      "params_total": pd.to_numeric(done.params_total, errors="coerce"),
      "flops": pd.to_numeric(done.flops, errors="coerce"),
      "final_eval_loss": pd.to_numeric(done.final_eval_loss, errors="coerce")}).reset_index(drop=True)
  for stat in ("dropped", "load_entropy"):
    column = f"moe_{stat}"
    means = (steps[steps[column].notna()].groupby("trial_id")[column].mean()
             if column in steps else pd.Series(dtype=float))
    rows[stat] = rows.trial_id.map(means)
  keep = np.isfinite(rows[["params_active_non_embedding", "flops", "final_eval_loss"]].to_numpy(float)).all(axis=1)
  return rows[keep & (rows.final_eval_loss > 0)].reset_index(drop=True)


def fit_routed(rows: pd.DataFrame, bootstrap: int):
  """(FitResult, None) or (None, why not): the routed law on (N active, E) -> final eval loss."""
  inputs = np.stack([rows.params_active_non_embedding.to_numpy(float), rows.experts.to_numpy(float)])
  problem = fit_lib.distinct_inputs_problem(laws.ROUTED, inputs, ["N (active)", "E (experts)"])
  if problem:
    return None, problem
  try:
    return fit_lib.fit_law(laws.ROUTED, inputs, rows.final_eval_loss.to_numpy(float), bootstrap=bootstrap,
                           seed=0), None
  except fit_lib.FitError as e:
    return None, str(e)


def _points(rows, name, unit) -> dict:
  x, loss = compare.frontier(rows.flops.to_numpy(float), rows.final_eval_loss.to_numpy(float))
  return {"directory": name, "name": name, "x": x, "loss": loss, "loss_unit": unit}


def multipliers(rows: pd.DataFrame, unit: str, bootstrap: int) -> dict:
  """Per expert count (and top_k): the recipe comparison of its ladder (B) against the dense one (A), by FLOPs."""
  dense = rows[~rows.routed]
  out = {}
  for (experts, top_k), ladder in rows[rows.routed].groupby(["experts", "top_k"], sort=True):
    key = _label(experts, top_k)
    try:
      a, b = _points(dense, "dense", unit), _points(ladder, key, unit)
      for side in (a, b):
        if np.unique(side["x"]).size < laws.POWER.n_params:
          raise UsageError(f"{side['name']}: {np.unique(side['x']).size} distinct FLOP budgets on its frontier; "
                           f"L = E + A C^-alpha needs {laws.POWER.n_params}")
      result, _ = compare.compare(a, b, bootstrap=bootstrap)
    except UsageError as e:
      out[key] = {"experts": int(experts), "top_k": int(top_k), "error": str(e)}
      continue
    out[key] = {"experts": int(experts), "top_k": int(top_k), "budgets": result["budgets"],
                "largest": result["largest"], "exponent_difference": result["exponent_difference"],
                "exponent_difference_ci": result.get("exponent_difference_ci"), "verdict": result.get("verdict"),
                "dense_fit": result["a"], "moe_fit": result["b"]}
  return out


def analyze(done: pd.DataFrame, steps: pd.DataFrame, bootstrap: int) -> tuple[dict, dict]:
  """(fits.json's "moe", what the plot needs)."""
  rows = table(done, steps)
  unit = objectives.unit_of(done)
  fit, error = fit_routed(rows, bootstrap)
  law = {"error": error}
  if fit is not None:  # d log L / d log E = b + c log N, at the trials' geometric-mean active size
    n_mid = float(np.exp(np.mean(np.log(rows.params_active_non_embedding))))
    value, lo, hi = fit.interval(lambda p: p["b"] + p["c"] * np.log(n_mid))
    law = {**fit_json(fit), "experts_slope": {"at_params": n_mid, "value": json_number(value),
                                              "ci": [json_number(lo), json_number(hi)]}}
  summary = {"trials": json.loads(rows.to_json(orient="records")),
             "routed_law": law,
             "multipliers": multipliers(rows, unit, bootstrap) if (~rows.routed).any() else {
                 "error": "no dense trial (experts 0) to compare against"}}
  return summary, {"rows": rows, "fit": fit}


def console_lines(summary: dict) -> list:
  law = summary["routed_law"]
  lines = [f"routed law: not fitted: {law['error']}" if "error" in law else
           "routed law: " + ", ".join(f"{n}={_ci(law['params'][n], law['ci'].get(n), '.4g')}"
                                      for n in laws.ROUTED.param_names)]
  for key, m in summary["multipliers"].items() if "error" not in summary["multipliers"] else ():
    if "largest" in m:
      lines.append(f"{key} over dense: compute multiplier {_ci(m['largest']['multiplier'], m['largest'].get('multiplier_ci'))}"
                   f" at C = {m['largest']['x']:.3g}")
  return lines


def _reading(law: dict) -> str:
  """What the interval of d log L / d log E at the mid size says (b alone is the slope at N = 1)."""
  slope = law["experts_slope"]
  lo, hi = slope["ci"]
  head = (f"d log L / d log E = b + c log N at N = {slope['at_params']:,.0f} (the trials' geometric mean): "
          f"{_ci(slope['value'], slope['ci'])}")
  if lo is None or hi is None:
    return head + " (no bootstrap)."
  verdict = ("more experts lower the loss at fixed active size" if hi < 0 else
             "more experts raise the loss at fixed active size" if lo > 0 else "the data do not settle what experts buy")
  shrink = law["ci"].get("c") or (None, None)
  trend = ("; c > 0: the gain shrinks as N grows" if shrink[0] is not None and shrink[0] > 0 else
           "; c < 0: the gain grows with N" if shrink[1] is not None and shrink[1] < 0 else
           "; c spans 0: no change of the gain with N is resolved")
  return f"{head}: {verdict}{trend}. (The law has no irreducible term: near a loss floor it flattens.)"


def _ci(value, ci, spec=".3g"):
  if value is None:
    return "-"
  text = format(value, spec)
  if ci and ci[0] is not None and ci[1] is not None:
    text += f" [{ci[0]:{spec}}, {ci[1]:{spec}}]"
  return text


def markdown(summary: dict) -> list:
  lines = ["## Mixture of experts against dense (Clark et al. 2022)", "",
           "| trial | size | experts | top-k | active non-embedding params | total params | FLOPs | final eval loss | "
           "tokens dropped | load entropy |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in sorted(summary["trials"], key=lambda r: (r["experts"], r["params_active_non_embedding"])):
    dropped = "-" if r["dropped"] is None else f"{100 * r['dropped']:.1f}%"
    entropy = "-" if r["load_entropy"] is None else f"{r['load_entropy']:.3f}"
    lines.append(f"| `{r['trial_id']}` | {r['size']} | {r['experts'] if r['routed'] else 'dense'} | {r['top_k']} | "
                 f"{r['params_active_non_embedding']:,.0f} | {r['params_total']:,.0f} | {r['flops']:.3g} | "
                 f"{r['final_eval_loss']:.4f} | {dropped} | {entropy} |")
  law = summary["routed_law"]
  lines += ["", "Routed law log L = a log N + b log E + c log N log E + d (N active non-embedding parameters, "
            "E experts, 1 for dense; 95% bootstrap intervals):", ""]
  if "error" in law:
    lines.append(f"- not fitted: {law['error']}")
  else:
    lines.append("- " + ", ".join(f"{name} = {_ci(law['params'][name], law['ci'].get(name), '.4g')}"
                                  for name in laws.ROUTED.param_names) + f" ({law['n_points']} trials)")
    lines.append("- " + _reading(law))
  lines += ["", "Effective compute multiplier over dense (k with L_MoE(C) = L_dense(k C), C training FLOPs "
            "of the active path; 95% paired-bootstrap intervals; analysis/compare.py):", ""]
  multipliers = summary["multipliers"]
  if "error" in multipliers:
    lines.append(f"- not computed: {multipliers['error']}")
  else:
    for key, m in multipliers.items():
      if "error" in m:
        lines.append(f"- {key}: not computed: {m['error']}")
        continue
      largest = m["largest"]
      lines.append(f"- {key}: **{_ci(largest['multiplier'], largest.get('multiplier_ci'))}x** at C = "
                   f"{largest['x']:.3g} (the largest shared budget); at every shared budget: "
                   + ", ".join(f"{b['x']:.3g}: {_ci(b['multiplier'], b.get('multiplier_ci'))}" for b in m["budgets"])
                   + f". Exponent difference {_ci(m['exponent_difference'], m['exponent_difference_ci'])}: "
                   f"{m['verdict'] or 'no bootstrap'}.")
  return lines + [""]
