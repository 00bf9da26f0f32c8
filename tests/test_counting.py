"""Parameter counts and FLOPs per token against the leaves actually built."""
import jax
import numpy as np
import pytest
from flax import nnx

from models import counting, registry


@pytest.mark.parametrize("depth,aspect,head_dim,vocab", [(1, 16, 8, 11), (3, 32, 16, 65)])
def test_counts_match_leaves_and_closed_form(depth, aspect, head_dim, vocab):
  family = registry.get("gpt")
  arch = family.ladder(depth, vocab_size=vocab, seq_len=32, aspect_ratio=aspect, head_dim=head_dim)
  model = family.build(arch, seed=0)
  counts = counting.count_params(model, family.embedding_leaves)
  leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
  assert counts["params_total"] == sum(int(np.prod(x.shape)) for x in leaves)
  d, f = arch.width, arch.mlp_width
  assert counts["params_embedding"] == vocab * d  # token table only: positions are rotary
  per_layer = 4 * d * d + 2 * d * f + 2 * d  # qkv + out, up + down, two norm scales
  assert counts["params_non_embedding"] == depth * per_layer + d + d * vocab  # + final norm + unembedding
  assert counts["params_total"] == counts["params_embedding"] + counts["params_non_embedding"]


def test_gpt_flops_conventions():
  family = registry.get("gpt")
  arch = family.ladder(4, vocab_size=64, seq_len=128, aspect_ratio=64, head_dim=64)
  counts = counting.abstract_counts(family, arch)
  flops = counting.training_flops(family, arch, counts)
  assert flops["flops_per_token_6n"] == 6 * counts["params_non_embedding"]
  # The exact count adds attention over the context: 3 * 2 * 2 * layers * seq * width, plus softmax.
  attention = 3 * arch.depth * (4 * arch.seq_len * arch.width + 3 * arch.n_heads * arch.seq_len)
  norm_scales = 6 * (2 * arch.depth + 1) * arch.width  # counted in N, free in the matmul count
  assert flops["flops_per_token"] == flops["flops_per_token_6n"] + attention - norm_scales


def test_ladder_is_one_dial():
  family = registry.get("gpt")
  widths = [family.ladder(d, vocab_size=16, seq_len=8, aspect_ratio=16, head_dim=8).width for d in (1, 2, 3)]
  assert widths == [16, 32, 48]
  with pytest.raises(ValueError, match="head_dim"):
    family.ladder(1, vocab_size=16, seq_len=8, aspect_ratio=12, head_dim=8)
