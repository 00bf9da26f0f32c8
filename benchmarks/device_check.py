"""The accelerator checks in one run, for the day a GPU (or TPU) is lent:

  python -m benchmarks.device_check             # a GPU or TPU: about 5-8 minutes, sections in this order
  python -m benchmarks.device_check --small     # tiny shapes on any backend (Pallas interpreted on a CPU):
                                                # the plumbing only, its figures mean nothing

1. MFU of the largest GPT rung the trainer runs here in bf16 (benchmarks/mfu_rung.py: depth 12, width 768,
   sequence 1024, batch 32; GPT-2 small's shape), through the platform's own loop.
2. Pallas flash attention against XLA, forward and forward+backward, sequence 1024-8192 (benchmarks/attention.py).
3. The fused cross-entropy kernel against XLA's logits-then-softmax, forward and forward+backward (8192 tokens,
   d_model 768, vocabulary 50,304).
4. bf16 against fp32: one trial trained twice from the same init on the same batches; both loss curves' final
   train and eval loss and their largest gap.

Each section runs on its own (one that fails prints one line and the others still run); a section that would
start past --budget_seconds is skipped and said. On a CPU without --small it says there is no accelerator and
exits 0. Record the figures in benchmarks/RESULTS.md with the device and the date.
"""
import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--small", action="store_true", help="tiny shapes on any backend: the plumbing only")
  parser.add_argument("--budget_seconds", type=float, default=480.0, help="no section starts past this")
  args = parser.parse_args(argv)
  from scaling import runtime
  runtime.configure_jax()
  platform = jax.default_backend()
  if platform not in ("gpu", "tpu") and not args.small:
    print(f"benchmarks/device_check.py: no accelerator here (JAX backend {platform!r}); nothing to measure. "
          "Run it on a GPU or TPU, or pass --small for the plumbing.")
    return 0
  device = jax.devices()[0]
  print(f"device: {device.device_kind} x{jax.device_count()} ({platform}), jax {jax.__version__}"
        + (", --small: figures mean nothing" if args.small else ""))
  start = time.time()
  sections = [("MFU of the largest rung, bf16", _mfu), ("flash attention against XLA", _attention),
              ("fused cross-entropy against XLA", _cross_entropy), ("bf16 against fp32 loss curves", _precision)]
  failed = skipped = 0
  for number, (title, section) in enumerate(sections, 1):
    spent = time.time() - start
    print(f"\n== {number}. {title}")
    if spent > args.budget_seconds:
      print(f"skipped: {spent:.0f} s spent, over the budget of {args.budget_seconds:.0f} s")
      skipped += 1
      continue
    began = time.time()
    try:
      section(args.small)
    except Exception as e:  # one line; the other sections still run
      failed += 1
      print(f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300])
    print(f"({time.time() - began:.0f} s)")
  ran = len(sections) - failed - skipped
  print(f"\n{ran}/{len(sections)} sections ran, {failed} failed, {skipped} skipped, in {time.time() - start:.0f} s")
  return 1 if failed else 0


def _mfu(small: bool) -> None:
  from benchmarks import mfu_rung
  shape = (["--depth", "2", "--aspect_ratio", "16", "--head_dim", "16", "--seq_len", "64", "--batch_size", "8",
            "--steps", "12"] if small else ["--depth", "12", "--aspect_ratio", "64", "--head_dim", "64",
                                           "--seq_len", "1024", "--batch_size", "32", "--steps", "60"])
  mfu_rung.main([*shape, "--dtype", "bfloat16", "--attention", "xla"])


def _attention(small: bool) -> None:
  from benchmarks import attention
  code = attention.main(["--small"] if small else ["--seq_lens", "1024,2048,4096,8192"])
  if code:
    raise RuntimeError(f"benchmarks/attention.py exited {code}")


def _cross_entropy(small: bool) -> None:
  import pallas_kernels
  from benchmarks import attention  # its timer: median seconds after a compile-and-warm-up call
  tokens, d_model, vocab = (128, 64, 512) if small else (8192, 768, 50304)
  kernel = "pallas_interpret" if small else "pallas"
  dtype = jnp.float32 if small else jnp.bfloat16
  keys = jax.random.split(jax.random.key(0), 3)
  hidden = jax.random.normal(keys[0], (tokens, d_model), dtype)
  unembedding = (jax.random.normal(keys[1], (d_model, vocab), dtype) / d_model ** 0.5).astype(dtype)
  labels = jax.random.randint(keys[2], (tokens,), 0, vocab)
  iters = 2 if small else 10
  print(f"tokens {tokens}, d_model {d_model}, vocab {vocab}, {jnp.dtype(dtype).name}, kernel impl {kernel!r}")
  print(f"{'':>8} {'xla ms':>9} {'kernel ms':>10} {'ratio':>6}")
  losses = {}
  for label, grad in (("fwd", False), ("fwd+bwd", True)):
    times = {}
    for impl in ("xla", kernel):
      loss = lambda h, w, impl=impl: pallas_kernels.cross_entropy(h, w, labels, impl=impl).mean()
      fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)) if grad else loss)
      times[impl] = attention._time_per_call(fn, (hidden, unembedding), iters)
      if not grad:
        losses[impl] = float(fn(hidden, unembedding))
    print(f"{label:>8} {1e3 * times['xla']:>9.3f} {1e3 * times[kernel]:>10.3f} {times['xla'] / times[kernel]:>6.2f}")
  print(f"mean loss: xla {losses['xla']:.6f}, kernel {losses[kernel]:.6f} (|diff| "
        f"{abs(losses['xla'] - losses[kernel]):.2e})")


def _precision(small: bool) -> None:
  from scaling import metrics as metrics_lib
  from scaling import train as train_lib
  from sweeps.spec import TrialSpec
  depth, seq_len, batch, steps = (2, 32, 8, 20) if small else (6, 512, 16, 300)
  curves, finals = {}, {}
  for dtype in ("float32", "bfloat16"):
    config = TrialSpec.model_validate({
        "model": {"family": "gpt", "size": depth, "options": {"aspect_ratio": 32 if small else 64, "head_dim": 16}},
        "data": {"kind": "markov", "vocab_size": 64, "order": 2, "mix": [0.2, 0.3, 0.5]},
        "train": {"seq_len": seq_len, "batch_size": batch, "compute_dtype": dtype,
                  "horizon": {"tokens": steps * batch * seq_len}, "eval_every": max(steps // 4, 1),
                  "eval_batches": 2},
    }).model_dump(mode="json")
    with tempfile.TemporaryDirectory() as run_dir, contextlib.redirect_stderr(io.StringIO()):
      summary = train_lib.train(config, run_dir, progress=False, runtime={"checkpoint_every": 0, "tensorboard": False})
      rows = metrics_lib.read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    curves[dtype] = {r["step"]: r["loss"] for r in rows if "loss" in r}
    finals[dtype] = (summary["final_train_loss"], summary["final_eval_loss"], summary["tokens_per_second"])
  shared = sorted(set(curves["float32"]) & set(curves["bfloat16"]))
  gaps = [abs(curves["bfloat16"][s] - curves["float32"][s]) for s in shared]
  for dtype, (train_loss, eval_loss, speed) in finals.items():
    print(f"{dtype:>9}: final train loss {train_loss:.4f}, eval loss {eval_loss:.4f}, {speed:,.0f} tokens/s")
  worst = max(range(len(gaps)), key=gaps.__getitem__)
  print(f"bf16 - fp32 train loss over {len(shared)} steps: largest |gap| {gaps[worst]:.4f} at step {shared[worst]}, "
        f"mean {statistics.mean(gaps):.4f}; eval loss gap {finals['bfloat16'][1] - finals['float32'][1]:+.4f}")
  print(json.dumps({"device_check_precision": {"steps": len(shared), "max_gap": gaps[worst],
                                               "eval_gap": finals["bfloat16"][1] - finals["float32"][1]}}))


if __name__ == "__main__":
  sys.exit(main())
