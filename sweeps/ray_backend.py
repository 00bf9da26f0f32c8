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
trials are finished from the run directories (scaling/rundir.py) and submits the rest; a trial
cut off mid-run resumes from its checkpoint, and its metrics rows past that checkpoint are
dropped before they are written again, so each is logged once.

Before anything is submitted or written, the driver checks what it can (one line and exit 2 otherwise): that
this Ray can serve the address (`ray://` needs the `ray[client]` extra, `http://` is the dashboard's, another
`scheme://` needs a module of that name) and that something there answers as Ray does, within seconds; and
that the cluster can place a trial: some node offers one process's resources (with `hosts` > 1, enough nodes
together, distinct ones for `placement: spread`), or an autoscaler can add such nodes. Autoscaler v2 (KubeRay,
`RAY_enable_autoscaler_v2`) publishes its node types, so a request none of them can meet is refused too; the
v1 autoscaler (`ray up`) publishes none, so there the driver notes that no node offers the request yet and
waits for one, as Ray does (a cluster started by hand with `ray start`, whose v1 monitor adds no nodes, is
refused). Through Ray Client (`ray://`) only the nodes can be seen: a request none of them meets is a note, not
a refusal. A TPU slice's shape is Ray's to place (ray.util.tpu reserves it with its own timeout): the check asks
only for a node, or a node type, with TPUs. The check runs even when every trial is finished already.
"""
import dataclasses
import importlib.util
import json
import logging
import os
import signal
import socket
import threading

from scaling import rundir

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


class ClusterError(ValueError):
  """The cluster cannot be reached from here, or cannot hold these trials: one line, what was asked, what is there."""


# ------------------------------------------------------------------------------------------------ reaching the cluster

_RAY_CLIENT_PORT = 10001  # Ray Client's default, when a ray:// address gives none
# An HTTP/2 client's opening (RFC 9113 3.4): the magic string, then an empty SETTINGS frame.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS_FRAME = 0x04


def connection_problem(address) -> str | None:
  """Why `ray.init` cannot reach a cluster at `address` from here, in one line, or None. None means a local
  cluster unless RAY_ADDRESS is set (ray.init reads it then). Takes seconds at most: where nothing, or something
  other than Ray, listens, ray.init retries for minutes."""
  if importlib.util.find_spec("ray") is None:
    return "--backend ray: Ray is not installed here (pip install 'ray[default]')"
  address, given = _address_given(address)
  if address in (None, "", "local", "auto"):  # a local cluster; "auto" without one fails at once in ray.init
    return None
  scheme, is_url, rest = address.partition("://")
  if not is_url:
    return _head_problem(given, address)
  if scheme == "ray":
    if importlib.util.find_spec("grpc") is None:  # what Ray Client needs that `pip install ray` leaves out
      return (f"{given}: a ray:// address goes through Ray Client, which needs the `ray[client]` extra "
              "(pip install 'ray[client]'); or run the sweep on one of the cluster's machines with --address HOST:6379")
    return _head_problem(given, rest.rstrip("/"), default_port=_RAY_CLIENT_PORT)
  if scheme in ("http", "https"):
    return (f"{given}: an http address is the dashboard's (for `ray job submit`); give the head's HOST:PORT "
            "(port 6379 unless `ray start --port` said otherwise), or ray://HOST:10001 through Ray Client")
  if not _module_installed(scheme):  # ray.init imports a module named by any other scheme, for its ClientBuilder
    return (f"{given}: this Ray cannot serve {scheme}:// (it serves HOST:PORT, and ray://HOST:PORT with the "
            f"`ray[client]` extra; {scheme}:// would need an installed Python module `{scheme}` with a ClientBuilder)")
  return None


def _address_given(address) -> tuple:
  """(the address ray.init will use, how the user gave it): RAY_ADDRESS wins over none or "auto", as in ray.init."""
  from_env = os.environ.get("RAY_ADDRESS")
  if from_env and address in (None, "auto"):
    return from_env, f"RAY_ADDRESS={from_env}"
  return address, f"--address {address}" if address else "a local Ray cluster"


def _module_installed(name: str) -> bool:
  try:
    return importlib.util.find_spec(name) is not None
  except (ImportError, ValueError):  # a dotted name whose parent is missing, an empty or relative name
    return False


def _head_problem(given: str, host_port: str, default_port=None) -> str | None:
  """Why no Ray endpoint answers at HOST:PORT, or None."""
  host, _, port = host_port.rpartition(":")
  if default_port is not None and not port.isdigit():
    host, port = host_port, str(default_port)
  host = host.strip("[]")  # an IPv6 literal
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    return f"{given}: expected HOST:PORT of a Ray head (e.g. 10.0.0.1:6379)"
  undo = "leave --address out" if given.startswith("--") else "unset RAY_ADDRESS"
  try:
    conn = socket.create_connection((host, int(port)), timeout=5)
  except OSError as e:
    return (f"{given}: no Ray cluster answers there ({e.strerror or e}); start one with `ray start --head`, "
            f"or {undo} for a local cluster")
  with conn:
    try:
      answers = os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true") or _answers_http2(conn)
    except OSError:  # silent for 5 s, or reset: not a gRPC server either
      answers = False
  if not answers:
    return (f"{given}: something listens there but does not answer as Ray does (gRPC); the head's port is 6379 "
            "unless `ray start --port` said otherwise (8265 is the dashboard's)")
  return None


def _answers_http2(conn) -> bool:
  """Whether the server speaks HTTP/2, as every Ray endpoint does (gRPC): its first frame, sent at once, is
  SETTINGS. (Behind TLS, RAY_USE_TLS, nothing can be read in the clear; the caller does not ask.)"""
  conn.sendall(_HTTP2_PREFACE)
  header = b""
  while len(header) < 4:
    chunk = conn.recv(4 - len(header))
    if not chunk:
      return False
    header += chunk
  return header[3] == _SETTINGS_FRAME


def _connect(address) -> None:
  """ray.init, its refusals as one line (the address was checked; the cluster may still say no)."""
  import ray
  try:
    # Ray's INFO lines ("Connecting to existing Ray cluster...") would come before a refusal's one line.
    ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": {"PYTHONPATH": REPO, "SCALING_JAX_CACHE": os.environ.get(
                 "SCALING_JAX_CACHE", os.path.join(REPO, ".jax_cache")),
                 **{k: os.environ[k] for k in ("SCALING_CPU_DOTS",) if k in os.environ}}})
  except (OSError, RuntimeError, ValueError) as e:  # ConnectionError, a refused scheme, a version mismatch
    first_line = (str(e).strip() or "?").splitlines()[0]
    raise ClusterError(f"{_address_given(address)[1]}: {type(e).__name__}: {first_line}") from None


# -------------------------------------------------------------------------------------------- what a trial asks for

def _demand(ray_cfg: dict) -> tuple:
  """What one trial needs of the cluster at once: (one process's resources, processes, on distinct nodes?)."""
  if ray_cfg["tpu"] is not None:  # the slice's bundles are ray.util.tpu's to work out; at least TPUs somewhere
    return {"TPU": 1.0}, 1, False
  shape = {k: float(v) for k, v in _bundle(ray_cfg).items() if v}
  return shape, ray_cfg["hosts"], ray_cfg["hosts"] > 1 and ray_cfg["placement"] == "spread"


def _fits(shape: dict, node: dict) -> int:
  """How many processes of `shape` one node of `node` resources holds (Ray counts resources to 1e-4)."""
  # An amount that is not a positive number (NaN, negative) fits nowhere; infinity gives 0 of itself.
  return int(min(node.get(name, 0.0) / amount if amount > 0 else 0.0 for name, amount in shape.items()) + 1e-6)


def _placeable(shape: dict, processes: int, distinct: bool, nodes: list) -> bool:
  """Whether `processes` of `shape` fit on the empty `nodes` (resource dicts): one per node if distinct."""
  held = [_fits(shape, node) for node in nodes]
  return (sum(h > 0 for h in held) if distinct else sum(held)) >= processes


def _autoscaler_node_types() -> list | None:
  """What an autoscaler can add, as [(node type, resources, nodes it can add at most)]; [] if one runs but does not
  say (autoscaler v1), or if this driver cannot ask (Ray Client); None if no autoscaler runs."""
  import ray
  try:  # autoscaler v2 publishes its node types in the GCS (what Ray Train and Ray Data read)
    from ray.experimental import internal_kv
    config = ray._private.state.state.get_cluster_config()
    status = internal_kv._internal_kv_get(ray._private.ray_constants.DEBUG_AUTOSCALING_STATUS)
  except Exception:  # noqa: BLE001 -- private API: another Ray version, or a Ray Client driver
    return []
  if config is not None and config.node_group_configs:  # a group's min_count nodes are up already
    return [(group.name, dict(group.resources), -1 if group.max_count == -1 else group.max_count - group.min_count)
            for group in config.node_group_configs
            if group.max_count == -1 or group.max_count > group.min_count] or None
  try:
    report = json.loads(status).get("autoscaler_report") if status else None
  except ValueError:
    report = None
  if not isinstance(report, dict):  # no v1 monitor has reported: nothing says an autoscaler runs
    return None
  if report.get("pending_nodes") or report.get("pending_launches"):
    return []
  # Without an autoscaling config (`ray start` by hand, a local cluster) the v1 monitor still reports, through its
  # read-only provider, which names every node's type after the node and adds none.
  types = report.get("node_type_mapping")
  read_only = isinstance(types, dict) and bool(types) and all(t == f"node_{node}" for node, t in types.items())
  return None if read_only else []


def placement_problem(ray_cfg: dict, log=print) -> str | None:
  """Why no node of the connected cluster, nor any node its autoscaler can add, can hold one trial of `ray_cfg`
  (`runtime.ray`), or None: Ray would wait for such a node forever without a word. A wait for the autoscaler is
  a note through `log`."""
  import ray
  shape, processes, distinct = _demand(ray_cfg)
  nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
  if _placeable(shape, processes, distinct, nodes):
    return None
  tpu = ray_cfg["tpu"]
  asked = f"a TPU {tpu['version']} slice ({tpu['topology']})" if tpu else _describe_demand(shape, processes, distinct)
  node_types = _autoscaler_node_types()
  if node_types == []:
    log(f"note: runtime.ray asks for {asked}; no node of the cluster has that now ({_describe_nodes(nodes)}); "
        "waiting for its autoscaler to add one (`ray status` shows what it is doing)")
    return None
  if node_types and _placeable(shape, processes, distinct, nodes + _addable(node_types, processes)):
    log(f"note: runtime.ray asks for {asked}; no node of the cluster has that now; its autoscaler can add "
        + ", ".join(name for name, resources, _ in node_types if _fits(shape, resources)) + " nodes for it")
    return None
  types = ("; node types its autoscaler can add: " + "; ".join(
      f"{name} (up to {'any number' if most == -1 else most}): {_describe_resources(resources)}"
      for name, resources, most in node_types)) if node_types else ""
  return f"asks for {asked}, and no node of the cluster can hold it; its nodes: {_describe_nodes(nodes)}{types}"


def _addable(node_types: list, processes: int) -> list:
  """The nodes an autoscaler could add that matter to one trial: of each type up to its limit and `processes`."""
  return [resources for _, resources, most in node_types
          for _ in range(processes if most == -1 else min(most, processes))]


def _describe_demand(shape: dict, processes: int, distinct: bool) -> str:
  what = _describe_resources(shape)
  if processes == 1:
    return what
  return f"{processes} processes of {what}" + (" on distinct nodes (placement: spread)" if distinct else "")


# Resources every node has that say nothing about what a trial can ask for.
_BOOKKEEPING = ("memory", "object_store_memory")


def _describe_resources(resources: dict) -> str:
  shown = {k: v for k, v in resources.items() if not k.startswith("node:") and k not in _BOOKKEEPING}
  return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shown.items())) + "}"


def _describe_nodes(nodes: list) -> str:
  """'2 x {CPU: 8, GPU: 1}, 1 x {CPU: 2}': the alive nodes, grouped by what they offer."""
  counts = {}
  for node in nodes:
    shape = _describe_resources(node)
    counts[shape] = counts.get(shape, 0) + 1
  return ", ".join(f"{n} x {shape}" for shape, n in sorted(counts.items(), key=lambda item: -item[1])) or "none alive"


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
  """Trains every unfinished trial on Ray; returns {trial id: state}. Raises ClusterError (nothing written or
  submitted) when the cluster cannot be reached or cannot hold a trial."""
  import ray
  runtime = sweep.runtime.model_dump()
  if retries is not None:
    runtime["retries"] = retries
  started_here = not ray.is_initialized()
  if started_here:  # a local cluster when no address is given; workers import this repository
    problem = connection_problem(address)
    if problem:
      raise ClusterError(problem)
    _connect(address)
  try:
    problem = placement_problem(runtime["ray"], log)
    if problem:  # named at the sweep file's line, like every other refusal of what it asks for
      from sweeps.spec import error_at, read_yaml
      raise ClusterError(str(error_at(sweep.path, read_yaml(sweep.path)[1], ("runtime", "ray"), problem)))
    return _run_on_cluster(sweep, out, runtime, progress, retry_failed, log)
  finally:
    if started_here:
      ray.shutdown()  # a local cluster's tasks stop with it; their trials resume on the next launch


def _run_on_cluster(sweep, out: str, runtime: dict, progress: bool, retry_failed: bool, log) -> dict:
  """Submits the unfinished trials and waits for each (retrying a failed unit whole)."""
  import ray

  from scaling import storage
  place = storage.Place(rundir.sweep_dir(out, sweep))
  states, todo = rundir.to_run(sweep, place, retry_failed)
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
  return states
