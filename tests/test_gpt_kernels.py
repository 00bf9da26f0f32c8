"""The GPT's attention through the Pallas kernel (interpret mode on CPU) matches the XLA path."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import registry


@pytest.mark.slow  # Pallas in interpret mode (about 14 s)
def test_gpt_logits_and_grads_match_with_the_pallas_kernel():
  family = registry.get("gpt")
  arch = family.ladder(1, vocab_size=11, seq_len=24, aspect_ratio=32, head_dim=16)
  tokens = jax.random.randint(jax.random.key(0), (2, 24), 0, 11)
  from flax import nnx
  graphdef, params = nnx.split(family.build(arch, seed=0))
  kernel_graphdef, _ = nnx.split(family.build(dataclasses.replace(arch, attention_impl="pallas_interpret"), seed=0))

  def loss(graphdef, params):
    logits = nnx.merge(graphdef, params)(tokens)
    return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, tokens[..., None], -1)[..., 0])

  reference, reference_grads = jax.value_and_grad(lambda p: loss(graphdef, p))(params)
  kernel, kernel_grads = jax.value_and_grad(lambda p: loss(kernel_graphdef, p))(params)
  np.testing.assert_allclose(kernel, reference, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(kernel_grads), jax.tree.leaves(reference_grads)):
    np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


def test_next_token_loss_and_grads_match_with_the_fused_cross_entropy_kernel():
  """`cross_entropy_impl: pallas_interpret` (the fused kernel, interpreted on CPU) gives next_token's loss and
  gradients, with and without a loss mask."""
  from flax import nnx
  from scaling import objectives
  family, objective = registry.get("gpt"), objectives.get("next_token")
  arch = family.ladder(1, vocab_size=11, seq_len=24, aspect_ratio=32, head_dim=16)
  tokens = jax.random.randint(jax.random.key(1), (2, 25), 0, 11)
  mask = (jax.random.uniform(jax.random.key(2), (2, 24)) > 0.5).astype(jnp.float32)
  graphdef, params = nnx.split(family.build(arch, seed=0))
  kernel_graphdef, _ = nnx.split(family.build(dataclasses.replace(arch, cross_entropy_impl="pallas_interpret"), seed=0))
  for batch in ({"tokens": tokens}, {"tokens": tokens, "loss_mask": mask}):
    loss = lambda g, p: objective.loss(nnx.merge(g, p), batch, None, {})[0]
    reference, reference_grads = jax.value_and_grad(lambda p: loss(graphdef, p))(params)
    kernel, kernel_grads = jax.value_and_grad(lambda p: loss(kernel_graphdef, p))(params)
    np.testing.assert_allclose(kernel, reference, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(kernel_grads), jax.tree.leaves(reference_grads)):
      np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)
  try:
    family.ladder(1, vocab_size=11, seq_len=24, aspect_ratio=32, head_dim=16, cross_entropy_impl="fast")
  except ValueError as e:
    assert "cross_entropy_impl" in str(e)
  else:
    raise AssertionError("an unknown cross_entropy_impl was accepted")
