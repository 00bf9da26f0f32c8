"""One trial in this process: what a cluster backend's task runs (a Ray task, a SLURM array element).

The task claims the run directory first (scaling/claims.py), waiting out the claim a killed
attempt left behind (same host: at once; another host: once its lease runs out), so a trial
never trains twice at a time, and resumes from its last checkpoint (scaling/train.py). A crash
is recorded in `attempts.jsonl` and raised: the backend retries it in a fresh process. Errors
that a retry cannot cure (the step does not fit the devices, a damaged checkpoint that cannot be
moved aside: scaling/checkpoint.py) mark the trial `failed` and return.

A trial on several hosts runs `run_one` once per host, each process joined to the others by
`jax.distributed` from `env` (or from SLURM's or a TPU slice's own variables): process 0 alone
claims, reads the state and records the attempt, and the others follow its decisions
(`distributed.agree`), as the local backend's processes do.
"""
import os
import time
import traceback

from scaling import claims, rundir, storage

CLAIM_WAIT_SECONDS = claims.LEASE_SECONDS + 2 * claims.HEARTBEAT_SECONDS


def run_one(config: dict, run_dir: str, runtime: dict, env: dict | None = None) -> str:
  """Trains (or resumes) the trial whose resolved config this is; returns its state (as process 0 sees it).

  run_dir: a path every host sees, or a bucket URL (scaling/storage.py: the attempt works in a staged copy).
  env: variables to set before JAX starts (SCALING_COORDINATOR, SCALING_NUM_PROCESSES,
  SCALING_PROCESS_ID of one process of a multi-host trial; SCALING_DISTRIBUTED=off for one process).
  """
  os.environ.update(env or {})
  from scaling import distributed
  from scaling import runtime as runtime_lib
  runtime_lib.configure_jax()  # XLA's flags (read when the backend starts) and the compile cache
  distributed.initialize()  # before any JAX computation; nothing to do for a one-process trial
  if not storage.is_url(run_dir):
    return _run(config, run_dir, runtime)
  staged = storage.Staged(run_dir, push=distributed.is_writer())
  with staged as local:
    return _run(config, local, runtime, staged)


def _run(config: dict, run_dir: str, runtime: dict, staged=None) -> str:
  from scaling import checkpoint as checkpoint_lib
  from scaling import distributed
  from analysis import health  # the forecast check of train.stop_when_off_forecast
  from scaling import train as train_lib
  writer = distributed.is_writer()
  if distributed.agree(writer and os.path.islink(run_dir)):  # never followed (scaling/containment.py): not run
    if writer:
      from scaling import logs
      logs.warning(rundir.read_summary(run_dir)["reason"])
    return "damaged"
  claim = _claim(run_dir) if writer else None
  if not distributed.agree(claim is not None):
    return "running"  # a live process holds it: not this task's to run
  record = {"pid": os.getpid(), "host": os.uname().nodename, "start": time.time()}
  # Process 0 writes the record; another host's crash goes to its stderr (rundir.log_attempt).
  log = lambda outcome, **more: rundir.log_attempt(run_dir, {**record, "end": time.time(), "outcome": outcome, **more})
  try:
    state = rundir.state_of(run_dir) if writer else None
    if distributed.agree(state in rundir.FINISHED):
      return state
    summary = train_lib.train(config, run_dir, progress=False, runtime=runtime, staged=staged, health=health.assess)
  except (train_lib.DoesNotFit, checkpoint_lib.CheckpointError) as e:  # retrying cannot help
    log("failed", error=str(e))
    if isinstance(e, checkpoint_lib.CheckpointError):
      rundir.mark_failed(run_dir, str(e))  # by process 0 only
    return "failed"
  except Exception as e:
    log("crashed", error=f"{type(e).__name__}: {e}".splitlines()[0], traceback=traceback.format_exc())
    raise
  finally:
    if claim is not None:
      claim.release()
  log(summary["status"])
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
