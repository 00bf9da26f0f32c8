"""The Ray backend: `python -m sweeps run FILE --backend ray [--address ADDR]`.

Each unfinished trial becomes one unit of Ray work that asks for what `runtime.ray` says a trial
needs: one task (CPUs, GPUs, custom resources), or, for a trial on several hosts (`hosts: N`, or a
TPU slice through `tpu: {topology, version}`), one task per host in a placement group, joined by
`jax.distributed` (sweeps/worker.py's `run_one` on every host, process 0 on bundle 0's node as
coordinator; on a TPU slice JAX finds its workers itself). Every task runs in a fresh worker
process (`max_calls=1`). A unit is retried as a whole (`runtime.retries` times): when one of its
processes crashes or its worker dies, the others (which would wait in a collective forever) are
cancelled, the placement group is released, and a new one starts the trial again from its last
checkpoint. Outputs go to `--out`, which every node must see (a shared file system).

The driver only submits and waits: stopped (Ctrl-C) and started again, it recomputes which
trials are finished from the run directories (sweeps/rundir.py) and submits the rest; a trial
cut off mid-run resumes from its checkpoint, and its metrics rows past that checkpoint are
dropped before they are written again, so each is logged once.
"""
import dataclasses
import os
import signal
import threading

from sweeps import rundir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resources(ray_cfg: dict) -> dict:
  """Ray task options for one process of a trial."""
  return {"num_cpus": ray_cfg["cpus"], "num_gpus": ray_cfg["gpus"], "resources": dict(ray_cfg["resources"]) or None}


def _bundle(ray_cfg: dict) -> dict:
  """The placement-group bundle of one host's process."""
  bundle = {"CPU": ray_cfg["cpus"], **ray_cfg["resources"]}
  if ray_cfg["gpus"]:
    bundle["GPU"] = ray_cfg["gpus"]
  return bundle


def _coordinator() -> str:
  """HOST:PORT for jax.distributed's coordinator on this node (a port free now)."""
  import socket

  import ray
  host = ray.util.get_node_ip_address()
  with socket.socket() as s:
    s.bind((host, 0))
    return f"{host}:{s.getsockname()[1]}"


@dataclasses.dataclass
class Unit:
  """One attempt of one trial on Ray: its tasks, and the placement group they share (if several hosts)."""
  trial: object
  attempt: int
  group: object = None  # a PlacementGroup, or a ray.util.tpu.SlicePlacementGroup
  waiting: object = None  # the ref whose result starts the processes (placement ready, coordinator chosen)
  tasks: list = dataclasses.field(default_factory=list)
  done: int = 0

  @property
  def refs(self) -> list:
    """What the driver waits on for this unit now."""
    return self.tasks + ([self.waiting] if self.waiting is not None else [])

  def release(self, cancel: bool) -> None:
    import ray
    if cancel:
      for ref in self.refs:
        ray.cancel(ref, force=True)
    if self.group is not None:
      if hasattr(self.group, "shutdown"):
        self.group.shutdown()
      else:
        ray.util.remove_placement_group(self.group)
      self.group = None


class Driver:
  """Submits units, routes each finished ref to its unit, retries a failed unit whole."""

  def __init__(self, runtime: dict, place):
    import ray

    from sweeps import worker
    self.runtime, self.place = runtime, place
    self.task = ray.remote(max_calls=1, max_retries=0)(worker.run_one)  # fresh worker per attempt; retried here
    self.coordinator = ray.remote(num_cpus=0)(_coordinator)
    self.owner = {}  # ref -> unit

  def submit(self, trial, attempt: int = 0) -> None:
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    ray_cfg = self.runtime["ray"]
    unit = Unit(trial, attempt)
    if ray_cfg["tpu"] is not None:
      from ray.util import tpu
      unit.group = tpu.slice_placement_group(ray_cfg["tpu"]["topology"], ray_cfg["tpu"]["version"])
      unit.waiting = unit.group.placement_group.ready()
    elif ray_cfg["hosts"] > 1:
      strategy = "STRICT_SPREAD" if ray_cfg["placement"] == "spread" else "PACK"
      unit.group = ray.util.placement_group([_bundle(ray_cfg)] * ray_cfg["hosts"], strategy=strategy)
      unit.waiting = self.coordinator.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
          unit.group, placement_group_bundle_index=0)).remote()  # runs once the group is placed
    else:
      self._start(unit, [self.task.options(**resources(ray_cfg)).remote(
          trial.config(), self.place.run_dir(trial.id), self.runtime, {"SCALING_DISTRIBUTED": "off"})])
      return
    self.owner[unit.waiting] = unit

  def _start(self, unit: Unit, refs: list) -> None:
    unit.waiting, unit.tasks = None, refs
    self.owner.update({ref: unit for ref in refs})

  def _start_processes(self, unit: Unit, ready) -> None:
    """The group is placed: one process per bundle (per host)."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    args = (unit.trial.config(), self.place.run_dir(unit.trial.id), self.runtime)
    if self.runtime["ray"]["tpu"] is not None:
      from ray.util import tpu
      self._start(unit, tpu.run_on_slice(self.task, *args, tpu_slice=unit.group))
      return
    hosts = self.runtime["ray"]["hosts"]
    self._start(unit, [self.task.options(**resources(self.runtime["ray"]),
                                         scheduling_strategy=PlacementGroupSchedulingStrategy(
                                             unit.group, placement_group_bundle_index=i)).remote(
        *args, {"SCALING_COORDINATOR": ready, "SCALING_NUM_PROCESSES": str(hosts), "SCALING_PROCESS_ID": str(i)})
        for i in range(hosts)])

  def finished(self, ref):
    """Handles one ready ref; (trial, state) once its trial is finished for this launch, else None."""
    import ray
    unit = self.owner.pop(ref)
    local = os.path.join(self.place.local, unit.trial.id)
    try:
      result = ray.get(ref)
    except ray.exceptions.RayError as e:  # this process crashed or its worker died: the unit goes again
      for other in unit.refs:
        self.owner.pop(other, None)
      unit.release(cancel=True)
      if unit.attempt < self.runtime["retries"]:
        self.submit(unit.trial, unit.attempt + 1)
        return None
      self.place.pull(unit.trial.id)
      rundir.mark_failed(local, f"{rundir.error_line(e)} (after {unit.attempt + 1} attempts on Ray)")
      self.place.push()
      return unit.trial, "failed"
    if ref is unit.waiting:
      self._start_processes(unit, result)
      return None
    unit.done += 1
    if unit.done < len(unit.tasks):
      return None
    unit.release(cancel=False)
    self.place.pull(unit.trial.id)
    # Process 0 decided and wrote the state; on a TPU slice the driver does not know which task it ran in.
    return unit.trial, rundir.state_of(local) if len(unit.tasks) > 1 else result

  def cancel_all(self) -> None:
    for unit in {id(u): u for u in self.owner.values()}.values():
      unit.release(cancel=True)
    self.owner.clear()


def run(sweep, out: str, address=None, progress: bool = True, retries=None, retry_failed: bool = False,
        log=print) -> dict:
  """Trains every unfinished trial on Ray; returns {trial id: state}."""
  import ray
  runtime = sweep.runtime.model_dump()
  if retries is not None:
    runtime["retries"] = retries
  from sweeps import storage
  place = storage.Place(rundir.sweep_dir(out, sweep))
  states, todo = rundir.to_run(sweep, place, retry_failed)
  started_here = not ray.is_initialized()
  if started_here:  # a local cluster when no address is given; workers import this repository
    ray.init(address=address, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": REPO, "SCALING_JAX_CACHE": os.environ.get(
                 "SCALING_JAX_CACHE", os.path.join(REPO, ".jax_cache")),
                 **{k: os.environ[k] for k in ("SCALING_CPU_DOTS",) if k in os.environ}}})
  bar = None
  if progress:
    from scaling import progress as progress_lib
    bar = progress_lib.bar(len(sweep.trials), len(sweep.trials) - len(todo), f"sweep {sweep.name} (ray)",
                           unit="trial", position=0)
    log = bar.write
  driver = Driver(runtime, place)
  # Ctrl-C (or SIGTERM) is noted and acted on between waits: a signal that lands while Ray blocks in a wait
  # must not be lost.
  stop = threading.Event()
  previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    for trial in todo:
      driver.submit(trial)
    while driver.owner:
      if stop.is_set():
        driver.cancel_all()
        raise KeyboardInterrupt
      ready, _ = ray.wait(list(driver.owner), num_returns=1, timeout=1.0)
      if not ready or (outcome := driver.finished(ready[0])) is None:
        continue
      trial, states[trial.id] = outcome
      if bar is not None:
        bar.update(1)
      log(rundir.trial_line(trial, states[trial.id], os.path.join(place.local, trial.id)))
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
    if bar is not None:
      bar.close()
    if started_here:
      ray.shutdown()  # a local cluster's tasks stop with it; their trials resume on the next launch
  return states
