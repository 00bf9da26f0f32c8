"""Parametrizations (`model.options.parametrization`): standard (`sp`) or muP with CompleteP's depth rule (`mup`).

muP (Yang et al. 2021, Tensor Programs V, the Adam column of its table 3, in the output-multiplier
form of the microsoft/mup package), relative to a base shape (`base_width`, 0 or unset: the ladder's
depth-1 width, `width` when the ladder fixes it, else `aspect_ratio`; `base_head_dim`, 0 or unset:
`head_dim`), with m = width / base_width:

  hidden weights (two width-sized axes: qkv, attention out, MLP up/down, experts)
                      init variance 1/fan_in, Adam learning rate lr / m
  input weights, embeddings, norm scales, the router (at most one width-sized axis)
                      init as in sp, learning rate lr
  readout (unembedding, ViT head)
                      init 0 (microsoft/mup's readout_zero_init), learning rate lr, logits times 1/m
  attention           logits times sqrt(base_head_dim) / head_dim (1/d; equal to sp's 1/sqrt(d) at
                      the base head dim, so our ladders, which keep head_dim and add heads, see no change)

Depth: CompleteP (Dey et al. 2025), with `depth_alpha` (alpha, default 1) in [1/2, 1]: every residual
branch is multiplied by (base_depth / depth)^alpha (`base_depth`, 0 or unset: 1), the residual projections
lose sp's 1/sqrt(2 depth) init factor (the multiplier replaces it), and the Adam learning rate of every
parameter inside the blocks (hidden weights, the blocks' norm scales, a router) is multiplied by
(base_depth / depth)^(1 - alpha), as CompleteP's reference implementation does. alpha = 1 is CompleteP
(no learning-rate change with depth); alpha = 1/2 is depth-muP (Yang et al. 2023, Bordelon et al. 2023:
branches 1/sqrt(depth), block learning rates 1/sqrt(depth)). `depth_alpha` is a mup option: sp refuses
any other value than 1. Weight decay and init need no further depth correction. Adam's epsilon is left
alone (1e-8 sits far below these gradients; CompleteP scales it only where it does not). At the base
shape (m = 1, depth = base_depth) mup and sp differ only in the residual projections' and the readout's
init.

`sp` leaves every number as it was: no multiplier is applied, so sp programs are unchanged bit for bit.
"""
import jax
from flax import nnx

PARAMETRIZATIONS = ("sp", "mup")
WIDTH_AXES = ("embed", "heads", "mlp")  # logical axes whose size grows with the width


def check(parametrization: str, base_width, base_depth, base_head_dim, depth_alpha=1.0) -> None:
  """ValueError unless the options make sense (the ladder calls this)."""
  if parametrization not in PARAMETRIZATIONS:
    raise ValueError(f"parametrization {parametrization!r}: one of {', '.join(PARAMETRIZATIONS)}")
  if not isinstance(depth_alpha, (int, float)) or not 0.5 <= depth_alpha <= 1:
    raise ValueError(f"depth_alpha {depth_alpha!r}: CompleteP's alpha, between 0.5 (depth-muP) and 1 (CompleteP)")
  if depth_alpha != 1 and parametrization != "mup":
    raise ValueError(f"depth_alpha {depth_alpha!r} is a mup option; parametrization is {parametrization!r}")
  for name, value in (("base_width", base_width), ("base_depth", base_depth), ("base_head_dim", base_head_dim)):
    if not isinstance(value, int) or value < 0:
      raise ValueError(f"{name} {value!r}: a positive integer (0: the default)")


def is_mup(cfg) -> bool:
  return getattr(cfg, "parametrization", "sp") == "mup"


def width_mult(cfg) -> float:
  return cfg.width / cfg.base_width if is_mup(cfg) else 1.0


def depth_mult(cfg) -> float:
  return cfg.depth / cfg.base_depth if is_mup(cfg) else 1.0


def branch_multiplier(cfg):
  """What each residual branch is multiplied by: (base_depth / depth)^alpha under mup, None (nothing) under sp."""
  if not is_mup(cfg):
    return None
  return cfg.base_depth / cfg.depth if cfg.depth_alpha == 1 else depth_mult(cfg) ** -cfg.depth_alpha


def output_multiplier(cfg):
  """What the readout's logits are multiplied by: 1 / m under mup, None (nothing) under sp."""
  return 1.0 / width_mult(cfg) if is_mup(cfg) else None


def attention_scale(cfg):
  """The attention logits' scale under mup (sqrt(base_head_dim) / head_dim), None under sp (1/sqrt(head_dim))."""
  return cfg.base_head_dim ** 0.5 / cfg.head_dim if is_mup(cfg) else None


def readout_init_std(cfg) -> float:
  """The readout's init std: sp's 1/sqrt(width); 0 under mup (microsoft/mup's readout_zero_init: the logits
  start at 0 and what they become is the updates', the same at every width)."""
  return 0.0 if is_mup(cfg) else cfg.width ** -0.5


def residual_init_divisor(cfg) -> float:
  """What the residual projections' init std is divided by: sp's GPT-2 sqrt(2 depth); 1 under mup (the branch
  multiplier does its work)."""
  return 1.0 if is_mup(cfg) else (2 * cfg.depth) ** 0.5


def lr_multipliers(model: nnx.Module):
  """{parameter path: learning-rate multiplier} for the optimizer, or None under sp.

  A parameter is hidden (multiplier 1/m) when at least two of its logical axes grow with the width; every
  parameter inside the blocks also gets (base_depth / depth)^(1 - alpha).
  """
  cfg = model.cfg
  if not is_mup(cfg):
    return None
  in_blocks = depth_mult(cfg) ** (cfg.depth_alpha - 1)  # exactly 1.0 for alpha = 1
  multipliers = {}
  state = nnx.state(model, nnx.Param)
  for path, variable in jax.tree_util.tree_flatten_with_path(state, is_leaf=lambda x: isinstance(x, nnx.Variable))[0]:
    axes = variable.get_metadata().get("out_sharding") or ()
    hidden = sum(axis in WIDTH_AXES for axis in axes) >= 2
    multiplier = 1.0 / width_mult(cfg) if hidden else 1.0
    if getattr(path[0], "key", None) == "blocks":
      multiplier *= in_blocks
    multipliers[jax.tree_util.keystr(path)] = multiplier
  return multipliers
