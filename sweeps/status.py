"""`python -m sweeps status SWEEP_DIR`: each trial's state, step and last loss."""
import os

from scaling import metrics as metrics_lib
from sweeps import expand, local


def rows(directory: str) -> list:
  """One row per trial of the manifest; ValueError (one line) if the manifest is unreadable."""
  path = os.path.join(directory, "sweep.json")
  try:
    manifest = metrics_lib.read_json(path)
    trials = [t for t in manifest["trials"] if isinstance(t["id"], str)]
  except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{path}: not a readable sweep manifest ({type(e).__name__}); re-running `python -m sweeps run` "
                     f"on the sweep file rewrites it") from None
  out = []
  for trial in trials:
    run_dir = os.path.join(directory, trial["id"])
    metrics = metrics_lib.read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    train_rows = [r for r in metrics if "loss" in r]
    summary = local.read_summary(run_dir) or {}
    out.append({
        "trial": trial["id"],
        "state": local.state_of(run_dir),
        "step": train_rows[-1]["step"] if train_rows else 0,
        "steps": summary.get("steps_planned"),
        "last_loss": train_rows[-1]["loss"] if train_rows else None,
        "axes": expand.describe_axes(trial.get("axes") or {}),
        "reason": summary.get("reason"),
    })
  return out


def format_table(table: list) -> str:
  lines = [f"{'trial':12}  {'state':8}  {'step':>13}  {'last loss':>9}  axes"]
  for r in table:
    step = f"{r['step']}/{r['steps']}" if r["steps"] else str(r["step"])
    loss = f"{r['last_loss']:.4f}" if isinstance(r["last_loss"], float) else str(r["last_loss"] or "-")
    lines.append(f"{r['trial']:12}  {r['state']:8}  {step:>13}  {loss:>9}  {r['axes']}"
                 + (f"  ({r['reason']})" if r["reason"] else ""))
  counts = {}
  for r in table:
    counts[r["state"]] = counts.get(r["state"], 0) + 1
  lines.append(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
  return "\n".join(lines)
