"""Pallas kernels (GPU via Triton, TPU via Mosaic, CPU via the interpreter).

Models call the dispatchers, which fall back to plain XLA where a kernel does
not apply (always on CPU):

  pallas_kernels.attention(q, k, v, causal=True, impl="auto")
  pallas_kernels.cross_entropy(hidden, unembedding, labels, impl="auto")

The kernels themselves: `flash_attention.flash_attention` and
`fused_cross_entropy.fused_cross_entropy`; references in `reference.py`;
per-platform lowering choices in `lowering.py`.
"""

from pallas_kernels.dispatch import attention
from pallas_kernels.dispatch import cross_entropy
from pallas_kernels.dispatch import IMPLS
from pallas_kernels.dispatch import resolve_attention_impl
from pallas_kernels.dispatch import resolve_cross_entropy_impl
