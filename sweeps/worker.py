"""One trial in this process: what a cluster backend's task runs (a Ray task, a SLURM array element).

The task claims the run directory first (sweeps/claims.py), waiting out the claim a killed
attempt left behind (same host: at once; another host: once its lease runs out), so a trial
never trains twice at a time, and resumes from its last checkpoint (scaling/train.py). A crash
is recorded in `attempts.jsonl` and raised: the backend retries it in a fresh process. Errors
that a retry cannot cure (the step does not fit the devices, a damaged checkpoint) mark the
trial `failed` and return.
"""
import os
import time
import traceback

from sweeps import claims, rundir

CLAIM_WAIT_SECONDS = claims.LEASE_SECONDS + 2 * claims.HEARTBEAT_SECONDS


def run_one(config: dict, run_dir: str, runtime: dict) -> str:
  """Trains (or resumes) the trial whose resolved config this is; returns its state."""
  from scaling import checkpoint as checkpoint_lib
  from scaling import runtime as runtime_lib
  from scaling import train as train_lib
  runtime_lib.configure_jax()
  claim = _claim(run_dir)
  if claim is None:
    return "running"  # a live process holds it: not this task's to run
  record = {"pid": os.getpid(), "host": os.uname().nodename, "start": time.time()}
  try:
    state = rundir.state_of(run_dir)
    if state in rundir.FINISHED:
      return state
    summary = train_lib.train(config, run_dir, progress=False, runtime=runtime)
  except (train_lib.DoesNotFit, checkpoint_lib.CheckpointError) as e:  # retrying cannot help
    rundir.log_attempt(run_dir, {**record, "end": time.time(), "outcome": "failed", "error": str(e)})
    if isinstance(e, checkpoint_lib.CheckpointError):
      rundir.mark_failed(run_dir, str(e))
    return "failed"
  except Exception as e:
    rundir.log_attempt(run_dir, {**record, "end": time.time(), "outcome": "crashed",
                                 "error": f"{type(e).__name__}: {e}".splitlines()[0],
                                 "traceback": traceback.format_exc()})
    raise
  finally:
    claim.release()
  rundir.log_attempt(run_dir, {**record, "end": time.time(), "outcome": summary["status"]})
  return summary["status"]


def _claim(run_dir: str):
  """The claim, once free; None if a live process keeps it for longer than a dead one's lease."""
  os.makedirs(run_dir, exist_ok=True)
  deadline = time.time() + CLAIM_WAIT_SECONDS
  while True:
    claim = claims.try_claim(run_dir)
    if claim is not None or time.time() > deadline:
      return claim
    time.sleep(1.0)
