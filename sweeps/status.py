"""`python -m sweeps status SWEEP_DIR`: each trial's state, step, last loss, goodput, and live health.

For a trial not yet finished, the health column is its forecast final loss with a 95% band
(analysis/health.py), and a flag (SPIKE, PLATEAU, DIVERGENCE) when its curve has left the band.
"""
import os

from scaling import metrics as metrics_lib
from scaling import rundir
from scaling import timeline as timeline_lib


def rows(directory: str) -> list:
  """One row per trial of the manifest; ValueError (one line) if the manifest is unreadable."""
  out = []
  for trial in rundir.read_manifest(directory)["trials"]:
    run_dir = os.path.join(directory, trial["id"])
    metrics = metrics_lib.read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    train_rows = [r for r in metrics if _loss(r) is not None]
    summary = rundir.read_summary(run_dir) or {}
    state = rundir.state_of(run_dir)
    out.append({
        "trial": trial["id"],
        "state": state,
        "step": train_rows[-1]["step"] if train_rows else 0,
        "steps": summary.get("steps_planned"),
        "last_loss": _loss(train_rows[-1]) if train_rows else None,
        "goodput": _goodput(run_dir, summary),
        "health": _health(run_dir, train_rows, summary) if state not in rundir.FINISHED else None,
        "axes": rundir.describe_axes(trial.get("axes") or {}),
        "reason": _reason(run_dir, summary, state),
    })
  return out


def _loss(row):
  """A train row's loss as a float (NaN/inf are logged as strings), or None if it has none."""
  value = row.get("loss")
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    return float(value)
  return float(value) if value in ("nan", "inf", "-inf") else None


def _reason(run_dir, summary, state):
  """Why the trial is in its state, and for a finished one what its metrics file lost (one line each, joined)."""
  lost = metrics_lib.metrics_problem(os.path.join(run_dir, "metrics.jsonl"), summary.get("steps")) if (
      state in rundir.FINISHED) else None
  return "; ".join(r for r in (summary.get("reason"), lost) if r) or None


def _goodput(run_dir, summary):
  """A finished trial's goodput from its summary; a running one's from its timeline so far."""
  if summary.get("status") in rundir.FINISHED and isinstance(summary.get("goodput"), float):
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
  result = health.assess([r["step"] for r in train_rows], [_loss(r) for r in train_rows], planned,
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
