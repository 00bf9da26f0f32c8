"""Runs the trials of a sweep one after another on this machine.

The sweep directory holds `sweep.json` (the trial list and grid axes) and one
run directory per trial named by the trial id. A trial whose summary says
`done`, `diverged`, `failed` or `flagged` is finished and skipped, so re-running a sweep
only does what is missing, resuming interrupted trials from their checkpoints.
Each trial is claimed before it runs (sweeps/claims.py): a second `sweeps run`
on the same directory works on other trials instead of duplicating one.

Multi-process runs (a pod slice, a GPU cluster: one process per host, all
running this same loop) need every process to train the same trials in the
same order. Process 0 alone reads the trial states, claims, writes the manifest,
the attempt log and the progress output; whether to run each trial is its
decision, broadcast to the others (`distributed.agree`).
"""
import json
import os
import shutil
import sys
import time
import traceback

from scaling import distributed
from scaling import metrics as metrics_lib
from sweeps import claims, expand

FINISHED = ("done", "diverged", "failed", "flagged")


def sweep_dir(out: str, sweep) -> str:
  return os.path.join(out, sweep.name)


def write_manifest(directory: str, sweep) -> None:
  os.makedirs(directory, exist_ok=True)
  archived = os.path.join(directory, "sweep.yaml")
  if not (os.path.exists(archived) and os.path.samefile(sweep.path, archived)):  # re-running the archived copy
    shutil.copyfile(sweep.path, archived)
  metrics_lib.write_json_atomic(os.path.join(directory, "sweep.json"), {
      "name": sweep.name,
      "source": os.path.abspath(sweep.path),
      "trials": [{"id": t.id, "axes": t.axes} for t in sweep.trials],
  })


def read_summary(run_dir: str):
  """The trial's summary, None if it has none, or {"status": "damaged", ...} if it cannot be read.

  A damaged summary is not a finished one: the trial runs again, resumes from its last
  checkpoint and writes a whole summary (every field of it is derived from the run).
  """
  path = os.path.join(run_dir, "summary.json")
  if not os.path.exists(path):
    return None
  try:
    summary = metrics_lib.read_json(path)
  except (OSError, UnicodeDecodeError, ValueError) as e:
    return {"status": "damaged", "reason": f"{path}: unreadable ({type(e).__name__}); the next run rewrites it"}
  if not isinstance(summary, dict):
    return {"status": "damaged", "reason": f"{path}: not a JSON object; the next run rewrites it"}
  return summary


def state_of(run_dir: str) -> str:
  """pending, running, done, diverged, failed, flagged (stopped off its forecast), or damaged (an unreadable
  summary: runs again)."""
  summary = read_summary(run_dir)
  if summary and summary.get("status") in FINISHED:
    return summary["status"]
  if claims.holder(run_dir):
    return "running"
  return "damaged" if summary and summary.get("status") == "damaged" else "pending"


def _log_attempt(run_dir: str, record: dict) -> None:
  if not distributed.is_writer():  # One writer per file; other hosts' crashes go to their stderr.
    if "error" in record:
      print(f"{run_dir}: attempt {record['attempt']}: {record['outcome']}: {record['error']}", file=sys.stderr)
    return
  with open(os.path.join(run_dir, "attempts.jsonl"), "a") as f:
    f.write(json.dumps(record) + "\n")


def run_trial(trial, run_dir: str, runtime: dict, progress: bool) -> str:
  """Trains one claimed trial; retries crashes, then records `failed` with the error."""
  from scaling import train as train_lib  # Imports JAX: keep `validate` fast.
  retries = runtime["retries"]
  for attempt in range(retries + 1):
    record = {"pid": os.getpid(), "attempt": attempt + 1, "start": time.time()}
    try:
      summary = train_lib.train(trial.config(), run_dir, progress=progress, runtime=runtime)
    except train_lib.DoesNotFit as e:  # Retrying cannot help; the summary already says why.
      _log_attempt(run_dir, {**record, "end": time.time(), "outcome": "failed", "error": str(e)})
      return "failed"
    except (train_lib.Interrupted, KeyboardInterrupt):
      _log_attempt(run_dir, {**record, "end": time.time(), "outcome": "interrupted"})
      raise
    except Exception as e:  # A crash of this trial must not stop the sweep.
      error = f"{type(e).__name__}: {e}".splitlines()[0]
      _log_attempt(run_dir, {**record, "end": time.time(), "outcome": "crashed", "error": error,
                             "traceback": traceback.format_exc()})
      if attempt == retries:
        if distributed.is_writer():
          previous = read_summary(run_dir) or {}
          metrics_lib.write_json_atomic(os.path.join(run_dir, "summary.json"), {
              **previous, "status": "failed", "reason": f"{error} (after {retries + 1} attempts)"})
        return "failed"
      continue
    _log_attempt(run_dir, {**record, "end": time.time(), "outcome": summary["status"]})
    return summary["status"]


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
    claim = None
    if writer and states[trial.id] not in finished_for(trial):
      claim = claims.try_claim(run_dir)
      if claim is None:
        states[trial.id] = "running"
        log(f"  {trial.id} {_describe(trial)}: claimed by another process, skipped")
      elif state_of(run_dir) in finished_for(trial):  # Finished by another process since we looked.
        states[trial.id] = state_of(run_dir)
        claim.release()
        claim = None
    if not distributed.agree(claim is not None):
      continue
    try:
      states[trial.id] = run_trial(trial, run_dir, runtime, progress)
    finally:
      if claim is not None:
        claim.release()
    if not writer:
      continue
    summary = read_summary(run_dir) or {}
    if bar is not None:
      bar.update(1)
    loss = summary.get("final_eval_loss")
    loss = loss if isinstance(loss, (int, float)) else None
    log(f"  {trial.id} {_describe(trial)}: {states[trial.id]}"
        + (f", eval loss {loss:.4f}, {summary['wall_seconds']:.1f} s" if loss is not None else "")
        + (f" ({summary['reason']})" if summary.get("reason") else ""))
  if bar is not None:
    bar.close()
  return states


def _describe(trial) -> str:
  return expand.describe_axes(trial.axes) or "(single trial)"
