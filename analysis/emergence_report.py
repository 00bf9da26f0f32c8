"""Emergence in a sweep's report: for each task the `tasks` evaluator scored (final_<task>_<metric>).

Per task, on the finished trials (every seed a point):
- the rung table: exact match, token accuracy, log-probability and edit distance per size, mean
  and spread over seeds; and each seed's own emergence point (its ladder fitted alone);
- exact match against N (non-embedding parameters) and against C (training FLOPs): the sigmoid
  in ln x with the emergence point and its interval, sharp or smooth (analysis/emergence.py);
- the answer's log-probability and the per-token accuracy against N, described the same way, and
  the verdict against each: is a jump in exact match in the model (the continuous view jumps
  too) or in the metric (it does not);
- a power law L = E + A N^-alpha on the answer's loss (-log-probability, nats) against N;
- a BNSL (one break) on the error rate 1 - exact match against N, floored at half an instance
  (1 / 2n of n held-out instances) because it is fitted in log space;
- the two-step prediction of OLMo's model ladder (Bhagia et al. 2024): from the smaller rungs,
  the answer's loss against C (power law) and exact match against that loss (sigmoid), then the
  largest rung's exact match predicted through both and compared with what it scored.
"""
import re

import numpy as np
import pandas as pd

from analysis import emergence
from analysis import fit as fit_lib
from analysis import laws

METRIC_RE = re.compile(r"^final_(.+)_exact_match$")


def tasks(done: pd.DataFrame) -> list:
  return sorted(m.group(1) for c in done.columns if (m := METRIC_RE.match(c)) and f"final_{m.group(1)}_logprob" in done)


def applies(done: pd.DataFrame) -> bool:
  return bool(tasks(done))


def _column(done, name):
  return pd.to_numeric(done[name], errors="coerce").to_numpy(float) if name in done else np.full(len(done), np.nan)


def task_rows(done: pd.DataFrame, task: str, params_column: str) -> pd.DataFrame:
  """One row per finished trial with the task's metrics: size, seed, N, C and the four metrics."""
  rows = pd.DataFrame({"trial_id": done.trial_id.to_numpy(), "size": _column(done, "config.model.size"),
                       "seed": _column(done, "config.seed"), "params": _column(done, params_column),
                       "flops": _column(done, "flops"),
                       **{m: _column(done, f"final_{task}_{m}") for m in ("exact_match", "logprob", "token_accuracy",
                                                                          "edit_distance")}})
  keep = np.isfinite(rows[["params", "flops", "exact_match", "logprob"]].to_numpy(float)).all(1)
  return rows[keep & (rows.params > 0) & (rows.flops > 0)].sort_values(["params", "seed"]).reset_index(drop=True)


def rung_table(rows: pd.DataFrame) -> list:
  out = []
  for params, g in rows.groupby("params", sort=True):
    entry = {"params": float(params), "size": float(g["size"].iloc[0]), "seeds": int(len(g))}
    for metric in ("exact_match", "token_accuracy", "logprob", "edit_distance"):
      values = g[metric].to_numpy(float)
      entry[metric] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                       "min": float(np.min(values)), "max": float(np.max(values))}
    out.append(entry)
  return out


def _fit_or_none(law, x, y, bootstrap):
  try:
    return fit_lib.fit_law(law, x, y, bootstrap=bootstrap)
  except fit_lib.FitError:
    return None


def by_seed(rows: pd.DataFrame) -> dict:
  """Each seed's own ladder fitted alone: where the jump falls for that seed (point, or None), and between
  which rungs when the rise fits in one gap. The spread of these is the seed-to-seed spread of emergence."""
  out = {}
  for seed, g in rows.groupby("seed", sort=True):
    entry = emergence.describe(g.params.to_numpy(), g.exact_match.to_numpy(), bootstrap=0)
    out[f"{seed:g}"] = {"emergence_point": entry["emergence_point"], "between_rungs": entry.get("between_rungs"),
                        "extrapolated": entry.get("extrapolated", False)}
  return out


def two_step(rows: pd.DataFrame, bootstrap: int):
  """OLMo's two-step prediction of the largest rung's exact match from the others, or None (too few rungs)."""
  largest = rows.params.max()
  small, big = rows[rows.params < largest], rows[rows.params == largest]
  if small.params.nunique() < 4:
    return None
  try:
    ladder = fit_lib.fit_ladder(small.flops.to_numpy(), -small.logprob.to_numpy(), small.exact_match.to_numpy(),
                                bootstrap=bootstrap)
  except fit_lib.FitError as e:
    return {"error": str(e)}
  flops = float(big.flops.mean())
  predicted = float(ladder.predict(np.array([flops]))[0])
  observed = float(big.exact_match.mean())
  entry = {"flops": flops, "predicted": predicted, "observed": observed, "error": predicted - observed,
           "predicted_loss": float(ladder.loss_fit.predict(np.array([flops]))[0]),
           "observed_loss": float(-big.logprob.mean())}
  if bootstrap:
    lo, hi = ladder.predict_interval(np.array([flops]))
    entry["predicted_ci"] = [float(lo[0]), float(hi[0])]
  return entry


def analyze(done: pd.DataFrame, params_column: str, bootstrap: int) -> tuple[dict, dict]:
  """(the report's "emergence" section, what the plot draws)."""
  section, drawn = {}, {}
  for task in tasks(done):
    rows = task_rows(done, task, params_column)
    if rows.params.nunique() < 2:
      continue
    n, c = rows.params.to_numpy(), rows.flops.to_numpy()
    vs_params = emergence.analyze(n, rows.exact_match.to_numpy(), rows.logprob.to_numpy(), bootstrap=bootstrap)
    token_accuracy = emergence.describe(n, rows.token_accuracy.to_numpy(), bootstrap=bootstrap, seed=2)
    vs_flops = emergence.describe(c, rows.exact_match.to_numpy(), bootstrap=bootstrap)
    loss_fit = _fit_or_none(laws.POWER, n, -rows.logprob.to_numpy(), bootstrap)
    instances = _instances(done, task)
    error = np.maximum(1 - rows.exact_match.to_numpy(), 0.5 / instances)
    bnsl = _fit_or_none(laws.BNSL, n, error, bootstrap) if rows.params.nunique() >= 4 else None
    section[task] = {
        "n_trials": int(len(rows)), "seeds": sorted(int(s) for s in rows.seed.dropna().unique()),
        "rungs": rung_table(rows),
        "exact_match_vs_params": emergence.jsonable({k: v for k, v in vs_params.items() if k != "continuous"}),
        "logprob_vs_params": emergence.jsonable(vs_params["continuous"]),
        "verdict": vs_params["verdict"],
        "emergence_point_by_seed": by_seed(rows),
        "token_accuracy_vs_params": emergence.jsonable(token_accuracy),
        "verdict_token_accuracy": emergence.verdict(vs_params, token_accuracy),
        "exact_match_vs_flops": emergence.jsonable(vs_flops),
        "answer_loss_power_law": None if loss_fit is None else loss_fit.to_dict(),
        "error_bnsl": None if bnsl is None else bnsl.to_dict() | {"error_floor": 0.5 / instances},
        "two_step": two_step(rows, bootstrap),
    }
    drawn[task] = {"rows": rows, "exact_match": vs_params, "logprob": vs_params["continuous"], "loss_fit": loss_fit}
  return section, drawn


def _instances(done, task) -> int:
  """Held-out instances per task (the data's eval_instances), for the error floor."""
  values = _column(done, "config.data.eval_instances")
  values = values[np.isfinite(values)]
  return int(values.max()) if len(values) else 256


def _ci(values, digits=3) -> str:
  return "[" + ", ".join(f"{v:.{digits}g}" if v is not None and np.isfinite(v) else "-" for v in values) + "]"


def markdown(section: dict) -> list:
  lines = ["## Emergence", "",
           "Each task's held-out instances scored by the `tasks` evaluator; every seed is a point. Exact match is "
           "all-or-nothing over the answer's tokens; the log-probability (teacher-forced, nats) is a continuous "
           "view of the same outputs. Emergence point: the scale at half of the sigmoid's fitted rise (in ln N), "
           f"with its 95% bootstrap interval. The rise fraction is the share of the ln N range covered that the "
           f"rise from 10% to 90% takes: sharp when its interval lies under {emergence.SHARP_FRACTION:g}, smooth "
           "when above, else undetermined."]
  for task, entry in section.items():
    em, lp = entry["exact_match_vs_params"], entry["logprob_vs_params"]
    lines += ["", f"### {task}", "",
              "| size | N (non-embedding) | seeds | exact match | min-max | token accuracy | log-prob (nats) | edit distance |",
              "|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in entry["rungs"]:
      e, t, l, d = (r[m] for m in ("exact_match", "token_accuracy", "logprob", "edit_distance"))
      lines.append(f"| {r['size']:g} | {r['params']:,.0f} | {r['seeds']} | {e['mean']:.3f} ± {e['std']:.3f} | "
                   f"{e['min']:.3f}-{e['max']:.3f} | {t['mean']:.3f} | {l['mean']:.3f} ± {l['std']:.3f} | {d['mean']:.2f} |")
    lines.append("")
    for label, described in (("exact match", em), ("log-probability", lp),
                             ("token accuracy", entry["token_accuracy_vs_params"])):
      lines.append(f"- **{label} vs N**: " + _described(described, "N"))
    lines.append("- **exact match vs C**: " + _described(entry["exact_match_vs_flops"], "C"))
    seeds = entry["emergence_point_by_seed"]
    lines.append("- **emergence point of each seed alone** (exact match vs N): " + "; ".join(
        f"seed {s}: " + ("none" if e["emergence_point"] is None else f"{e['emergence_point']:.3g}"
                         + (" (between {:.3g} and {:.3g})".format(*e["between_rungs"]) if e["between_rungs"] else "")
                         + (" (below or above every rung: extrapolated)" if e["extrapolated"] else ""))
        for s, e in seeds.items()))
    lines.append(f"- **verdict** (exact match against the log-probability): {entry['verdict']}"
                 + _verdict_gloss(entry["verdict"]) + f"; against token accuracy: {entry['verdict_token_accuracy']}")
    loss = entry["answer_loss_power_law"]
    if loss:
      p, ci = loss["params"], loss["ci"]
      lines.append(f"- **answer loss (-log-prob) vs N**: E + A N^-alpha with alpha {p['alpha']:.3g} "
                   f"{_ci(ci['alpha'])}, E {p['E']:.3g} {_ci(ci['E'])} nats")
    bnsl = entry["error_bnsl"]
    if bnsl:
      p = bnsl["params"]
      lines.append(f"- **error rate (1 - exact match) vs N, BNSL**: break at N = {p['d1']:.3g} "
                   f"{_ci(bnsl['ci']['d1'])}, slope change c1 {p['c1']:.3g} {_ci(bnsl['ci']['c1'])}")
    step = entry["two_step"]
    if step and "predicted" in step:
      lines.append(f"- **two-step prediction of the largest rung** (loss vs C, then exact match vs loss, from the "
                   f"smaller rungs): predicted {step['predicted']:.3f} {_ci(step.get('predicted_ci', [None, None]))}, "
                   f"observed {step['observed']:.3f} (error {step['error']:+.3f}); answer loss predicted "
                   f"{step['predicted_loss']:.3f}, observed {step['observed_loss']:.3f} nats")
    elif step:
      lines.append(f"- **two-step prediction**: the fit failed ({step['error']})")
  return lines


def _described(entry: dict, symbol: str) -> str:
  if entry.get("emergence_point") is None:
    return entry.get("warning") or "no emergence point"
  extrapolated = f" ({entry['warning']})" if entry.get("extrapolated") else ""
  s = entry["sigmoid"]
  start, end = s["params"]["floor"], s["params"]["ceiling"]
  if s["params"]["slope"] < 0:  # the same curve, parametrised falling: its small-scale asymptote is `ceiling`
    start, end = end, start
  return (f"from {start:.3g} to {end:.3g} (the fitted asymptotes at small and large scale), emergence "
          f"point {symbol} = {entry['emergence_point']:.3g} {_ci(entry['emergence_point_ci'])}, 10-90% rise over "
          f"{s['rise_width'] / np.log(10):.2f} decades ({s['rise_fraction']:.2f} of the range): "
          + entry["shape"] + " (rise fraction interval " + _ci(s["rise_fraction_ci"], 2) + ")"
          + (" (the whole rise falls between the rungs at {} = {:.3g} and {:.3g}: the data place the jump no "
             "closer)".format(symbol, *entry["between_rungs"]) if entry.get("between_rungs") else "") + extrapolated)


def _verdict_gloss(verdict: str) -> str:
  return {"metric-induced": " (the jump is in the all-or-nothing metric, not in the model's log-probability)",
          "sharp in both": " (the log-probability of the answer jumps with exact match: the jump is in the model)",
          "smooth in both": " (no abrupt change in either view)",
          "undetermined": " (the intervals cannot tell sharp from smooth in one of the views: more rungs near the rise "
                          "would)"}.get(verdict, "")


def console_line(section: dict) -> str:
  parts = []
  for task, entry in section.items():
    em = entry["exact_match_vs_params"]
    first, last = entry["rungs"][0]["exact_match"]["mean"], entry["rungs"][-1]["exact_match"]["mean"]
    point = (f"emerges at N = {em['emergence_point']:.3g} {_ci(em['emergence_point_ci'])}"
             if em.get("emergence_point") is not None else "no emergence point")
    parts.append(f"{task}: exact match {first:.2f} -> {last:.2f}, {point}, {entry['verdict']}")
  return "emergence: " + "; ".join(parts)
