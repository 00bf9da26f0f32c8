"""Where a Pallas kernel lowers: Triton (GPU), Mosaic (TPU) or the interpreter.

The kernels in this package are written once, in the subset of Pallas that
both the Triton and the Mosaic TPU lowerings accept (2-D tiles, `pl.ds` slices
of refs, `lax.fori_loop` with traced bounds, `broadcasted_iota`, dots with an
f32 accumulator). What differs per platform is small and lives here:

- the compiler parameters (`num_warps`/`num_stages` for Triton, grid dimension
  semantics for Mosaic);
- the memory layout the kernel wants: Mosaic tiles the last two dims of every
  block onto (sublanes, lanes), so attention arrays must be head-major
  [batch, heads, seq, head_dim]; Triton addresses memory through strided
  pointers and reads [batch, seq, heads, head_dim] in place, saving transposes;
- Triton's tensors must have power-of-two sizes, so head_dim is zero-padded.

Importing this module is safe on a CPU-only machine: both backends' Python
packages ship with jaxlib and only need the hardware when compiling.
"""

import dataclasses

import jax
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltriton

TRITON = "triton"
MOSAIC_TPU = "mosaic_tpu"
INTERPRET = "interpret"


@dataclasses.dataclass(frozen=True)
class Lowering:
  """How `pl.pallas_call` should lower a kernel of this package.

  Attributes:
    backend: one of "triton" (NVIDIA/AMD GPU), "mosaic_tpu" or "interpret"
      (the Pallas HLO interpreter: any platform, slow, used by the CPU tests).
    heads_major: kernels see q/k/v as [batch, heads, seq, head_dim] (the
      wrappers transpose) rather than the public [batch, seq, heads, head_dim].
    pow2_head_dim: zero-pad head_dim up to a power of two before the kernel.
  """
  backend: str
  heads_major: bool = False
  pow2_head_dim: bool = False

  def __post_init__(self):
    if self.backend not in (TRITON, MOSAIC_TPU, INTERPRET):
      raise ValueError(f"Unknown Pallas backend {self.backend!r}.")

  @property
  def interpret(self) -> bool:
    return self.backend == INTERPRET

  def compiler_params(self, num_grid_dims: int, *, num_warps: int = 4,
                      num_stages: int = 2):
    """Backend-specific `compiler_params` for `pl.pallas_call` (None if none).

    Every grid point of our kernels writes a disjoint output tile, so all grid
    dimensions are "parallel" on TPU (megacore may split any of them).
    """
    if self.backend == TRITON:
      return pltriton.CompilerParams(num_warps=num_warps, num_stages=num_stages)
    if self.backend == MOSAIC_TPU:
      return pltpu.CompilerParams(
          dimension_semantics=("parallel",) * num_grid_dims)
    return None


GPU = Lowering(TRITON, heads_major=False, pow2_head_dim=True)
TPU = Lowering(MOSAIC_TPU, heads_major=True, pow2_head_dim=False)
CPU_INTERPRET = Lowering(INTERPRET)


def for_platform(platform: str | None = None) -> Lowering | None:
  """The compiled lowering for a JAX platform name, or None (e.g. on CPU).

  Args:
    platform: "gpu", "cuda", "rocm", "tpu", "cpu", ...; defaults to
      `jax.default_backend()`.
  """
  platform = platform or jax.default_backend()
  if platform in ("gpu", "cuda", "rocm"):
    return GPU
  if platform == "tpu":
    return TPU
  return None
