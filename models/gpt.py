"""Decoder-only GPT in Flax NNX, sized by one dial: depth; dense or mixture-of-experts MLPs.

The ladder follows nanochat: `depth` layers, `width = aspect_ratio * depth` (or a fixed `width`),
`n_heads = width // head_dim`. Pre-norm RMSNorm blocks (models/transformer.py),
rotary positions (a head that looks a fixed distance back is easy to learn,
which n-gram structure needs), untied unembedding, no biases. With
`experts: E` every block's MLP is a routed mixture of E such MLPs (models/moe.py).
"""
import dataclasses

import jax.numpy as jnp
from flax import nnx

from models import mup, registry, transformer

# Experts per MoE layer at most: the router's dispatch is [batch, tokens, experts, slots] and every expert a full
# MLP, so far more than the few hundred fine-grained MoEs route among fits no host at any rung of the ladder.
MAX_EXPERTS = 1024


@dataclasses.dataclass(frozen=True)
class GPTConfig(transformer.BlockShape):
  vocab_size: int
  seq_len: int  # Context length in tokens.
  depth: int
  width: int
  n_heads: int
  mlp_ratio: int = 4
  attention_impl: str = "xla"  # Passed to pallas_kernels.attention when not "xla".
  # next_token's loss: "xla" (logits, then optax's cross-entropy) or a pallas_kernels.cross_entropy impl
  # ("auto", "pallas", "pallas_interpret"): the fused kernel never materialises the [tokens, vocab] logits.
  cross_entropy_impl: str = "xla"
  experts: int = 0  # 0: dense MLPs; E > 0: mixture-of-experts MLPs (models/moe.py), top_k of E per token.
  top_k: int = 1
  capacity_factor: float = 1.25  # Slots per expert over a uniform share; 0: dropless (jax.lax.ragged_dot).
  router_aux: float = 0.01  # Coefficient of Switch's load-balancing loss.
  router_z: float = 0.001  # Coefficient of the router z-loss.
  parametrization: str = "sp"  # or "mup" (models/mup.py), relative to the base shape below
  base_width: int = 0
  base_depth: int = 1
  base_head_dim: int = 0
  depth_alpha: float = 1.0
  causal = True  # Not fields: what makes the blocks a GPT's.
  rotary = True


def ladder(depth: int, *, vocab_size: int, seq_len: int, aspect_ratio: int = 64,
           head_dim: int = 64, mlp_ratio: int = 4, attention_impl: str = "xla", cross_entropy_impl: str = "xla",
           experts: int = 0, top_k: int = 1, capacity_factor: float = 1.25, router_aux: float = 0.01,
           router_z: float = 0.001, parametrization: str = "sp", base_width: int = 0,
           base_depth: int = 0, base_head_dim: int = 0, depth_alpha: float = 1.0, width: int = 0) -> GPTConfig:
  """The size ladder: one integer dial (depth) -> a full architecture. `width` > 0 fixes the width of every
  rung (a depth-only ladder, for depth studies); 0 grows it as aspect_ratio * depth. The MoE options keep depth the dial."""
  if depth < 1:
    raise ValueError(f"depth must be >= 1, got {depth}")
  if experts < 0 or (experts and not 1 <= top_k <= experts):
    raise ValueError(f"experts {experts}, top_k {top_k}: need experts >= 0 and 1 <= top_k <= experts")
  if experts > MAX_EXPERTS:
    raise ValueError(f"experts {experts}: at most {MAX_EXPERTS} (each one a full MLP of every block)")
  if not experts and top_k != 1:  # else it would change the trial id and nothing else
    raise ValueError(f"top_k {top_k} applies to a mixture of experts (experts > 0); a dense MLP routes nothing")
  if capacity_factor < 0 or router_aux < 0 or router_z < 0:
    raise ValueError("capacity_factor, router_aux and router_z must be >= 0")
  mup.check(parametrization, base_width, base_depth, base_head_dim, depth_alpha)
  if cross_entropy_impl not in ("xla", "auto", "pallas", "pallas_interpret"):
    raise ValueError(f"cross_entropy_impl {cross_entropy_impl!r}: one of xla, auto, pallas, pallas_interpret")
  rung_width = transformer.ladder_width(depth, aspect_ratio, width, head_dim)
  return GPTConfig(vocab_size=vocab_size, seq_len=seq_len, depth=depth, width=rung_width,
                   n_heads=rung_width // head_dim, mlp_ratio=mlp_ratio, attention_impl=attention_impl,
                   cross_entropy_impl=cross_entropy_impl, experts=experts, top_k=top_k if experts else 1, capacity_factor=float(capacity_factor),
                   router_aux=float(router_aux), router_z=float(router_z), parametrization=parametrization,
                   base_width=base_width or width or aspect_ratio, base_depth=base_depth or 1,
                   base_head_dim=base_head_dim or head_dim,
                   depth_alpha=float(depth_alpha))


class GPT(nnx.Module):
  """Maps int tokens [batch, seq] to float32 logits [batch, seq, vocab]."""

  def __init__(self, cfg: GPTConfig, rngs: nnx.Rngs):
    self.cfg = cfg
    embed_init = nnx.with_partitioning(nnx.initializers.normal(0.02), ("vocab", "embed"))
    self.token_embedding = nnx.Embed(cfg.vocab_size, cfg.width, embedding_init=embed_init, rngs=rngs)
    self.blocks = nnx.List([transformer.Block(cfg, rngs) for _ in range(cfg.depth)])
    self.final_norm = transformer.norm(rngs, cfg.width)
    self.unembedding = transformer.dense(rngs, cfg.width, cfg.vocab_size, ("embed", "vocab"),
                                         mup.readout_init_std(cfg))

  def __call__(self, tokens):
    return self.unembedding(self.hidden(tokens)).astype(jnp.float32)

  def hidden(self, tokens):
    """The final normed hidden states [batch, seq, width] (times muP's output multiplier): what the
    unembedding maps to logits."""
    x = self.token_embedding(tokens)
    for block in self.blocks:
      x = block(x)
    x, multiplier = self.final_norm(x), mup.output_multiplier(self.cfg)
    return x if multiplier is None else x * multiplier


# Names of the parameter leaves that are lookup tables (no FLOPs): the embedding count.
EMBEDDING_LEAVES = ("token_embedding",)


def flops_per_example(cfg: GPTConfig) -> dict:
  """Training FLOPs (forward + backward = 3x forward) per example: a window of seq_len tokens.

  `exact`: every block's matmuls, attention and softmax (transformer.layer_flops)
  plus the unembedding; 6N (Kaplan) is computed from the parameter counts.
  """
  per_token = cfg.depth * transformer.layer_flops(cfg, cfg.seq_len) + 2 * cfg.width * cfg.vocab_size
  return {"exact": 3 * per_token * cfg.seq_len, "tokens": cfg.seq_len}


def build(cfg: GPTConfig, seed: int) -> GPT:
  return transformer.build(GPT, cfg, seed)


registry.register("gpt", ladder=ladder, build=build, flops_per_example=flops_per_example,
                  embedding_leaves=EMBEDDING_LEAVES, inputs=("vocab_size", "seq_len"), objectives=("next_token",))
