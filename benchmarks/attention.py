"""Flash-attention kernel vs XLA attention: time per call, forward and fwd+bwd.

On a GPU/TPU this times the compiled Pallas kernel (`impl="pallas"`) against
the XLA reference (`impl="xla"`) at 1k-8k tokens:
  python -m benchmarks.attention                      # B=2 H=16 D=128 bf16
  python -m benchmarks.attention --batch 4 --heads 8 --head_dim 64 \
      --seq_lens 1024,2048,4096,8192,16384 --no-causal

On CPU the kernel only runs in the Pallas interpreter, whose timings say
nothing about GPU performance; `--small` runs a tiny smoke test of the script:
  python -m benchmarks.attention --small              # ~20 s on 2 cores

Columns: milliseconds per call (median over --iters), XLA/kernel ratio (> 1
means the kernel is faster) and the kernel's achieved TFLOP/s, counting model
FLOPs only: 4*B*H*Tq*Tk*D forward (halved when causal), 3x that fwd+bwd.
An XLA cell reads "OOM" when the [B, H, T, T] scores do not fit.
"""

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp

import pallas_kernels


def _time_per_call(fn, args, iters: int) -> float:
  """Median wall seconds of fn(*args) after one compile-and-warm-up call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _attention_fns(impl: str, causal: bool):
  """Jitted forward and forward+backward (dq, dk, dv) for one impl."""
  def forward(q, k, v):
    return pallas_kernels.attention(q, k, v, causal=causal, impl=impl)

  def forward_backward(q, k, v, d_out):
    out, vjp = jax.vjp(forward, q, k, v)
    return out, vjp(d_out)
  return jax.jit(forward), jax.jit(forward_backward)


def _model_flops(batch, seq_len, heads, head_dim, causal) -> float:
  """Forward model FLOPs: QK^T and PV, 2 FLOPs per multiply-add."""
  flops = 4 * batch * heads * seq_len * seq_len * head_dim
  return flops / 2 if causal else flops


def _try_time(fn, args, iters):
  try:
    return _time_per_call(fn, args, iters)
  except Exception as error:  # XLA's [B,H,T,T] scores may not fit.
    if "RESOURCE_EXHAUSTED" in str(error) or "out of memory" in str(error):
      return None
    raise


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seq_lens", default="1024,2048,4096,8192")
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--heads", type=int, default=16)
  parser.add_argument("--head_dim", type=int, default=128)
  parser.add_argument("--dtype", default=None,
                      help="bfloat16 (default on GPU/TPU) or float32")
  parser.add_argument("--causal", action=argparse.BooleanOptionalAction,
                      default=True)
  parser.add_argument("--iters", type=int, default=10)
  parser.add_argument("--small", action="store_true",
                      help="tiny shapes in the Pallas interpreter (CPU smoke "
                           "test; timings meaningless)")
  args = parser.parse_args(argv)

  platform = jax.default_backend()
  if args.small:
    kernel_impl = "pallas_interpret"
    seq_lens = [64, 128]
    batch, heads, head_dim, iters = 1, 2, 32, 2
    dtype = jnp.dtype(args.dtype or "float32")
  elif platform in ("gpu", "tpu"):
    kernel_impl = "pallas"
    seq_lens = [int(t) for t in args.seq_lens.split(",")]
    batch, heads, head_dim, iters = (args.batch, args.heads, args.head_dim,
                                     args.iters)
    dtype = jnp.dtype(args.dtype or "bfloat16")
  else:
    print(f"benchmarks/attention.py: no GPU or TPU here (platform "
          f"{platform!r}). The compiled kernels cannot run on CPU and the "
          "interpreter's timings are meaningless; run on a GPU/TPU, or pass "
          "--small for a tiny interpreted smoke test.", file=sys.stderr)
    return 1

  device = jax.devices()[0]
  print(f"device {device.device_kind} ({platform}), kernel impl "
        f"{kernel_impl!r}, B={batch} H={heads} D={head_dim} "
        f"{dtype.name} causal={args.causal}")
  print(f"{'seq':>6} {'xla fwd':>9} {'krn fwd':>9} {'ratio':>6} "
        f"{'xla f+b':>9} {'krn f+b':>9} {'ratio':>6} {'krn TF/s':>9}")
  xla_fwd, xla_fwd_bwd = _attention_fns("xla", args.causal)
  kernel_fwd, kernel_fwd_bwd = _attention_fns(kernel_impl, args.causal)
  for seq_len in seq_lens:
    keys = jax.random.split(jax.random.key(seq_len), 4)
    shape = (batch, seq_len, heads, head_dim)
    q, k, v, d_out = (jax.random.normal(key, shape, dtype) for key in keys)
    if (kernel_impl == "pallas" and pallas_kernels.resolve_attention_impl(
        q.shape, k.shape, dtype, "auto") != "pallas"):
      print(f"note: impl='auto' would use XLA at seq {seq_len}")
    times = {
        "xla_fwd": _try_time(xla_fwd, (q, k, v), iters),
        "kernel_fwd": _time_per_call(kernel_fwd, (q, k, v), iters),
        "xla_fwd_bwd": _try_time(xla_fwd_bwd, (q, k, v, d_out), iters),
        "kernel_fwd_bwd": _time_per_call(kernel_fwd_bwd, (q, k, v, d_out),
                                         iters),
    }

    def ms(name):
      return "OOM" if times[name] is None else f"{1e3 * times[name]:.3f}"

    def ratio(xla, kernel):
      return "-" if times[xla] is None else f"{times[xla] / times[kernel]:.2f}"

    fwd_bwd_flops = 3 * _model_flops(batch, seq_len, heads, head_dim,
                                     args.causal)
    tflops = fwd_bwd_flops / times["kernel_fwd_bwd"] / 1e12
    print(f"{seq_len:>6} {ms('xla_fwd'):>9} {ms('kernel_fwd'):>9} "
          f"{ratio('xla_fwd', 'kernel_fwd'):>6} {ms('xla_fwd_bwd'):>9} "
          f"{ms('kernel_fwd_bwd'):>9} "
          f"{ratio('xla_fwd_bwd', 'kernel_fwd_bwd'):>6} {tflops:>9.3f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
