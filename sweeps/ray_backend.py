"""The Ray backend: `python -m sweeps run FILE --backend ray [--address ADDR]`.

Each unfinished trial becomes one Ray task (sweeps/worker.py's `run_one`) that asks for what
`runtime.ray` says a trial needs: CPUs, GPUs, and custom resources such as a TPU slice's
(`{TPU: 4, "TPU-v4-8-head": 1}`). `max_calls=1` gives every attempt a fresh worker process, so an
XLA abort or a lost worker is retried by Ray (`runtime.retries` times) and resumes from the
trial's last checkpoint. Outputs go to `--out`, which every node must see (a shared file system).

The driver only submits and waits: stopped (Ctrl-C) and started again, it recomputes which
trials are finished from the run directories (sweeps/rundir.py) and submits the rest; a trial
cut off mid-run resumes from its checkpoint, and its metrics rows past that checkpoint are
dropped before they are written again, so each is logged once.
"""
import os
import signal
import threading

from sweeps import rundir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resources(ray_cfg: dict) -> dict:
  """Ray task options for one trial."""
  return {"num_cpus": ray_cfg["cpus"], "num_gpus": ray_cfg["gpus"], "resources": dict(ray_cfg["resources"]) or None}


def run(sweep, out: str, address=None, progress: bool = True, retries=None, retry_failed: bool = False,
        log=print) -> dict:
  """Trains every unfinished trial as a Ray task; returns {trial id: state}."""
  import ray

  from sweeps import worker
  runtime = sweep.runtime.model_dump()
  if retries is not None:
    runtime["retries"] = retries
  directory, states, todo = rundir.to_run(sweep, out, retry_failed)
  started_here = not ray.is_initialized()
  if started_here:  # a local cluster when no address is given; workers import this repository
    ray.init(address=address, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": REPO, "SCALING_JAX_CACHE": os.environ.get(
                 "SCALING_JAX_CACHE", os.path.join(REPO, ".jax_cache"))}})
  task = ray.remote(max_calls=1)(worker.run_one)  # a fresh worker process per attempt
  bar = None
  if progress:
    from scaling import progress as progress_lib
    bar = progress_lib.bar(len(sweep.trials), len(sweep.trials) - len(todo), f"sweep {sweep.name} (ray)",
                           unit="trial", position=0)
    log = bar.write
  pending = {}
  # Ctrl-C (or SIGTERM) is noted and acted on between waits: a signal that lands while Ray blocks in a wait
  # must not be lost.
  stop = threading.Event()
  previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    for trial in todo:
      run_dir = os.path.join(directory, trial.id)
      ref = task.options(max_retries=runtime["retries"], retry_exceptions=True,
                         **resources(runtime["ray"])).remote(trial.config(), os.path.abspath(run_dir), runtime)
      pending[ref] = trial
    while pending:
      if stop.is_set():
        for ref in pending:
          ray.cancel(ref, force=True)
        raise KeyboardInterrupt
      ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
      if not ready:
        continue
      trial = pending.pop(ready[0])
      run_dir = os.path.join(directory, trial.id)
      try:
        states[trial.id] = ray.get(ready[0])
      except ray.exceptions.RayError as e:  # every attempt crashed or its worker died
        reason = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
        rundir.mark_failed(run_dir, f"{reason} (after {runtime['retries'] + 1} attempts on Ray)")
        states[trial.id] = "failed"
      if bar is not None:
        bar.update(1)
      log(rundir.trial_line(trial, states[trial.id], run_dir))
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
    if bar is not None:
      bar.close()
    if started_here:
      ray.shutdown()  # a local cluster's tasks stop with it; their trials resume on the next launch
  return states
