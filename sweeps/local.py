"""The local backend: runs the trials of a sweep one after another on this machine.

The run-directory rules are scaling/rundir.py's. A trial whose summary says
`done`, `diverged`, `failed` or `flagged` is finished and skipped, so re-running a sweep
only does what is missing, resuming interrupted trials from their checkpoints.
Each trial is claimed before it runs (scaling/claims.py): a second `sweeps run`
on the same directory works on other trials instead of duplicating one.

A trial whose files cannot be trusted (`read_summary`) is `damaged`, not finished: the
next run resumes it and rewrites them. A damaged checkpoint costs time, never the trial:
it is moved aside and the trial resumes from the one before, or from step 0
(scaling/checkpoint.py). One that cannot be run at all (its run directory is not a
directory or cannot be written; a damaged checkpoint cannot be moved aside) is reported
in one line naming the file and what to do, and the sweep goes on with the others;
`python -m sweeps run` then exits 1 if any trial ended `failed`.

Multi-process runs (a pod slice, a GPU cluster: one process per host, all
running this same loop) need every process to train the same trials in the
same order. Process 0 alone reads the trial states, claims, writes the manifest,
the attempt log and the progress output; whether to run each trial is its
decision, broadcast to the others (`distributed.agree`).
"""
import os
import time
import traceback

from scaling import distributed
from scaling import logs
from scaling import claims, rundir
from scaling.rundir import log_attempt, mark_failed, os_problem, read_summary, state_of, sweep_dir, write_manifest

def run_pack(trials: list, run_dirs: list, runtime: dict, progress: bool) -> dict:
  """Trains claimed trials as one packed program (one trial: the ordinary case); retries crashes, then
  records `failed` with the error. Returns {trial id: state}."""
  from scaling import checkpoint as checkpoint_lib  # Imports JAX: keep `validate` fast.
  from analysis import health  # the forecast check of train.stop_when_off_forecast
  from scaling import train as train_lib
  retries = runtime["retries"]
  named = f"trial {trials[0].id}" if len(trials) == 1 else f"trials {', '.join(t.id for t in trials)} (packed)"

  def log_all(record, **fields):
    for run_dir in run_dirs:
      log_attempt(run_dir, {**record, "end": time.time(), **fields})

  def fail_all(reason):
    for run_dir in run_dirs:
      mark_failed(run_dir, reason)
    return {t.id: "failed" for t in trials}

  for attempt in range(retries + 1):
    record = {"pid": os.getpid(), "attempt": attempt + 1, "start": time.time()}
    logs.info(f"{named}: attempt {attempt + 1} starts")
    try:
      summaries = train_lib.train_pack([t.config() for t in trials], run_dirs, progress=progress, runtime=runtime,
                                       health=health.assess)
    except train_lib.DoesNotFit as e:  # Retrying cannot help; the summaries already say why.
      log_all(record, outcome="failed", error=str(e))
      return {t.id: "failed" for t in trials}
    except (train_lib.Interrupted, KeyboardInterrupt):
      log_all(record, outcome="interrupted")
      raise
    except checkpoint_lib.CheckpointError as e:  # Retrying cannot help; the message says what to move away.
      log_all(record, outcome="failed", error=str(e))
      return fail_all(str(e))
    except Exception as e:  # A crash of these trials must not stop the sweep.
      error = f"{type(e).__name__}: {e}".splitlines()[0]
      log_all(record, outcome="crashed", error=error, traceback=traceback.format_exc())
      if attempt == retries:
        return fail_all(f"{error} (after {retries + 1} attempts)")
      continue
    for trial, run_dir, summary in zip(trials, run_dirs, summaries):
      log_attempt(run_dir, {**record, "end": time.time(), "outcome": summary["status"]})
      logs.info(f"trial {trial.id}: {summary['status']} at step {summary['steps']}, goodput {summary['goodput']:.3f}")
    return {t.id: s["status"] for t, s in zip(trials, summaries)}


def run(sweep, out: str, progress: bool = True, retries: int | None = None, retry_failed: bool = False,
        log=print) -> dict:
  """Trains every trial not yet finished; returns {trial id: state} (as process 0 sees it).

  retry_failed: also re-run trials marked failed (e.g. after fixing what made them crash);
  they resume from their last checkpoint. With `runtime.pack`, trials that differ only in
  hyperparameters train together as one program (scaling/pack.py).
  """
  runtime = sweep.runtime.model_dump()
  if retries is not None:
    runtime["retries"] = retries
  directory = sweep_dir(out, sweep)
  writer = distributed.is_writer()
  if writer:
    write_manifest(directory, sweep)
  states = {t.id: state_of(os.path.join(directory, t.id)) for t in sweep.trials}
  finished_for = lambda t: rundir.finished_states(t, retry_failed)
  todo = [t for t in sweep.trials if states[t.id] not in finished_for(t)]
  progress = progress and writer
  bar = None
  if progress:
    from scaling import progress as progress_lib
    bar = progress_lib.bar(len(sweep.trials), len(sweep.trials) - len(todo), f"sweep {sweep.name}", unit="trial",
                           position=0)
    log = bar.write
  # Every process walks the same list; other processes follow process 0's decision for each trial.
  for group in _packs(sweep.trials, todo, directory, runtime):
    claimed = []
    for trial in group:
      run_dir = os.path.join(directory, trial.id)
      claim = None
      if writer and states[trial.id] not in finished_for(trial):
        say = lambda message, label=f"{trial.id} {rundir.describe(trial)}": log(f"  {label}: {message}")
        claim, states[trial.id] = _claim(run_dir, states[trial.id], finished_for(trial), say)
      if distributed.agree(claim is not None):
        claimed.append((trial, run_dir, claim))
    if not claimed:
      continue
    trials, run_dirs = [t for t, _, _ in claimed], [d for _, d, _ in claimed]
    try:
      states.update(run_pack(trials, run_dirs, runtime, progress))
    except OSError as e:  # A summary could not be written (only process 0 writes): said, and the sweep goes on.
      if not writer:
        raise
      for trial in trials:
        states[trial.id] = "damaged"
        log(f"  {trial.id} {rundir.describe(trial)}: damaged ({os_problem(e)})")
      continue
    finally:
      for _, _, claim in claimed:
        if claim is not None:
          claim.release()
    if not writer:
      continue
    for trial, run_dir in zip(trials, run_dirs):
      summary = read_summary(run_dir) or {}
      if bar is not None:
        bar.update(1)
      loss, wall = summary.get("final_eval_loss"), summary.get("wall_seconds")
      log(f"  {trial.id} {rundir.describe(trial)}: {states[trial.id]}"
          + (f", eval loss {loss:.4f}, {wall:.1f} s" if isinstance(loss, (int, float)) and wall is not None else "")
          + (f" ({summary['reason']})" if summary.get("reason") else ""))
  if bar is not None:
    bar.close()
  return states


def _packs(trials: list, todo: list, directory: str, runtime: dict) -> list:
  """Every trial alone, in order (each process walks the same list), or with `runtime.pack` on one process
  the trials to do, in packs of trials that differ only in hyperparameters and resume from the same step."""
  import jax
  if not runtime["pack"] or jax.process_count() > 1:
    return [[t] for t in trials]
  from scaling import checkpoint as checkpoint_lib
  from scaling import pack as pack_lib

  def saved_steps(trial):
    try:
      return checkpoint_lib.saved_steps(os.path.join(directory, trial.id))
    except (checkpoint_lib.CheckpointError, OSError):  # Alone: its own run says what is wrong.
      return frozenset()

  def previous_pack(trial):
    partners = (read_summary(os.path.join(directory, trial.id)) or {}).get("packed_with")
    return frozenset([trial.id, *partners]) if isinstance(partners, list) else None

  return pack_lib.groups(todo, saved_steps, runtime["pack_max_trials"], previous_pack)


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
    say(f"damaged ({os_problem(e)})")
    return None, "damaged"
  if claim is None:
    say("claimed by another process, skipped")
    return None, "running"
  if state_of(run_dir) in finished:  # Finished by another process since we looked.
    claim.release()
    return None, state_of(run_dir)
  return claim, state

