"""The run-directory rules every backend and `sweeps status` share.

A sweep directory holds `sweep.yaml` (the file it was run from), `sweep.json` (the trial list
and grid axes) and one run directory per trial, named by the trial id. A run directory holds
what scaling/train.py writes (config.json, summary.json, metrics.jsonl, checkpoints/,
timeline.json), the claim of the process running it (scaling/claims.py) and `attempts.jsonl`,
one record per attempt. This module says what those files mean: whether a trial is finished
(`FINISHED`), running, pending or damaged (`state_of`), whether its summary can be trusted
(`read_summary`), and it writes the manifest and the attempt log. How trials get run (one
after another here, on a Ray cluster, as a SLURM array) is a backend's business.
"""
import json
import os
import re

from scaling import containment
from scaling import distributed
from scaling import logs
from scaling import metrics as metrics_lib
from scaling import claims, trial_id as trial_id_lib

FINISHED = ("done", "diverged", "failed", "flagged")
STATES = ("running",) + FINISHED  # what a summary's status may say
RERUN = "`python -m sweeps run` on the sweep file rewrites it"
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # a trial id names a directory: never a path


def describe_axes(axes: dict) -> str:
  """A trial's grid coordinates as `key=value ...`, for listings and logs."""
  return " ".join(f"{k}={v}" for k, v in axes.items())


def describe(trial) -> str:
  """The trial's grid coordinates, for progress lines."""
  return describe_axes(trial.axes) or "(single trial)"


def to_run(sweep, place, retry_failed: bool = False) -> tuple:
  """A cluster backend's start: ({trial id: state}, the trials to run) after writing the manifest into the
  sweep directory `place` (a scaling/storage.Place). Finished trials are skipped (failed ones too, unless
  retry_failed); a flagged one resumes once its sweep no longer says train.stop_when_off_forecast."""
  place.pull()
  write_manifest(place.local, sweep)
  place.push()
  states = {t.id: state_of(os.path.join(place.local, t.id)) for t in sweep.trials}
  return states, [t for t in sweep.trials if states[t.id] not in finished_states(t, retry_failed)]


def finished_states(trial, retry_failed: bool = False) -> tuple:
  """The states in which `trial` is not run again."""
  return tuple(s for s in FINISHED if not (retry_failed and s == "failed")
               and not (s == "flagged" and not trial.spec.train.stop_when_off_forecast))


def trial_line(trial, state: str, run_dir: str) -> str:
  """`  <id> <axes>: <state>, eval loss L`: one progress line per finished trial."""
  loss = (read_summary(run_dir) or {}).get("final_eval_loss")
  return f"  {trial.id} {describe(trial)}: {state}" + (f", eval loss {loss:.4f}" if isinstance(loss, (int, float)) else "")


def sweep_dir(out: str, sweep) -> str:
  return os.path.join(out, sweep.name)


class SweepDirError(ValueError):
  """The sweep directory's own files (sweep.yaml, sweep.json) cannot be written: one line, which and what to do."""


def write_manifest(directory: str, sweep) -> None:
  try:
    os.makedirs(directory, exist_ok=True)
    archived = os.path.join(directory, "sweep.yaml")
    if not (os.path.isfile(archived) and not os.path.islink(archived)
            and os.path.samefile(sweep.path, archived)):  # re-running the archived copy
      with open(sweep.path, "rb") as f:
        source = f.read(metrics_lib.MAX_JSON_BYTES)
      metrics_lib.write_bytes_atomic(archived, source)  # replaces a planted link, never writes through it
    metrics_lib.write_json_atomic(os.path.join(directory, "sweep.json"), {
        "name": sweep.name,
        "source": os.path.abspath(sweep.path),
        "trials": [{"id": t.id, "axes": t.axes} for t in sweep.trials],
    })
  except OSError as e:
    raise SweepDirError(os_problem(e)) from None


def read_manifest(directory: str) -> dict:
  """sweep.json as {"name", "trials": [{"id", "axes"}]}; ValueError (one line, what to do) if it is not one.

  A trial id must be a plain name (it names a directory inside the sweep's): never a path.
  """
  path = os.path.join(directory, "sweep.json")
  rewrite = "re-running `python -m sweeps run` on the sweep file rewrites it"
  try:
    manifest = metrics_lib.read_json(path)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: not a readable sweep manifest ({metrics_lib.reason_of(e)}); {rewrite}") from None
  trials = manifest.get("trials") if isinstance(manifest, dict) else None
  if not (isinstance(manifest, dict) and isinstance(manifest.get("name"), str)
          and PLAIN_NAME.fullmatch(manifest["name"]) and isinstance(trials, list)
          and all(isinstance(t, dict) and isinstance(t.get("id"), str) and PLAIN_NAME.fullmatch(t["id"])
                  for t in trials)):
    raise ValueError(f"{path}: not a sweep manifest (damaged?); {rewrite}")
  return {"name": manifest["name"],
          "trials": [{"id": t["id"], "axes": t["axes"] if isinstance(t.get("axes"), dict) else {}} for t in trials]}


# Fields of summary.json that the platform reads, by the type they must have (None is always allowed).
_NUMBER_FIELDS = (
    "steps", "steps_planned", "examples", "tokens", "flops", "flops_6n", "params_total", "params_non_embedding",
    "params_active", "params_embedding", "flops_per_token", "flops_per_token_6n", "flops_per_example", "flops_per_example_6n",
    "tokens_per_example", "eval_examples", "entropy_floor", "eval_set_floor", "final_train_loss", "final_eval_loss",
    "final_eval_error", "final_probe_error", "wall_seconds", "compile_seconds", "tokens_per_second",
    "examples_per_second", "flops_per_second", "peak_flops_per_second", "mfu")
_TEXT_FIELDS = ("reason", "objective", "objective_kind", "loss_unit", "trial_id", "params_sha256")


def read_summary(run_dir: str):
  """The trial's summary, None if it has none, or {"status": "damaged", "reason": one line} if it cannot be trusted.

  Damaged: the run directory is not a directory; summary.json is unreadable, not an object, or a field
  the platform reads has the wrong type; or the summary says finished but config.json is not the config
  the directory is named after (`config_problem`). A damaged trial is not a finished one: the next run
  resumes it from its last checkpoint and rewrites config.json and a whole summary (every field of it
  is derived from the run).
  """
  if os.path.islink(run_dir):
    return {"status": "damaged", "reason": f"{run_dir}: a symbolic link (to {os.readlink(run_dir)}), never followed; "
                                           f"move it away and run the sweep again (the trial restarts)"}
  if os.path.lexists(run_dir) and not os.path.isdir(run_dir):
    return {"status": "damaged", "reason": f"{run_dir}: not a directory; move it away and run the sweep again "
                                           f"(the trial restarts)"}
  path = os.path.join(run_dir, "summary.json")
  if not os.path.lexists(path):
    return None
  try:
    summary = metrics_lib.read_json(path)
  except (OSError, ValueError) as e:
    return {"status": "damaged", "reason": f"{path}: unreadable ({metrics_lib.reason_of(e)}); {RERUN}"}
  problem = summary_problem(summary)
  if problem:
    return {"status": "damaged", "reason": f"{path}: {problem}; {RERUN}"}
  problem = config_problem(run_dir) if summary["status"] in FINISHED else None
  return {"status": "damaged", "reason": problem} if problem else summary


def summary_problem(summary):
  """Which field of a parsed summary has the wrong type (a few words), or None if it is usable."""
  if not isinstance(summary, dict):
    return "not a JSON object"
  if summary.get("status") not in STATES:
    return f"status: expected one of {', '.join(STATES)}, got {_short(summary.get('status'))}"
  for key in _NUMBER_FIELDS:
    value = summary.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
      return f"{key}: expected a number, got {_short(value)}"
  for key in _TEXT_FIELDS:
    if summary.get(key) is not None and not isinstance(summary[key], str):
      return f"{key}: expected text, got {_short(summary[key])}"
  return None


def config_problem(run_dir: str):
  """Why run_dir/config.json is not the config its directory is named after (one line), or None."""
  path = os.path.join(run_dir, "config.json")
  trial_id = os.path.basename(os.path.normpath(run_dir))
  if not os.path.lexists(path):
    return f"{path}: missing; {RERUN}"
  try:
    config = metrics_lib.read_json(path)
  except (OSError, ValueError) as e:
    return f"{path}: unreadable ({metrics_lib.reason_of(e)}); {RERUN}"
  matches = isinstance(config, dict) and trial_id_lib.config_id(config) == trial_id
  return None if matches else f"{path}: does not match the trial id {trial_id} (edited?); {RERUN}"


def _short(value) -> str:
  text = json.dumps(value)
  return text if len(text) <= 40 else text[:37] + "..."


def state_of(run_dir: str) -> str:
  """pending, running, done, diverged, failed, flagged (stopped off its forecast), or damaged (files that
  `read_summary` cannot trust: runs again)."""
  if os.path.islink(run_dir):  # never followed, its claim included (read_summary says why)
    return "damaged"
  summary = read_summary(run_dir)
  if summary and summary.get("status") in FINISHED:
    return summary["status"]
  if claims.holder(run_dir):
    return "running"
  return "damaged" if summary and summary.get("status") == "damaged" else "pending"


def log_attempt(run_dir: str, record: dict) -> None:
  # The local backend numbers its attempts; a cluster task's record names its process instead.
  which = f"attempt {record['attempt']}" if "attempt" in record else f"the attempt of pid {record.get('pid')}"
  if not distributed.is_writer():  # One writer per file; other hosts' crashes go to their stderr.
    if "error" in record:
      logs.warning(f"{run_dir}: {which}: {record['outcome']}: {record['error']}")
    return
  if os.path.islink(run_dir):  # never written through (read_summary says why)
    return
  path = os.path.join(run_dir, "attempts.jsonl")
  try:
    with containment.open_append(path, binary=True) as f:  # a planted link is refused, not appended through
      torn = _ends_without_newline(f)  # A torn last line (a crash mid-write) stays a line of its own.
      f.write((b"\n" if torn else b"") + (json.dumps(record) + "\n").encode())
  except OSError as e:  # The log is for people; losing one record must not stop the trial or the sweep.
    logs.warning(f"{path}: {which} ({record['outcome']}) not recorded: "
                 f"{metrics_lib.reason_of(e)}; move it away so the next attempts are recorded")


def _ends_without_newline(f) -> bool:
  if f.seek(0, os.SEEK_END) == 0:
    return False
  f.seek(-1, os.SEEK_END)
  return f.read(1) != b"\n"


def mark_failed(run_dir: str, reason: str) -> None:
  """The summary says `failed` and why (what the last attempt's summary knew is kept)."""
  if distributed.is_writer() and not os.path.islink(run_dir):  # never written through (read_summary says why)
    previous = read_summary(run_dir) or {}
    metrics_lib.write_json_atomic(os.path.join(run_dir, "summary.json"),
                                  {**previous, "status": "failed", "reason": reason})


def error_line(error: BaseException) -> str:
  """A task's error as the last line of its message (a remote traceback ends with the exception), at most 300
  characters: what a cluster backend puts in a failed trial's summary."""
  text = str(error).strip()
  return text.splitlines()[-1][:300] if text else type(error).__name__


def os_problem(error: OSError) -> str:
  """`PATH: reason; what to do` for a file the run could not write (a rename names its target)."""
  where = error.filename2 or error.filename or "the run directory"
  return f"{where}: {metrics_lib.reason_of(error)}; fix it or move it away and run the sweep again"
