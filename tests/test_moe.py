"""Mixture-of-experts GPT blocks (models/moe.py): routing, losses, counting, and the two expert paths."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models import counting, gpt, moe, registry, transformer

SMALL = dict(vocab_size=16, seq_len=8, aspect_ratio=32, head_dim=8)


@nnx.jit
def _forward(model, tokens):
  """Logits and what the layers sowed; jitted: eager, the routing's many small ops cost seconds each forward."""
  return nnx.capture(lambda m, t: m(t), nnx.Intermediate)(model, tokens)


def test_the_load_balancing_loss_is_switchs_on_a_fixed_routing():
  probs = jnp.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
  # Top-1: experts 0, 0, 1, 0: f = (3/4, 1/4); mean probabilities P = (0.65, 0.35).
  index = jnp.array([[0], [0], [1], [0]])
  assert float(moe.load_balance_loss(probs, index, 2)) == pytest.approx(2 * (0.75 * 0.65 + 0.25 * 0.35))
  # Top-2 sends every token to both: f = (1/2, 1/2), so the loss is E * sum P / 2 = 1.
  both = jnp.array([[0, 1], [0, 1], [1, 0], [0, 1]])
  assert float(moe.load_balance_loss(probs, both, 2)) == pytest.approx(1.0)
  # A uniform router over 4 experts with a uniform load gives 1, whatever the logits' scale.
  uniform = jnp.full((8, 4), 0.25)
  assert float(moe.load_balance_loss(uniform, jnp.arange(8)[:, None] % 4, 4)) == pytest.approx(1.0)


def test_route_renormalises_the_gates_of_two_choices_and_keeps_the_raw_top_one():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.2]]))
  probs, gates, index = moe.route(logits, 1)
  np.testing.assert_allclose(probs, [[0.5, 0.3, 0.2]], rtol=1e-6)
  assert index.tolist() == [[0]] and float(gates[0, 0]) == pytest.approx(0.5)
  _, gates, index = moe.route(logits, 2)
  assert index.tolist() == [[0, 1]]
  np.testing.assert_allclose(gates, [[0.625, 0.375]], rtol=1e-6)
  assert float(moe.z_loss(logits)) == pytest.approx(0.0, abs=1e-6)  # the probabilities' logsumexp is log 1


def test_capacity_drops_the_latest_tokens_and_second_choices_wait_for_first_ones():
  # One sequence of 4 tokens, all first choices on expert 0, 2 slots: tokens 2 and 3 are dropped.
  index = jnp.array([[[0], [0], [0], [0]]])
  dispatch, combine, kept = moe.dispatch_masks(jnp.ones((1, 4, 1)), index, 2, 2)
  assert dispatch[0, :, 0].tolist() == [[1, 0], [0, 1], [0, 0], [0, 0]]
  assert float(kept) == 0.5
  # Top-2, 2 slots per expert: token 0 picks (1, 0); tokens 1-2 pick (0, 1). Priority: the first
  # choices (1 of token 0, 0 of tokens 1 and 2) fill expert 0's two slots and one of expert 1's;
  # then token 0's second choice (0) finds expert 0 full and is dropped; token 1's second (1) fits.
  index = jnp.array([[[1, 0], [0, 1], [0, 1]]])
  gates = jnp.array([[[0.6, 0.4], [0.7, 0.3], [0.8, 0.2]]])
  dispatch, combine, kept = moe.dispatch_masks(gates, index, 2, 2)
  assert dispatch[0, 0].tolist() == [[0, 0], [1, 0]]  # token 0: expert 1 slot 0 only
  assert dispatch[0, 1].tolist() == [[1, 0], [0, 1]]  # token 1: expert 0 slot 0, expert 1 slot 1
  assert dispatch[0, 2].tolist() == [[0, 1], [0, 0]]  # token 2: expert 0 slot 1; its second choice dropped
  np.testing.assert_allclose(combine[0, 1], [[0.7, 0], [0, 0.3]], rtol=1e-6)
  assert float(kept) == pytest.approx(4 / 6)
  assert moe.capacity(tokens=8, experts=4, top_k=2, capacity_factor=1.25) == 5
  assert moe.capacity(tokens=8, experts=1, top_k=1, capacity_factor=4.0) == 8  # never more than k T


def _dense_twin(moe_model, dense_model):
  """dense_model with moe_model's weights: each block's one expert becomes its MLP."""
  weights = nnx.to_pure_dict(nnx.state(moe_model, nnx.Param))
  for block in weights["blocks"].values():
    mlp = block["mlp"]
    block["mlp"] = {"up": {"kernel": mlp["up"][0]}, "down": {"kernel": mlp["down"][0]}}
  state = nnx.state(dense_model, nnx.Param)
  nnx.replace_by_pure_dict(state, weights)
  nnx.update(dense_model, state)
  return dense_model


@pytest.mark.parametrize("capacity_factor", [1.0, 0.0])
def test_one_expert_with_top_1_is_the_dense_model(capacity_factor):
  one = gpt.build(gpt.ladder(2, **SMALL, experts=1, capacity_factor=capacity_factor), 3)
  dense = _dense_twin(one, gpt.build(gpt.ladder(2, **SMALL), 4))
  tokens = jax.random.randint(jax.random.key(0), (3, 8), 0, 16)
  logits, sown = _forward(one, tokens)
  np.testing.assert_allclose(logits, dense(tokens), rtol=1e-5, atol=1e-5)
  _, stats = moe.collect(sown)
  assert float(stats["moe_dropped"]) == 0.0 and float(stats["moe_load_balance"]) == pytest.approx(1.0)


def test_dropless_ragged_dot_equals_the_capacity_path_when_nothing_is_dropped():
  tokens = jax.random.randint(jax.random.key(1), (2, 8), 0, 16)
  # Capacity factor E / k gives every expert T slots: no token can be dropped.
  roomy = gpt.build(gpt.ladder(1, **SMALL, experts=4, top_k=2, capacity_factor=2.0), 0)
  dropless = gpt.build(gpt.ladder(1, **SMALL, experts=4, top_k=2, capacity_factor=0.0), 0)
  a, sown_a = _forward(roomy, tokens)
  b, sown_b = _forward(dropless, tokens)
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  assert float(moe.collect(sown_a)[1]["moe_dropped"]) == 0.0
  # A tight capacity does drop, and changes the output.
  tight = gpt.build(gpt.ladder(1, **SMALL, experts=4, top_k=2, capacity_factor=0.5), 0)
  c, sown_c = _forward(tight, tokens)
  assert float(moe.collect(sown_c)[1]["moe_dropped"]) > 0.3
  assert not np.allclose(a, c)


def test_gradients_reach_the_router_and_every_chosen_expert():
  model = gpt.build(gpt.ladder(1, **SMALL, experts=4, top_k=2, capacity_factor=0.0), 0)
  graphdef, params = nnx.split(model, nnx.Param)
  tokens = jax.random.randint(jax.random.key(2), (4, 8), 0, 16)

  def loss(p):
    logits, sown = _forward(nnx.merge(graphdef, p), tokens)
    aux, _ = moe.collect(sown)
    return jnp.mean(logits ** 2) + aux

  grads = jax.jit(jax.grad(loss))(params)
  layer = grads["blocks"][0]["mlp"]
  assert float(jnp.abs(layer["router"][...]).sum()) > 0
  assert (jnp.abs(layer["up"][...]).sum(axis=(1, 2)) > 0).all()  # 32 assignments over 4 experts reach all


@pytest.mark.parametrize("experts,top_k", [(4, 1), (4, 2), (8, 2)])
def test_active_parameters_count_top_k_of_the_experts_leaves(experts, top_k):
  arch = gpt.ladder(2, **SMALL, experts=experts, top_k=top_k)
  model = nnx.eval_shape(lambda: gpt.build(arch, 0))  # shapes only: no init to compile
  counts = counting.count_params(model, gpt.EMBEDDING_LEAVES)
  leaves = {jax.tree_util.keystr(path): int(np.prod(leaf.shape))
            for path, leaf in jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]}
  expert_leaves = [k for k in leaves if "['mlp']['up']" in k or "['mlp']['down']" in k]
  assert len(expert_leaves) == 2 * arch.depth
  per_expert = sum(leaves[k] for k in expert_leaves) // experts
  assert per_expert == 2 * arch.depth * arch.width * arch.mlp_width
  assert counts["params_total"] == sum(leaves.values())
  assert counts["params_active"] == counts["params_total"] - (experts - top_k) * per_expert
  # The dense model of the same depth: what one expert-path adds beyond it is the router.
  dense = counting.abstract_counts(registry.get("gpt"), gpt.ladder(2, **SMALL))
  assert dense["params_active"] == dense["params_total"]
  router = arch.depth * arch.width * experts
  assert counts["params_active"] == dense["params_total"] + (top_k - 1) * per_expert + router
  # FLOPs per token from the active path: k experts' MLPs and the router's 2 d E, per layer.
  family = registry.get("gpt")
  moe_flops = counting.training_flops(family, arch, counts)
  dense_flops = counting.training_flops(family, gpt.ladder(2, **SMALL), dense)
  extra = arch.depth * ((top_k - 1) * 4 * arch.width * arch.mlp_width + 2 * arch.width * experts)
  assert moe_flops["flops_per_token"] - dense_flops["flops_per_token"] == 3 * extra
  assert moe_flops["flops_per_token_6n"] == 6 * (counts["params_active"] - counts["params_embedding"])


def test_the_ladder_refuses_impossible_routing():
  with pytest.raises(ValueError, match="top_k"):
    gpt.ladder(1, **SMALL, experts=2, top_k=3)
  with pytest.raises(ValueError, match="capacity_factor"):
    gpt.ladder(1, **SMALL, experts=2, capacity_factor=-1.0)


def test_load_entropy_is_one_at_a_uniform_load_and_zero_on_one_expert():
  assert float(moe.load_entropy(jnp.arange(8)[:, None] % 4, 4)) == pytest.approx(1.0)
  assert float(moe.load_entropy(jnp.zeros((8, 1), int), 4)) == pytest.approx(0.0, abs=1e-7)
  assert math.isclose(float(moe.load_entropy(jnp.zeros((8, 1), int), 1)), 1.0)


def test_the_dense_blocks_are_untouched():
  assert isinstance(gpt.build(gpt.ladder(1, **SMALL), 0).blocks[0].mlp, transformer.MLP)
