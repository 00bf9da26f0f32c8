"""Pre-norm transformer blocks shared by the families (GPT over tokens, ViT over patches).

A block reads its shape from the family's config: `width`, `n_heads`,
`head_dim`, `mlp_width`, `depth` (for the residual init scale),
`attention_impl`, and two switches, `causal` (GPT, next-patch ViT) and
`rotary` (rotary positions: GPT; ViT adds learned positions instead).
Parameters carry logical axis names (MaxText style) so a mesh can shard them
by rules without the model knowing about devices.
"""
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from models import moe
from models import mup


class BlockShape:
  """Derived shapes of a family config with `width`, `n_heads` and `mlp_ratio` fields."""

  @property
  def head_dim(self) -> int:
    return self.width // self.n_heads

  @property
  def mlp_width(self) -> int:
    return self.mlp_ratio * self.width


def ladder_width(depth: int, aspect_ratio: int, width: int, head_dim: int) -> int:
  """A rung's width: the ladder's fixed `width` (> 0), else aspect_ratio * depth; ValueError unless it is a
  multiple of head_dim (the families' ladders call this)."""
  if not isinstance(width, int) or isinstance(width, bool) or width < 0:
    raise ValueError(f"width {width!r}: 0 (width = aspect_ratio * depth) or the fixed width of every rung")
  rung = width or aspect_ratio * depth
  if rung % head_dim:
    how = "" if width else " (= aspect_ratio * depth)"
    raise ValueError(f"width {rung}{how} is not a multiple of head_dim {head_dim}")
  return rung


class Dense(nnx.Linear):
  """nnx.Linear as one 2-D matmul over the flattened leading dimensions.

  The same numbers, bit for bit; but differentiating a [batch, seq, d_in] x [d_in, d_out] contraction
  makes XLA's CPU backend contract the weight gradient over two dimensions, for which it writes a
  transposed copy of the output's gradient (fused with whatever produced it: the GELU's derivative).
  In 2-D the weight gradient is a plain [d_in, tokens] x [tokens, d_out] dot: the train step at
  nanoGPT's CPU configuration runs 1.1-1.25x faster (benchmarks/RESULTS.md).
  """

  def __call__(self, x):
    y = super().__call__(x.reshape(-1, x.shape[-1]))
    return y.reshape(*x.shape[:-1], y.shape[-1])


def dense(rngs, d_in, d_out, axes, std):
  init = nnx.with_partitioning(nnx.initializers.normal(std), axes)
  return Dense(d_in, d_out, use_bias=False, kernel_init=init, rngs=rngs)


def norm(rngs, width):
  return nnx.RMSNorm(width, use_scale=True, rngs=rngs,
                     scale_init=nnx.with_partitioning(nnx.initializers.ones, ("norm",)))


class Attention(nnx.Module):

  def __init__(self, cfg, rngs: nnx.Rngs):
    std = cfg.width ** -0.5
    self.cfg = cfg
    self.qkv = dense(rngs, cfg.width, 3 * cfg.width, ("embed", "heads"), std)
    # Residual projections start small (GPT-2): keeps the residual stream O(1) at depth.
    self.out = dense(rngs, cfg.width, cfg.width, ("heads", "embed"), std / mup.residual_init_divisor(cfg))

  def __call__(self, x):
    cfg = self.cfg
    batch, seq, _ = x.shape
    q, k, v = jnp.split(self.qkv(x).reshape(batch, seq, 3 * cfg.n_heads, cfg.head_dim), 3, axis=2)
    if cfg.rotary:
      q, k = rotary(q), rotary(k)
    scale = mup.attention_scale(cfg)
    if scale is not None:  # muP's 1/d: q carries the change from the kernels' default 1/sqrt(d).
      q = q * (scale * cfg.head_dim ** 0.5)
    if cfg.attention_impl == "xla":
      y = attention(q, k, v, causal=cfg.causal)
    else:
      import pallas_kernels  # Only needed when a kernel is asked for.
      y = pallas_kernels.attention(q, k, v, causal=cfg.causal, impl=cfg.attention_impl)
    return self.out(y.reshape(batch, seq, cfg.width))


def attention(q, k, v, causal: bool = True):
  """Softmax attention over [batch, seq, heads, head_dim], computed in float32."""
  seq = q.shape[1]
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) * q.shape[-1] ** -0.5
  if causal:
    mask = jnp.tril(jnp.ones((seq, seq), dtype=bool))
    logits = jnp.where(mask, logits, -1e30)
  weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


def rotary(x, base=10_000.0):
  """Rotary position embedding (Su et al. 2021) on [batch, seq, heads, head_dim]."""
  seq, head_dim = x.shape[1], x.shape[-1]
  inv_freq = base ** (-jnp.arange(0, head_dim // 2, dtype=jnp.float32) / (head_dim // 2))
  angles = jnp.arange(seq, dtype=jnp.float32)[:, None] * inv_freq[None, :]  # [seq, head_dim/2]
  cos, sin = jnp.cos(angles)[None, :, None, :], jnp.sin(angles)[None, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).astype(x.dtype)


class MLP(nnx.Module):

  def __init__(self, cfg, rngs: nnx.Rngs):
    std = cfg.width ** -0.5
    self.up = dense(rngs, cfg.width, cfg.mlp_width, ("embed", "mlp"), std)
    self.down = dense(rngs, cfg.mlp_width, cfg.width, ("mlp", "embed"),
                      cfg.mlp_width ** -0.5 / mup.residual_init_divisor(cfg))

  def __call__(self, x):
    return self.down(jax.nn.gelu(self.up(x), approximate=True))


class Block(nnx.Module):

  def __init__(self, cfg, rngs: nnx.Rngs):
    self.cfg = cfg
    self.attn_norm = norm(rngs, cfg.width)
    self.attn = Attention(cfg, rngs)
    self.mlp_norm = norm(rngs, cfg.width)
    if getattr(cfg, "experts", 0):
      self.mlp = moe.MoE(cfg, rngs)
    else:
      self.mlp = MLP(cfg, rngs)

  def __call__(self, x):
    return self.parts(x)[0]

  def parts(self, x):
    """(the block's output, its attention branch, its MLP branch), each branch as added to the residual
    stream (times muP's depth multiplier)."""
    branch = mup.branch_multiplier(self.cfg)
    scaled = (lambda y: y) if branch is None else (lambda y: y * branch)
    attended = scaled(self.attn(self.attn_norm(x)))
    x = x + attended
    mixed = scaled(self.mlp(self.mlp_norm(x)))
    return x + mixed, attended, mixed


def layer_flops(cfg, seq: int) -> int:
  """Forward FLOPs of one block for one position attending over `seq` positions.

  Every matmul (2 FLOPs per multiply-add), attention scores and weighted sum over
  the full context (Kaplan et al. 2020 / Chinchilla appendix F convention; causal
  masking is not discounted) and the softmax (3 per score). Norms and
  activations are negligible and left out. A mixture-of-experts MLP counts its
  active path: the router and the top_k experts each token goes to.
  """
  d = cfg.width
  experts = getattr(cfg, "experts", 0)
  mlp = 2 * 2 * d * cfg.mlp_width * (cfg.top_k if experts else 1) + 2 * d * experts
  return (2 * 3 * d * d            # q, k, v projections
          + 2 * seq * d            # scores q.k over the context
          + 3 * cfg.n_heads * seq  # softmax
          + 2 * seq * d            # weighted sum of values
          + 2 * d * d              # output projection
          + mlp)


def build(module_class, cfg, seed: int):
  """`module_class(cfg, rngs)`, initialised by one jitted program per (class, config) that takes the seed's key
  as an argument: eager init compiles every parameter shape separately, and a seed compiled in as a constant
  compiles the whole init again for every seed (2 s a trial on a 2-core CPU)."""
  # Logical axes stay metadata here; scaling/ maps them onto a mesh when there is one.
  graphdef, init = _init(module_class, cfg)
  with nnx.use_eager_sharding(False):
    return nnx.merge(graphdef, init(jax.random.key(seed)))


@functools.lru_cache(maxsize=64)
def _init(module_class, cfg):
  """(graphdef, jitted key -> parameter state) of `module_class(cfg, ...)`."""
  def state(key):
    return nnx.split(module_class(cfg, nnx.Rngs(params=key)))[1]
  with nnx.use_eager_sharding(False):
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: module_class(cfg, nnx.Rngs(params=0))))
  return graphdef, jax.jit(state)
