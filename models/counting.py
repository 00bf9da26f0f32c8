"""Parameter counts under the conventions users fit against.

Kaplan et al. (2020) fit non-embedding parameters; Chinchilla (Hoffmann et al.
2022) fits total parameters; a mixture of experts is compared at its active
parameters, what one token uses (Clark et al. 2022). The fitted exponents and
tokens-per-parameter ratios move with the choice, so every trial records all of them.
"""
import jax
import numpy as np
from flax import nnx


def count_params(model: nnx.Module, embedding_leaves: tuple) -> dict:
  """Counts the parameter leaves of `model` (numbers of scalars).

  `params_active` counts what one token uses: a leaf with an `expert` axis
  (models/moe.py) counts top_k / experts of its size. A dense model's active
  count is its total.
  """
  state = nnx.state(model, nnx.Param)
  cfg = getattr(model, "cfg", None)
  total = embedding = inactive = 0
  for path, variable in jax.tree_util.tree_flatten_with_path(
      state, is_leaf=lambda x: isinstance(x, nnx.Variable))[0]:
    size = int(np.prod(np.shape(variable)))
    total += size
    if str(getattr(path[0], "key", path[0])) in embedding_leaves:
      embedding += size
    axes = variable.get_metadata().get("out_sharding") or () if isinstance(variable, nnx.Variable) else ()
    if "expert" in axes:
      inactive += size - size * cfg.top_k // cfg.experts
  return {"params_total": total, "params_embedding": embedding,
          "params_non_embedding": total - embedding, "params_active": total - inactive}


def training_flops(family, arch, counts: dict) -> dict:
  """Training FLOPs per example and per token (position): the exact count and Kaplan's 6N
  (N the active non-embedding parameters: what a token's forward and backward pass multiplies by).

  A GPT example is a window of seq_len tokens; a ViT example is an image of
  n_patches tokens, so FLOPs per token is FLOPs per example / tokens per example.
  """
  flops = family.flops_per_example(arch)
  exact, tokens = int(flops["exact"]), int(flops["tokens"])
  six_n = 6 * (counts.get("params_active", counts["params_total"]) - counts["params_embedding"])
  return {"flops_per_example": exact, "flops_per_example_6n": six_n * tokens, "tokens_per_example": tokens,
          "flops_per_token": exact // tokens if exact % tokens == 0 else exact / tokens,
          "flops_per_token_6n": six_n}


def flops_per_step(family, arch, counts: dict, batch_size: int, flop_count: str = "exact") -> int:
  """Training FLOPs of one optimizer step of batch_size examples, counted `exact` or `6n`."""
  flops = training_flops(family, arch, counts)
  return batch_size * flops["flops_per_example" if flop_count == "exact" else "flops_per_example_6n"]


def abstract_counts(family, arch) -> dict:
  """count_params of the model `arch` builds, from its shapes alone (nnx.eval_shape: nothing allocated)."""
  return count_params(nnx.eval_shape(lambda: family.build(arch, 0)), family.embedding_leaves)
