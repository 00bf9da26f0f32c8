"""Mixture-of-experts MLP: a router sends each token to `top_k` of `experts` feed-forward experts.

The GPT family's blocks use it in place of the dense MLP when `experts` > 0
(models/gpt.py); attention, norms and the residual stream are the same blocks.

Routing (Switch Transformer, Fedus et al. 2021; GShard, Lepikhin et al. 2020):
softmax router probabilities in float32, the top-k experts per token, gates
renormalised over the k chosen when k > 1 (k = 1 keeps the raw probability so
the router gets a gradient). Two ways to run the experts:

* capacity (`capacity_factor` > 0): each expert takes at most
  ceil(capacity_factor * k * T / E) tokens of a sequence of T; the rest are
  dropped (their MLP output is zero, the residual carries them). Priority is
  GShard's: every token's first choice before any second choice, earlier tokens
  first. Dense einsums over [batch, tokens, experts, capacity]: shards over an
  `expert` mesh axis (expert parallelism).
* dropless (`capacity_factor` = 0): tokens sorted by expert and run through
  `jax.lax.ragged_dot` (grouped matmul); nothing is dropped.

Capacity is per sequence, so a row's routing never depends on the other rows of
its batch: microbatches and data-parallel devices see the same routing.

Auxiliary losses, averaged over layers so a coefficient means the same at every
depth of the ladder: Switch's load-balancing loss E * sum_e f_e P_e (f_e the
fraction of routed assignments to expert e, P_e its mean router probability;
1 at a uniform load) and the router z-loss mean(logsumexp(logits)^2) (ST-MoE,
Zoph et al. 2022). Each layer sows them and its routing statistics as
nnx.Intermediate; `collect` turns the captured values into the objective's aux
loss and logged metrics.
"""
import math

import jax
import jax.numpy as jnp
from flax import nnx

from models import mup

# Routing statistics each layer sows (averaged over layers by `collect`), logged as moe_<name>.
STATS = ("load_balance", "z_loss", "dropped", "load_entropy")


def capacity(tokens: int, experts: int, top_k: int, capacity_factor: float) -> int:
  """Slots per expert for a sequence of `tokens`: ceil(factor * k * T / E), at most k * T."""
  return max(1, min(top_k * tokens, math.ceil(capacity_factor * top_k * tokens / experts)))


def route(logits, top_k: int):
  """Router logits [..., E] -> (probabilities [..., E], gates [..., k], expert indices [..., k])."""
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  gates, index = jax.lax.top_k(probs, top_k)
  if top_k > 1:
    gates = gates / jnp.sum(gates, axis=-1, keepdims=True)
  return probs, gates, index


def load_balance_loss(probs, index, experts: int):
  """Switch's E * sum_e f_e P_e over all tokens: f_e from the k choices of each token, P_e the mean probability."""
  assigned = jax.nn.one_hot(index, experts, dtype=jnp.float32)  # [..., k, E]
  fraction = jnp.mean(assigned.reshape(-1, experts), axis=0)  # share of all routed assignments
  mean_prob = jnp.mean(probs.reshape(-1, experts), axis=0)
  return experts * jnp.sum(fraction * mean_prob)


def z_loss(logits):
  return jnp.mean(jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1) ** 2)


def load_entropy(index, experts: int):
  """Entropy of the experts' share of assignments, over log E: 1 is a uniform load, 0 one expert takes all."""
  if experts == 1:
    return jnp.ones((), jnp.float32)
  share = jnp.mean(jax.nn.one_hot(index, experts, dtype=jnp.float32).reshape(-1, experts), axis=0)
  return -jnp.sum(jnp.where(share > 0, share * jnp.log(jnp.where(share > 0, share, 1.0)), 0.0)) / math.log(experts)


def dispatch_masks(gates, index, experts: int, slots: int):
  """Per sequence: which (expert, slot) each token goes to, and with what gate.

  gates, index: [B, T, k]. Returns dispatch [B, T, E, C] (0/1) and combine
  [B, T, E, C] (the gate where dispatched) and the fraction of assignments kept.
  Slots fill in priority order: all first choices (by position), then all second choices.
  """
  batch, tokens, top_k = index.shape
  onehot = jax.nn.one_hot(index, experts, dtype=jnp.int32)  # [B, T, k, E]
  by_priority = jnp.swapaxes(onehot, 1, 2).reshape(batch, top_k * tokens, experts)  # choice-major
  position = (jnp.cumsum(by_priority, axis=1) - 1) * by_priority  # slot of each assignment in its expert
  position = jnp.swapaxes(position.reshape(batch, top_k, tokens, experts), 1, 2)  # [B, T, k, E]
  kept = onehot * (position < slots)
  slot = jax.nn.one_hot(jnp.sum(position * kept, axis=-1), slots, dtype=jnp.float32)  # [B, T, k, C]
  kept_choice = jnp.sum(kept, axis=-1).astype(jnp.float32)  # [B, T, k]
  dispatch_k = kept.astype(jnp.float32)[..., None] * slot[..., None, :]  # [B, T, k, E, C]
  dispatch = jnp.sum(dispatch_k, axis=2)
  combine = jnp.sum(dispatch_k * gates[..., None, None].astype(jnp.float32), axis=2)
  return dispatch, combine, jnp.mean(kept_choice)


def _param(rngs, shape, axes, std):
  return nnx.Param(nnx.with_partitioning(nnx.initializers.normal(std), axes)(rngs.params(), shape))


class MoE(nnx.Module):
  """A drop-in for transformer.MLP: [batch, seq, width] -> [batch, seq, width]."""

  def __init__(self, cfg, rngs: nnx.Rngs):
    self.cfg = cfg
    d, f, e = cfg.width, cfg.mlp_width, cfg.experts
    self.router = _param(rngs, (d, e), ("embed", None), d ** -0.5)
    self.up = _param(rngs, (e, d, f), ("expert", "embed", "mlp"), d ** -0.5)
    self.down = _param(rngs, (e, f, d), ("expert", "mlp", "embed"), f ** -0.5 / mup.residual_init_divisor(cfg))

  def __call__(self, x):
    cfg = self.cfg
    logits = jnp.einsum("btd,de->bte", x.astype(jnp.float32), self.router[...].astype(jnp.float32))
    probs, gates, index = route(logits, cfg.top_k)
    if cfg.capacity_factor > 0:
      y, kept = self._capacity(x, gates, index)
    else:
      y, kept = self._dropless(x, gates, index), jnp.ones((), jnp.float32)
    lb, z = load_balance_loss(probs, index, cfg.experts), z_loss(logits)
    self.sow(nnx.Intermediate, "aux_loss", cfg.router_aux * lb + cfg.router_z * z)
    for name, value in zip(STATS, (lb, z, 1.0 - kept, load_entropy(index, cfg.experts))):
      self.sow(nnx.Intermediate, name, value)
    return y

  def _expert_mlp(self, h, pattern_up, pattern_down):
    return jnp.einsum(pattern_down, jax.nn.gelu(jnp.einsum(pattern_up, h, self.up[...]), approximate=True),
                      self.down[...])

  def _capacity(self, x, gates, index):
    cfg = self.cfg
    slots = capacity(x.shape[1], cfg.experts, cfg.top_k, cfg.capacity_factor)
    dispatch, combine, kept = dispatch_masks(gates, index, cfg.experts, slots)
    expert_in = jnp.einsum("btec,btd->becd", dispatch.astype(x.dtype), x)
    expert_out = self._expert_mlp(expert_in, "becd,edf->becf", "becf,efd->becd")
    return jnp.einsum("btec,becd->btd", combine.astype(x.dtype), expert_out), kept

  def _dropless(self, x, gates, index):
    """Every (token, choice) through its expert by a grouped matmul over the tokens sorted by expert."""
    cfg = self.cfg
    batch, seq, width = x.shape
    flat_expert = index.reshape(-1)  # [B*T*k], token-major
    order = jnp.argsort(flat_expert, stable=True)
    rows = jnp.repeat(x.reshape(-1, width), cfg.top_k, axis=0)[order]
    sizes = jnp.bincount(flat_expert, length=cfg.experts).astype(jnp.int32)
    h = jax.nn.gelu(jax.lax.ragged_dot(rows, self.up[...], sizes), approximate=True)
    out = jax.lax.ragged_dot(h, self.down[...], sizes)
    out = jnp.zeros_like(out).at[order].set(out).reshape(batch, seq, cfg.top_k, width)
    return jnp.einsum("btkd,btk->btd", out, gates.astype(x.dtype))


def collect(intermediates) -> tuple:
  """Captured nnx.Intermediate state -> (aux loss, {moe_<stat>: mean over layers}); (0, {}) without MoE layers."""
  found = {}
  for path, value in jax.tree_util.tree_flatten_with_path(intermediates)[0]:
    keys = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    name = next((k for k in reversed(keys) if k in STATS or k == "aux_loss"), None)
    if name is not None:
      found.setdefault(name, []).append(jnp.asarray(value, jnp.float32).reshape(()))
  if not found:
    return jnp.zeros((), jnp.float32), {}
  mean = {name: jnp.mean(jnp.stack(values)) for name, values in found.items()}
  return mean["aux_loss"], {"moe_aux_loss": mean["aux_loss"], **{f"moe_{s}": mean[s] for s in STATS}}
