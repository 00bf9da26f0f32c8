"""ViT training throughput (images/s, steady state, compile excluded) through the platform's train loop.

  python -m benchmarks.vit_throughput [--steps 150] [--data ../shared/data/mnist]

MNIST-shaped images (28x28x1, patch 7: 16 tokens per image), batch 128, for two rungs
(depth 2 width 64; depth 4 width 128) and every vision objective. Prints images/s and
each objective's ratio to `classify` on the same rung, measured in this process one
after another: run it alone on the machine.
"""
import argparse
import os
import tempfile

from scaling import runtime
from scaling import train as train_lib
from sweeps.spec import TrialSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNGS = ((2, 32), (4, 32))  # (depth, aspect ratio): widths 64 and 128, head_dim 32
OBJECTIVES = ("classify", "masked_patches", "next_patch")


def measure(depth, aspect_ratio, objective, steps, data_path):
  config = TrialSpec.model_validate({
      "model": {"family": "vit", "size": depth,
                "options": {"aspect_ratio": aspect_ratio, "head_dim": 32, "patch_size": 7}},
      "data": {"kind": "idx", "path": data_path},
      "train": {"objective": objective, "batch_size": 128, "horizon": {"examples": steps * 128},
                "eval_every": 10 ** 9, "eval_batches": 1, "evaluators": []},
  }).model_dump(mode="json")
  with tempfile.TemporaryDirectory() as run_dir:
    return train_lib.train(config, run_dir, progress=False, runtime={"checkpoint_every": 0, "tensorboard": False})


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=150)
  parser.add_argument("--data", default=os.path.join(os.path.dirname(ROOT), "shared", "data", "mnist"))
  args = parser.parse_args()
  runtime.configure_jax()
  print("| depth | width | params | objective | images/s | vs classify | compile s |")
  print("|---:|---:|---:|---|---:|---:|---:|")
  for depth, aspect_ratio in RUNGS:
    reference = None
    for objective in OBJECTIVES:
      summary = measure(depth, aspect_ratio, objective, args.steps, args.data)
      rate = summary["examples_per_second"]
      reference = reference or rate
      print(f"| {depth} | {summary['arch']['width']} | {summary['params_total']:,} | {objective} | {rate:,.0f} | "
            f"{rate / reference:.2f} | {summary['compile_seconds']:.1f} |", flush=True)


if __name__ == "__main__":
  main()
