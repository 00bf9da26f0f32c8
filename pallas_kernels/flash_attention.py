"""Flash attention: Pallas forward and backward kernels behind a custom VJP.

FlashAttention-2 (Dao, 2023) written once for the Triton (GPU), Mosaic (TPU)
and interpreter lowerings (see `lowering.py`). The [q_len, kv_len] score matrix
is never stored: each program owns one tile of queries (or keys) and loops over
tiles of the other side with an online softmax, accumulating in f32.

Kernels, each on a grid (batch, heads, tiles):
- forward: out and the log-sum-exp of each query row (the backward residual);
- dq: per query tile, loop over key tiles;
- dkv: per key tile, loop over query tiles (the transposed score tile, so the
  softmax statistics arrive as a row vector and every dot is a plain one).

Sequence lengths need not be multiples of the tiles: the wrapper zero-pads
q/k/v and the kernels mask padded keys. Padded query rows get zero cotangent,
so they add nothing to dk/dv. Causal masking is only applied on the tiles that
straddle the diagonal (or hold padded keys); tiles fully above the diagonal are
not visited at all.

Scores are kept in base 2 (logits * sm_scale * log2(e), then exp2), which is a
single instruction on GPUs; the log-sum-exp residual is in the same units.
"""

import dataclasses
import functools
import math

import jax
from jax import lax
from jax.experimental import pallas as pl
import jax.numpy as jnp

from pallas_kernels import lowering as lowering_lib
from pallas_kernels import reference
from pallas_kernels.tile_math import dot, dot_nt, round_up

_LOG2_E = math.log2(math.e)
_MASK_VALUE = reference.MASK_VALUE
# Triton's tensor-core dots need every dimension >= 16.
_MIN_BLOCK = 16


@dataclasses.dataclass(frozen=True)
class BlockSizes:
  """Tile sizes in tokens; powers of two.

  Attributes:
    block_q, block_k: forward query tile (grid) and key tile (inner loop).
    dq_block_q, dq_block_k: dq kernel query tile (grid) and key tile (loop).
    dkv_block_q, dkv_block_k: dkv kernel query tile (loop) and key tile (grid).
  """
  block_q: int = 128
  block_k: int = 64
  dq_block_q: int = 128
  dq_block_k: int = 32
  dkv_block_q: int = 32
  dkv_block_k: int = 128

  def __post_init__(self):
    for name, size in dataclasses.asdict(self).items():
      if size < 1 or size & (size - 1):
        raise ValueError(f"{name}={size} must be a power of two.")

  def fit(self, q_len: int, kv_len: int) -> "BlockSizes":
    """Caps every tile at the (power-of-two rounded) sequence it tiles."""
    q_cap = max(_MIN_BLOCK, pl.next_power_of_2(q_len))
    kv_cap = max(_MIN_BLOCK, pl.next_power_of_2(kv_len))
    return BlockSizes(
        block_q=min(self.block_q, q_cap), block_k=min(self.block_k, kv_cap),
        dq_block_q=min(self.dq_block_q, q_cap),
        dq_block_k=min(self.dq_block_k, kv_cap),
        dkv_block_q=min(self.dkv_block_q, q_cap),
        dkv_block_k=min(self.dkv_block_k, kv_cap))

  @property
  def q_multiple(self) -> int:
    """q_len is padded to this (all query tiles divide it: powers of two)."""
    return max(self.block_q, self.dq_block_q, self.dkv_block_q)

  @property
  def kv_multiple(self) -> int:
    return max(self.block_k, self.dq_block_k, self.dkv_block_k)


# Triton: the shapes of the Triton fused-attention tutorial (wide dkv key
# tiles, narrow inner tiles in the backward). TPU: 128 fills the lanes and the
# dkv kernel slices its row-vector statistics in whole lane tiles.
DEFAULT_BLOCK_SIZES = {
    lowering_lib.TRITON: BlockSizes(),
    lowering_lib.MOSAIC_TPU: BlockSizes(128, 128, 128, 128, 128, 128),
    lowering_lib.INTERPRET: BlockSizes(32, 32, 32, 32, 32, 32),
}

# Head dims the compiled kernels are meant for (tensor-core friendly; TPU
# pads to 128 lanes anyway). Others work in interpret mode.
SUPPORTED_HEAD_DIMS = (32, 64, 128, 256)
# Mosaic keeps whole K/V (forward, dq) or Q/dO (dkv) in VMEM, double
# buffered; stay under the smallest default scoped-VMEM limit (16 MiB).
_TPU_VMEM_BUDGET_BYTES = 12 * 2**20


@dataclasses.dataclass(frozen=True)
class _Spec:
  """Static configuration of one kernel call (hashable: custom_vjp nondiff)."""
  causal: bool
  sm_scale: float
  q_len: int  # true lengths, before padding
  kv_len: int
  blocks: BlockSizes
  lowering: lowering_lib.Lowering

  @property
  def log2_scale(self) -> float:
    return self.sm_scale * _LOG2_E


def unsupported_reason(q_shape, kv_shape, dtype,
                       lowering: lowering_lib.Lowering) -> str | None:
  """Why the compiled kernel should not be used for these shapes, or None.

  Args:
    q_shape: [batch, q_len, heads, head_dim].
    kv_shape: [batch, kv_len, kv_heads, head_dim].
    dtype: dtype of q, k and v.
    lowering: target lowering.
  """
  _, q_len, num_heads, head_dim = q_shape
  _, kv_len, num_kv_heads, kv_head_dim = kv_shape
  if head_dim != kv_head_dim or num_heads % num_kv_heads:
    return f"q {q_shape} and k/v {kv_shape} do not pair up"
  if jnp.dtype(dtype) not in (jnp.float32, jnp.bfloat16, jnp.float16):
    return f"dtype {dtype} is not a float type the kernels accumulate from"
  if lowering.interpret:
    return None
  if head_dim not in SUPPORTED_HEAD_DIMS:
    return f"head_dim {head_dim} not in {SUPPORTED_HEAD_DIMS}"
  if min(q_len, kv_len) < 128:
    return "sequences shorter than 128 tokens are not worth a kernel"
  if lowering.backend == lowering_lib.MOSAIC_TPU:
    blocks = DEFAULT_BLOCK_SIZES[lowering.backend].fit(q_len, kv_len)
    longest = max(round_up(q_len, blocks.q_multiple),
                  round_up(kv_len, blocks.kv_multiple))
    # Two full-length [len, head_dim] operands (K, V or Q, dO) plus, in the
    # dkv kernel, two [1, len] f32 rows padded to 8 sublanes; two pipeline
    # buffers each.
    vmem_bytes = 2 * 2 * longest * (head_dim * jnp.dtype(dtype).itemsize
                                    + 8 * 4)
    if vmem_bytes > _TPU_VMEM_BUDGET_BYTES:
      return f"sequence {longest} too long for whole-sequence VMEM blocks"
  return None


def flash_attention(q: jax.Array, k: jax.Array, v: jax.Array, *,
                    causal: bool = True, sm_scale: float | None = None,
                    block_sizes: BlockSizes | None = None,
                    lowering: lowering_lib.Lowering | None = None) -> jax.Array:
  """Softmax attention through the Pallas kernels; differentiable.

  Args:
    q: [batch, q_len, heads, head_dim] queries (f32, bf16 or f16).
    k: [batch, kv_len, kv_heads, head_dim] keys; heads % kv_heads == 0.
    v: [batch, kv_len, kv_heads, head_dim] values.
    causal: query i sees keys j <= i (positions aligned at 0).
    sm_scale: logit multiplier; defaults to 1/sqrt(head_dim).
    block_sizes: tiles; defaults per backend (`DEFAULT_BLOCK_SIZES`).
    lowering: `lowering.GPU`, `lowering.TPU` or `lowering.CPU_INTERPRET`;
      defaults to the current platform's (interpreter on CPU).

  Returns:
    [batch, q_len, heads, head_dim] in q.dtype. Gradients for q, k and v come
    from the dq and dkv Pallas kernels.
  """
  if lowering is None:
    lowering = lowering_lib.for_platform() or lowering_lib.CPU_INTERPRET
  batch, q_len, num_heads, head_dim = q.shape
  if k.shape != v.shape or k.shape[0] != batch or k.shape[3] != head_dim:
    raise ValueError(f"Shapes do not pair up: q {q.shape}, k {k.shape}, "
                     f"v {v.shape}.")
  if num_heads % k.shape[2]:
    raise ValueError(f"heads={num_heads} is not a multiple of "
                     f"kv_heads={k.shape[2]}.")
  if not q.dtype == k.dtype == v.dtype:
    raise ValueError(f"Mixed dtypes: {q.dtype}, {k.dtype}, {v.dtype}.")
  kv_len = k.shape[1]
  if sm_scale is None:
    sm_scale = 1.0 / math.sqrt(head_dim)
  blocks = (block_sizes or DEFAULT_BLOCK_SIZES[lowering.backend]).fit(
      q_len, kv_len)
  spec = _Spec(causal=causal, sm_scale=float(sm_scale), q_len=q_len,
               kv_len=kv_len, blocks=blocks, lowering=lowering)

  seq_axis = 2 if lowering.heads_major else 1
  padded_head_dim = (pl.next_power_of_2(head_dim) if lowering.pow2_head_dim
                     else head_dim)

  def to_kernel_layout(x, multiple):
    if lowering.heads_major:
      x = x.transpose(0, 2, 1, 3)
    pads = [(0, 0)] * 4
    pads[seq_axis] = (0, round_up(x.shape[seq_axis], multiple)
                      - x.shape[seq_axis])
    pads[3] = (0, padded_head_dim - head_dim)
    return jnp.pad(x, pads) if any(p[1] for p in pads) else x

  out = _flash_attention(to_kernel_layout(q, blocks.q_multiple),
                         to_kernel_layout(k, blocks.kv_multiple),
                         to_kernel_layout(v, blocks.kv_multiple), spec)
  out = lax.slice_in_dim(out, 0, q_len, axis=seq_axis)[..., :head_dim]
  return out.transpose(0, 2, 1, 3) if lowering.heads_major else out


# ----------------------------------------------------------------------------
# Shared kernel pieces
# ----------------------------------------------------------------------------


def _idiv(x, divisor: int):
  """Floor division of a traced non-negative int32 scalar (program ids).

  lax.div truncates, which equals floor here and lowers to one instruction on
  both backends, unlike `//`.
  """
  return lax.div(x, jnp.int32(divisor))


def _visible(q_start, k_start, shape, spec: _Spec, *, transposed=False):
  """Bool mask of a score tile: key exists and (if causal) key <= query.

  Args:
    q_start, k_start: first query / key position of the tile.
    shape: tile shape, [queries, keys] or, if transposed, [keys, queries].
  """
  q_axis, k_axis = (1, 0) if transposed else (0, 1)
  q_pos = q_start + lax.broadcasted_iota(jnp.int32, shape, q_axis)
  k_pos = k_start + lax.broadcasted_iota(jnp.int32, shape, k_axis)
  visible = k_pos < spec.kv_len
  if spec.causal:
    visible = jnp.logical_and(visible, k_pos <= q_pos)
  return visible


def _key_tiles_for_query_tile(q_start, block_q: int, block_k: int,
                              spec: _Spec):
  """Key tiles a query tile needs: [0, n_unmasked) whole, then masked ones.

  Returns:
    (n_unmasked, n_visible): tiles [0, n_unmasked) are fully visible to every
    query of the tile (no mask needed); [n_unmasked, n_visible) need the mask;
    later tiles are above the diagonal or pure padding and are skipped.
  """
  n_real = -(-spec.kv_len // block_k)  # tiles holding at least one real key
  n_full = spec.kv_len // block_k  # tiles holding only real keys
  if not spec.causal:
    return n_full, n_real
  # The tile's last query sees keys up to q_start + block_q - 1.
  n_visible = jnp.minimum(_idiv(q_start + block_q - 1, block_k) + 1, n_real)
  # A key tile is whole for every query if its last key <= the first query.
  n_unmasked = jnp.minimum(_idiv(q_start + 1, block_k), n_full)
  return n_unmasked, n_visible


def _query_tiles_for_key_tile(k_start, block_q: int, block_k: int,
                              spec: _Spec):
  """Query tiles a key tile is seen by: masked ones, then whole ones.

  Returns:
    (first, first_unmasked, n_real): query tiles [first, first_unmasked) need
    the mask, [first_unmasked, n_real) do not; the rest are padding (zero
    cotangent) or, for causal, below `first` and blind to this key tile.
  """
  n_real = -(-spec.q_len // block_q)
  if spec.causal:
    # First query tile whose last query reaches k_start.
    first = _idiv(k_start, block_q)
    # First query tile whose first query sees the tile's last key.
    first_unmasked = _idiv(k_start + block_k - 1 + block_q - 1, block_q)
  else:
    first = first_unmasked = jnp.int32(0)
  if spec.kv_len % block_k:
    # The tile holding padded keys needs the mask for every query.
    first_unmasked = jnp.where(k_start + block_k > spec.kv_len, n_real,
                               first_unmasked)
  first = jnp.minimum(first, n_real)
  first_unmasked = jnp.clip(first_unmasked, first, n_real)
  return first, first_unmasked, n_real


def _tile_spec(spec: _Spec, rows: int, head_dim: int, *, whole_seq=False,
               kv_group=1):
  """BlockSpec of a [rows, head_dim] tile of a q/k/v-shaped array.

  The grid is (batch, head, tile). `whole_seq` maps every tile index to block
  0 (the kernel slices the whole sequence itself); `kv_group` maps query head
  h to kv head h // kv_group.
  """
  def index_map(b, h, i):
    head = _idiv(h, kv_group) if kv_group > 1 else h
    seq_block = 0 if whole_seq else i
    if spec.lowering.heads_major:
      return b, head, seq_block, 0
    return b, seq_block, head, 0

  if spec.lowering.heads_major:
    return pl.BlockSpec((None, None, rows, head_dim), index_map)
  return pl.BlockSpec((None, rows, None, head_dim), index_map)


def _stats_column_spec(rows: int):
  """[rows, 1] tile of per-query statistics stored as [batch, heads, seq, 1]."""
  return pl.BlockSpec((None, None, rows, 1), lambda b, h, i: (b, h, i, 0))


def _stats_row_spec(length: int):
  """Whole [1, seq] row of statistics stored as [batch, heads, 1, seq]."""
  return pl.BlockSpec((None, None, 1, length), lambda b, h, i: (b, h, 0, 0))


def _num_warps(head_dim: int, block_a: int, block_b: int) -> int:
  return 8 if head_dim > 64 or block_a * block_b >= 128 * 128 else 4


def _dims(q, k, spec: _Spec):
  """(batch, heads, kv_heads, padded q_len, padded kv_len, padded head_dim)."""
  if spec.lowering.heads_major:
    batch, num_heads, q_len, head_dim = q.shape
    num_kv_heads, kv_len = k.shape[1], k.shape[2]
  else:
    batch, q_len, num_heads, head_dim = q.shape
    kv_len, num_kv_heads = k.shape[1], k.shape[2]
  return batch, num_heads, num_kv_heads, q_len, kv_len, head_dim


# ----------------------------------------------------------------------------
# Forward
# ----------------------------------------------------------------------------


def _forward_kernel(q_ref, k_ref, v_ref, out_ref, lse_ref, *, spec: _Spec):
  """One query tile against all the keys it can see.

  Refs: q_ref, out_ref [block_q, D]; k_ref, v_ref [kv_len_padded, D] (whole
  sequence of this head); lse_ref [block_q, 1] f32, log2-sum-exp2 of the
  base-2 scores of each query row.
  """
  block_q, head_dim = q_ref.shape
  block_k = spec.blocks.block_k
  q_start = pl.program_id(2) * block_q
  q = q_ref[...]

  def visit(kv_tile, carry, *, masked):
    row_max, row_sum, acc = carry
    k_start = pl.multiple_of(kv_tile * block_k, block_k)
    k = k_ref[pl.ds(k_start, block_k), :]
    v = v_ref[pl.ds(k_start, block_k), :]
    scores = dot_nt(q, k) * spec.log2_scale  # [block_q, block_k], base 2
    if masked:
      scores = jnp.where(_visible(q_start, k_start, scores.shape, spec),
                         scores, _MASK_VALUE)
    new_max = jnp.maximum(row_max, scores.max(axis=1, keepdims=True))
    # Rescale what was summed under the old max; exp2(mask - max) == 0.
    correction = jnp.exp2(row_max - new_max)
    probs = jnp.exp2(scores - new_max)
    row_sum = correction * row_sum + probs.sum(axis=1, keepdims=True)
    acc = correction * acc + dot(probs.astype(v.dtype), v)
    return new_max, row_sum, acc

  # Finite start: key 0 is visible to every row, so the first tile replaces
  # it; a finite value cannot make inf - inf = NaN on the way.
  carry = (jnp.full((block_q, 1), _MASK_VALUE, jnp.float32),
           jnp.zeros((block_q, 1), jnp.float32),
           jnp.zeros((block_q, head_dim), jnp.float32))
  n_unmasked, n_visible = _key_tiles_for_query_tile(
      q_start, block_q, block_k, spec)
  carry = lax.fori_loop(0, n_unmasked,
                        functools.partial(visit, masked=False), carry)
  carry = lax.fori_loop(n_unmasked, n_visible,
                        functools.partial(visit, masked=True), carry)
  row_max, row_sum, acc = carry
  out_ref[...] = (acc / row_sum).astype(out_ref.dtype)
  lse_ref[...] = row_max + jnp.log2(row_sum)


def _forward(q, k, v, spec: _Spec):
  """Runs the forward kernel on kernel-layout, padded q/k/v.

  Returns:
    out (like q) and lse [batch, heads, q_len_padded, 1] f32 (base 2).
  """
  batch, num_heads, num_kv_heads, q_len, kv_len, head_dim = _dims(q, k, spec)
  block_q = spec.blocks.block_q
  group = num_heads // num_kv_heads
  return pl.pallas_call(
      functools.partial(_forward_kernel, spec=spec),
      grid=(batch, num_heads, q_len // block_q),
      in_specs=[
          _tile_spec(spec, block_q, head_dim),
          _tile_spec(spec, kv_len, head_dim, whole_seq=True, kv_group=group),
          _tile_spec(spec, kv_len, head_dim, whole_seq=True, kv_group=group),
      ],
      out_specs=[_tile_spec(spec, block_q, head_dim),
                 _stats_column_spec(block_q)],
      out_shape=[jax.ShapeDtypeStruct(q.shape, q.dtype),
                 jax.ShapeDtypeStruct((batch, num_heads, q_len, 1),
                                      jnp.float32)],
      compiler_params=spec.lowering.compiler_params(
          3, num_warps=_num_warps(head_dim, block_q, spec.blocks.block_k),
          num_stages=2),
      interpret=spec.lowering.interpret,
      name="flash_attention_forward",
  )(q, k, v)


# ----------------------------------------------------------------------------
# Backward
# ----------------------------------------------------------------------------


def _dq_kernel(q_ref, k_ref, v_ref, d_out_ref, lse_ref, delta_ref, dq_ref, *,
               spec: _Spec):
  """dq for one query tile: sum over key tiles of dS @ K * sm_scale.

  Refs: q_ref, d_out_ref, dq_ref [block_q, D]; k_ref, v_ref [kv_len_padded, D];
  lse_ref, delta_ref [block_q, 1] f32 (delta = rowsum(out * d_out)).
  """
  block_q, head_dim = q_ref.shape
  block_k = spec.blocks.dq_block_k
  q_start = pl.program_id(2) * block_q
  q = q_ref[...]
  d_out = d_out_ref[...]
  lse = lse_ref[...]
  delta = delta_ref[...]

  def visit(kv_tile, dq, *, masked):
    k_start = pl.multiple_of(kv_tile * block_k, block_k)
    k = k_ref[pl.ds(k_start, block_k), :]
    v = v_ref[pl.ds(k_start, block_k), :]
    scores = dot_nt(q, k) * spec.log2_scale
    if masked:
      scores = jnp.where(_visible(q_start, k_start, scores.shape, spec),
                         scores, _MASK_VALUE)
    probs = jnp.exp2(scores - lse)  # softmax rows, recomputed
    d_probs = dot_nt(d_out, v)
    d_logits = probs * (d_probs - delta)  # softmax backward, per row
    return dq + dot(d_logits.astype(k.dtype), k)

  n_unmasked, n_visible = _key_tiles_for_query_tile(
      q_start, block_q, block_k, spec)
  dq = jnp.zeros((block_q, head_dim), jnp.float32)
  dq = lax.fori_loop(0, n_unmasked, functools.partial(visit, masked=False), dq)
  dq = lax.fori_loop(n_unmasked, n_visible,
                     functools.partial(visit, masked=True), dq)
  dq_ref[...] = (dq * spec.sm_scale).astype(dq_ref.dtype)


def _dkv_kernel(q_ref, k_ref, v_ref, d_out_ref, lse_ref, delta_ref, dk_ref,
                dv_ref, *, spec: _Spec):
  """dk and dv for one key tile, looping over the query tiles that see it.

  Works on the transposed score tile [block_k, block_q] so that dv += P^T dO
  and dk += dS^T Q are plain dots and lse/delta are read as row vectors.

  Refs: k_ref, v_ref, dk_ref, dv_ref [block_k, D]; q_ref, d_out_ref
  [q_len_padded, D]; lse_ref, delta_ref [1, q_len_padded] f32.
  """
  block_k, head_dim = k_ref.shape
  block_q = spec.blocks.dkv_block_q
  k_start = pl.program_id(2) * block_k
  k = k_ref[...]
  v = v_ref[...]

  def visit(q_tile, carry, *, masked):
    dk, dv = carry
    q_start = pl.multiple_of(q_tile * block_q, block_q)
    q = q_ref[pl.ds(q_start, block_q), :]
    d_out = d_out_ref[pl.ds(q_start, block_q), :]
    lse = lse_ref[:, pl.ds(q_start, block_q)]
    delta = delta_ref[:, pl.ds(q_start, block_q)]
    scores_t = dot_nt(k, q) * spec.log2_scale  # [block_k, block_q]
    if masked:
      scores_t = jnp.where(
          _visible(q_start, k_start, scores_t.shape, spec, transposed=True),
          scores_t, _MASK_VALUE)
    probs_t = jnp.exp2(scores_t - lse)
    dv = dv + dot(probs_t.astype(d_out.dtype), d_out)
    d_probs_t = dot_nt(v, d_out)
    d_logits_t = probs_t * (d_probs_t - delta)
    dk = dk + dot(d_logits_t.astype(q.dtype), q)
    return dk, dv

  first, first_unmasked, n_real = _query_tiles_for_key_tile(
      k_start, block_q, block_k, spec)
  carry = (jnp.zeros((block_k, head_dim), jnp.float32),
           jnp.zeros((block_k, head_dim), jnp.float32))
  carry = lax.fori_loop(first, first_unmasked,
                        functools.partial(visit, masked=True), carry)
  carry = lax.fori_loop(first_unmasked, n_real,
                        functools.partial(visit, masked=False), carry)
  dk, dv = carry
  dk_ref[...] = (dk * spec.sm_scale).astype(dk_ref.dtype)
  dv_ref[...] = dv.astype(dv_ref.dtype)


def _backward(spec: _Spec, residuals, d_out):
  """dq, dk, dv of the padded, kernel-layout call."""
  q, k, v, out, lse = residuals
  batch, num_heads, num_kv_heads, q_len, kv_len, head_dim = _dims(q, k, spec)
  group = num_heads // num_kv_heads
  blocks = spec.blocks

  # delta_i = sum_j P_ij dP_ij = rowsum(out * d_out): cheap, left to XLA.
  delta = jnp.sum(out.astype(jnp.float32) * d_out.astype(jnp.float32), axis=-1)
  if not spec.lowering.heads_major:
    delta = delta.transpose(0, 2, 1)
  delta = delta[..., None]  # [batch, heads, q_len, 1], like lse

  dq = pl.pallas_call(
      functools.partial(_dq_kernel, spec=spec),
      grid=(batch, num_heads, q_len // blocks.dq_block_q),
      in_specs=[
          _tile_spec(spec, blocks.dq_block_q, head_dim),
          _tile_spec(spec, kv_len, head_dim, whole_seq=True, kv_group=group),
          _tile_spec(spec, kv_len, head_dim, whole_seq=True, kv_group=group),
          _tile_spec(spec, blocks.dq_block_q, head_dim),
          _stats_column_spec(blocks.dq_block_q),
          _stats_column_spec(blocks.dq_block_q),
      ],
      out_specs=_tile_spec(spec, blocks.dq_block_q, head_dim),
      out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
      compiler_params=spec.lowering.compiler_params(
          3, num_warps=_num_warps(head_dim, blocks.dq_block_q,
                                  blocks.dq_block_k), num_stages=2),
      interpret=spec.lowering.interpret,
      name="flash_attention_dq",
  )(q, k, v, d_out, lse, delta)

  # With grouped kv heads, each query head writes its own dk/dv (f32) and XLA
  # sums each group: no two programs write the same tile.
  dkv_dtype = k.dtype if group == 1 else jnp.float32
  if spec.lowering.heads_major:
    dkv_shape = (batch, num_heads, kv_len, head_dim)
  else:
    dkv_shape = (batch, kv_len, num_heads, head_dim)
  row_shape = (batch, num_heads, 1, q_len)
  dk, dv = pl.pallas_call(
      functools.partial(_dkv_kernel, spec=spec),
      grid=(batch, num_heads, kv_len // blocks.dkv_block_k),
      in_specs=[
          _tile_spec(spec, q_len, head_dim, whole_seq=True),
          _tile_spec(spec, blocks.dkv_block_k, head_dim, kv_group=group),
          _tile_spec(spec, blocks.dkv_block_k, head_dim, kv_group=group),
          _tile_spec(spec, q_len, head_dim, whole_seq=True),
          _stats_row_spec(q_len),
          _stats_row_spec(q_len),
      ],
      out_specs=[_tile_spec(spec, blocks.dkv_block_k, head_dim),
                 _tile_spec(spec, blocks.dkv_block_k, head_dim)],
      out_shape=[jax.ShapeDtypeStruct(dkv_shape, dkv_dtype)] * 2,
      compiler_params=spec.lowering.compiler_params(
          3, num_warps=_num_warps(head_dim, blocks.dkv_block_q,
                                  blocks.dkv_block_k), num_stages=2),
      interpret=spec.lowering.interpret,
      name="flash_attention_dkv",
  )(q, k, v, d_out, lse.reshape(row_shape), delta.reshape(row_shape))

  if group > 1:
    head_axis = 1 if spec.lowering.heads_major else 2
    def sum_groups(x):
      shape = x.shape[:head_axis] + (num_kv_heads, group) + x.shape[
          head_axis + 1:]
      return x.reshape(shape).sum(axis=head_axis + 1).astype(k.dtype)
    dk, dv = sum_groups(dk), sum_groups(dv)
  return dq, dk, dv


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _flash_attention(q, k, v, spec: _Spec):
  """Padded, kernel-layout attention; see `flash_attention`."""
  return _forward(q, k, v, spec)[0]


def _flash_attention_fwd(q, k, v, spec: _Spec):
  out, lse = _forward(q, k, v, spec)
  return out, (q, k, v, out, lse)


_flash_attention.defvjp(_flash_attention_fwd, _backward)
