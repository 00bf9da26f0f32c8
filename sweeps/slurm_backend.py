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

from sweeps import rundir

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


def run(sweep, out: str, cluster=None, retries=None, retry_failed: bool = False, log=print, **_) -> dict:
  """Submits the unfinished trials as a job array and waits for it; returns {trial id: state}."""
  from sweeps import worker
  runtime = sweep.runtime.model_dump()
  # The jobs unpickle sweeps.worker: they find this repository as the driver does.
  os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
  if retries is not None:
    runtime["retries"] = retries
  directory, states, todo = rundir.to_run(sweep, out, retry_failed)
  ex = executor(os.path.join(directory, "slurm"), runtime["slurm"], cluster)
  for round_ in range(runtime["retries"] + 1):
    if not todo:
      break
    run_dirs = [os.path.abspath(os.path.join(directory, t.id)) for t in todo]
    jobs = ex.map_array(worker.run_one, [t.config() for t in todo], run_dirs, [runtime] * len(todo))
    log(f"sweep {sweep.name}: {len(jobs)} trial(s) submitted as job array {jobs[0].job_id.split('_')[0]}"
        + (f" (round {round_ + 1})" if round_ else ""))
    crashed = []
    for trial, job, run_dir in zip(todo, jobs, run_dirs):
      try:
        states[trial.id] = job.result()
      except Exception as e:  # the element crashed (its attempt is in attempts.jsonl) or was lost
        states[trial.id] = "failed"
        reason = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
        if round_ == runtime["retries"]:
          rundir.mark_failed(run_dir, f"{reason} (after {runtime['retries'] + 1} SLURM jobs)")
        else:
          crashed.append(trial)
      log(rundir.trial_line(trial, states[trial.id], run_dir))
    todo = crashed
  return states
