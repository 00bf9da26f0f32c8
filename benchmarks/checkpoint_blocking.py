"""How much of a checkpoint save blocks training: orbax's asynchronous save against a waited one.

  python -m benchmarks.checkpoint_blocking [--size 12] [--saves 5]

Builds a GPT rung with its AdamW state (what a trial checkpoints), saves it --saves times
asynchronously (the call returns once the arrays are copied off the device; the write goes
on in the background, and is waited for before the next save) and --saves times waiting for
the write, and prints the median blocking seconds of each and their ratio.
"""
import argparse
import statistics
import tempfile
import time

import jax
import optax
from flax import nnx

from models import registry
from scaling import checkpoint as checkpoint_lib


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.checkpoint_blocking")
  parser.add_argument("--size", type=int, default=12)
  parser.add_argument("--saves", type=int, default=5)
  args = parser.parse_args(argv)
  family = registry.get("gpt")
  model = family.build(family.ladder(args.size, vocab_size=256, seq_len=256), 0)
  params = nnx.split(model)[1]
  state = {"params": params, "opt_state": optax.adamw(1e-3).init(params)}
  n_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
  blocking = {}
  with tempfile.TemporaryDirectory() as tmp:
    checkpoints = checkpoint_lib.Checkpoints(tmp, keep=2)
    for label, wait in (("async", False), ("waited", True)):
      times = []
      for i in range(args.saves):
        checkpoints.wait()  # the previous write is not part of this save
        start = time.perf_counter()
        checkpoints.save(len(blocking) * args.saves + i + 1, state, wait=wait)
        times.append(time.perf_counter() - start)
      blocking[label] = statistics.median(times[1:] or times)
    checkpoints.close()
  print(f"gpt size {args.size}: {n_bytes / 2**20:.1f} MiB of parameters and optimizer state on "
        f"{jax.devices()[0].platform}; blocking per save: async {blocking['async'] * 1e3:.1f} ms, waited "
        f"{blocking['waited'] * 1e3:.1f} ms; async blocks {blocking['async'] / blocking['waited']:.2f}x as long")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
