"""MFU of one GPT rung trained by the platform's own loop on this machine's devices.

  python -m benchmarks.mfu_rung [--depth 12] [--aspect_ratio 64] [--head_dim 64] [--seq_len 1024]
      [--batch_size 32] [--steps 60] [--dtype bfloat16] [--attention xla|pallas] [--peak_tflops X]

Trains the rung with scaling/train.py (synthetic Markov data, so no data loading
cost), takes the steady-state tokens/s it measured (compile excluded) and the
exact FLOPs per token it counted, and prints achieved TFLOP/s and MFU against
the device's bf16 peak (benchmarks/mfu.py). On a CPU there is no peak in the
table: pass --peak_tflops to get a ratio, or read the achieved TFLOP/s.
"""
import argparse
import tempfile

import jax

from benchmarks import mfu as mfu_lib
from scaling import runtime
from scaling import train as train_lib
from sweeps.spec import TrialSpec


def main(argv=None):
  parser = argparse.ArgumentParser()
  parser.add_argument("--depth", type=int, default=12)
  parser.add_argument("--aspect_ratio", type=int, default=64)
  parser.add_argument("--head_dim", type=int, default=64)
  parser.add_argument("--seq_len", type=int, default=1024)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--steps", type=int, default=60)
  parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
  parser.add_argument("--attention", default="xla", help="xla, pallas or auto (pallas_kernels dispatcher)")
  parser.add_argument("--peak_tflops", type=float, default=None, help="per-device peak; default: lookup table")
  args = parser.parse_args(argv)
  runtime.configure_jax()
  config = TrialSpec.model_validate({
      "model": {"family": "gpt", "size": args.depth,
                "options": {"aspect_ratio": args.aspect_ratio, "head_dim": args.head_dim,
                            "attention_impl": args.attention}},
      "data": {"kind": "markov", "vocab_size": 256, "order": 2, "mix": [0.2, 0.3, 0.5]},
      "train": {"seq_len": args.seq_len, "batch_size": args.batch_size, "compute_dtype": args.dtype,
                "horizon": {"tokens": args.steps * args.batch_size * args.seq_len}, "eval_every": 10 ** 9,
                "eval_batches": 1},
  }).model_dump(mode="json")
  with tempfile.TemporaryDirectory() as run_dir:
    summary = train_lib.train(config, run_dir, progress=False, runtime={"checkpoint_every": 0, "tensorboard": False})
  device = jax.devices()[0]
  peak = args.peak_tflops * 1e12 if args.peak_tflops else mfu_lib.peak_flops_per_second(device.device_kind)
  achieved = summary["tokens_per_second"] * summary["flops_per_token"]
  print(f"rung: depth {args.depth}, width {summary['arch']['width']}, {summary['params_non_embedding']:,} "
        f"non-embedding params, seq {args.seq_len}, batch {args.batch_size}, {args.dtype}, attention {args.attention}")
  print(f"device: {device.device_kind} x{jax.device_count()}; compile {summary['compile_seconds']:.1f} s")
  print(f"tokens/s {summary['tokens_per_second']:,.0f}; FLOPs/token {summary['flops_per_token']:.4g} "
        f"(6N: {summary['flops_per_token_6n']:.4g}); achieved {achieved / 1e12:.2f} TFLOP/s")
  if peak:
    print(f"MFU {100 * mfu_lib.mfu(achieved, 1.0, peak * jax.device_count()):.1f}% "
          f"of {peak / 1e12:.4g} TFLOP/s per device")
  else:
    print("MFU: no peak known for this device; pass --peak_tflops")


if __name__ == "__main__":
  main()
