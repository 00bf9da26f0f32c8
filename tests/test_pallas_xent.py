"""Fused cross-entropy kernels vs the XLA reference, in the Pallas interpreter.

Loss and the gradients for hidden states and unembedding must match
`reference.cross_entropy_reference` to 1e-5 in f32, with token count, vocab
and d_model all off the tile grid and d_model split into several chunks.
"""

import jax
from jax import export
import jax.numpy as jnp
import numpy as np
import pytest

import pallas_kernels
from pallas_kernels import fused_cross_entropy as fce
from pallas_kernels import lowering
from pallas_kernels import reference

FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _random_problem(tokens, d_model, vocab, dtype=jnp.float32):
  keys = jax.random.split(jax.random.key(1), 4)
  hidden = jax.random.normal(keys[0], (tokens, d_model), dtype)
  unembedding = (jax.random.normal(keys[1], (d_model, vocab))
                 / np.sqrt(d_model)).astype(dtype)
  labels = jax.random.randint(keys[2], (tokens,), 0, vocab)
  d_loss = jax.random.normal(keys[3], (tokens,))
  return hidden, unembedding, labels, d_loss


def _loss_and_grads(loss_fn, hidden, unembedding, labels, d_loss):
  """(loss, d_hidden, d_unembedding) for per-token cotangent d_loss."""
  def run(hidden, unembedding, labels, d_loss):
    loss, vjp = jax.vjp(lambda h, w: loss_fn(h, w, labels), hidden,
                        unembedding)
    return (loss, *vjp(d_loss))
  return jax.jit(run, compiler_options=FAST_COMPILE)(
      hidden, unembedding, labels, d_loss)


@pytest.mark.parametrize("tokens, d_model, vocab, blocks", [
    # Nothing aligned; d_model 48 -> 3 chunks of 16; 7 vocab tiles.
    (40, 48, 200, fce.BlockSizes(block_tokens=16, block_vocab=32,
                                 block_model=16)),
    # d_model in one chunk (the static-slice path), vocab smaller than a tile.
    (24, 32, 50, fce.BlockSizes(block_tokens=16, block_vocab=64,
                                block_model=64)),
])
def test_matches_reference_f32(tokens, d_model, vocab, blocks):
  problem = _random_problem(tokens, d_model, vocab)
  got = _loss_and_grads(
      lambda h, w, y: fce.fused_cross_entropy(
          h, w, y, block_sizes=blocks, lowering=lowering.CPU_INTERPRET),
      *problem)
  want = _loss_and_grads(reference.cross_entropy_reference, *problem)
  for name, g, w in zip(("loss", "d_hidden", "d_unembedding"), got, want):
    assert g.shape == w.shape and g.dtype == w.dtype, name
    np.testing.assert_allclose(g, w, atol=1e-5, rtol=0, err_msg=name)


def test_dispatcher():
  hidden, unembedding, labels, _ = _random_problem(16, 16, 32)
  assert pallas_kernels.resolve_cross_entropy_impl(
      hidden.shape, unembedding.shape, hidden.dtype) == "xla"
  resolve = pallas_kernels.resolve_cross_entropy_impl
  # 3.3 GB of f32 logits: worth fusing on GPU; TPU would need the whole
  # unembedding in VMEM.
  assert resolve((16384, 768), (768, 50304), jnp.bfloat16,
                 platform="gpu") == "pallas"
  assert resolve((16384, 768), (768, 50304), jnp.bfloat16,
                 platform="tpu") == "xla"
  # 0.8 GB: XLA.
  assert resolve((4096, 768), (768, 50304), jnp.bfloat16,
                 platform="gpu") == "xla"

  @jax.jit
  def losses(hidden, unembedding, labels):
    return (pallas_kernels.cross_entropy(hidden, unembedding, labels),
            reference.cross_entropy_reference(hidden, unembedding, labels))

  auto, want = losses(hidden, unembedding, labels)
  np.testing.assert_array_equal(auto, want)
  with pytest.raises(ValueError, match="needs a GPU or TPU"):
    pallas_kernels.cross_entropy(hidden, unembedding, labels, impl="pallas")


@pytest.mark.parametrize("platform, kernel_lowering", [
    ("cuda", lowering.GPU), ("tpu", lowering.TPU)])
def test_lowers_for(platform, kernel_lowering):
  """Forward + backward trace through the Triton / Mosaic lowering rules."""
  hidden = jax.ShapeDtypeStruct((300, 200), jnp.bfloat16)
  unembedding = jax.ShapeDtypeStruct((200, 1000), jnp.bfloat16)
  labels = jax.ShapeDtypeStruct((300,), jnp.int32)

  def mean_loss(hidden, unembedding, labels):
    return fce.fused_cross_entropy(hidden, unembedding, labels,
                                   lowering=kernel_lowering).mean()

  exported = export.export(
      jax.jit(jax.value_and_grad(mean_loss, argnums=(0, 1))),
      platforms=[platform],
      disabled_checks=[
          export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton"),
          export.DisabledSafetyCheck.custom_call("tpu_custom_call")],
  )(hidden, unembedding, labels)
  assert exported.mlir_module().count("stablehlo.custom_call @") == 3
