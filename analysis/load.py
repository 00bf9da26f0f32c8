"""Loads a sweep directory into pandas: one row per trial, and one row per logged step.

Every number in a plot or report comes from these two tables, which the report
also writes out as CSV next to the plots.
"""
import dataclasses
import json
import os

import numpy as np
import pandas as pd

from scaling import metrics as metrics_lib


@dataclasses.dataclass
class SweepResults:
  name: str
  directory: str
  trials: pd.DataFrame  # one row per trial: status, axes, summary scalars, flattened config
  steps: pd.DataFrame  # one row per (trial, step): loss, grad_norm, lr, eval_loss, tokens, flops
  warnings: list = dataclasses.field(default_factory=list)  # one line per damaged trial or metrics file


class LoadError(ValueError):
  """The directory is not a sweep directory (says which file is missing or broken)."""


def _flatten(prefix: str, obj, out: dict) -> dict:
  if isinstance(obj, dict):
    for key, value in obj.items():
      _flatten(f"{prefix}.{key}" if prefix else key, value, out)
  elif isinstance(obj, (list, tuple)):
    out[prefix] = json.dumps(obj)
  else:
    out[prefix] = obj
  return out


def load_sweep(directory: str) -> SweepResults:
  """Both tables of a sweep directory; LoadError (one line) if it is not one.

  A trial whose files cannot be trusted (`scaling.rundir.read_summary`: unreadable or mistyped
  summary, config.json not matching the trial id, run directory not a directory) is `damaged`:
  listed with its reason, never fitted. A finished trial's metrics file that lost rows
  (`metrics_problem`) is used for what it holds. Each is one line of `warnings`.
  """
  from scaling import rundir  # The checks `sweeps run` and `sweeps status` make.
  if not os.path.isdir(directory):
    raise LoadError(f"{directory}: not a directory")
  if os.path.lexists(os.path.join(directory, "sweep.json")):
    try:
      manifest = rundir.read_manifest(directory)
    except ValueError as e:
      raise LoadError(str(e)) from None
  else:  # A directory of run dirs without a manifest (e.g. copied by hand).
    ids = sorted(d for d in os.listdir(directory) if os.path.exists(os.path.join(directory, d, "config.json")))
    if not ids:
      raise LoadError(f"{directory}: no sweep.json and no trial directories; is this a sweep output directory?")
    manifest = {"name": os.path.basename(os.path.normpath(directory)), "trials": [{"id": i, "axes": {}} for i in ids]}

  trial_rows, step_frames, warnings = [], [], []
  for trial in manifest["trials"]:
    run_dir = os.path.join(directory, trial["id"])
    row, problems = _trial_row(run_dir, trial)
    trial_rows.append(row)
    warnings += problems
    frame = _steps_frame(run_dir, row)
    if frame is not None:
      step_frames.append(frame)

  trials = pd.DataFrame(trial_rows)
  steps = pd.concat(step_frames, ignore_index=True) if step_frames else pd.DataFrame(
      columns=["trial_id", "step", "tokens", "loss", "eval_loss"])
  for column in ("loss", "grad_norm", "eval_loss"):  # NaN is logged as the string "nan".
    if column in steps:
      steps[column] = pd.to_numeric(steps[column], errors="coerce")
  return SweepResults(name=manifest["name"], directory=directory, trials=trials, steps=steps, warnings=warnings)


def finished(trials: pd.DataFrame, columns, positive=()) -> pd.DataFrame:
  """The trials that finished (`done`) with a finite number in each of `columns`, and above 0 in each of
  `positive`, those columns as floats; no rows if a column is missing (what the fits and plans use)."""
  done = trials[trials.status == "done"] if "status" in trials else trials.iloc[:0]
  if not all(c in done for c in columns):
    return done.iloc[:0]
  values = done[list(columns)].apply(pd.to_numeric, errors="coerce").astype(float)
  keep = np.isfinite(values.to_numpy()).all(axis=1)
  for column in positive:
    keep &= values[column].to_numpy() > 0
  return done[keep].assign(**{c: values[c][keep] for c in columns})


def _trial_row(run_dir: str, trial: dict) -> tuple:
  """(the trial's row: status, axes, flattened config and summary; its problems, one line each)."""
  from scaling import rundir
  row = {"trial_id": trial["id"], "status": "pending"}
  row.update({f"axis.{k}": v for k, v in trial["axes"].items()})
  summary = rundir.read_summary(run_dir)
  if summary is not None and summary["status"] == "damaged":  # Listed, not fitted: it must not hide the others.
    return {**row, "status": "damaged", "reason": summary["reason"]}, [summary["reason"]]
  try:
    config = metrics_lib.read_json(os.path.join(run_dir, "config.json"))
  except (OSError, ValueError):  # Checked for a finished trial; an unfinished one is not fitted.
    config = None
  if isinstance(config, dict):
    _flatten("config", config, row)
  if summary is None:
    return row, []
  _flatten("", {k: v for k, v in summary.items() if k != "data"}, row)
  lost = metrics_lib.metrics_problem(os.path.join(run_dir, "metrics.jsonl"), summary.get("steps")) if (
      summary["status"] in rundir.FINISHED) else None
  return row, [lost] if lost else []


def _steps_frame(run_dir: str, row: dict):
  """The trial's metrics rows as a frame with FLOPs so far, or None if it logged none."""
  rows = metrics_lib.read_metrics(os.path.join(run_dir, "metrics.jsonl"))
  if not rows:
    return None
  frame = pd.DataFrame(rows)
  frame.insert(0, "trial_id", row["trial_id"])
  if "tokens" in frame:
    frame["tokens"] = pd.to_numeric(frame["tokens"], errors="coerce")
    for column, per_token in (("flops", "flops_per_token"), ("flops_6n", "flops_per_token_6n")):
      if isinstance(row.get(per_token), (int, float)):
        frame[column] = frame["tokens"] * row[per_token]
  return frame
