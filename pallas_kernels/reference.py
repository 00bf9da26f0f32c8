"""Plain-XLA references: what the Pallas kernels must compute, in jnp.

They are the "xla" implementation of the dispatchers in `dispatch.py` (the
default on CPU) and the ground truth of the tests. They materialise the full
[heads, q_len, kv_len] score matrix (attention) and the full [tokens, vocab]
logits (cross-entropy), which is what the kernels avoid.
"""

import math

import jax
import jax.numpy as jnp

# Finite rather than -inf so a row with no visible key stays finite (uniform
# weights) instead of NaN; matches the kernels' mask value.
MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)


def attention_reference(q: jax.Array, k: jax.Array, v: jax.Array, *,
                        causal: bool = True,
                        sm_scale: float | None = None) -> jax.Array:
  """Softmax attention, softmax(q k^T * sm_scale) v, computed in f32.

  Args:
    q: [batch, q_len, heads, head_dim] queries.
    k: [batch, kv_len, kv_heads, head_dim] keys; heads % kv_heads == 0
      (grouped-query attention: query head h reads kv head h // group).
    v: [batch, kv_len, kv_heads, head_dim] values.
    causal: query i sees keys j <= i (positions aligned at 0, "top-left"; the
      usual training case has q_len == kv_len).
    sm_scale: multiplier of the logits; defaults to 1/sqrt(head_dim).

  Returns:
    [batch, q_len, heads, head_dim] in q.dtype.
  """
  batch, q_len, num_heads, head_dim = q.shape
  kv_len, num_kv_heads = k.shape[1], k.shape[2]
  if sm_scale is None:
    sm_scale = 1.0 / math.sqrt(head_dim)
  group = num_heads // num_kv_heads
  # Split query heads into (kv_head, group) instead of repeating k and v.
  q = q.reshape(batch, q_len, num_kv_heads, group, head_dim)
  logits = jnp.einsum("bqhgd,bkhd->bhgqk", q, k,
                      preferred_element_type=jnp.float32) * sm_scale
  if causal:
    visible = jnp.tril(jnp.ones((q_len, kv_len), dtype=bool))
    logits = jnp.where(visible, logits, MASK_VALUE)
  weights = jax.nn.softmax(logits, axis=-1)
  out = jnp.einsum("bhgqk,bkhd->bqhgd", weights.astype(v.dtype), v,
                   preferred_element_type=jnp.float32)
  return out.reshape(batch, q_len, num_heads, head_dim).astype(q.dtype)


def cross_entropy_reference(hidden: jax.Array, unembedding: jax.Array,
                            labels: jax.Array) -> jax.Array:
  """Per-token softmax cross-entropy of logits = hidden @ unembedding.

  Args:
    hidden: [tokens, d_model] final hidden states.
    unembedding: [d_model, vocab] output projection.
    labels: [tokens] int target ids in [0, vocab).

  Returns:
    [tokens] f32 loss in nats: logsumexp(logits) - logits[label].
  """
  logits = jnp.dot(hidden, unembedding, preferred_element_type=jnp.float32)
  label_logits = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
  return jax.nn.logsumexp(logits, axis=-1) - label_logits
