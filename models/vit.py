"""Vision transformer in Flax NNX, sized by one dial like GPT: depth (width = aspect_ratio * depth, or a fixed `width`).

Images (uint8 [B, H, W, C]) are cut into patch_size x patch_size patches in
raster order; each patch is a token. A linear patch embedding plus a learned
position embedding feeds the transformer blocks GPT uses (models/transformer.py),
without rotary positions. What sits on top depends on the objective
(scaling/objectives/): `classify` pools the tokens (mean, big_vision's `gap`)
into a class head; `masked_patches` adds a learned mask token and a pixel head;
`next_patch` makes attention causal and adds a pixel head. `features(images)` is
the pooled representation a linear probe reads.
"""
import dataclasses

import jax.numpy as jnp
from flax import nnx

from models import mup, registry, transformer

OBJECTIVES = ("classify", "masked_patches", "next_patch")


@dataclasses.dataclass(frozen=True)
class ViTConfig(transformer.BlockShape):
  image_shape: tuple  # (H, W, C)
  patch_size: int
  depth: int
  width: int
  n_heads: int
  num_classes: int  # 0 for a model without a class head
  objective: str  # decides the head, the mask token and causality
  mlp_ratio: int = 4
  attention_impl: str = "xla"
  parametrization: str = "sp"  # or "mup" (models/mup.py), relative to the base shape below
  base_width: int = 0
  base_depth: int = 1
  base_head_dim: int = 0
  depth_alpha: float = 1.0
  rotary = False

  @property
  def causal(self) -> bool:
    return self.objective == "next_patch"

  @property
  def n_patches(self) -> int:
    height, width, _ = self.image_shape
    return (height // self.patch_size) * (width // self.patch_size)

  @property
  def patch_dim(self) -> int:
    return self.patch_size * self.patch_size * self.image_shape[2]


def ladder(depth: int, *, image_shape, num_classes: int = 0, objective: str = "classify", aspect_ratio: int = 32,
           head_dim: int = 16, patch_size: int = 4, mlp_ratio: int = 4, attention_impl: str = "xla",
           parametrization: str = "sp", base_width: int = 0, base_depth: int = 0,
           base_head_dim: int = 0, depth_alpha: float = 1.0, width: int = 0) -> ViTConfig:
  """The size ladder: one integer dial (depth) -> a full architecture. `width` > 0 fixes the width of every
  rung (a depth-only ladder, for depth studies); 0 grows it as aspect_ratio * depth."""
  if depth < 1:
    raise ValueError(f"depth must be >= 1, got {depth}")
  mup.check(parametrization, base_width, base_depth, base_head_dim, depth_alpha)
  rung_width = transformer.ladder_width(depth, aspect_ratio, width, head_dim)
  height, image_width, _ = image_shape
  if patch_size < 1 or height % patch_size or image_width % patch_size:
    raise ValueError(f"patch_size {patch_size} does not divide the {height}x{image_width} image")
  if objective not in OBJECTIVES:
    raise ValueError(f"objective {objective!r} is not one of {OBJECTIVES}")
  if objective == "classify" and num_classes < 2:
    raise ValueError(f"objective classify needs labelled data (num_classes >= 2), got {num_classes}")
  return ViTConfig(image_shape=tuple(image_shape), patch_size=patch_size, depth=depth, width=rung_width,
                   n_heads=rung_width // head_dim, num_classes=num_classes if objective == "classify" else 0,
                   objective=objective, mlp_ratio=mlp_ratio, attention_impl=attention_impl,
                   parametrization=parametrization, base_width=base_width or width or aspect_ratio,
                   base_depth=base_depth or 1, base_head_dim=base_head_dim or head_dim,
                   depth_alpha=float(depth_alpha))


class ViT(nnx.Module):

  def __init__(self, cfg: ViTConfig, rngs: nnx.Rngs):
    self.cfg = cfg
    self.patch_embedding = transformer.dense(rngs, cfg.patch_dim, cfg.width, ("pixels", "embed"), cfg.patch_dim ** -0.5)
    self.position_embedding = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (cfg.n_patches, cfg.width)),
                                        out_sharding=("seq", "embed"))
    if cfg.objective == "masked_patches":
      self.mask_token = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (cfg.width,)), out_sharding=("embed",))
    self.blocks = nnx.List([transformer.Block(cfg, rngs) for _ in range(cfg.depth)])
    self.final_norm = transformer.norm(rngs, cfg.width)
    if cfg.objective == "classify":
      self.head = transformer.dense(rngs, cfg.width, cfg.num_classes, ("embed", "classes"), mup.readout_init_std(cfg))
    else:
      self.head = transformer.dense(rngs, cfg.width, cfg.patch_dim, ("embed", "pixels"), mup.readout_init_std(cfg))

  def patchify(self, images):
    """uint8 [B, H, W, C] -> float32 [B, n_patches, patch_size^2 * C] in [0, 1], raster order."""
    batch, height, width, channels = images.shape
    p = self.cfg.patch_size
    x = images.astype(jnp.float32).reshape(batch, height // p, p, width // p, p, channels) / 255.0
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(batch, (height // p) * (width // p), p * p * channels)

  def encode(self, images, mask=None):
    """Final-norm token states [B, n_patches, width]; `mask` (bool [B, n_patches]) swaps in the mask token."""
    x = self.patch_embedding((self.patchify(images) - 0.5) / 0.5)
    if mask is not None:
      x = jnp.where(mask[..., None], self.mask_token[...].astype(x.dtype), x)
    x = x + self.position_embedding[...].astype(x.dtype)
    for block in self.blocks:
      x = block(x)
    return self.final_norm(x)

  def features(self, images):
    """The pooled representation [B, width] (mean over patches) that a linear probe reads."""
    return self.encode(images).mean(axis=1).astype(jnp.float32)

  def readout(self, states):
    """The head on token (or pooled) states, after muP's output multiplier."""
    multiplier = mup.output_multiplier(self.cfg)
    return self.head(states if multiplier is None else states * multiplier)

  def predict_pixels(self, states):
    return self.readout(states)

  def __call__(self, images):
    """Class logits [B, num_classes] (classify)."""
    return self.readout(self.encode(images).mean(axis=1)).astype(jnp.float32)


# Lookup tables without FLOPs: the position embedding and the mask token.
EMBEDDING_LEAVES = ("position_embedding", "mask_token")


def flops_per_example(cfg: ViTConfig) -> dict:
  """Training FLOPs (3x forward) per image: patch embedding, blocks over n_patches, and the head.

  The class head runs once per image on the pooled state; a pixel head once per patch.
  """
  tokens = cfg.n_patches
  per_token = 2 * cfg.patch_dim * cfg.width + cfg.depth * transformer.layer_flops(cfg, tokens)
  head = 2 * cfg.width * cfg.num_classes if cfg.objective == "classify" else tokens * 2 * cfg.width * cfg.patch_dim
  return {"exact": 3 * (tokens * per_token + head), "tokens": tokens}


def build(cfg: ViTConfig, seed: int) -> ViT:
  return transformer.build(ViT, cfg, seed)


registry.register("vit", ladder=ladder, build=build, flops_per_example=flops_per_example,
                  embedding_leaves=EMBEDDING_LEAVES, inputs=("image_shape", "num_classes", "objective"),
                  objectives=OBJECTIVES)
