"""The report of a follow-up sweep made by `python -m sweeps extend`: the prediction against the outcome.

`prediction.json` (written before any of the sweep's trials trained) holds, for a FLOP budget
beyond the fitted ones, the predicted-optimal size and two off-optimal ones with the law's loss
for each; this sets each finished trial's final eval loss against its prediction and says
whether the predicted size was the best of the three.
"""
import os

import numpy as np
import pandas as pd

from scaling import metrics as metrics_lib

FILE = "prediction.json"


def load(directory: str):
  """The recorded prediction, or None for a sweep that has none."""
  path = os.path.join(directory, FILE)
  return metrics_lib.read_json(path) if os.path.isfile(path) else None


def check(prediction: dict, done: pd.DataFrame) -> dict:
  """Per planned trial: observed loss, inside its predicted interval; and whether the predicted optimum won."""
  size_column = "config.model.size"
  observed = {}
  if size_column in done and "final_eval_loss" in done:
    for size, loss in zip(pd.to_numeric(done[size_column], errors="coerce"),
                          pd.to_numeric(done.final_eval_loss, errors="coerce")):
      if np.isfinite(size) and np.isfinite(loss):
        observed[int(size)] = float(loss)
  rows = []
  for t in prediction["trials"]:
    lo, hi = t["predicted_loss_ci"]
    loss = observed.get(t["size"])
    rows.append({**t, "observed_loss": loss,
                 "error_pct": None if loss is None else 100 * (t["predicted_loss"] - loss) / loss,
                 "inside_interval": None if loss is None or lo is None or not np.isfinite(lo) else bool(lo <= loss <= hi)})
  seen = [r for r in rows if r["observed_loss"] is not None]
  best = min(seen, key=lambda r: r["observed_loss"]) if len(seen) == len(rows) else None
  return {"budget": prediction["budget"], "budget_ratio": prediction["budget_ratio"],
          "from_sweep": prediction["from_sweep"], "frontier": prediction["frontier"], "trials": rows,
          "predicted_optimum_won": None if best is None else bool(best["predicted_optimal"])}


def markdown(section: dict) -> list:
  f = section["frontier"]
  lines = ["## Predict, then verify (`sweeps extend`)", "",
           f"Predicted from `{section['from_sweep']}` before these trials trained, at C = {section['budget']:.3g} "
           f"FLOPs (6ND; {section['budget_ratio']:.1f}x its largest fitted budget): N* = {f['n_params']:,.0f} "
           f"[{f['n_params_ci'][0]:,.0f}, {f['n_params_ci'][1]:,.0f}], frontier loss {f['loss']:.4f} "
           f"[{f['loss_ci'][0]:.4f}, {f['loss_ci'][1]:.4f}].", "",
           "| size | non-embedding params | tokens | predicted loss [95%] | observed | error | inside |",
           "|---:|---:|---:|---:|---:|---:|---|"]
  for r in section["trials"]:
    lo, hi = r["predicted_loss_ci"]
    mark = " (predicted optimum)" if r["predicted_optimal"] else ""
    observed = "-" if r["observed_loss"] is None else f"{r['observed_loss']:.4f}"
    error = "-" if r["error_pct"] is None else f"{r['error_pct']:+.2f}%"
    inside = {None: "-", True: "yes", False: "no"}[r["inside_interval"]]
    lines.append(f"| {r['size']}{mark} | {r['params_non_embedding']:,} | {r['tokens']:,.0f} | {r['predicted_loss']:.4f} "
                 f"[{lo:.4f}, {hi:.4f}] | {observed} | {error} | {inside} |")
  won = section["predicted_optimum_won"]
  lines += ["", "The predicted-optimal size " + {None: "cannot be judged yet (not all three trials finished).",
                                                  True: "**was** the best of the three.",
                                                  False: "was **not** the best of the three."}[won], ""]
  return lines


def console_lines(section: dict) -> list:
  """Predicted against observed per trial, and the verdict, for `analysis plot`'s output."""
  lines = []
  for r in section["trials"]:
    lo, hi = r["predicted_loss_ci"]
    observed = "-" if r["observed_loss"] is None else f"{r['observed_loss']:.4f}"
    lines.append(f"predicted {r['predicted_loss']:.4f} [{lo:.4f}, {hi:.4f}] vs observed {observed} at size {r['size']}"
                 + (" (predicted optimum)" if r["predicted_optimal"] else ""))
  return lines + [f"predicted optimum won: {section['predicted_optimum_won']}"]
