"""Fused unembedding + softmax cross-entropy: the logits never reach memory.

loss[n] = logsumexp_v(h[n] . W[:, v]) - h[n] . W[:, label[n]]

A [tokens, vocab] f32 logits array is the largest activation of a small GPT
(4k tokens x 50k vocab = 800 MB). Here each program owns a tile of tokens (or
of the vocabulary) and loops over tiles of the other side, recomputing the
logits tile by tile with an online log-sum-exp, in the style of
`flash_attention.py`:
- forward, per token tile: loss and the log-sum-exp residual;
- dh, per token tile: sum over vocab tiles of dlogits @ W^T;
- dW, per vocab tile: sum over token tiles of dlogits^T @ h;
with dlogits = (softmax - onehot(label)) * dloss, recomputed, never stored.
d_model is handled in power-of-two chunks, unrolled in Python; dh and dW
accumulate in f32 loop-carried [tile, d_model] values (registers on GPU:
shrink the tiles for large d_model) and are stored once.

The kernels keep the whole unembedding (forward, dh) or the whole hidden
states (dW) as one block and slice it themselves. That is free on GPU (a
pointer) but on TPU it means VMEM, so `unsupported_reason` sends TPU shapes
beyond toy size to the XLA reference. On GPU, "auto" only picks the kernel
when the logits XLA would materialise are large (`AUTO_MIN_LOGITS_BYTES`):
below that, cuBLAS matmuls on materialised logits are likely faster, and
the kernel has not yet been timed on a GPU.
"""

import dataclasses
import functools

import jax
from jax import lax
from jax.experimental import pallas as pl
import jax.numpy as jnp

from pallas_kernels import lowering as lowering_lib
from pallas_kernels import reference
from pallas_kernels.tile_math import dot, dot_nt, round_up

_MASK_VALUE = reference.MASK_VALUE
_MIN_BLOCK = 16  # Triton dots need every dimension >= 16.
_TPU_VMEM_BUDGET_BYTES = 12 * 2**20
# "auto" uses the kernel only when f32 logits would take at least this much.
AUTO_MIN_LOGITS_BYTES = 2**30


@dataclasses.dataclass(frozen=True)
class BlockSizes:
  """Tile sizes; powers of two.

  Attributes:
    block_tokens: tokens per tile (grid of forward and dh, loop of dW).
    block_vocab: vocabulary entries per tile (loop of forward and dh, grid of
      dW).
    block_model: d_model chunk contracted per dot.
  """
  block_tokens: int = 32
  block_vocab: int = 64
  block_model: int = 64

  def __post_init__(self):
    for name, size in dataclasses.asdict(self).items():
      if size < 1 or size & (size - 1):
        raise ValueError(f"{name}={size} must be a power of two.")

  def fit(self, tokens: int, vocab: int, d_model: int) -> "BlockSizes":
    """Caps every tile at the (power-of-two rounded) extent it tiles."""
    def cap(block, extent):
      return min(block, max(_MIN_BLOCK, pl.next_power_of_2(extent)))
    return BlockSizes(cap(self.block_tokens, tokens),
                      cap(self.block_vocab, vocab),
                      cap(self.block_model, d_model))


DEFAULT_BLOCK_SIZES = {
    # Small token/vocab tiles keep the [tile, d_model] f32 accumulators of
    # the backward within registers up to d_model ~ 1k.
    lowering_lib.TRITON: BlockSizes(32, 64, 64),
    # Lane-aligned: the dW kernel slices row vectors in whole 128-lane tiles.
    lowering_lib.MOSAIC_TPU: BlockSizes(128, 256, 512),
    lowering_lib.INTERPRET: BlockSizes(32, 64, 64),
}


@dataclasses.dataclass(frozen=True)
class _Spec:
  """Static configuration of one call (hashable: custom_vjp nondiff)."""
  vocab: int  # true vocabulary size, before padding
  blocks: BlockSizes
  lowering: lowering_lib.Lowering


def unsupported_reason(hidden_shape, unembedding_shape, dtype,
                       lowering: lowering_lib.Lowering) -> str | None:
  """Why the compiled kernel should not be used here, or None.

  Args:
    hidden_shape: [tokens, d_model].
    unembedding_shape: [d_model, vocab].
    dtype: dtype of hidden and unembedding.
    lowering: target lowering.
  """
  tokens, d_model = hidden_shape
  if unembedding_shape[0] != d_model:
    return f"hidden {hidden_shape} and unembedding {unembedding_shape} differ"
  if jnp.dtype(dtype) not in (jnp.float32, jnp.bfloat16, jnp.float16):
    return f"dtype {dtype} is not a float type"
  if lowering.interpret:
    return None
  vocab = unembedding_shape[1]
  if tokens * vocab * 4 < AUTO_MIN_LOGITS_BYTES:
    return "logits small enough for XLA to materialise"
  if lowering.backend == lowering_lib.MOSAIC_TPU:
    # Whole W (forward, dh) or whole h (dW) in VMEM, two pipeline buffers.
    whole_bytes = 2 * max(vocab, tokens) * d_model * jnp.dtype(dtype).itemsize
    if whole_bytes > _TPU_VMEM_BUDGET_BYTES:
      return "whole-array blocks exceed TPU VMEM"
  return None


def fused_cross_entropy(hidden: jax.Array, unembedding: jax.Array,
                        labels: jax.Array, *,
                        block_sizes: BlockSizes | None = None,
                        lowering: lowering_lib.Lowering | None = None
                        ) -> jax.Array:
  """Per-token cross-entropy of hidden @ unembedding; differentiable.

  Args:
    hidden: [tokens, d_model] (f32, bf16 or f16).
    unembedding: [d_model, vocab], same dtype.
    labels: [tokens] int ids in [0, vocab).
    block_sizes: tiles; defaults per backend (`DEFAULT_BLOCK_SIZES`).
    lowering: defaults to the platform's (interpreter on CPU).

  Returns:
    [tokens] f32 loss in nats. Gradients flow to hidden and unembedding.
  """
  if lowering is None:
    lowering = lowering_lib.for_platform() or lowering_lib.CPU_INTERPRET
  tokens, d_model = hidden.shape
  if unembedding.ndim != 2 or unembedding.shape[0] != d_model:
    raise ValueError(f"hidden {hidden.shape} does not match unembedding "
                     f"{unembedding.shape} ([d_model, vocab]).")
  if labels.shape != (tokens,):
    raise ValueError(f"labels {labels.shape} should be ({tokens},).")
  if hidden.dtype != unembedding.dtype:
    raise ValueError(f"Mixed dtypes {hidden.dtype}, {unembedding.dtype}.")
  vocab = unembedding.shape[1]
  blocks = (block_sizes or DEFAULT_BLOCK_SIZES[lowering.backend]).fit(
      tokens, vocab, d_model)
  spec = _Spec(vocab=vocab, blocks=blocks, lowering=lowering)

  padded_tokens = round_up(tokens, blocks.block_tokens)
  padded_vocab = round_up(vocab, blocks.block_vocab)
  padded_model = round_up(d_model, blocks.block_model)
  # Vocabulary-major [vocab, d_model] makes every kernel dot a plain or an
  # a @ b.T one; XLA cancels the transpose for tied [vocab, d_model] tables.
  unembedding_vd = jnp.pad(unembedding.T, ((0, padded_vocab - vocab),
                                           (0, padded_model - d_model)))
  hidden = jnp.pad(hidden, ((0, padded_tokens - tokens),
                            (0, padded_model - d_model)))
  labels = jnp.pad(labels.astype(jnp.int32), (0, padded_tokens - tokens))
  loss = _fused_cross_entropy(hidden, unembedding_vd, labels, spec)
  return loss[:tokens]


def _model_chunks(ref, rows, block_model: int):
  """ref[rows, :] as a list of [rows, block_model] d_model chunks.

  The chunk loop is unrolled in Python: slices are static (no dynamic lane
  offsets for Mosaic) and each chunk is a power-of-two Triton tensor.
  """
  return [ref[rows, pl.ds(start, block_model)]
          for start in range(0, ref.shape[1], block_model)]


def _contract(a_chunks, b_chunks):
  """sum_c a_chunks[c] @ b_chunks[c].T: [m, n] f32."""
  return sum(dot_nt(a, b) for a, b in zip(a_chunks, b_chunks))


def _store_chunks(ref, chunks):
  """ref[:, chunk c] = chunks[c]; one write per output element."""
  block_model = chunks[0].shape[1]
  for i, chunk in enumerate(chunks):
    ref[:, pl.ds(i * block_model, block_model)] = chunk.astype(ref.dtype)


# ----------------------------------------------------------------------------
# Forward
# ----------------------------------------------------------------------------


def _forward_kernel(h_ref, w_ref, labels_ref, loss_ref, lse_ref, *,
                    spec: _Spec):
  """Loss of one token tile, online over vocabulary tiles.

  Refs: h_ref [block_tokens, d_model]; w_ref [vocab_padded, d_model] (whole);
  labels_ref [block_tokens, 1] int32; loss_ref, lse_ref [block_tokens, 1] f32.
  """
  block_tokens = h_ref.shape[0]
  block_vocab, block_model = spec.blocks.block_vocab, spec.blocks.block_model
  labels = labels_ref[...]
  h_chunks = _model_chunks(h_ref, slice(None), block_model)

  def visit(vocab_tile, carry, *, masked):
    row_max, row_sum, label_logit = carry
    v_start = pl.multiple_of(vocab_tile * block_vocab, block_vocab)
    logits = _contract(h_chunks, _model_chunks(
        w_ref, pl.ds(v_start, block_vocab), block_model))
    vocab_ids = v_start + lax.broadcasted_iota(jnp.int32, logits.shape, 1)
    if masked:
      logits = jnp.where(vocab_ids < spec.vocab, logits, _MASK_VALUE)
    label_logit += jnp.sum(jnp.where(vocab_ids == labels, logits, 0.0),
                           axis=1, keepdims=True)
    new_max = jnp.maximum(row_max, logits.max(axis=1, keepdims=True))
    row_sum = (jnp.exp(row_max - new_max) * row_sum
               + jnp.exp(logits - new_max).sum(axis=1, keepdims=True))
    return new_max, row_sum, label_logit

  n_vocab_tiles = w_ref.shape[0] // block_vocab
  n_full = spec.vocab // block_vocab  # tiles without padded entries
  column = jnp.zeros((block_tokens, 1), jnp.float32)
  carry = (column + _MASK_VALUE, column, column)
  carry = lax.fori_loop(0, n_full, functools.partial(visit, masked=False),
                        carry)
  carry = lax.fori_loop(n_full, n_vocab_tiles,
                        functools.partial(visit, masked=True), carry)
  row_max, row_sum, label_logit = carry
  lse = row_max + jnp.log(row_sum)
  lse_ref[...] = lse
  loss_ref[...] = lse - label_logit


def _forward(hidden, unembedding_vd, labels, spec: _Spec):
  """Returns loss and lse, both [tokens_padded, 1] f32."""
  tokens, d_model = hidden.shape
  block_tokens = spec.blocks.block_tokens
  column = pl.BlockSpec((block_tokens, 1), lambda i: (i, 0))
  return pl.pallas_call(
      functools.partial(_forward_kernel, spec=spec),
      grid=(tokens // block_tokens,),
      in_specs=[pl.BlockSpec((block_tokens, d_model), lambda i: (i, 0)),
                pl.BlockSpec(unembedding_vd.shape, lambda i: (0, 0)),
                column],
      out_specs=[column, column],
      out_shape=[jax.ShapeDtypeStruct((tokens, 1), jnp.float32)] * 2,
      compiler_params=spec.lowering.compiler_params(1, num_warps=4),
      interpret=spec.lowering.interpret,
      name="fused_cross_entropy_forward",
  )(hidden, unembedding_vd, labels[:, None])


# ----------------------------------------------------------------------------
# Backward
# ----------------------------------------------------------------------------
# dh and dW accumulate in loop-carried values and are stored once: reading
# back an output block within a program is a data race on GPU (Triton does
# not order a store and a later load of the same address across threads).


def _dh_kernel(h_ref, w_ref, labels_ref, lse_ref, d_loss_ref, dh_ref, *,
               spec: _Spec):
  """dh of one token tile: sum over vocabulary tiles of dlogits @ W_tile.

  Refs: h_ref, dh_ref [block_tokens, d_model]; w_ref [vocab_padded, d_model]
  (whole); labels_ref, lse_ref, d_loss_ref [block_tokens, 1].
  """
  block_vocab, block_model = spec.blocks.block_vocab, spec.blocks.block_model
  labels, lse, d_loss = labels_ref[...], lse_ref[...], d_loss_ref[...]
  h_chunks = _model_chunks(h_ref, slice(None), block_model)

  def visit(vocab_tile, dh_chunks):
    v_start = pl.multiple_of(vocab_tile * block_vocab, block_vocab)
    w_chunks = _model_chunks(w_ref, pl.ds(v_start, block_vocab), block_model)
    logits = _contract(h_chunks, w_chunks)
    vocab_ids = v_start + lax.broadcasted_iota(jnp.int32, logits.shape, 1)
    probs = jnp.exp(logits - lse)
    d_logits = (probs - (vocab_ids == labels).astype(jnp.float32)) * d_loss
    if spec.vocab % block_vocab:
      # Padded entries are zero rows of W, but exp(0 - lse) may overflow and
      # inf * 0 would poison dh.
      d_logits = jnp.where(vocab_ids < spec.vocab, d_logits, 0.0)
    d_logits = d_logits.astype(w_ref.dtype)
    return tuple(acc + dot(d_logits, w) for acc, w in zip(dh_chunks, w_chunks))

  dh_chunks = tuple(jnp.zeros(h.shape, jnp.float32) for h in h_chunks)
  dh_chunks = lax.fori_loop(0, w_ref.shape[0] // block_vocab, visit,
                            dh_chunks)
  _store_chunks(dh_ref, dh_chunks)


def _dw_kernel(h_ref, w_ref, labels_ref, lse_ref, d_loss_ref, dw_ref, *,
               spec: _Spec):
  """dW of one vocabulary tile: sum over token tiles of dlogits^T @ h_tile.

  Works on transposed logits [block_vocab, block_tokens] so both dots are
  plain and the per-token vectors arrive as rows.

  Refs: h_ref [tokens_padded, d_model] (whole); w_ref, dw_ref
  [block_vocab, d_model]; labels_ref, lse_ref, d_loss_ref [1, tokens_padded].
  """
  block_tokens, block_model = spec.blocks.block_tokens, spec.blocks.block_model
  v_start = pl.program_id(0) * w_ref.shape[0]
  w_chunks = _model_chunks(w_ref, slice(None), block_model)

  def visit(token_tile, dw_chunks):
    t_start = pl.multiple_of(token_tile * block_tokens, block_tokens)
    token_slice = pl.ds(t_start, block_tokens)
    h_chunks = _model_chunks(h_ref, token_slice, block_model)
    logits_t = _contract(w_chunks, h_chunks)
    vocab_ids = v_start + lax.broadcasted_iota(jnp.int32, logits_t.shape, 0)
    probs_t = jnp.exp(logits_t - lse_ref[:, token_slice])
    one_hot_t = (vocab_ids == labels_ref[:, token_slice]).astype(jnp.float32)
    d_logits_t = (probs_t - one_hot_t) * d_loss_ref[:, token_slice]
    if spec.vocab % w_ref.shape[0]:
      # Rows of padded entries are sliced off by the wrapper; zero them so
      # that no inf/NaN is ever written.
      d_logits_t = jnp.where(vocab_ids < spec.vocab, d_logits_t, 0.0)
    d_logits_t = d_logits_t.astype(h_ref.dtype)
    return tuple(acc + dot(d_logits_t, h)
                 for acc, h in zip(dw_chunks, h_chunks))

  dw_chunks = tuple(jnp.zeros(w.shape, jnp.float32) for w in w_chunks)
  dw_chunks = lax.fori_loop(0, h_ref.shape[0] // block_tokens, visit,
                            dw_chunks)
  _store_chunks(dw_ref, dw_chunks)


def _backward(spec: _Spec, residuals, d_loss):
  hidden, unembedding_vd, labels, lse = residuals
  tokens, d_model = hidden.shape
  vocab_padded = unembedding_vd.shape[0]
  blocks = spec.blocks
  d_loss = d_loss.astype(jnp.float32)

  token_column = pl.BlockSpec((blocks.block_tokens, 1), lambda i: (i, 0))
  dh = pl.pallas_call(
      functools.partial(_dh_kernel, spec=spec),
      grid=(tokens // blocks.block_tokens,),
      in_specs=[pl.BlockSpec((blocks.block_tokens, d_model), lambda i: (i, 0)),
                pl.BlockSpec(unembedding_vd.shape, lambda i: (0, 0)),
                token_column, token_column, token_column],
      out_specs=pl.BlockSpec((blocks.block_tokens, d_model), lambda i: (i, 0)),
      out_shape=jax.ShapeDtypeStruct(hidden.shape, hidden.dtype),
      compiler_params=spec.lowering.compiler_params(
          1, num_warps=_num_warps(blocks.block_tokens, d_model)),
      interpret=spec.lowering.interpret,
      name="fused_cross_entropy_dh",
  )(hidden, unembedding_vd, labels[:, None], lse, d_loss[:, None])

  token_row = pl.BlockSpec((1, tokens), lambda i: (0, 0))
  dw = pl.pallas_call(
      functools.partial(_dw_kernel, spec=spec),
      grid=(vocab_padded // blocks.block_vocab,),
      in_specs=[pl.BlockSpec(hidden.shape, lambda i: (0, 0)),
                pl.BlockSpec((blocks.block_vocab, d_model), lambda i: (i, 0)),
                token_row, token_row, token_row],
      out_specs=pl.BlockSpec((blocks.block_vocab, d_model), lambda i: (i, 0)),
      out_shape=jax.ShapeDtypeStruct(unembedding_vd.shape,
                                     unembedding_vd.dtype),
      compiler_params=spec.lowering.compiler_params(
          1, num_warps=_num_warps(blocks.block_vocab, d_model)),
      interpret=spec.lowering.interpret,
      name="fused_cross_entropy_dw",
  )(hidden, unembedding_vd, labels[None, :], lse.reshape(1, tokens),
    d_loss[None, :])
  # Integer labels get no cotangent (None).
  return dh, dw, None


def _num_warps(accumulator_rows: int, d_model: int) -> int:
  """More warps (registers) when the f32 accumulator is large."""
  return 8 if accumulator_rows * d_model >= 64 * 256 else 4


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _fused_cross_entropy(hidden, unembedding_vd, labels, spec: _Spec):
  """Padded call: hidden [T, D], unembedding_vd [V, D], labels [T] -> [T]."""
  return _forward(hidden, unembedding_vd, labels, spec)[0][:, 0]


def _fused_cross_entropy_fwd(hidden, unembedding_vd, labels, spec: _Spec):
  loss, lse = _forward(hidden, unembedding_vd, labels, spec)
  return loss[:, 0], (hidden, unembedding_vd, labels, lse)


_fused_cross_entropy.defvjp(_fused_cross_entropy_fwd, _backward)
