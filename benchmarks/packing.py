"""Packed against sequential trials through `sweeps run`: the wall-clock ratio, and that both give the same losses.

  python -m benchmarks.packing [--sizes 2] [--seeds 8] [--tokens 400000] [--rounds 1]
  python -m benchmarks.packing --sizes 1,2,3,4,6 --seeds 3     # the quickstart ladder's seeds 0, 1, 2

Takes sweeps/configs/quickstart.yaml (or --config), keeps the given rungs, makes `seed` an axis of
--seeds values, and runs the sweep twice per round in subprocesses, `runtime.pack: false` then
`true` (A B, A B, ...), each from an empty compile cache into a fresh directory: the whole command
(start-up, compiles, training, evals, checkpoints, summaries), without the analysis. Prints each run's
wall time, the ratio sequential / packed of the medians, and the largest relative difference between
the two runs' final eval losses (the same trials, so float32 noise only).
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sweep_file(directory: str, config: str, sizes: list, seeds: int, tokens: int | None, pack: bool) -> str:
  with open(config) as f:
    doc = yaml.safe_load(f)
  doc["name"] = "packed" if pack else "sequential"
  doc["model"]["size"] = sizes if len(sizes) > 1 else sizes[0]
  doc["seed"] = list(range(seeds))
  if tokens:
    doc["train"]["horizon"] = {"tokens": tokens}
  doc.setdefault("runtime", {})["pack"] = pack
  path = os.path.join(directory, f"{doc['name']}.yaml")
  with open(path, "w") as f:
    yaml.safe_dump(doc, f)
  return path


def run(path: str, directory: str, keep: str | None = None) -> tuple:
  """(wall seconds of `sweeps run`, {trial id: final eval loss}); the sweep directory goes under `keep` if given."""
  out = tempfile.mkdtemp(dir=keep or directory)
  env = {**os.environ, "SCALING_JAX_CACHE": tempfile.mkdtemp(dir=directory)}
  start = time.time()
  subprocess.run([sys.executable, "-m", "sweeps", "run", path, "--out", out, "--no-progress", "--no-analysis"],
                 cwd=ROOT, env=env, check=True, capture_output=True)
  wall = time.time() - start
  losses = {}
  for summary_path in glob.glob(os.path.join(out, "*", "*", "summary.json")):
    with open(summary_path) as f:
      summary = json.load(f)
    losses[summary["trial_id"]] = summary["final_eval_loss"]
  return wall, losses


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default=os.path.join(ROOT, "sweeps", "configs", "quickstart.yaml"))
  parser.add_argument("--sizes", default="2", help="comma-separated rungs of the config's ladder")
  parser.add_argument("--seeds", type=int, default=8)
  parser.add_argument("--tokens", type=int, default=None, help="tokens per trial (default: the config's)")
  parser.add_argument("--rounds", type=int, default=1)
  parser.add_argument("--keep", default=None, help="keep the runs' sweep directories under this directory")
  args = parser.parse_args()
  sizes = [int(s) for s in args.sizes.split(",")]
  walls = {False: [], True: []}
  with tempfile.TemporaryDirectory() as tmp:
    files = {pack: sweep_file(tmp, args.config, sizes, args.seeds, args.tokens, pack) for pack in (False, True)}
    for round_ in range(args.rounds):
      results = {}
      for pack in (False, True):
        wall, losses = run(files[pack], tmp, args.keep)
        walls[pack].append(wall)
        results[pack] = losses
        print(f"round {round_ + 1} {'packed    ' if pack else 'sequential'}: {len(losses)} trials, {wall:.1f} s",
              flush=True)
      assert results[False].keys() == results[True].keys(), "the two runs trained different trials"
      worst = max(abs(results[True][k] - results[False][k]) / abs(results[False][k]) for k in results[False])
      print(f"round {round_ + 1}: largest relative difference of final eval losses {worst:.2e}")
  sequential, packed = statistics.median(walls[False]), statistics.median(walls[True])
  print(f"sizes {sizes} x {args.seeds} seeds: sequential {sequential:.1f} s, packed {packed:.1f} s, "
        f"ratio {sequential / packed:.2f}x")


if __name__ == "__main__":
  main()
