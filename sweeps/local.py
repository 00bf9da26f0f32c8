"""Runs the trials of a sweep one after another on this machine.

The sweep directory holds `sweep.json` (the trial list and grid axes) and one
run directory per trial named by the trial id. A trial whose summary says
`done`, `diverged`, `failed` or `flagged` is finished and skipped, so re-running a sweep
only does what is missing, resuming interrupted trials from their checkpoints.
Each trial is claimed before it runs (sweeps/claims.py): a second `sweeps run`
on the same directory works on other trials instead of duplicating one.

A trial whose files cannot be trusted (`read_summary`) is `damaged`, not finished: the
next run resumes it and rewrites them. One that cannot be run at all (its run directory
is not a directory or cannot be written; a checkpoint is damaged) is reported in one
line naming the file and what to do, and the sweep goes on with the others.

Multi-process runs (a pod slice, a GPU cluster: one process per host, all
running this same loop) need every process to train the same trials in the
same order. Process 0 alone reads the trial states, claims, writes the manifest,
the attempt log and the progress output; whether to run each trial is its
decision, broadcast to the others (`distributed.agree`).
"""
import json
import os
import re
import shutil
import time
import traceback

from scaling import distributed
from scaling import logs
from scaling import metrics as metrics_lib
from sweeps import claims, expand

FINISHED = ("done", "diverged", "failed", "flagged")
STATES = ("running",) + FINISHED  # what a summary's status may say
RERUN = "`python -m sweeps run` on the sweep file rewrites it"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # a trial id names a directory: never a path


def sweep_dir(out: str, sweep) -> str:
  return os.path.join(out, sweep.name)


class SweepDirError(ValueError):
  """The sweep directory's own files (sweep.yaml, sweep.json) cannot be written: one line, which and what to do."""


def write_manifest(directory: str, sweep) -> None:
  try:
    os.makedirs(directory, exist_ok=True)
    archived = os.path.join(directory, "sweep.yaml")
    if not (os.path.isfile(archived) and os.path.samefile(sweep.path, archived)):  # re-running the archived copy
      shutil.copyfile(sweep.path, archived)
    metrics_lib.write_json_atomic(os.path.join(directory, "sweep.json"), {
        "name": sweep.name,
        "source": os.path.abspath(sweep.path),
        "trials": [{"id": t.id, "axes": t.axes} for t in sweep.trials],
    })
  except OSError as e:
    raise SweepDirError(_os_problem(e)) from None


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
  if not (isinstance(manifest, dict) and isinstance(manifest.get("name"), str) and isinstance(trials, list)
          and all(isinstance(t, dict) and isinstance(t.get("id"), str) and _PLAIN_NAME.fullmatch(t["id"])
                  for t in trials)):
    raise ValueError(f"{path}: not a sweep manifest (damaged?); {rewrite}")
  return {"name": manifest["name"],
          "trials": [{"id": t["id"], "axes": t["axes"] if isinstance(t.get("axes"), dict) else {}} for t in trials]}


# Fields of summary.json that the platform reads, by the type they must have (None is always allowed).
_NUMBER_FIELDS = (
    "steps", "steps_planned", "examples", "tokens", "flops", "flops_6n", "params_total", "params_non_embedding",
    "params_embedding", "flops_per_token", "flops_per_token_6n", "flops_per_example", "flops_per_example_6n",
    "tokens_per_example", "eval_examples", "entropy_floor", "eval_set_floor", "final_train_loss", "final_eval_loss",
    "final_eval_error", "final_probe_error", "wall_seconds", "compile_seconds", "tokens_per_second",
    "examples_per_second")
_TEXT_FIELDS = ("reason", "objective", "objective_kind", "loss_unit", "trial_id", "params_sha256")


def read_summary(run_dir: str):
  """The trial's summary, None if it has none, or {"status": "damaged", "reason": one line} if it cannot be trusted.

  Damaged: the run directory is not a directory; summary.json is unreadable, not an object, or a field
  the platform reads has the wrong type; or the summary says finished but config.json is not the config
  the directory is named after (`config_problem`). A damaged trial is not a finished one: the next run
  resumes it from its last checkpoint and rewrites config.json and a whole summary (every field of it
  is derived from the run).
  """
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
  matches = isinstance(config, dict) and expand.config_id(config) == trial_id
  return None if matches else f"{path}: does not match the trial id {trial_id} (edited?); {RERUN}"


def _short(value) -> str:
  text = json.dumps(value)
  return text if len(text) <= 40 else text[:37] + "..."


def state_of(run_dir: str) -> str:
  """pending, running, done, diverged, failed, flagged (stopped off its forecast), or damaged (files that
  `read_summary` cannot trust: runs again)."""
  summary = read_summary(run_dir)
  if summary and summary.get("status") in FINISHED:
    return summary["status"]
  if claims.holder(run_dir):
    return "running"
  return "damaged" if summary and summary.get("status") == "damaged" else "pending"


def _log_attempt(run_dir: str, record: dict) -> None:
  if not distributed.is_writer():  # One writer per file; other hosts' crashes go to their stderr.
    if "error" in record:
      logs.warning(f"{run_dir}: attempt {record['attempt']}: {record['outcome']}: {record['error']}")
    return
  path = os.path.join(run_dir, "attempts.jsonl")
  try:
    with open(path, "a+b") as f:
      torn = _ends_without_newline(f)  # A torn last line (a crash mid-write) stays a line of its own.
      f.write((b"\n" if torn else b"") + (json.dumps(record) + "\n").encode())
  except OSError as e:  # The log is for people; losing one record must not stop the trial or the sweep.
    logs.warning(f"{path}: attempt {record['attempt']} ({record['outcome']}) not recorded: "
                 f"{metrics_lib.reason_of(e)}; move it away so the next attempts are recorded")


def _ends_without_newline(f) -> bool:
  if f.seek(0, os.SEEK_END) == 0:
    return False
  f.seek(-1, os.SEEK_END)
  return f.read(1) != b"\n"


def run_trial(trial, run_dir: str, runtime: dict, progress: bool) -> str:
  """Trains one claimed trial; retries crashes, then records `failed` with the error."""
  from scaling import checkpoint as checkpoint_lib  # Imports JAX: keep `validate` fast.
  from scaling import train as train_lib
  retries = runtime["retries"]
  for attempt in range(retries + 1):
    record = {"pid": os.getpid(), "attempt": attempt + 1, "start": time.time()}
    logs.info(f"trial {trial.id}: attempt {attempt + 1} starts")
    try:
      summary = train_lib.train(trial.config(), run_dir, progress=progress, runtime=runtime)
    except train_lib.DoesNotFit as e:  # Retrying cannot help; the summary already says why.
      _log_attempt(run_dir, {**record, "end": time.time(), "outcome": "failed", "error": str(e)})
      return "failed"
    except (train_lib.Interrupted, KeyboardInterrupt):
      _log_attempt(run_dir, {**record, "end": time.time(), "outcome": "interrupted"})
      raise
    except checkpoint_lib.CheckpointError as e:  # Retrying cannot help; the message says what to delete.
      _log_attempt(run_dir, {**record, "end": time.time(), "outcome": "failed", "error": str(e)})
      _mark_failed(run_dir, str(e))
      return "failed"
    except Exception as e:  # A crash of this trial must not stop the sweep.
      error = f"{type(e).__name__}: {e}".splitlines()[0]
      _log_attempt(run_dir, {**record, "end": time.time(), "outcome": "crashed", "error": error,
                             "traceback": traceback.format_exc()})
      if attempt == retries:
        _mark_failed(run_dir, f"{error} (after {retries + 1} attempts)")
        return "failed"
      continue
    _log_attempt(run_dir, {**record, "end": time.time(), "outcome": summary["status"]})
    logs.info(f"trial {trial.id}: {summary['status']} at step {summary['steps']}, goodput {summary['goodput']:.3f}")
    return summary["status"]


def _mark_failed(run_dir: str, reason: str) -> None:
  """The summary says `failed` and why (what the last attempt's summary knew is kept)."""
  if distributed.is_writer():
    previous = read_summary(run_dir) or {}
    metrics_lib.write_json_atomic(os.path.join(run_dir, "summary.json"),
                                  {**previous, "status": "failed", "reason": reason})


def run(sweep, out: str, progress: bool = True, retries: int | None = None, retry_failed: bool = False,
        log=print) -> dict:
  """Trains every trial not yet finished; returns {trial id: state} (as process 0 sees it).

  retry_failed: also re-run trials marked failed (e.g. after fixing what made them crash);
  they resume from their last checkpoint.
  """
  finished = tuple(s for s in FINISHED if not (retry_failed and s == "failed"))
  runtime = sweep.runtime.model_dump()
  if retries is not None:
    runtime["retries"] = retries
  directory = sweep_dir(out, sweep)
  writer = distributed.is_writer()
  if writer:
    write_manifest(directory, sweep)
  states = {t.id: state_of(os.path.join(directory, t.id)) for t in sweep.trials}
  # A flagged trial resumes and finishes once its sweep no longer says train.stop_when_off_forecast.
  finished_for = lambda t: finished if t.spec.train.stop_when_off_forecast else tuple(
      s for s in finished if s != "flagged")
  todo = [t for t in sweep.trials if states[t.id] not in finished_for(t)]
  progress = progress and writer
  bar = None
  if progress:
    from scaling import progress as progress_lib
    bar = progress_lib.bar(len(sweep.trials), len(sweep.trials) - len(todo), f"sweep {sweep.name}", unit="trial",
                           position=0)
    log = bar.write
  # Every process walks the same list; other processes follow process 0's decision for each trial.
  for trial in sweep.trials:
    run_dir = os.path.join(directory, trial.id)
    label = f"{trial.id} {_describe(trial)}"
    claim = None
    if writer and states[trial.id] not in finished_for(trial):
      say = lambda message: log(f"  {label}: {message}")
      claim, states[trial.id] = _claim(run_dir, states[trial.id], finished_for(trial), say)
    if not distributed.agree(claim is not None):
      continue
    try:
      states[trial.id] = run_trial(trial, run_dir, runtime, progress)
    except OSError as e:  # Its summary could not be written (only process 0 writes): said, and the sweep goes on.
      if not writer:
        raise
      states[trial.id] = "damaged"
      log(f"  {label}: damaged ({_os_problem(e)})")
      continue
    finally:
      if claim is not None:
        claim.release()
    if not writer:
      continue
    summary = read_summary(run_dir) or {}
    if bar is not None:
      bar.update(1)
    loss, wall = summary.get("final_eval_loss"), summary.get("wall_seconds")
    log(f"  {label}: {states[trial.id]}"
        + (f", eval loss {loss:.4f}, {wall:.1f} s" if isinstance(loss, (int, float)) and wall is not None else "")
        + (f" ({summary['reason']})" if summary.get("reason") else ""))
  if bar is not None:
    bar.close()
  return states


def _claim(run_dir: str, state: str, finished: tuple, say) -> tuple:
  """(claim, state) for a trial this process means to run; (None, why not) if it must not run it.

  Not run: its run directory is not a directory or cannot be written (damaged), another process
  holds it (running), or another process finished it since its state was read.
  """
  if os.path.lexists(run_dir) and not os.path.isdir(run_dir):
    say(f"damaged ({read_summary(run_dir)['reason']})")
    return None, "damaged"
  try:
    claim = claims.try_claim(run_dir)
  except OSError as e:
    say(f"damaged ({_os_problem(e)})")
    return None, "damaged"
  if claim is None:
    say("claimed by another process, skipped")
    return None, "running"
  if state_of(run_dir) in finished:  # Finished by another process since we looked.
    claim.release()
    return None, state_of(run_dir)
  return claim, state


def _os_problem(error: OSError) -> str:
  """`PATH: reason; what to do` for a file the run could not write (a rename names its target)."""
  where = error.filename2 or error.filename or "the run directory"
  return f"{where}: {metrics_lib.reason_of(error)}; fix it or move it away and run the sweep again"


def _describe(trial) -> str:
  return expand.describe_axes(trial.axes) or "(single trial)"
