"""Device mesh from config, and logical-axis rules that place parameters and batches on it.

Models name the dimensions of their parameters (`embed`, `mlp`, `heads`, `vocab`,
...); `RULES` maps those names to mesh axes, MaxText style. The same sweep runs
on a laptop (a 1-device mesh) or a pod slice (say data=16, fsdp=16, tensor=4; expert=8
for a mixture of experts):
only the `runtime.mesh` block changes, never the model.
"""
import math

import jax
from flax import nnx
from flax.core import spmd
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp", "expert", "tensor")

# Logical name -> mesh axes. Activations have their own names so the batch can use fsdp too.
# Expert parallelism: a mixture of experts' expert dimension splits over `expert`, which also
# splits the batch (each device group routes its own rows' tokens to every expert: XLA's all-to-all).
RULES = (
    ("batch", ("data", "fsdp", "expert")),
    ("expert", "expert"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("vocab", "tensor"),
    ("norm", None),
    ("pixels", None),
    ("classes", None),
    ("seq", None),
    ("act_embed", None),
)


class MeshError(ValueError):
  """The requested mesh does not fit the devices."""


def mesh_shape(axes: dict, n_devices: int) -> tuple:
  """Resolves -1 (at most one) to the devices left over; checks the product."""
  sizes = [axes.get(name, 1) for name in AXES]
  fill = [i for i, s in enumerate(sizes) if s == -1]
  if len(fill) > 1:
    raise MeshError(f"mesh {axes}: at most one axis may be -1")
  fixed = math.prod(s for s in sizes if s != -1)
  if fill:
    if n_devices % fixed:
      raise MeshError(f"mesh {axes}: {n_devices} devices are not divisible by the fixed axes' product {fixed}")
    sizes[fill[0]] = n_devices // fixed
  if math.prod(sizes) > n_devices or (fill and math.prod(sizes) != n_devices):
    raise MeshError(f"mesh {dict(zip(AXES, sizes))} needs {math.prod(sizes)} devices; {n_devices} are available")
  return tuple(sizes)


def make_mesh(axes: dict, devices=None) -> jax.sharding.Mesh:
  """A mesh over all devices, or over the first prod(sizes) if every size is given (e.g. all 1s)."""
  devices = jax.devices() if devices is None else devices
  sizes = [axes.get(name, 1) for name in AXES]
  if -1 not in sizes and math.prod(sizes) < len(devices):
    devices = devices[: math.prod(sizes)]
  shape = mesh_shape(axes, len(devices))
  # Auto axes: classic jit with in/out shardings; XLA propagates through the step.
  return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def _fits(spec: P, shape, mesh) -> P:
  """Replicates any dimension that its mesh axes do not divide evenly."""
  out = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    names = axes if isinstance(axes, tuple) else (axes,) if axes else ()
    size = math.prod(mesh.shape[n] for n in names)
    out.append(axes if size and dim % size == 0 else None)
  return P(*out)


def param_shardings(state, mesh, rules=RULES):
  """NamedSharding for each parameter of an nnx State, from its logical axis names."""
  with spmd.logical_axis_rules(rules):
    specs = nnx.get_partition_spec(state)
  return jax.tree.map(lambda spec, leaf: NamedSharding(mesh, _fits(spec, leaf.shape, mesh)),
                      specs, state, is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh, rules=RULES) -> NamedSharding:
  """Splits the leading (batch) dimension of any batch array; the other dimensions are replicated."""
  batch_axes = dict(rules)["batch"]
  return NamedSharding(mesh, P(batch_axes))


def host_rows(sharding: NamedSharding, global_shape) -> slice:
  """The smallest slice of batch rows covering every row this process's devices hold."""
  spans = [index[0].indices(global_shape[0])[:2]
           for index in sharding.addressable_devices_indices_map(global_shape).values()]
  return slice(min(start for start, _ in spans), max(stop for _, stop in spans))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def describe(mesh) -> dict:
  return {name: int(size) for name, size in mesh.shape.items()}


def leaf_specs(tree) -> list:
  """(path, PartitionSpec) of each array leaf, for logs and tests."""
  return [(jax.tree_util.keystr(path), leaf.sharding.spec)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
          if isinstance(getattr(leaf, "sharding", None), NamedSharding)]

