"""`python -m sweeps status SWEEP_DIR`: each trial's state, step, last loss, goodput, and live health.

For a trial not yet finished, the health column is its forecast final loss with a 95% band
(analysis/health.py), and a flag (SPIKE, PLATEAU, DIVERGENCE) when its curve has left the band.
"""
import os

from scaling import metrics as metrics_lib
from scaling import timeline as timeline_lib
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
    state = local.state_of(run_dir)
    out.append({
        "trial": trial["id"],
        "state": state,
        "step": train_rows[-1]["step"] if train_rows else 0,
        "steps": summary.get("steps_planned"),
        "last_loss": train_rows[-1]["loss"] if train_rows else None,
        "goodput": _goodput(run_dir, summary),
        "health": _health(run_dir, train_rows, summary) if state not in local.FINISHED else None,
        "axes": expand.describe_axes(trial.get("axes") or {}),
        "reason": summary.get("reason"),
    })
  return out


def _goodput(run_dir, summary):
  """A finished trial's goodput from its summary; a running one's from its timeline so far."""
  if summary.get("status") in local.FINISHED and isinstance(summary.get("goodput"), float):
    return summary["goodput"]
  attempts, _ = timeline_lib.read(os.path.join(run_dir, "timeline.json"), keep_damaged=True)
  return timeline_lib.breakdown(attempts)["goodput"]


def _health(run_dir, train_rows, summary):
  """The forecast and flag of an unfinished trial's curve, or None before there is enough of it."""
  planned = summary.get("steps_planned")
  if not isinstance(planned, int) or not train_rows:
    return None
  try:
    warmup = metrics_lib.read_json(os.path.join(run_dir, "config.json"))["optimizer"]["warmup_steps"]
  except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
    warmup = 0
  from analysis import health
  result = health.assess([r["step"] for r in train_rows], [r["loss"] for r in train_rows], planned,
                         warmup if isinstance(warmup, int) else 0)
  return result.describe()


def format_table(table: list) -> str:
  lines = [f"{'trial':12}  {'state':8}  {'step':>13}  {'last loss':>9}  {'goodput':>7}  {'forecast [95%]':>22}  axes"]
  for r in table:
    step = f"{r['step']}/{r['steps']}" if r["steps"] else str(r["step"])
    loss = f"{r['last_loss']:.4f}" if isinstance(r["last_loss"], float) else str(r["last_loss"] or "-")
    goodput = f"{100 * r['goodput']:.1f}%" if isinstance(r["goodput"], float) else "-"
    lines.append(f"{r['trial']:12}  {r['state']:8}  {step:>13}  {loss:>9}  {goodput:>7}  {r['health'] or '-':>22}  "
                 f"{r['axes']}" + (f"  ({r['reason']})" if r["reason"] else ""))
  counts = {}
  for r in table:
    counts[r["state"]] = counts.get(r["state"], 0) + 1
  lines.append(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
  return "\n".join(lines)
