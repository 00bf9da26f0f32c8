"""models/transformer.Dense: nnx.Linear over flattened leading dimensions gives nnx.Linear's numbers, bit for bit."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models import transformer


def test_dense_equals_linear_in_value_and_gradients():
  with nnx.use_eager_sharding(False):
    layer = transformer.dense(nnx.Rngs(params=0), 16, 24, ("embed", "mlp"), 0.3)
  graphdef, state = nnx.split(layer)
  x = jax.random.normal(jax.random.key(1), (3, 5, 16))
  g = jax.random.normal(jax.random.key(2), (3, 5, 24))

  def run(call):
    def loss(state, x):
      return jnp.sum(jax.nn.gelu(call(nnx.merge(graphdef, state), x)) * g)
    value, (d_state, d_x) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(state, x)
    return value, (d_state["kernel"][...], d_x)

  (ours, (d_kernel, d_x)), (theirs, (their_kernel, their_x)) = run(transformer.Dense.__call__), run(nnx.Linear.__call__)
  assert transformer.Dense.__call__ is not nnx.Linear.__call__
  np.testing.assert_array_equal(ours, theirs)
  np.testing.assert_array_equal(d_kernel, their_kernel)
  np.testing.assert_array_equal(d_x, their_x)
  assert layer(x).shape == (3, 5, 24) and layer(x[0]).shape == (5, 24)
