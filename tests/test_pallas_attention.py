"""Flash attention kernels vs the XLA reference, in the Pallas interpreter.

Forward and dq/dk/dv must match `reference.attention_reference` to 1e-5 in
f32 on shapes whose lengths are not multiples of the tiles. The GPU (Triton)
and TPU (Mosaic) lowerings cannot run here; `test_lowers_for` at least traces
them through Pallas' lowering to Triton IR / Mosaic MLIR. Each case compiles
once (about 2-4 s on 2 CPU cores), so cases are few and small.
"""

import jax
from jax import export
import jax.numpy as jnp
import numpy as np
import pytest

import pallas_kernels
from pallas_kernels import flash_attention as fa
from pallas_kernels import lowering
from pallas_kernels import reference

# Unequal tiles everywhere so that loop bounds, partial tiles and the
# masked/unmasked split are all exercised.
MIXED_BLOCKS = fa.BlockSizes(block_q=16, block_k=8, dq_block_q=8,
                             dq_block_k=16, dkv_block_q=8, dkv_block_k=16)
# The wrapper paths of the compiled lowerings (head-major transposes, head_dim
# padding), run in the interpreter.
INTERPRET_AS_TPU_AND_GPU = lowering.Lowering(
    lowering.INTERPRET, heads_major=True, pow2_head_dim=True)


def _random_qkv_dout(batch, q_len, kv_len, heads, kv_heads, head_dim,
                     dtype=jnp.float32):
  keys = jax.random.split(jax.random.key(0), 4)
  q = jax.random.normal(keys[0], (batch, q_len, heads, head_dim), dtype)
  k = jax.random.normal(keys[1], (batch, kv_len, kv_heads, head_dim), dtype)
  v = jax.random.normal(keys[2], (batch, kv_len, kv_heads, head_dim), dtype)
  d_out = jax.random.normal(keys[3], q.shape, dtype)
  return q, k, v, d_out


# Test programs are compile-bound (interpreted kernels unroll into large HLO):
# skipping XLA's backend optimisations cuts compile time by about a third.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _out_and_grads(attention_fn, q, k, v, d_out):
  """(out, dq, dk, dv) of attention_fn at (q, k, v) for cotangent d_out."""
  def run(q, k, v, d_out):
    out, vjp = jax.vjp(attention_fn, q, k, v)
    return (out, *vjp(d_out))
  return jax.jit(run, compiler_options=FAST_COMPILE)(q, k, v, d_out)


@pytest.mark.parametrize(
    "batch, q_len, kv_len, heads, kv_heads, head_dim, causal, kernel_lowering",
    [
        # 40 is not a multiple of any tile.
        (1, 40, 40, 2, 2, 16, True, lowering.CPU_INTERPRET),
        # q and kv lengths differ, neither tile-aligned.
        (1, 24, 40, 2, 2, 32, True, lowering.CPU_INTERPRET),
        # Grouped-query attention, q longer than kv.
        (1, 40, 24, 4, 2, 32, False, lowering.CPU_INTERPRET),
        # Multi-query; head_dim 24 padded to 32; head-major layout.
        (2, 33, 47, 4, 1, 24, True, INTERPRET_AS_TPU_AND_GPU),
    ])
def test_matches_reference_f32(batch, q_len, kv_len, heads, kv_heads,
                               head_dim, causal, kernel_lowering):
  q, k, v, d_out = _random_qkv_dout(batch, q_len, kv_len, heads, kv_heads,
                                    head_dim)
  got = _out_and_grads(
      lambda q, k, v: fa.flash_attention(
          q, k, v, causal=causal, block_sizes=MIXED_BLOCKS,
          lowering=kernel_lowering), q, k, v, d_out)
  want = _out_and_grads(
      lambda q, k, v: reference.attention_reference(q, k, v, causal=causal),
      q, k, v, d_out)
  for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
    assert g.shape == w.shape and g.dtype == w.dtype, name
    np.testing.assert_allclose(g, w, atol=1e-5, rtol=0, err_msg=name)


def test_bf16_inputs_accumulate_in_f32():
  q, k, v, d_out = _random_qkv_dout(1, 40, 40, 2, 2, 32, jnp.bfloat16)
  got = _out_and_grads(
      lambda q, k, v: fa.flash_attention(q, k, v, causal=True,
                                         block_sizes=MIXED_BLOCKS,
                                         lowering=lowering.CPU_INTERPRET),
      q, k, v, d_out)
  f32 = [x.astype(jnp.float32) for x in (q, k, v, d_out)]
  want = _out_and_grads(
      lambda q, k, v: reference.attention_reference(q, k, v, causal=True),
      *f32)
  for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
    assert g.dtype == jnp.bfloat16, name
    # bf16 has an 8-bit mantissa: compare relative to the gradient's scale.
    scale = float(jnp.abs(w).max())
    np.testing.assert_allclose(g.astype(jnp.float32), w, atol=3e-2 * scale,
                               rtol=0, err_msg=name)


def test_dispatcher_interpret_is_differentiable_with_default_tiles():
  # Also the plain (not grouped, equal lengths) non-causal case.
  q, k, v, d_out = _random_qkv_dout(1, 40, 40, 2, 2, 16)
  got = _out_and_grads(
      lambda q, k, v: pallas_kernels.attention(q, k, v, causal=False,
                                               impl="pallas_interpret"),
      q, k, v, d_out)
  want = _out_and_grads(
      lambda q, k, v: reference.attention_reference(q, k, v, causal=False),
      q, k, v, d_out)
  for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
    np.testing.assert_allclose(g, w, atol=1e-5, rtol=0, err_msg=name)


def test_auto_on_cpu_is_the_reference():
  assert jax.default_backend() == "cpu"
  q, k, v, _ = _random_qkv_dout(1, 128, 128, 2, 2, 32)
  assert pallas_kernels.resolve_attention_impl(q.shape, k.shape,
                                               q.dtype) == "xla"

  @jax.jit
  def outputs_and_grad(q, k, v):
    outs = [pallas_kernels.attention(q, k, v, causal=True, impl=impl)
            for impl in ("auto", None, "xla")]
    want = reference.attention_reference(q, k, v, causal=True)
    grad = jax.grad(
        lambda q: pallas_kernels.attention(q, k, v, impl="auto").sum())(q)
    return outs, want, grad

  outs, want, grad = outputs_and_grad(q, k, v)
  for out in outs:
    np.testing.assert_array_equal(out, want)
  assert bool(jnp.isfinite(grad).all())


def test_auto_picks_kernel_only_where_it_applies():
  resolve = pallas_kernels.resolve_attention_impl
  ok_q, ok_kv = (8, 1024, 16, 64), (8, 1024, 16, 64)
  for platform in ("gpu", "tpu"):
    assert resolve(ok_q, ok_kv, jnp.bfloat16, platform=platform) == "pallas"
    # Unsupported head_dim, too short, or an integer dtype: XLA.
    assert resolve((8, 1024, 16, 80), (8, 1024, 16, 80), jnp.bfloat16,
                   platform=platform) == "xla"
    assert resolve((8, 64, 16, 64), (8, 64, 16, 64), jnp.bfloat16,
                   platform=platform) == "xla"
    assert resolve(ok_q, ok_kv, jnp.int32, platform=platform) == "xla"
  # Whole-sequence K/V no longer fit TPU VMEM; GPU reads them from HBM.
  long = (1, 32768, 8, 128)
  assert resolve(long, long, jnp.bfloat16, platform="tpu") == "xla"
  assert resolve(long, long, jnp.bfloat16, platform="gpu") == "pallas"
  assert resolve(ok_q, ok_kv, jnp.bfloat16, platform="cpu") == "xla"


def test_bad_impl_raises():
  q, k, v, _ = _random_qkv_dout(1, 16, 16, 1, 1, 16)
  with pytest.raises(ValueError, match="needs a GPU or TPU"):
    pallas_kernels.attention(q, k, v, impl="pallas")
  with pytest.raises(ValueError, match="not one of"):
    pallas_kernels.attention(q, k, v, impl="cuda")


@pytest.mark.parametrize("platform, kernel_lowering", [
    ("cuda", lowering.GPU), ("tpu", lowering.TPU)])
def test_lowers_for(platform, kernel_lowering):
  """Forward + backward trace through the Triton / Mosaic lowering rules.

  This checks the kernels use only ops, shapes and block specs the lowering
  accepts; the Triton and Mosaic compilers proper only run on the hardware.
  """
  q = jax.ShapeDtypeStruct((2, 200, 4, 64), jnp.bfloat16)  # 200: unaligned
  kv = jax.ShapeDtypeStruct((2, 200, 2, 64), jnp.bfloat16)  # grouped

  def loss(q, k, v):
    out = fa.flash_attention(q, k, v, causal=True, lowering=kernel_lowering)
    return out.astype(jnp.float32).sum()

  exported = export.export(
      jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))),
      platforms=[platform],
      disabled_checks=[
          export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton"),
          export.DisabledSafetyCheck.custom_call("tpu_custom_call")],
  )(q, kv, kv)
  module = exported.mlir_module()
  # Forward, dq and dkv kernels.
  assert module.count("stablehlo.custom_call @") == 3
