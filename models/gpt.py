"""Decoder-only GPT in Flax NNX, sized by one dial: depth.

The ladder follows nanochat: `depth` layers, `width = aspect_ratio * depth`,
`n_heads = width // head_dim`. Pre-norm RMSNorm blocks, rotary positions (a head
that looks a fixed distance back is easy to learn, which n-gram structure
needs), untied unembedding, no biases. Parameters carry logical axis names (MaxText style) so a
mesh can shard them by rules without the model knowing about devices.
"""
import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from models import registry


@dataclasses.dataclass(frozen=True)
class GPTConfig:
  vocab_size: int
  seq_len: int  # Context length in tokens.
  depth: int
  width: int
  n_heads: int
  mlp_ratio: int = 4
  attention_impl: str = "xla"  # Passed to pallas_kernels.attention when not "xla".

  @property
  def head_dim(self) -> int:
    return self.width // self.n_heads

  @property
  def mlp_width(self) -> int:
    return self.mlp_ratio * self.width


def ladder(depth: int, *, vocab_size: int, seq_len: int, aspect_ratio: int = 64,
           head_dim: int = 64, mlp_ratio: int = 4, attention_impl: str = "xla") -> GPTConfig:
  """The size ladder: one integer dial (depth) -> a full architecture."""
  if depth < 1:
    raise ValueError(f"depth must be >= 1, got {depth}")
  width = aspect_ratio * depth
  if width % head_dim:
    raise ValueError(f"width {width} (= aspect_ratio * depth) is not a multiple of head_dim {head_dim}")
  return GPTConfig(vocab_size=vocab_size, seq_len=seq_len, depth=depth, width=width,
                   n_heads=width // head_dim, mlp_ratio=mlp_ratio, attention_impl=attention_impl)


def _dense(rngs, d_in, d_out, axes, std):
  init = nnx.with_partitioning(nnx.initializers.normal(std), axes)
  return nnx.Linear(d_in, d_out, use_bias=False, kernel_init=init, rngs=rngs)


def _norm(rngs, width):
  return nnx.RMSNorm(width, use_scale=True, rngs=rngs,
                     scale_init=nnx.with_partitioning(nnx.initializers.ones, ("norm",)))


class Attention(nnx.Module):

  def __init__(self, cfg: GPTConfig, rngs: nnx.Rngs):
    std = cfg.width ** -0.5
    self.cfg = cfg
    self.qkv = _dense(rngs, cfg.width, 3 * cfg.width, ("embed", "heads"), std)
    # Residual projections start small (GPT-2): keeps the residual stream O(1) at depth.
    self.out = _dense(rngs, cfg.width, cfg.width, ("heads", "embed"), std / (2 * cfg.depth) ** 0.5)

  def __call__(self, x):
    cfg = self.cfg
    batch, seq, _ = x.shape
    q, k, v = jnp.split(self.qkv(x).reshape(batch, seq, 3 * cfg.n_heads, cfg.head_dim), 3, axis=2)
    q, k = rotary(q), rotary(k)
    if cfg.attention_impl == "xla":
      y = causal_attention(q, k, v)
    else:
      import pallas_kernels  # Only needed when a kernel is asked for.
      y = pallas_kernels.attention(q, k, v, causal=True, impl=cfg.attention_impl)
    return self.out(y.reshape(batch, seq, cfg.width))


def causal_attention(q, k, v):
  """Softmax attention over [batch, seq, heads, head_dim], computed in float32."""
  seq = q.shape[1]
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) * q.shape[-1] ** -0.5
  mask = jnp.tril(jnp.ones((seq, seq), dtype=bool))
  weights = jax.nn.softmax(jnp.where(mask, logits, -1e30), axis=-1).astype(v.dtype)
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

  def __init__(self, cfg: GPTConfig, rngs: nnx.Rngs):
    std = cfg.width ** -0.5
    self.up = _dense(rngs, cfg.width, cfg.mlp_width, ("embed", "mlp"), std)
    self.down = _dense(rngs, cfg.mlp_width, cfg.width, ("mlp", "embed"),
                       cfg.mlp_width ** -0.5 / (2 * cfg.depth) ** 0.5)

  def __call__(self, x):
    return self.down(jax.nn.gelu(self.up(x), approximate=True))


class Block(nnx.Module):

  def __init__(self, cfg: GPTConfig, rngs: nnx.Rngs):
    self.attn_norm = _norm(rngs, cfg.width)
    self.attn = Attention(cfg, rngs)
    self.mlp_norm = _norm(rngs, cfg.width)
    self.mlp = MLP(cfg, rngs)

  def __call__(self, x):
    x = x + self.attn(self.attn_norm(x))
    return x + self.mlp(self.mlp_norm(x))


class GPT(nnx.Module):
  """Maps int tokens [batch, seq] to float32 logits [batch, seq, vocab]."""

  def __init__(self, cfg: GPTConfig, rngs: nnx.Rngs):
    self.cfg = cfg
    embed_init = nnx.with_partitioning(nnx.initializers.normal(0.02), ("vocab", "embed"))
    self.token_embedding = nnx.Embed(cfg.vocab_size, cfg.width, embedding_init=embed_init, rngs=rngs)
    self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.depth)])
    self.final_norm = _norm(rngs, cfg.width)
    self.unembedding = _dense(rngs, cfg.width, cfg.vocab_size, ("embed", "vocab"), cfg.width ** -0.5)

  def __call__(self, tokens):
    x = self.token_embedding(tokens)
    for block in self.blocks:
      x = block(x)
    return self.unembedding(self.final_norm(x)).astype(jnp.float32)


# Names of the parameter leaves that are lookup tables (no FLOPs): the embedding count.
EMBEDDING_LEAVES = ("token_embedding",)


def flops_per_token(cfg: GPTConfig) -> dict:
  """Training FLOPs per token (forward + backward = 3x forward), two conventions.

  `exact`: every matmul (2 FLOPs per multiply-add) including the unembedding,
  attention scores and weighted sum over the full context (Kaplan et al. 2020 /
  Chinchilla appendix F convention; causal masking is not discounted), and the
  softmax (3 per score). Norms and activations are negligible and left out.
  `six_n`: 6 * non-embedding parameters (Kaplan's C = 6N).
  """
  d, seq, layers = cfg.width, cfg.seq_len, cfg.depth
  per_layer = (2 * 3 * d * d            # q, k, v projections
               + 2 * seq * d            # scores q.k over the context
               + 3 * cfg.n_heads * seq  # softmax
               + 2 * seq * d            # weighted sum of values
               + 2 * d * d              # output projection
               + 2 * 2 * d * cfg.mlp_width)
  forward = layers * per_layer + 2 * d * cfg.vocab_size
  return {"exact": 3 * forward}


def build(cfg: GPTConfig, seed: int) -> GPT:
  # Logical axes stay metadata here; scaling/ maps them onto a mesh when there is one.
  # One jitted init: eager init compiles every distinct parameter shape separately (seconds on CPU).
  with nnx.use_eager_sharding(False):
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: GPT(cfg, nnx.Rngs(params=seed))))
    state = jax.jit(lambda: nnx.split(GPT(cfg, nnx.Rngs(params=seed)))[1])()
  return nnx.merge(graphdef, state)


registry.register("gpt", ladder=ladder, build=build, flops_per_token=flops_per_token,
                  embedding_leaves=EMBEDDING_LEAVES)
