"""Small pieces shared by the kernels: padding to whole tiles and f32-accumulating matmuls."""
from jax import lax
import jax.numpy as jnp


def round_up(x: int, multiple: int) -> int:
  return -(-x // multiple) * multiple


def dot(a, b):
  """a @ b with an f32 accumulator. [m, k] x [k, n] -> [m, n]."""
  return lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32)


def dot_nt(a, b):
  """a @ b.T with an f32 accumulator. [m, k] x [n, k] -> [m, n]."""
  return lax.dot_general(a, b, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
