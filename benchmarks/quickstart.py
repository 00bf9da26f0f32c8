"""Times the quickstart from YAML to report, as a user runs it: `python -m sweeps run ...`.

  python benchmarks/quickstart.py [--config sweeps/configs/quickstart.yaml] [--warm]

Cold by default: a fresh output directory and an empty JAX compilation cache.
--warm reuses one cache across two runs and prints the warm/cold ratio.
Prints per-rung figures from each trial's summary.json and the report's backtest.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_once(config, out, cache):
  env = {**os.environ, "SCALING_JAX_CACHE": cache}
  start = time.time()
  result = subprocess.run([sys.executable, "-m", "sweeps", "run", config, "--out", out, "--no-progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
  wall = time.time() - start
  if result.returncode:
    sys.exit(f"quickstart failed:\n{result.stderr[-3000:]}")
  return wall, result.stdout


def describe(out):
  [sweep] = [d for d in os.listdir(out)]
  fits = json.load(open(os.path.join(out, sweep, "analysis", "fits.json")))
  rows = []
  for trial in json.load(open(os.path.join(out, sweep, "sweep.json")))["trials"]:
    s = json.load(open(os.path.join(out, sweep, trial["id"], "summary.json")))
    rows.append(s)
  rows.sort(key=lambda s: s["params_non_embedding"])
  print(f"{'depth':>5} {'width':>5} {'non-emb params':>14} {'tokens':>9} {'eval loss':>9} {'floor':>7} "
        f"{'wall s':>7} {'compile s':>9} {'tokens/s':>9}")
  for s in rows:
    print(f"{s['arch']['depth']:>5} {s['arch']['width']:>5} {s['params_non_embedding']:>14,} {s['tokens']:>9,} "
          f"{s['final_eval_loss']:>9.4f} {s['entropy_floor'] or float('nan'):>7.4f} {s['wall_seconds']:>7.1f} "
          f"{s['compile_seconds']:>9.1f} {s['tokens_per_second']:>9,.0f}")
  return fits


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default=os.path.join(ROOT, "sweeps", "configs", "quickstart.yaml"))
  parser.add_argument("--warm", action="store_true", help="second run with the cache of the first")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    cache = os.path.join(tmp, "cache")
    wall, stdout = run_once(args.config, os.path.join(tmp, "cold"), cache)
    print(f"cold run (empty compile cache), YAML to report: {wall:.1f} s")
    fits = describe(os.path.join(tmp, "cold"))
    print("\n".join(line for line in stdout.splitlines() if line.startswith(("fit vs", "backtest"))))
    if args.warm:
      warm, _ = run_once(args.config, os.path.join(tmp, "warm"), cache)
      print(f"warm run (compile cache from the cold run): {warm:.1f} s; warm/cold = {warm / wall:.2f}")
    bt = fits["backtest"]
    if "error_reducible_pct" in bt:
      print(f"backtest: loss error {bt['error_loss_pct']:.2f}%, reducible-part error {bt['error_reducible_pct']:.1f}%")
  print(f"load average during the run: {os.getloadavg()}")


if __name__ == "__main__":
  main()
