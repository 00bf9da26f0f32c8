"""Picks a kernel or its XLA reference: the entry points models call.

`impl` is a config string so that a run can be forced onto one path:
  "auto"              the compiled Pallas kernel where it applies (GPU/TPU and
                      supported shapes), otherwise the XLA reference; always
                      the reference on CPU.
  "xla"               the plain-jnp reference (`reference.py`).
  "pallas"            the compiled kernel for this platform; errors on CPU.
  "pallas_interpret"  the kernel in the Pallas interpreter (any platform; slow,
                      for tests and debugging).
Every path is differentiable.
"""

import jax

from pallas_kernels import flash_attention as flash_attention_lib
from pallas_kernels import fused_cross_entropy as cross_entropy_lib
from pallas_kernels import lowering as lowering_lib
from pallas_kernels import reference

IMPLS = ("auto", "xla", "pallas", "pallas_interpret")


def _resolve(impl: str | None, unsupported_reason, platform: str | None):
  """Shared decision: (concrete impl, lowering or None for "xla")."""
  impl = impl or "auto"
  if impl not in IMPLS:
    raise ValueError(f"impl={impl!r} is not one of {IMPLS}.")
  if impl == "xla":
    return "xla", None
  if impl == "pallas_interpret":
    return impl, lowering_lib.CPU_INTERPRET
  compiled = lowering_lib.for_platform(platform)
  if impl == "pallas":
    if compiled is None:
      raise ValueError(
          f"impl='pallas' needs a GPU or TPU, not "
          f"{platform or jax.default_backend()!r}; use 'pallas_interpret' "
          "to run the kernel in the interpreter, or 'auto'/'xla'.")
    return impl, compiled
  if compiled is None or unsupported_reason(compiled) is not None:
    return "xla", None
  return "pallas", compiled


def resolve_attention_impl(q_shape, kv_shape, dtype, impl: str | None = "auto",
                           platform: str | None = None) -> str:
  """The concrete path ("xla", "pallas", "pallas_interpret") `attention` takes.

  Args:
    q_shape: [batch, q_len, heads, head_dim].
    kv_shape: [batch, kv_len, kv_heads, head_dim].
    dtype: dtype of q, k, v.
    impl: requested impl (see module docstring); None means "auto".
    platform: defaults to `jax.default_backend()`.
  """
  return _resolve(
      impl, lambda lowering: flash_attention_lib.unsupported_reason(
          q_shape, kv_shape, dtype, lowering), platform)[0]


def attention(q: jax.Array, k: jax.Array, v: jax.Array, *,
              causal: bool = True, sm_scale: float | None = None,
              impl: str | None = "auto",
              block_sizes: flash_attention_lib.BlockSizes | None = None
              ) -> jax.Array:
  """Softmax attention, softmax(q k^T * sm_scale) v.

  Args:
    q: [batch, q_len, heads, head_dim].
    k: [batch, kv_len, kv_heads, head_dim]; heads % kv_heads == 0.
    v: [batch, kv_len, kv_heads, head_dim].
    causal: query i sees keys j <= i.
    sm_scale: logit multiplier; defaults to 1/sqrt(head_dim).
    impl: "auto", "xla", "pallas" or "pallas_interpret" (module docstring).
    block_sizes: kernel tiles (ignored by "xla").

  Returns:
    [batch, q_len, heads, head_dim] in q.dtype.
  """
  impl, lowering = _resolve(
      impl, lambda lowering: flash_attention_lib.unsupported_reason(
          q.shape, k.shape, q.dtype, lowering), None)
  if impl == "xla":
    return reference.attention_reference(q, k, v, causal=causal,
                                         sm_scale=sm_scale)
  return flash_attention_lib.flash_attention(
      q, k, v, causal=causal, sm_scale=sm_scale, block_sizes=block_sizes,
      lowering=lowering)


def resolve_cross_entropy_impl(hidden_shape, unembedding_shape, dtype,
                               impl: str | None = "auto",
                               platform: str | None = None) -> str:
  """The concrete path `cross_entropy` takes; see `resolve_attention_impl`."""
  return _resolve(
      impl, lambda lowering: cross_entropy_lib.unsupported_reason(
          hidden_shape, unembedding_shape, dtype, lowering), platform)[0]


def cross_entropy(hidden: jax.Array, unembedding: jax.Array,
                  labels: jax.Array, *, impl: str | None = "auto",
                  block_sizes: cross_entropy_lib.BlockSizes | None = None
                  ) -> jax.Array:
  """Per-token softmax cross-entropy of logits = hidden @ unembedding.

  With a kernel impl the [tokens, vocab] logits are never materialised.

  Args:
    hidden: [tokens, d_model] final hidden states (flatten batch and time).
    unembedding: [d_model, vocab] output projection.
    labels: [tokens] int target ids in [0, vocab).
    impl: "auto", "xla", "pallas" or "pallas_interpret" (module docstring).
    block_sizes: kernel tiles (ignored by "xla").

  Returns:
    [tokens] f32 loss in nats; average (or mask) it in the caller.
  """
  impl, lowering = _resolve(
      impl, lambda lowering: cross_entropy_lib.unsupported_reason(
          hidden.shape, unembedding.shape, hidden.dtype, lowering), None)
  if impl == "xla":
    return reference.cross_entropy_reference(hidden, unembedding, labels)
  return cross_entropy_lib.fused_cross_entropy(
      hidden, unembedding, labels, block_sizes=block_sizes, lowering=lowering)
