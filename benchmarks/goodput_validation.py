"""Checks the failure model of `python -m analysis goodput` against real killed-and-relaunched trials.

  python -m benchmarks.goodput_validation [--mtbf-seconds 8] [--repeats 3] [--work-steps 3000]

A local trial (`python -m sweeps run`, a new process each launch) is SIGKILLed at random times,
the gaps drawn from an exponential distribution of mean --mtbf-seconds, and relaunched at once
each time, until it finishes. First one launch without kills gives the seconds per step and the
blocking part of a checkpoint save (S). The killed run itself gives the cost of a restart (R:
from a kill to the relaunched process's first step) and the one-time costs that no failure
causes (its last launch's start, compile, final evaluation and exit: measured there because the
unkilled run, the first, also pays for a cold compile cache). The model then predicts the
goodput at the checkpoint interval used, analytically and by Monte-Carlo over jobs of the same
work; the measured goodput is the trial's productive step time over the wall time from the
first launch to the end of the process that wrote the trial's final record (a kill after that
record finds the job done: the relaunch it causes is the harness's, not the job's). Each
interval is run --repeats times (different kill times).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from analysis import goodput as model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SWEEP = """\
name: killed
model: {{family: gpt, size: 2, options: {{aspect_ratio: 32, head_dim: 16}}}}
data: {{kind: markov, vocab_size: 64, order: 2, mix: [0.2, 0.3, 0.5]}}
train: {{seq_len: 64, batch_size: 16, horizon: {{tokens: {tokens}}}, eval_every: 1000000, eval_batches: 1}}
runtime: {{tensorboard: false, flush_every: 5, checkpoint_every: {every}, checkpoint_minutes: 1000}}
"""


def write_sweep(directory: str, work_steps: int, checkpoint_every: int) -> str:
  path = os.path.join(directory, f"killed_every_{checkpoint_every}.yaml")
  with open(path, "w") as f:
    f.write(SWEEP.format(tokens=work_steps * 16 * 64, every=checkpoint_every))
  return path


def run_killed(sweep_path: str, out: str, mtbf_seconds: float | None, seed: int = 0, max_launches: int = 500) -> dict:
  """Launches the sweep until it exits by itself, SIGKILLing it after exponential gaps (none if mtbf is None).

  Returns the wall time from the first launch to the exit, the kill and launch times, and the summary.
  """
  rng = np.random.default_rng(seed)
  command = [sys.executable, "-m", "sweeps", "run", sweep_path, "--out", out, "--no-progress", "--no-analysis"]
  first, kills, launches = time.time(), [], []
  for _ in range(max_launches):
    launches.append(time.time())
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    gap = rng.exponential(mtbf_seconds) if mtbf_seconds else None
    try:
      _, stderr = process.communicate(timeout=gap)
    except subprocess.TimeoutExpired:
      os.killpg(process.pid, signal.SIGKILL)
      kills.append(time.time())
      process.communicate()
      continue
    if process.returncode:
      raise RuntimeError(f"trial exited {process.returncode}: {stderr.decode()[-2000:]}")
    wall = time.time() - first
    break
  else:
    raise RuntimeError(f"not finished after {max_launches} launches")
  sweep_dir = os.path.join(out, "killed")
  trial = next(d for d in os.listdir(sweep_dir) if os.path.isfile(os.path.join(sweep_dir, d, "summary.json")))
  with open(os.path.join(sweep_dir, trial, "summary.json")) as f:
    summary = json.load(f)
  with open(os.path.join(sweep_dir, trial, "timeline.json")) as f:
    attempts = json.load(f)["attempts"]
  return {"wall": wall, "end": first + wall, "kills": kills, "launches": launches, "summary": summary,
          "attempts": attempts}


def step_costs(run: dict) -> dict:
  """Seconds per step and per blocking checkpoint save, as this run's surviving work saw them."""
  summary, seconds = run["summary"], run["summary"]["time_seconds"]
  return {"step_seconds": seconds["productive"] / summary["steps"],
          "save_seconds": seconds["checkpoint"] / max(summary["checkpoint_saves"], 1)}


def calibrate(run: dict) -> dict:
  """From an unkilled run: seconds per step and per blocking save, and a restart's cost without kills."""
  seconds = run["summary"]["time_seconds"]
  return {**step_costs(run), "restart_seconds": seconds["startup"] + seconds["compile"]}


def job_end(run: dict) -> float:
  """When the process that wrote the trial's final record ended: its exit, or a kill that came after the record."""
  last = run["attempts"][-1]["updated"]
  return min([k for k in run["kills"] if k >= last] + [run["end"]])


def one_time_seconds(run: dict) -> float:
  """What the last launch spent besides steps, saves and the restore: start, compile, final evaluation, exit."""
  last = run["attempts"][-1]
  launch = max(t for t in run["launches"] if t <= last["start"] + 0.5)  # /proc start times round down
  s = last["seconds"]
  return job_end(run) - launch - s["steps"] - s["checkpoint"] - s["restore"]


def costs(run: dict, clean: dict) -> dict:
  """What the model needs, as the killed run met it (same load, same compile cache); R from `clean` if no
  relaunch of `run` got as far as a step."""
  return {**step_costs(run), "once_seconds": one_time_seconds(run),
          "restart_seconds": restart_seconds(run, calibrate(clean)["restart_seconds"])}


def measured_goodput(run: dict) -> float:
  return run["summary"]["time_seconds"]["productive"] / (job_end(run) - run["launches"][0])


def restart_seconds(run: dict, fallback: float) -> float:
  """Mean seconds from a kill to the relaunched process's first step (startup, restore, compile); `fallback`
  when no relaunch of this run got that far."""
  costs = []
  for attempt in run["attempts"][1:]:
    kill = max((k for k in run["kills"] if k <= attempt["start"] + 1.0), default=None)
    if kill is None or attempt["start_step"] is None:  # Killed again before it restored: not a whole restart.
      continue
    s = attempt["seconds"]
    costs.append(max(attempt["start"] - kill, 0.0) + s["startup"] + s["restore"] + s["compile"])
  return float(np.mean(costs)) if costs else fallback


def predict(cal: dict, mtbf: float, checkpoint_every: int, work_steps: int, samples: int = 4000):
  """The model's goodput for a run with costs `cal`: analytic, and the Monte-Carlo mean and 95% interval of one job."""
  tau, work, restart = checkpoint_every * cal["step_seconds"], work_steps * cal["step_seconds"], cal["restart_seconds"]
  with_failures = work / model.goodput(tau, mtbf, cal["save_seconds"], restart)
  mc = model.simulate(tau, mtbf, cal["save_seconds"], restart, work, samples, seed=1)
  walls = work / np.asarray(mc["goodputs"]) + cal["once_seconds"]
  per_job = work / walls
  return {"analytic": work / (with_failures + cal["once_seconds"]), "mc_mean": float(work * len(walls) / walls.sum()),
          "mc_interval": [float(np.percentile(per_job, 2.5)), float(np.percentile(per_job, 97.5))],
          "mc_range": [float(per_job.min()), float(per_job.max())],
          "tau_seconds": tau, "failures_mean": mc["failures_mean"]}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.goodput_validation")
  parser.add_argument("--mtbf-seconds", type=float, default=8.0)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--work-steps", type=int, default=3000)
  parser.add_argument("--intervals", default="optimum,4x", help="checkpoint intervals: optimum and/or multiples")
  args = parser.parse_args(argv)
  with tempfile.TemporaryDirectory() as tmp:
    clean = run_killed(write_sweep(tmp, args.work_steps, 100), os.path.join(tmp, "clean"), None)
    cal = calibrate(clean)
    best = max(1, round(model.optimal_interval(args.mtbf_seconds, cal["save_seconds"]) / cal["step_seconds"]))
    print(f"calibration (no kills): {cal['step_seconds'] * 1e3:.2f} ms/step, save {cal['save_seconds'] * 1e3:.1f} ms "
          f"blocking, goodput {clean['summary']['goodput']:.3f}; "
          f"MTBF {args.mtbf_seconds:g} s -> optimal interval {best} steps", flush=True)
    print("| interval (steps) | repeat | kills | R measured (s) | goodput measured | predicted (analytic) | "
          "predicted (MC mean) | MC 95% interval of one job | inside |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for label in args.intervals.split(","):
      every = best if label == "optimum" else max(1, round(best * float(label.rstrip("x"))))
      productive = wall = 0.0
      for repeat in range(args.repeats):
        out = os.path.join(tmp, f"every{every}_r{repeat}")
        run = run_killed(write_sweep(tmp, args.work_steps, every), out, args.mtbf_seconds, seed=100 + repeat)
        run_cal = costs(run, clean)
        p = predict(run_cal, args.mtbf_seconds, every, args.work_steps)
        measured = measured_goodput(run)
        productive += run["summary"]["time_seconds"]["productive"]
        wall += job_end(run) - run["launches"][0]
        inside = p["mc_interval"][0] <= measured <= p["mc_interval"][1]
        print(f"| {every} | {repeat} | {len(run['kills'])} | {run_cal['restart_seconds']:.2f} | {measured:.3f} | "
              f"{p['analytic']:.3f} | {p['mc_mean']:.3f} | [{p['mc_interval'][0]:.3f}, {p['mc_interval'][1]:.3f}] | {inside} |", flush=True)
      print(f"| {every} | all {args.repeats} | | | {productive / wall:.3f} (pooled) | | | | |", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
