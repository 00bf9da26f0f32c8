"""Loads a sweep directory into pandas: one row per trial, and one row per logged step.

Every number in a plot or report comes from these two tables, which the report
also writes out as CSV next to the plots.
"""
import dataclasses
import json
import os

import pandas as pd

from scaling import metrics as metrics_lib


@dataclasses.dataclass
class SweepResults:
  name: str
  directory: str
  trials: pd.DataFrame  # one row per trial: status, axes, summary scalars, flattened config
  steps: pd.DataFrame  # one row per (trial, step): loss, grad_norm, lr, eval_loss, tokens, flops


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


def _read_object(path: str) -> dict:
  """A JSON object from `path`, or LoadError naming the file."""
  try:
    content = metrics_lib.read_json(path)
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise LoadError(f"{path}: unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
  if not isinstance(content, dict):
    raise LoadError(f"{path}: expected a JSON object")
  return content


def load_sweep(directory: str) -> SweepResults:
  if not os.path.isdir(directory):
    raise LoadError(f"{directory}: not a directory")
  manifest_path = os.path.join(directory, "sweep.json")
  if os.path.exists(manifest_path):
    manifest = _read_object(manifest_path)
    if not (isinstance(manifest, dict) and isinstance(manifest.get("name"), str)
            and isinstance(manifest.get("trials"), list)
            and all(isinstance(t, dict) and isinstance(t.get("id"), str) for t in manifest["trials"])):
      raise LoadError(f"{manifest_path}: not a sweep manifest (damaged?); re-running `python -m sweeps run` on the "
                      f"sweep file rewrites it")
  else:  # A directory of run dirs without a manifest (e.g. copied by hand).
    ids = sorted(d for d in os.listdir(directory) if os.path.exists(os.path.join(directory, d, "config.json")))
    if not ids:
      raise LoadError(f"{directory}: no sweep.json and no trial directories; is this a sweep output directory?")
    manifest = {"name": os.path.basename(os.path.normpath(directory)), "trials": [{"id": i, "axes": {}} for i in ids]}
  name = manifest["name"]
  axes = {t["id"]: t.get("axes") if isinstance(t.get("axes"), dict) else {} for t in manifest["trials"]}

  trial_rows, step_frames = [], []
  for trial_id in axes:
    run_dir = os.path.join(directory, trial_id)
    row = {"trial_id": trial_id, "status": "pending"}
    row.update({f"axis.{k}": v for k, v in axes[trial_id].items()})
    for name, prefix in (("config.json", "config"), ("summary.json", "")):
      path = os.path.join(run_dir, name)
      if not os.path.exists(path):
        continue
      try:
        content = _read_object(path)
      except LoadError as e:  # One damaged trial must not hide the others: it is listed, not fitted.
        row.update({"status": "damaged", "reason": str(e)})
        break
      _flatten(prefix, {k: v for k, v in content.items() if k != "data"} if not prefix else content, row)
    trial_rows.append(row)
    rows = metrics_lib.read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    if rows:
      frame = pd.DataFrame(rows)
      frame.insert(0, "trial_id", trial_id)
      if "flops_per_token" in row:
        frame["flops"] = frame["tokens"] * row["flops_per_token"]
        frame["flops_6n"] = frame["tokens"] * row["flops_per_token_6n"]
      step_frames.append(frame)

  trials = pd.DataFrame(trial_rows)
  steps = pd.concat(step_frames, ignore_index=True) if step_frames else pd.DataFrame(
      columns=["trial_id", "step", "tokens", "loss", "eval_loss"])
  for column in ("loss", "grad_norm", "eval_loss"):  # NaN is logged as the string "nan".
    if column in steps:
      steps[column] = pd.to_numeric(steps[column], errors="coerce")
  return SweepResults(name=name, directory=directory, trials=trials, steps=steps)
