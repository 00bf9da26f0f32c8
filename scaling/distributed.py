"""Joins this process to a multi-process (multi-host) JAX run described by its environment.

JAX runs one Python process per host; `jax.distributed.initialize` must connect
them before any other JAX call (a device query included), or each process sees
only its own devices. `initialize()` reads where it runs from the environment:

  SCALING_COORDINATOR=host:port  GPU/CPU clusters: the address of process 0 (a free port
  SCALING_NUM_PROCESSES=N        on its host), the number of processes, and this
  SCALING_PROCESS_ID=i           process's index 0..N-1. JAX_COORDINATOR_ADDRESS (the one
                                 such variable jax 0.10 reads itself) may replace
                                 SCALING_COORDINATOR; the count and index have no JAX
                                 variable, so they are always SCALING_*.
  SLURM (srun, > 1 task)         JAX reads the coordinator, count and index from SLURM.
  Cloud TPU pod slice            JAX reads them from the TPU VM's metadata / TPU_* and
                                 MEGASCALE_* variables: run the same command on every host.
  SCALING_DISTRIBUTED=off        never initialise (e.g. a one-host job inside SLURM).

Anything else is a single process, and `initialize()` does nothing.
"""
import os


class DistributedError(ValueError):
  """The environment describes a multi-process run inconsistently."""


def initialize() -> bool:
  """Calls jax.distributed.initialize as the environment says; True if this is a multi-process run.

  Call it first: after `import jax`, before `jax.devices()` or any computation.
  Idempotent: a second call returns True without reconnecting.
  """
  import jax
  if jax.distributed.is_initialized():
    return True
  if os.environ.get("SCALING_DISTRIBUTED", "").lower() in ("off", "0", "false"):
    return False
  coordinator = os.environ.get("SCALING_COORDINATOR") or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if coordinator:
    num_processes = _int_variable("SCALING_NUM_PROCESSES")
    process_id = _int_variable("SCALING_PROCESS_ID")
    if not 0 <= process_id < num_processes:
      raise DistributedError(f"SCALING_PROCESS_ID={process_id}: expected 0..{num_processes - 1} "
                             f"(SCALING_NUM_PROCESSES={num_processes})")
    if num_processes == 1:
      return False
    _cpu_collectives()
    jax.distributed.initialize(coordinator, num_processes, process_id)
    return True
  if int(os.environ.get("SLURM_STEP_NUM_TASKS", os.environ.get("SLURM_NTASKS", "1"))) > 1:
    _cpu_collectives()
    jax.distributed.initialize()  # JAX's SLURM detection: coordinator = first node of the step.
    return True
  if _on_tpu_pod():
    jax.distributed.initialize()  # JAX's Cloud TPU detection: all arguments from the slice.
    return True
  return False


def _int_variable(name: str) -> int:
  value = os.environ.get(name)
  try:
    return int(value)
  except (TypeError, ValueError):
    raise DistributedError(f"{name}={value!r}: expected an integer (SCALING_COORDINATOR is set, so "
                           f"SCALING_NUM_PROCESSES and SCALING_PROCESS_ID must be too)") from None


def _cpu_collectives() -> None:
  """Cross-process collectives on CPU need an implementation; gloo ships with jaxlib.

  Only read when the CPU client is created, so it is harmless on GPU hosts. jax
  0.10 defaults to gloo already; older versions default to none, which fails at
  the first cross-host all-reduce.
  """
  import jax
  if jax.config.jax_cpu_collectives_implementation is None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")


def _on_tpu_pod() -> bool:
  """True where the TPU variables name several workers or slices, or on a Cloud TPU VM."""
  for name in ("TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES"):
    if len(os.environ.get(name, "").split(",")) > 1:
      return True
  if os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"):  # Multislice: several slices, one job.
    return True
  from jax._src import cloud_tpu_init  # No public flag; `import jax` sets it when TPU chips and libtpu are present.
  # On a TPU VM JAX asks the metadata server for the slice's workers (one worker: one process).
  return bool(getattr(cloud_tpu_init, "running_in_cloud_tpu_vm", False)) and not os.environ.get("TPU_SKIP_MDS_QUERY")


def is_writer() -> bool:
  """True in the one process that writes shared files (manifests, summaries, reports): process 0."""
  import jax
  return jax.process_index() == 0


def agree(flag: bool) -> bool:
  """Process 0's `flag`, on every process.

  Decisions that read shared files or clocks (is this trial finished? did we
  claim it? is a checkpoint due?) are made once, by process 0, so that every
  process runs the same trials, steps and saves in the same order; a
  disagreement would leave one host waiting in a collective. A blocking
  collective: call it where the loop syncs anyway.
  """
  return bool(agree_number(int(flag)))


def agree_number(value: int) -> int:
  """Process 0's int32 `value`, on every process (as `agree`, for a step number)."""
  import jax
  if jax.process_count() == 1:
    return value
  import numpy as np
  from jax.experimental import multihost_utils
  return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def on_any_host(flags: list) -> list:
  """Each flag, true on every process if it is true on any (a collective): a read that failed on one host."""
  import jax
  if jax.process_count() == 1:
    return flags
  import numpy as np
  from jax.experimental import multihost_utils
  gathered = multihost_utils.process_allgather(np.asarray(flags, np.int32))
  return [bool(f) for f in np.asarray(gathered).reshape(jax.process_count(), -1).any(axis=0)]


def to_host(array):
  """The whole array as numpy on this host; one sharded across hosts is gathered (a collective: every
  process must call it)."""
  import jax
  import numpy as np
  if isinstance(array, jax.Array) and not array.is_fully_addressable:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(array, tiled=True))
  return np.asarray(jax.device_get(array))
