"""The `runtime:` section of a sweep file: how to run, not what (the mesh, logging and checkpoint cadence, retries,
packing, what a Ray or SLURM task asks for). None of it is in a trial id, so the same trials run on a laptop or a
pod slice. It lives here, below every package that reads it: the trainer takes its defaults from it
(`scaling/train.default_runtime`), the sweep schema (sweeps/spec.py) validates a file's section with it.
"""
from typing import Annotated, Literal, Optional

import pydantic

MAX_TRIALS = 10_000  # A grid beyond this is a typo, not a sweep.
MAX_STEPS = 2 ** 31 - 1  # A step count or cadence: the step is an int32 on the device.


class Strict(pydantic.BaseModel):
  """The base of every section of the sweep schema."""
  # allow_inf_nan=False: every float of the schema is finite (YAML's .nan and .inf are refused), one setting
  # for every field; the data kinds' and objectives' option schemas set it on their own bases.
  model_config = pydantic.ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class MeshSpec(Strict):
  """Device mesh axes; -1 takes the remaining devices (at most one axis)."""
  data: int = pydantic.Field(-1, ge=-1, le=1 << 20)
  fsdp: int = pydantic.Field(1, ge=-1, le=1 << 20)
  expert: int = pydantic.Field(1, ge=-1, le=1 << 20)  # expert parallelism (and more batch splitting)
  tensor: int = pydantic.Field(1, ge=-1, le=1 << 20)

  @pydantic.model_validator(mode="after")
  def _no_zero(self):
    for name in ("data", "fsdp", "expert", "tensor"):
      if getattr(self, name) == 0:
        raise ValueError(f"{name}: 0 devices; use a positive size or -1")
    return self


# Keys that say how to run, not what: in `runtime:`, never part of a trial id.
RUNTIME_ONLY = ("tensorboard", "flush_every", "checkpoint_every", "checkpoint_minutes", "keep_checkpoints")


class TpuSliceSpec(Strict):
  """A whole TPU slice per trial (ray.util.tpu.slice_placement_group): one process on each of its hosts."""
  topology: str = pydantic.Field(pattern=r"^\d+(x\d+){1,2}$")  # e.g. 4x4, 2x2x2
  version: str = pydantic.Field(pattern=r"^v\d+[a-z]*$")  # v4, v5p, v5litepod, v6e


RAY_RESOURCE_UNIT = 1e-4  # Ray counts resources in ten-thousandths; a smaller nonzero share is refused by Ray


def _ray_quantity(name: str, amount: float) -> None:
  """ValueError unless Ray can grant `amount` of resource `name` (the rules Ray checks when a task is submitted)."""
  if 0 < amount < RAY_RESOURCE_UNIT:
    raise ValueError(f"{name} {amount:g}: Ray counts resources in units of {RAY_RESOURCE_UNIT:g}; "
                     f"ask for 0 or at least {RAY_RESOURCE_UNIT:g}")
  if name == "gpus" and amount > 1 and amount != int(amount):
    raise ValueError(f"gpus {amount:g}: a share of one GPU, or a whole number of them")


class RaySpec(Strict):
  """What one trial asks a Ray cluster for (`--backend ray`); with `hosts` > 1, per host (per process)."""
  cpus: float = pydantic.Field(1.0, gt=0, le=1 << 16, strict=False)
  gpus: float = pydantic.Field(0.0, ge=0, le=1 << 10, strict=False)
  # Custom resources, e.g. {TPU: 4}: a free-form dict, so its amounts are typed here (finite, 0 to 2^32).
  resources: dict[str, Annotated[float, pydantic.Field(ge=0, le=1 << 32)]] = pydantic.Field({}, strict=False)
  hosts: int = pydantic.Field(1, ge=1, le=4096)  # processes per trial, joined by jax.distributed
  placement: Literal["spread", "pack"] = "spread"  # hosts' bundles on distinct nodes (STRICT_SPREAD) or packed
  tpu: Optional[TpuSliceSpec] = None  # a TPU slice per trial; its hosts come from the topology

  @pydantic.model_validator(mode="after")
  def _one_way_to_say_hosts(self):
    if self.tpu is not None and self.hosts != 1:
      raise ValueError("hosts: leave it out with tpu: a slice's hosts come from its topology")
    if self.placement != "spread" and (self.hosts == 1 or self.tpu is not None):
      raise ValueError(f"placement {self.placement!r} places the bundles of a trial on several hosts (hosts > 1); "
                       "this trial has one bundle" + (" (a TPU slice places its own)" if self.tpu else ""))
    return self

  @pydantic.model_validator(mode="after")
  def _ray_grants_it(self):
    for name in ("CPU", "GPU"):
      if name in self.resources:
        raise ValueError(f"resources.{name}: ask with {name.lower()}s: {self.resources[name]:g} (Ray refuses "
                         f"{name} among custom resources)")
    _ray_quantity("cpus", self.cpus)
    _ray_quantity("gpus", self.gpus)
    for name, amount in self.resources.items():
      _ray_quantity(f"resources.{name}", amount)
    return self


class SlurmSpec(Strict):
  """The job array of `--backend slurm` (through submitit): per trial, one job of this shape."""
  partition: Optional[str] = None
  time_minutes: int = pydantic.Field(60, ge=1, le=60 * 24 * 30)
  nodes: int = pydantic.Field(1, ge=1, le=4096)
  gpus_per_node: int = pydantic.Field(0, ge=0, le=64)
  cpus_per_task: int = pydantic.Field(1, ge=1, le=1 << 16)
  array_parallelism: int = pydantic.Field(64, ge=1, le=MAX_TRIALS)  # array elements running at once


class RuntimeSpec(Strict):
  """How to run, not what: not part of the trial id, so the same trials run on any machine."""
  mesh: MeshSpec = MeshSpec()
  tensorboard: bool = True  # also write TensorBoard event files
  # steps between writes of the per-step rows (at a dispatch's end)
  flush_every: int = pydantic.Field(10, ge=1, le=MAX_STEPS)
  # Steps one host dispatch runs (scaling/train.several_steps): small models spend most of a step on the host.
  steps_per_dispatch: int = pydantic.Field(8, ge=1, le=1024)
  checkpoint_every: int = pydantic.Field(500, ge=0, le=MAX_STEPS)  # steps; 0: only on preemption and at the end
  checkpoint_minutes: float = pydantic.Field(10.0, gt=0)  # also save when this much time passed
  keep_checkpoints: int = pydantic.Field(2, ge=1, le=1000)
  memory_limit_gib: Optional[float] = pydantic.Field(None, gt=0)  # default: the device's own memory
  retries: int = pydantic.Field(1, ge=0, le=100)  # re-runs of a crashed trial before it is marked failed
  # Trials that differ only in seed, lr or other optimizer scalars train as one vmapped program (scaling/pack.py).
  pack: bool = False
  pack_max_trials: int = pydantic.Field(32, ge=1, le=4096)  # trials per packed program at most
  ray: RaySpec = RaySpec()
  slurm: SlurmSpec = SlurmSpec()

  @pydantic.model_validator(mode="after")
  def _pack_max_applies(self):
    if not self.pack and self.pack_max_trials != RuntimeSpec.model_fields["pack_max_trials"].default:
      raise ValueError(f"pack_max_trials {self.pack_max_trials} applies with pack: true; trials run one by one")
    return self
