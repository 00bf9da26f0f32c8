"""Runs the trials of a sweep one after another on this machine.

The sweep directory holds `sweep.json` (the trial list and grid axes) and one
run directory per trial named by the trial id. A trial whose summary says
`done` is skipped, so re-running a sweep only does what is missing.
"""
import os
import shutil

from scaling import metrics as metrics_lib


def sweep_dir(out: str, sweep) -> str:
  return os.path.join(out, sweep.name)


def write_manifest(directory: str, sweep) -> None:
  os.makedirs(directory, exist_ok=True)
  shutil.copyfile(sweep.path, os.path.join(directory, "sweep.yaml"))
  metrics_lib.write_json_atomic(os.path.join(directory, "sweep.json"), {
      "name": sweep.name,
      "source": os.path.abspath(sweep.path),
      "trials": [{"id": t.id, "axes": t.axes} for t in sweep.trials],
  })


def is_done(run_dir: str) -> bool:
  path = os.path.join(run_dir, "summary.json")
  return os.path.exists(path) and metrics_lib.read_json(path).get("status") == "done"


def run(sweep, out: str, progress: bool = True) -> dict:
  """Trains every trial not yet done; returns {trial id: status}."""
  from scaling import train as train_lib  # Imports JAX: keep `validate` fast.
  directory = sweep_dir(out, sweep)
  write_manifest(directory, sweep)
  statuses = {}
  todo = [t for t in sweep.trials if not is_done(os.path.join(directory, t.id))]
  for t in sweep.trials:
    if t not in todo:
      statuses[t.id] = "done"
  bar = None
  if progress:
    from tqdm import tqdm
    bar = tqdm(total=len(sweep.trials), initial=len(sweep.trials) - len(todo), desc=f"sweep {sweep.name}",
               unit="trial", position=0, dynamic_ncols=True)
  for trial in todo:
    summary = train_lib.train(trial.config(), os.path.join(directory, trial.id), progress=progress)
    statuses[trial.id] = summary["status"]
    if bar is not None:
      bar.update(1)
      bar.write(f"  {trial.id} {_describe(trial)}: {summary['status']}, eval loss "
                f"{summary['final_eval_loss']:.4f}, {summary['wall_seconds']:.1f} s")
  if bar is not None:
    bar.close()
  return statuses


def _describe(trial) -> str:
  return " ".join(f"{k}={v}" for k, v in trial.axes.items()) or "(single trial)"
