"""The SLURM backend: `python -m sweeps run FILE --backend slurm`, through submitit.

The unfinished trials go out as one job array (`runtime.slurm`: partition, time, GPUs and
nodes per trial, how many run at once); each array element runs sweeps/worker.py's `run_one`
on one trial, into the same run directories as every backend (so `--out` must be on a file
system the compute nodes share). SLURM's own requeue and submitit's checkpointing are not
needed: a trial resumes from its orbax checkpoint whenever it runs again, and an element that
crashed is resubmitted (`runtime.retries` rounds) as a fresh job. submitit's logs go to
SWEEP_DIR/slurm/. `cluster="local"` runs the same path with submitit's local executor
(processes on this machine), which the tests use.
"""
import os
import time

from scaling import rundir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def executor(folder: str, slurm_cfg: dict, cluster=None):
  import submitit
  ex = submitit.AutoExecutor(folder=folder, cluster=cluster)
  params = {"timeout_min": slurm_cfg["time_minutes"], "nodes": slurm_cfg["nodes"],
            "gpus_per_node": slurm_cfg["gpus_per_node"], "cpus_per_task": slurm_cfg["cpus_per_task"],
            "tasks_per_node": 1, "slurm_array_parallelism": slurm_cfg["array_parallelism"]}
  if slurm_cfg["partition"]:
    params["slurm_partition"] = slurm_cfg["partition"]
  ex.update_parameters(**params)  # (slurm_* keys are SLURM's only; the local executor ignores them)
  return ex


def run(sweep, out: str, cluster=None, progress: bool = True, retries=None, retry_failed: bool = False,
        log=print, **_) -> dict:
  """Submits the unfinished trials as a job array and waits for it; returns {trial id: state}."""
  from sweeps import worker
  runtime = sweep.runtime.model_dump()
  # The jobs unpickle sweeps.worker: they find this repository as the driver does.
  os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
  if retries is not None:
    runtime["retries"] = retries
  from scaling import storage
  place = storage.Place(rundir.sweep_dir(out, sweep))
  states, todo = rundir.to_run(sweep, place, retry_failed)
  ex = executor(os.path.join(place.local, "slurm"), runtime["slurm"], cluster)
  bar = None
  if progress:
    from scaling import progress as progress_lib
    bar = progress_lib.bar(len(sweep.trials), len(sweep.trials) - len(todo), f"sweep {sweep.name} (slurm)",
                           unit="trial", position=0)
    log = bar.write
  try:
    for round_ in range(runtime["retries"] + 1):
      if not todo:
        break
      jobs = ex.map_array(worker.run_one, [t.config() for t in todo], [place.run_dir(t.id) for t in todo],
                          [runtime] * len(todo))
      array = jobs[0].job_id.split("_")[0]
      log(f"sweep {sweep.name}: {len(jobs)} trial(s) submitted as job array {array}"
          + (f" (round {round_ + 1})" if round_ else ""))
      todo = _wait(list(zip(todo, jobs)), states, round_ == runtime["retries"], runtime, place, bar, log, array)
  finally:
    if bar is not None:
      bar.close()
  return states


def _wait(pending, states, last_round, runtime, place, bar, log, array):
  """Waits for the array's elements in the order they finish; returns the trials to submit again."""
  crashed = []
  try:
    while pending:
      finished = [p for p in pending if p[1].done()]
      if not finished:
        time.sleep(1.0)
        continue
      for trial, job in finished:
        pending.remove((trial, job))
        place.pull(trial.id)
        run_dir = os.path.join(place.local, trial.id)
        try:
          states[trial.id] = job.result()  # task 0's, when a trial spans several nodes
        except Exception as e:  # the element crashed (its attempt is in attempts.jsonl) or was lost
          states[trial.id] = "failed"
          if not last_round:
            crashed.append(trial)
            continue
          rundir.mark_failed(run_dir, f"{rundir.error_line(e)} (after {runtime['retries'] + 1} SLURM jobs)")
          place.push()
        if bar is not None:
          bar.update(1)
        log(rundir.trial_line(trial, states[trial.id], run_dir))
  except KeyboardInterrupt:
    log(f"the submitted jobs go on in SLURM (`scancel {array}` stops them); "
        "their trials stay claimed, so a launch meanwhile does not train them twice")
    raise
  return crashed
