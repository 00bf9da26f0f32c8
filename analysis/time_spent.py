"""Where a sweep's wall time went: goodput per trial and for the whole sweep.

From each trial's `time_seconds` (scaling/timeline.py: compile, productive steps, eval,
checkpoint saves, restore, redone work, time between attempts, ...). Every trial that ran
counts, finished or not: a diverged or failed trial's time was spent too.
"""
import numpy as np
import pandas as pd

from scaling.timeline import CATEGORIES


def table(trials: pd.DataFrame) -> pd.DataFrame:
  """One row per trial that has a time breakdown: trial_id, status, attempts, goodput, seconds per category."""
  columns = [f"time_seconds.{k}" for k in (*CATEGORIES, "total")]
  if trials.empty or not all(c in trials for c in columns):
    return pd.DataFrame(columns=["trial_id", "status", "attempts", "goodput", *CATEGORIES, "total"])
  out = trials[["trial_id", "status"]].copy()
  out["attempts"] = pd.to_numeric(trials.get("attempts"), errors="coerce")
  for c in columns:
    out[c.removeprefix("time_seconds.")] = pd.to_numeric(trials[c], errors="coerce")
  out = out[np.isfinite(out["total"].to_numpy(float)) & (out["total"] > 0)]
  out["goodput"] = out["productive"] / out["total"]
  return out.reset_index(drop=True)


def sweep_totals(spent: pd.DataFrame) -> dict | None:
  """Seconds per category summed over trials, and the sweep's goodput (productive / total)."""
  if spent.empty:
    return None
  seconds = {k: float(spent[k].sum()) for k in (*CATEGORIES, "total")}
  return {"goodput": seconds["productive"] / seconds["total"], "seconds": seconds,
          "attempts": int(spent["attempts"].fillna(1).sum()), "trials": int(len(spent))}


def markdown(spent: pd.DataFrame, totals: dict) -> list:
  shown = [k for k in CATEGORIES if spent[k].sum() > 0]
  lines = ["## Goodput: where the wall time went", "",
           f"Sweep goodput **{100 * totals['goodput']:.1f}%**: {totals['seconds']['productive']:.1f} s of productive "
           f"steps in {totals['seconds']['total']:.1f} s over {totals['trials']} trial(s) and {totals['attempts']} "
           f"attempt(s). Seconds per trial:", "",
           "| trial | status | attempts | goodput | " + " | ".join(shown) + " | total |",
           "|---|---|---:|---:|" + "---:|" * (len(shown) + 1)]
  for r in spent.itertuples():
    lines.append(f"| `{r.trial_id}` | {r.status} | {r.attempts:.0f} | {100 * r.goodput:.1f}% | "
                 + " | ".join(f"{getattr(r, k):.2f}" for k in shown) + f" | {r.total:.2f} |")
  return lines
