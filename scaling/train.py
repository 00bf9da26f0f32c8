"""Trains one trial into its run directory: the single training loop of the platform.

Run directory after a trial:
  config.json      the resolved trial config (its hash is the directory name)
  metrics.jsonl    one row per step (loss, grad norm, lr, the objective's metrics, examples, tokens)
                   plus eval rows (eval_loss, eval_<metric>, evaluator metrics such as probe_error)
  summary.json     status, objective and loss unit, parameter counts, examples, tokens, FLOPs,
                   final losses and metrics, throughput, params_sha256
  checkpoints/     orbax checkpoints; a re-run resumes from the latest one that reads back (a damaged one is
                   moved aside as checkpoint-<step>.damaged-*: scaling/checkpoint.py)
  tensorboard/     event files of the same scalars
"""
import dataclasses
import hashlib
import math
import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from models import counting, moe, mup, registry
from scaling import checkpoint as checkpoint_lib
from scaling import containment
from scaling import distributed
from scaling import evaluators as evaluators_lib
from scaling import host_memory
from scaling import logs
from scaling import mesh as mesh_lib
from scaling import metrics as metrics_lib
from scaling import objectives
from scaling import pack
from scaling import runtime as runtime_lib
from scaling import runtime_spec
from scaling import throughput
from scaling import timeline as timeline_lib
from scaling.data import Batches, train_steps


@dataclasses.dataclass
class Setup:
  """Everything a trial derives from its config before the first step."""
  data: Batches
  family: registry.Family
  objective: objectives.Objective
  arch: object
  model: nnx.Module
  counts: dict
  flops: dict  # per example and per token, exact and 6N (models/counting.py)
  steps: int
  examples_per_step: int
  tokens_per_step: int


def setup(config: dict) -> Setup:
  model_cfg, train_cfg = config["model"], config["train"]
  data = Batches(config["data"], train_cfg["seq_len"], train_cfg["batch_size"], config["seed"])
  family = registry.get(model_cfg["family"])
  objective = objectives.get(train_cfg["objective"]["name"])
  arch = family.ladder(model_cfg["size"], **family.ladder_inputs(data.model_inputs, objective.name),
                       **model_cfg["options"])
  model = family.build(arch, config["seed"])
  counts = counting.count_params(model, family.embedding_leaves)
  flops = counting.training_flops(family, arch, counts)
  tokens_per_step = train_cfg["batch_size"] * flops["tokens_per_example"]
  horizon = train_cfg["horizon"]
  if horizon.get("examples") is not None:
    steps = math.ceil(horizon["examples"] / train_cfg["batch_size"])
  elif horizon.get("epochs") is not None:
    train_examples = data.info.get("train_examples")
    if not train_examples:
      raise ValueError(f"horizon.epochs needs a finite dataset; data kind {config['data']['kind']!r} is a stream")
    steps = math.ceil(horizon["epochs"] * train_examples / train_cfg["batch_size"])
  elif horizon.get("flops") is not None:  # The steps whose FLOPs (counted as flop_count says) come nearest C.
    steps = round(horizon["flops"] / counting.flops_per_step(family, arch, counts, train_cfg["batch_size"],
                                                             horizon.get("flop_count", "exact")))
  else:
    tokens = horizon["tokens"] if horizon["tokens"] is not None else (
        horizon["tokens_per_param"] * counts[f"params_{horizon['param_count']}"])
    steps = math.ceil(tokens / tokens_per_step)
  return Setup(data, family, objective, arch, model, counts, flops, max(1, steps), train_cfg["batch_size"],
               tokens_per_step)


def lr_schedule(opt_cfg: dict, steps: int):
  """Linear warmup, then cosine decay to min_lr_ratio * lr over the rest (`cosine`), or held at lr until
  the last decay_fraction of the steps and decayed linearly to min_lr_ratio * lr there (`wsd`:
  warmup-stable-decay, Hu et al. 2024, MiniCPM)."""
  if not isinstance(opt_cfg["lr"], (int, float)):  # Traced (packed trials): lr times the schedule of peak 1.
    unit = lr_schedule({**opt_cfg, "lr": 1.0}, steps)
    return lambda step: opt_cfg["lr"] * unit(step)
  warmup = min(opt_cfg["warmup_steps"], max(steps - 1, 0))
  peak, end = opt_cfg["lr"], opt_cfg["lr"] * opt_cfg["min_lr_ratio"]
  if opt_cfg.get("schedule", "cosine") == "cosine":
    return optax.warmup_cosine_decay_schedule(init_value=0.0, peak_value=peak, warmup_steps=warmup,
                                              decay_steps=max(steps, warmup + 1), end_value=end)
  decay_start = max(warmup, steps - max(1, round(opt_cfg.get("decay_fraction", 0.2) * steps)))
  return optax.join_schedules(
      [optax.linear_schedule(0.0, peak, max(warmup, 1)), optax.constant_schedule(peak),
       optax.linear_schedule(peak, end, max(steps - decay_start, 1))], [warmup, decay_start])


def make_optimizer(opt_cfg: dict, steps: int, clips: bool | None = None, lr_multipliers: dict | None = None):
  """(AdamW with the lr schedule (`lr_schedule`) and optional clipping, its lr schedule).

  The scalars may be traced (packed trials); then `clips` says whether grad_clip is on. `lr_multipliers`
  ({parameter path: factor}, models/mup.py) scales each parameter's update, which is its learning rate
  (and its decoupled weight decay, as AdamW ties the two)."""
  schedule = lr_schedule(opt_cfg, steps)
  # Decay matrices only; norm scales are not weights to shrink.
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
  adamw = optax.adamw(schedule, b1=opt_cfg["b1"], b2=opt_cfg["b2"], eps=opt_cfg["eps"],
                      weight_decay=opt_cfg["weight_decay"], mask=decay_mask)
  parts = [adamw] if not lr_multipliers else [adamw, _scale_per_parameter(lr_multipliers)]
  if opt_cfg["grad_clip"] > 0 if clips is None else clips:
    parts = [optax.clip_by_global_norm(opt_cfg["grad_clip"])] + parts
  return (parts[0] if len(parts) == 1 else optax.chain(*parts)), schedule


def _scale_per_parameter(multipliers: dict):
  """An optax transformation multiplying each parameter's update by multipliers[its path] (paths as
  jax.tree_util.keystr gives them, without a trailing `.value`)."""
  def update(updates, state, params=None):
    scale = lambda path, u: u * multipliers[jax.tree_util.keystr(path).removesuffix(".value")]
    return jax.tree_util.tree_map_with_path(scale, updates), state
  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def example_keys(seed: int, step, batch_size: int):
  """One PRNG key per example of the batch of `step`: the objective's randomness (masks, noise).

  A pure function of (seed, step, row), so resume is exact, and splitting the batch into
  microbatches or over devices does not change any example's draw.
  """
  step_key = jax.random.fold_in(seed_key(seed), step)
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(step_key, jnp.arange(batch_size))


def seed_key(seed):
  """The PRNG key of a trial's seed: a Python int or a traced uint32 (the train step's), the same key."""
  return jax.random.key(seed % 2**32 if isinstance(seed, int) else seed)


def params_sha256(params) -> str:
  """sha256 over every parameter's path, dtype, shape and bytes, in sorted path order."""
  digest = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  for path, leaf in sorted(leaves, key=lambda item: jax.tree_util.keystr(item[0])):
    array = np.ascontiguousarray(distributed.to_host(leaf))
    digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


class _Preemption:
  """Turns SIGTERM/SIGINT into a flag the loop checks, so it can checkpoint before exiting.

  With several processes, a signal reaches hosts at different steps, yet all must
  save at the same one: JAX's preemption sync manager (started by
  jax.distributed.initialize) catches SIGTERM itself and `at(step)` asks it
  whether every host has agreed to stop at this step.
  """

  def __init__(self):
    self.signal = None
    self._previous = {}
    self._hosts_agree = jax.process_count() > 1 and jax.distributed.is_initialized()

  def at(self, step: int) -> bool:
    """True if the loop should checkpoint and stop after `step` (on every host at once)."""
    if self._hosts_agree:
      from jax.experimental import multihost_utils
      if multihost_utils.reached_preemption_sync_point(step):
        self.signal = "SIGTERM"
    return self.signal is not None

  def __enter__(self):
    if self._hosts_agree:  # Leave SIGTERM to JAX's handler; a local SIGINT just kills the job.
      return self
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # Not the main thread: the caller handles signals.
        pass
    return self

  def _handle(self, signum, frame):
    self.signal = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


class _Timed:
  """`with _Timed(timeline, category):` adds the block's wall time to that category."""

  def __init__(self, timeline, category):
    self.timeline, self.category = timeline, category

  def __enter__(self):
    self.start = time.time()

  def __exit__(self, *exc):
    self.timeline.add(self.category, time.time() - self.start)


class Interrupted(Exception):
  """Raised after a preemption checkpoint is saved; the run resumes on the next launch."""


class DoesNotFit(Exception):
  """The ahead-of-time compile says a trial needs more memory per device than there is."""


def default_runtime() -> dict:
  return runtime_spec.RuntimeSpec().model_dump()  # The schema holds the defaults, once.


def make_train_step(graphdef, objective, objective_options, opt_cfg, steps, train_cfg, lr_multipliers=None):
  """The pure step (params, opt_state, batch, step, hyperparameters) -> (params, opt_state, metrics) for
  any objective, and the eval function (params, batch, eval batch index) -> (loss, metrics).

  hyperparameters (scaling/pack.hyperparameters): the seed, AdamW's scalars and the fault steps; Python
  values (one trial) or traced ones (a packed trial under vmap). `opt_cfg` gives the rest of the optimizer,
  `lr_multipliers` the per-parameter learning-rate factors of the parametrization (models/mup.py).
  """
  compute_dtype = jnp.dtype(train_cfg["compute_dtype"])
  microbatches = train_cfg["microbatches"]

  def loss_fn(params, batch, keys):
    """The objective's (loss, metrics), plus what the model's layers sow (an MoE's router losses and stats)."""
    if compute_dtype != jnp.float32:  # Mixed precision: float32 master weights, low-precision math.
      params = jax.tree.map(lambda p: p.astype(compute_dtype), params)
    (loss, metrics), sown = nnx.capture(objective.loss, nnx.Intermediate)(
        nnx.merge(graphdef, params), batch, keys, objective_options)
    aux, moe_metrics = moe.collect(sown)
    if not moe_metrics:
      return loss, metrics
    return loss + aux, {**metrics, **moe_metrics}

  def loss_and_grads(params, batch, keys):
    if microbatches == 1:
      return jax.value_and_grad(loss_fn, has_aux=True)(params, batch, keys)
    # Gradient accumulation: scan over microbatches (each with its rows' keys), sum in float32, average.
    micro = jax.tree.map(lambda x: x.reshape(microbatches, x.shape[0] // microbatches, *x.shape[1:]),
                         (batch, keys))

    def accumulate(carry, microbatch):
      (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *microbatch)
      return jax.tree.map(jnp.add, carry, (loss, metrics, grads)), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    metric_zeros = jax.tree.map(lambda m: jnp.zeros((), jnp.float32), jax.eval_shape(
        loss_fn, params, *jax.tree.map(lambda x: x[0], micro))[1])
    (loss, metrics, grads), _ = jax.lax.scan(accumulate, (jnp.zeros((), jnp.float32), metric_zeros, zeros), micro)
    return (loss / microbatches, jax.tree.map(lambda m: m / microbatches, metrics)), jax.tree.map(
        lambda g: g / microbatches, grads)

  def train_step(params, opt_state, batch, step, hp):
    seed = hp["seed"]
    optimizer, schedule = make_optimizer({**opt_cfg, **hp["optimizer"]}, steps, clips=opt_cfg["grad_clip"] > 0,
                                         lr_multipliers=lr_multipliers)
    batch_size = jax.tree.leaves(batch)[0].shape[0]
    (loss, metrics), grads = loss_and_grads(params, batch, example_keys(seed, step, batch_size))
    if hp["inject_nan_at_step"] is not None:  # Fault injection for tests of divergence handling.
      poison = jnp.where(step + 1 == hp["inject_nan_at_step"], jnp.nan, 1.0)
      loss, grads = loss * poison, jax.tree.map(lambda g: g * poison, grads)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    if hp["inject_corruption_at_step"] is not None:  # Fault injection for tests of live health.
      params = _corrupt(params, step + 1 == hp["inject_corruption_at_step"], seed)
    return params, opt_state, {"loss": objective_part(loss, metrics), "grad_norm": optax.tree.norm(grads),
                               "lr": schedule(step), **metrics}

  def eval_fn(params, batch, index):
    """The objective on eval batch `index`, with the same draws (masks) at every evaluation."""
    loss, metrics = loss_fn(params, batch, example_keys(_EVAL_SEED, index, jax.tree.leaves(batch)[0].shape[0]))
    return objective_part(loss, metrics), metrics

  return train_step, eval_fn


def objective_part(loss, metrics):
  """The objective's own loss (what is logged and fitted): the optimised loss less any auxiliary loss."""
  return loss - metrics["moe_aux_loss"] if "moe_aux_loss" in metrics else loss


def _corrupt(params, hit, seed):
  """params plus, where `hit`, Gaussian noise as large as each leaf's spread: a silent data corruption."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.fold_in(seed_key(seed), _EVAL_SEED + 1), len(leaves))
  noisy = [p + jnp.where(hit, jnp.std(p) + 1e-3, 0.0) * jax.random.normal(k, p.shape, p.dtype)
           for p, k in zip(leaves, keys)]
  return jax.tree.unflatten(treedef, noisy)


class Placement:
  """Puts batches (dicts of numpy arrays) onto the mesh; each host draws only its rows.

  `shapes` gives each feature's global batch shape (batch dimension first); `lead` the sizes of axes in
  front of it (the steps of one dispatch, the trials of a pack), which every device holds whole.
  """

  def __init__(self, mesh, shapes: dict, lead: tuple = ()):
    rows_sharding = mesh_lib.batch_sharding(mesh)
    self.lead = tuple(lead)
    self.sharding = NamedSharding(mesh, PartitionSpec(*(None,) * len(self.lead), *rows_sharding.spec))
    self.shapes = shapes  # {feature: (global shape, dtype)}
    self.batch_size = next(iter(shapes.values()))[0][0]
    # The rows of the global batch this host's devices hold: a host draws only those.
    self.local_rows = mesh_lib.host_rows(rows_sharding, (self.batch_size,))

  def abstract(self) -> dict:
    return {k: jax.ShapeDtypeStruct(self.lead + tuple(shape), dtype, sharding=self.sharding)
            for k, (shape, dtype) in self.shapes.items()}

  def place(self, draw) -> dict:
    """Global batch arrays from draw(rows) -> {feature: the lead axes, then rows of the batch (numpy)}."""
    if jax.process_count() == 1:
      return jax.device_put(draw(None), self.sharding)
    local, start, axis = draw(self.local_rows), self.local_rows.start, len(self.lead)

    def leaf(name):
      def rows_for_device(index):
        lo, hi, _ = index[axis].indices(self.batch_size)
        return local[name][(slice(None),) * axis + (slice(lo - start, hi - start),)]
      return jax.make_array_from_callback(self.lead + tuple(self.shapes[name][0]), self.sharding, rows_for_device)

    return {name: leaf(name) for name in self.shapes}

  def place_batch(self, batch: dict) -> dict:
    return self.place(lambda rows: batch if rows is None else {k: v[rows] for k, v in batch.items()})

  def with_shapes(self, shapes: dict, lead: tuple = ()) -> "Placement":
    """The same placement for batches of other shapes (the same batch size): an evaluator's own inputs."""
    return Placement(self.sharding.mesh, shapes, lead)


def several_steps(step_fn, per_call: int):
  """step_fn, n <= per_call times in one program: (params, opt_state, batches [per_call, ...], first step, n,
  *hyperparameters) -> (params, opt_state, metrics [per_call, ...], zeros past n).

  One host dispatch and one transfer of batches instead of n: for small models most of a step. The
  loop's body is the step's own computation, so the parameters are those of n separate steps bit for bit;
  n is traced, so one program serves every n.
  """
  def run(params, opt_state, batches, first, n, *hp):
    batch = lambda i: jax.tree.map(lambda x: x[i], batches)
    shapes = jax.eval_shape(step_fn, params, opt_state, batch(0), first, *hp)[2]

    def body(i, carry):
      params, opt_state, metrics = carry
      params, opt_state, row = step_fn(params, opt_state, batch(i), first + i, *hp)
      return params, opt_state, jax.tree.map(lambda m, r: m.at[i].set(r), metrics, row)

    zeros = jax.tree.map(lambda m: jnp.zeros((per_call, *m.shape), m.dtype), shapes)
    return jax.lax.fori_loop(0, n, body, (params, opt_state, zeros))
  return run


def train(config: dict, run_dir: str, progress: bool = True, runtime: dict | None = None,
          staged=None, health=None) -> dict:
  """Runs (or resumes) one trial and returns its summary.

  `runtime` says how to run, not what: the mesh, a memory limit, logging and
  checkpoint cadence. It is not part of the trial id, so the same trial runs
  on a laptop or a pod slice. `staged`: run_dir is the local staging copy of a run
  directory on a bucket (scaling/storage.Staged): checkpoints go to `staged.checkpoint_dir`
  on the bucket, and the other files are pushed there before each save, so that the
  bucket's metrics never lag its latest checkpoint. `health(steps, losses, steps_planned)`: the check of a curve
  against its forecast that `train.stop_when_off_forecast` asks for (the caller's: analysis/health.assess for a
  sweep), returning an object with `stops` and `message`.
  """
  return train_pack([config], [run_dir], progress, runtime, staged, health)[0]


def train_pack(configs: list, run_dirs: list, progress: bool = True, runtime: dict | None = None,
               staged=None, health=None) -> list:
  """Runs (or resumes) trials that differ only in hyperparameters (scaling/pack.py) as one program; returns
  their summaries. One trial is the ordinary case: the same loop, nothing stacked. `health`: as for `train`."""
  entered = time.time()
  if len(configs) > 1 and (staged is not None or jax.process_count() > 1):
    raise ValueError("packed trials run in one process with local run directories")
  if health is None and any(c["train"]["stop_when_off_forecast"] for c in configs):
    raise ValueError("train.stop_when_off_forecast needs the forecast check: train(..., health=analysis.health.assess)")
  members, origin = [], timeline_lib.attempt_origin(entered)  # one start for every trial of the pack
  for config, run_dir in zip(configs, run_dirs):
    _contain(run_dir)
    previous_mesh = _previous_mesh(run_dir)  # Read before this attempt's summary replaces it.
    os.makedirs(run_dir, exist_ok=True)
    timeline = timeline_lib.Timeline(run_dir, origin, enabled=distributed.is_writer())
    if timeline.damaged:
      logs.warning(f"{timeline.path}: damaged; kept beside it as timeline.json.damaged-*, goodput counts from this "
                   f"attempt")
    members.append(_Member(config, run_dir, timeline, previous_mesh))
  try:
    return _train(members, progress, {**default_runtime(), **(runtime or {})}, staged, health)
  except BaseException as e:
    outcome = ("failed" if isinstance(e, DoesNotFit) else
               "interrupted" if isinstance(e, (Interrupted, KeyboardInterrupt)) else "crashed")
    for m in members:
      if m.timeline.record["outcome"] == "running":  # A trial of the pack that ended before stays as it ended.
        m.timeline.write(outcome)
    raise


class _Member:
  """One trial of a pack (a single trial is a pack of one): its config, run directory and what it has logged."""

  def __init__(self, config, run_dir, timeline, previous_mesh):
    self.config, self.run_dir, self.timeline, self.previous_mesh = config, run_dir, timeline, previous_mesh
    self.trial_id = os.path.basename(os.path.normpath(run_dir))
    self.summary_path = os.path.join(run_dir, "summary.json")
    self.metrics_path = os.path.join(run_dir, "metrics.jsonl")
    self.status, self.reason, self.last_eval, self.summary = "running", None, None, None

  def write_summary(self, summary):
    if distributed.is_writer():
      metrics_lib.write_json_atomic(self.summary_path, summary)


def _train(members, progress, runtime, staged, health_check) -> list:
  wall_start = time.time()
  writer_process = distributed.is_writer()  # Only process 0 writes files other than checkpoints.
  size = len(members)
  for m in members:
    if writer_process:
      metrics_lib.write_json_atomic(os.path.join(m.run_dir, "config.json"), m.config)
    m.s = setup(m.config)
  first = members[0]
  s, config = first.s, first.config  # What the trials of a pack share: shapes, steps, data, objective.
  train_cfg = config["train"]
  objective_options = {k: v for k, v in train_cfg["objective"].items() if k != "name"}
  lr_multipliers = mup.lr_multipliers(s.model)  # None under the standard parametrization
  # Its state's structure; the step builds its own.
  optimizer, _ = make_optimizer(config["optimizer"], s.steps, lr_multipliers=lr_multipliers)
  mesh = mesh_lib.make_mesh(runtime["mesh"])

  # Steps per host dispatch (several_steps). Hosts of a multi-process job agree on a preemption step
  # by stepping through every step number, so they dispatch one at a time.
  per_call = runtime["steps_per_dispatch"] if jax.process_count() == 1 else 1
  problem = _host_memory_problem({k: ((shape[0] * size, *shape[1:]), dtype) for k, (shape, dtype)
                                  in s.data.shapes().items()}, train_cfg["eval_batches"], per_call)

  # What is known before the first step; the summary says "running" until the end.
  for m in members:
    m.static = {
        "trial_id": m.trial_id,
        "objective": s.objective.name,
        "objective_kind": s.objective.kind,
        "loss_unit": s.objective.loss_unit,
        **m.s.counts,
        **m.s.flops,
        "steps_planned": s.steps,
        "examples_planned": s.steps * s.examples_per_step,
        "tokens_planned": s.steps * s.tokens_per_step,
        "entropy_floor": s.data.entropy_floor,
        "arch": dataclasses.asdict(s.arch),
        "data": m.s.data.info,
        "device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind} x{jax.device_count()}",
        "xla_flags": os.environ.get("XLA_FLAGS", ""),  # e.g. the CPU dot library (scaling/runtime.py): rounding
        "mesh": mesh_lib.describe(mesh),
        "processes": jax.process_count(),
        **({"packed_with": [o.trial_id for o in members if o is not m]} if size > 1 else {}),
    }

  def write_summaries(**fields):
    for m in members:
      m.write_summary({**fields, **m.static})

  def refuse(reason):
    write_summaries(status="failed", reason=reason)
    raise DoesNotFit(reason)

  write_summaries(status="running")
  if problem:
    refuse(f"{problem}; lower train.batch_size, train.eval_batches or runtime.steps_per_dispatch "
           f"(train.microbatches keeps the batch size)")

  # ---- Shard & functional state ----
  graphdef, one_params = nnx.split(s.model)
  param_sharding = mesh_lib.param_shardings(one_params, mesh)
  replicated = mesh_lib.replicated(mesh)
  placed = [jax.device_put(nnx.split(m.s.model)[1], param_sharding) for m in members]
  for m in members:
    m.static["param_shardings"] = {path: str(spec) for path, spec in mesh_lib.leaf_specs(placed[0])}
  # optax's init does not propagate shardings (zeros_like); state follows its parameter.
  opt_sharding = optax.tree_map_params(optimizer, lambda _, sharding: sharding,
                                       jax.eval_shape(optimizer.init, placed[0]), param_sharding,
                                       transform_non_params=lambda _: replicated)
  init_opt = jax.jit(optimizer.init, out_shardings=opt_sharding)
  stacked_param_sharding = pack.stacked_shardings(param_sharding, size)
  stacked_opt_sharding = pack.stacked_shardings(opt_sharding, size)
  params = pack.stack(placed, stacked_param_sharding)
  opt_state = pack.stack([init_opt(p) for p in placed], stacked_opt_sharding)
  del placed
  placement = Placement(mesh, s.data.shapes())  # One trial's batch: eval sets, evaluators (trials share them).
  steps_placement = placement.with_shapes(s.data.shapes(), (per_call,) + ((size,) if size > 1 else ()))

  trial_step, eval_fn = make_train_step(graphdef, s.objective, objective_options, config["optimizer"], s.steps,
                                        train_cfg, lr_multipliers)
  hp = pack.hyperparameters([m.config for m in members])
  if size == 1:  # One trial's hyperparameters are compiled in, but for its seed: one program serves every seed.
    step_fn = lambda p, o, b, i, seed: trial_step(p, o, b, i, {**hp, "seed": seed})
    hp_args = (np.uint32(hp["seed"] % 2**32),)
  else:
    step_fn, hp_args = jax.vmap(trial_step, in_axes=(0, 0, 0, None, 0)), (hp,)
  platform = jax.devices()[0].platform
  on_cpu = platform == "cpu"
  compiler_options = runtime_lib.packed_compiler_options(platform) if size > 1 else None
  train_step = jax.jit(several_steps(step_fn, per_call),
                       in_shardings=(stacked_param_sharding, stacked_opt_sharding, steps_placement.sharding,
                                     replicated, replicated) + (replicated,) * len(hp_args),
                       out_shardings=(stacked_param_sharding, stacked_opt_sharding, replicated),
                       donate_argnums=() if on_cpu else (0, 1), compiler_options=compiler_options)

  # ---- Ahead-of-time compile: memory per device, before any step runs ----
  compile_start = time.time()
  for m in members:
    m.timeline.add("startup", compile_start - m.timeline.record["start"])
  train_step = train_step.lower(params, opt_state, steps_placement.abstract(), np.int32(0), np.int32(1),
                                *hp_args).compile()
  timelines = _Timelines(members)
  timelines.add("compile", time.time() - compile_start)
  memory = _memory_per_device(train_step)
  for m in members:
    m.static["memory_per_device_bytes"] = memory
  limit = _memory_limit(runtime["memory_limit_gib"])
  if memory is not None and limit is not None and memory > limit:
    refuse(f"needs {memory / 2**30:.3f} GiB per device (parameters, optimizer state, activations"
           + (f", {size} packed trials" if size > 1 else "")
           + f") but a device has {limit / 2**30:.3f} GiB; shard more (runtime.mesh fsdp/tensor), use "
           f"train.microbatches, or lower train.batch_size" + (" or runtime.pack_max_trials" if size > 1 else ""))
  # The eval set is drawn once the step is known to fit: a batch far beyond memory never gets sampled.
  try:
    eval_sets = s.data.eval(train_cfg["eval_batches"])  # the same for every seed
  except MemoryError:
    refuse("drawing the eval set ran out of host memory; lower train.batch_size or train.eval_batches")
  for m in members:
    m.static["eval_set_floor"] = s.data.eval_set_floor(eval_sets)
    m.static["eval_examples"] = len(eval_sets) * s.examples_per_step
  write_summaries(status="running")
  timelines.write(force=True)

  # ---- Evaluation: the objective on the fixed held-out set, then the evaluators ----
  eval_step = jax.jit(eval_fn if size == 1 else jax.vmap(eval_fn, in_axes=(0, None, None)),
                      in_shardings=(stacked_param_sharding, placement.sharding, replicated), out_shardings=replicated,
                      compiler_options=compiler_options)
  eval_batches = [placement.place_batch(batch) for batch in eval_sets]

  def evaluate(params) -> list:
    """Each trial's eval row (the objective's loss and metrics, averaged over the eval set)."""
    outputs = jax.device_get([eval_step(params, batch, np.int32(i)) for i, batch in enumerate(eval_batches)])
    rows = []
    for t in range(size):
      pick = (lambda x: x) if size == 1 else (lambda x: x[t])
      row = {"eval_loss": float(np.mean([pick(loss) for loss, _ in outputs]))}
      for name in outputs[0][1]:
        row[f"eval_{name}"] = float(np.mean([pick(metrics[name]) for _, metrics in outputs]))
      rows.append(row)
    return rows

  for m in members:
    m.evaluators = evaluators_lib.build_all(evaluators_lib.Context(
        config=m.config, data=m.s.data, objective=s.objective, graphdef=graphdef, placement=placement,
        eval_sets=eval_sets, param_sharding=param_sharding))

  # ---- Resume ----
  def state_of(t):
    """Trial t's train state (unstacked): what its checkpoints hold."""
    return {"params": pack.member(params, t, size), "opt_state": pack.member(opt_state, t, size)}

  restore_start = time.time()
  for m in members:
    m.checkpoints = checkpoint_lib.Checkpoints(m.run_dir, keep=runtime["keep_checkpoints"],
                                               directory=staged.checkpoint_dir if staged else None)
  # The latest step every trial of the pack can be restored at (one trial: its latest good one; 0, starting over,
  # always can). A kill can land between the trials' saves; the trials ahead drop their later checkpoints and
  # redo those steps exactly, in the same program. A damaged checkpoint is moved aside and said.
  start_step, restored = checkpoint_lib.resume([m.checkpoints for m in members], state_of(0))
  for m in members:
    m.start_step = start_step
    moved = [aside for _, _, aside in m.checkpoints.moved_aside]
    if moved:
      m.static["checkpoints_moved_aside"] = moved
    if start_step and m.previous_mesh is not None and m.previous_mesh != m.static["mesh"]:
      m.static["resumed_from_mesh"] = m.previous_mesh  # orbax restored onto the new shardings
  if restored:
    params = pack.stack([r["params"] for r in restored], stacked_param_sharding)
    opt_state = pack.stack([r["opt_state"] for r in restored], stacked_opt_sharding)
    del restored
  for m in members:
    if writer_process:  # Steps past the checkpoint are redone; damaged lines are kept in a copy, and said.
      damaged = metrics_lib.truncate_metrics(m.metrics_path, start_step)
      if damaged:
        m.static["metrics_damaged_lines"] = damaged
        logs.warning(f"{m.metrics_path}: {damaged} damaged line(s) skipped; the original is kept beside it as "
                     f"metrics.jsonl.damaged-*")
    m.timeline.started_at(start_step)
    m.writer = metrics_lib.MetricsWriter(m.run_dir, tensorboard=runtime["tensorboard"], enabled=writer_process)
    # Losses logged before a resume count towards final_train_loss and spike detection. Only rows up
    # to the checkpoint: other hosts may read before or after process 0 truncates the file.
    m.recent_losses = [r["loss"] for r in metrics_lib.read_metrics(m.metrics_path)
                       if "loss" in r and r["step"] <= start_step][-20:]
  timelines.add("restore", time.time() - restore_start)
  # Collectives on a multi-device CPU client deadlock if many steps are in flight: sync every dispatch.
  sync_every_step = on_cpu and mesh.size > 1

  # ---- Train loop ----
  bar = _progress_bar(progress, s.steps, start_step, config, size)
  pending = []
  compile_seconds = first_step_seconds = None
  steady_first_step = start_step
  last_checkpoint_time = time.time()
  # Where the curve is checked against its forecast (train.stop_when_off_forecast): every tenth of the run.
  # Checked at the first flush at or past each tenth (flushes come every flush_every steps, not on the tenths).
  health_check_every = max(s.steps // 10, 1) if train_cfg["stop_when_off_forecast"] else 0
  next_health_check = (start_step // health_check_every + 1) * health_check_every if health_check_every else None
  running = lambda: [m for m in members if m.status == "running"]

  def steps_in_call(step) -> int:
    """How many steps the next dispatch runs: per_call, cut at the next eval, checkpoint and the end."""
    n = min(per_call, s.steps - step)
    for every in (train_cfg["eval_every"], runtime["checkpoint_every"]):
      if every:
        n = min(n, every - step % every)
    return n

  def draw_steps(first, n, rows) -> dict:
    """The batches of steps first .. first + n - 1, zeros up to per_call, in steps_placement's layout."""
    drawn = train_steps([m.s.data for m in members], first, n, rows)
    return {k: np.concatenate([v, np.zeros((per_call - n, *v.shape[1:]), v.dtype)]).reshape(
        per_call, *v.shape[1 if size > 1 else 2:]) for k, v in drawn.items()}

  def progress_so_far(step):
    return {"step": step, "examples": step * s.examples_per_step, "tokens": step * s.tokens_per_step}

  def flush() -> int:
    """Writes the pending rows of the running trials; a trial whose rows show divergence stops there.
    Returns the number of steps written."""
    nonlocal pending
    fetched, pending = jax.device_get(pending), []
    for t, m in enumerate(members):
      if m.status != "running":
        continue
      rows = [{**progress_so_far(call["first"] + j + 1),
               **{k: float(v[j] if size == 1 else v[j, t]) for k, v in call["device"].items()}}
              for call in fetched for j in range(call["n"])]  # a dispatch's metrics: [per_call(, trials)]
      diverged = _divergence(rows, m.recent_losses[-20:], train_cfg["max_loss_spike"])
      if diverged:  # The rows end at the step that diverged; the steps run after it in its dispatch are not kept.
        rows = rows[:diverged[0] + 1]
      m.recent_losses += [row["loss"] for row in rows]
      m.writer.write(rows)
      m.last_rows = rows
      if diverged:
        stop(m, "diverged", diverged[1], rows[-1]["step"])
    return sum(call["n"] for call in fetched)

  def stop(m, status, reason, at_step):
    m.status, m.reason = status, reason
    m.timeline.add("steps", time.time() - steps_clock)
    m.timeline.reached(at_step)
    finish(m, at_step)

  def eval_rows(step, final=False, of=None):
    """Each running trial's eval row (or only trial `of`'s) with its evaluators' metrics that are due."""
    rows = evaluate(params)
    for t, m in enumerate(members):
      rows[t] = {**progress_so_far(step), **rows[t]}
      for evaluator in m.evaluators if m is of or (of is None and m.status == "running") else ():
        if final or evaluator.due(step):
          rows[t].update(evaluator.run(pack.member(params, t, size)))
    return rows

  def save(step, wait=False, of=None):
    """Checkpoints the running trials (or only trial `of`) that have no checkpoint at `step` yet (a preemption
    can land right after a save), after pushing a staged run's other files."""
    saving = [m for m in ([of] if of is not None else running()) if m.checkpoints.latest_step() != step]
    with _Timed(timelines if of is None else of.timeline, "checkpoint"):
      if staged is not None:
        staged.sync()
      for m in saving:
        m.checkpoints.save(step, state_of(members.index(m)), wait=wait)
    for m in saving:
      m.timeline.saved()

  def finish(m, step):
    """Closes a trial that stopped (diverged, flagged) or ended: final eval if done, last save, summary."""
    t = members.index(m)
    if m.status == "running":
      m.status = "done"
    if m.status == "done" and m.last_eval is None:  # Resumed from a checkpoint at the last step.
      with _Timed(m.timeline, "eval"):
        m.last_eval = eval_rows(step, final=True, of=m)[t]
      if not any(r.get("eval_loss") is not None and r["step"] == step for r in metrics_lib.read_metrics(m.metrics_path)):
        m.writer.write([m.last_eval])
    if m.status in ("done", "flagged"):  # a flagged trial may be resumed
      save(step, of=m)
    with _Timed(m.timeline, "checkpoint"):  # Waits for the asynchronous writes still in flight.
      m.checkpoints.close()
    m.writer.close()
    m.timeline.write(m.status)
    m.summary = _summary(m, step, state_of(t)["params"], steady_first_step, first_step_seconds, compile_seconds,
                         wall_start)
    m.write_summary(m.summary)

  with _Preemption() as preemption:
    step = start_step
    steps_clock = loop_start = time.time()  # Step time: the loop's, less eval and checkpoint saves.
    while step < s.steps and running():
      n = steps_in_call(step) if first_step_seconds is not None else 1  # the first one alone: its time is compile's
      batches = steps_placement.place(lambda rows: draw_steps(step, n, rows))
      params, opt_state, step_metrics = train_step(params, opt_state, batches, np.int32(step), np.int32(n), *hp_args)
      pending.append({"first": step, "n": n, "device": step_metrics})
      step += n
      if sync_every_step:
        jax.block_until_ready(step_metrics["loss"])
      is_last = step == s.steps
      if first_step_seconds is None:  # Throughput is timed from the end of the first step.
        jax.block_until_ready(step_metrics)
        first_step_seconds, steady_first_step = time.time() - loop_start, step
        compile_seconds = time.time() - compile_start
      checkpoint_step = bool(runtime["checkpoint_every"]) and step % runtime["checkpoint_every"] == 0
      flush_due = sum(call["n"] for call in pending) >= runtime["flush_every"]
      if flush_due or is_last or step % train_cfg["eval_every"] == 0 or checkpoint_step:
        flushed = flush()
        if not running():
          break
        if bar is not None:
          bar.update(flushed)
          bar.set_postfix(loss=" ".join(f"{m.last_rows[-1]['loss']:.4f}" for m in running()), refresh=False)
        timelines.add("steps", time.time() - steps_clock)
        timelines.reached(step)
        steps_clock = time.time()
        if next_health_check is not None and step >= next_health_check and not is_last:
          next_health_check = (step // health_check_every + 1) * health_check_every
          for m in running():
            with _Timed(timelines, "eval"):
              health = _health(health_check, m.metrics_path, s.steps) if writer_process else None
            if distributed.agree(health is not None and health.stops):  # Process 0 read the curve; all stop.
              stop(m, "flagged", f"off its forecast at step {step}: {health.message if health else ''}", step)
          steps_clock = time.time()
          if not running():
            break
        if step % train_cfg["eval_every"] == 0 or is_last:
          with _Timed(timelines, "eval"):
            rows = eval_rows(step, final=is_last)
          for t, m in enumerate(members):
            if m.status == "running":
              m.last_eval = rows[t]
              m.writer.write([rows[t]])
        checkpoint_due = checkpoint_step or time.time() - last_checkpoint_time > 60 * runtime["checkpoint_minutes"]
        checkpoint_due = distributed.agree(checkpoint_due)  # Hosts' clocks differ; a save is collective.
        if checkpoint_due and not is_last:
          save(step)
          last_checkpoint_time = time.time()
        timelines.write(force=checkpoint_due)  # A kill loses at most the steps since this record.
        steps_clock = time.time()
      if preemption.at(step) and not is_last:
        if pending:  # The unflushed steps are checked like any others: a NaN is never checkpointed.
          flush()
        timelines.add("steps", time.time() - steps_clock)
        timelines.reached(step)
        if running():
          save(step, wait=True)
          for m in running():
            m.writer.close()
            m.checkpoints.close()
          raise Interrupted(f"{preemption.signal} at step {step}; checkpoint saved")
    timelines.add("steps", time.time() - steps_clock)

  if bar is not None:
    bar.close()
  for m in running():
    finish(m, step)
  return [m.summary for m in members]


class _Timelines:
  """The running trials' timelines as one: a pack's shared wall time counts for each of its trials."""

  def __init__(self, members):
    self.members = members

  def __getattr__(self, name):
    def each(*args, **kwargs):
      for m in self.members:
        if m.status == "running":
          getattr(m.timeline, name)(*args, **kwargs)
    return each


def _summary(m, step, params, steady_first_step, first_step_seconds, compile_seconds, wall_start) -> dict:
  """A trial's summary.json at its end (done, diverged or flagged at `step`)."""
  s = m.s
  goodput = m.timeline.breakdown()
  steady_seconds = m.timeline.record["seconds"]["steps"] - first_step_seconds if first_step_seconds else 0.0
  tail = m.recent_losses[-10:]  # final_train_loss: mean of the last 10 steps (or fewer)
  steady_steps = step - steady_first_step
  per_second = lambda count: count / steady_seconds if steady_seconds > 0 and count else None
  progress_keys = ("step", "examples", "tokens")
  finals = {f"final_{k}": v for k, v in (m.last_eval or {}).items() if k not in progress_keys}
  return {
      "status": m.status,
      "reason": m.reason,
      **m.static,
      "steps": step,
      "examples": step * s.examples_per_step,
      "tokens": step * s.tokens_per_step,
      **({"unique_tokens": s.data.info["unique_tokens"],  # data-constrained: how often each token was seen
          "epochs": step * s.examples_per_step * (s.data.seq_len + 1) / s.data.info["unique_tokens"]}
         if "unique_tokens" in s.data.info else {}),
      "flops": s.flops["flops_per_example"] * step * s.examples_per_step,
      "flops_6n": s.flops["flops_per_example_6n"] * step * s.examples_per_step,
      "final_train_loss": float(np.mean(tail)) if tail else None,
      "final_eval_loss": None,
      **finals,
      "wall_seconds": time.time() - wall_start,
      "compile_seconds": compile_seconds,
      "tokens_per_second": per_second(steady_steps * s.tokens_per_step),
      "examples_per_second": per_second(steady_steps * s.examples_per_step),
      **throughput.summary_fields(per_second(steady_steps * s.examples_per_step * s.flops["flops_per_example"]),
                                  jax.devices()[0].device_kind, jax.device_count()),
      "resumed_from_step": m.start_step or None,
      "goodput": goodput["goodput"],
      "time_seconds": {**goodput["seconds"], "total": goodput["total_seconds"]},
      "attempts": goodput["attempts"],
      "checkpoint_saves": goodput["saves"],
      "params_sha256": params_sha256(params),
  }


_EVAL_SEED = 1 << 30  # The eval set's objective randomness (masks): fixed, whatever the trial's seed.


def _contain(run_dir: str) -> None:
  """Nothing of this attempt is written through a link (scaling/containment.py): the run directory may not be one,
  and links, special files and hard links planted in it are moved aside, each said in one line."""
  containment.refuse_link(run_dir)
  if distributed.is_writer() and os.path.isdir(run_dir):
    for path, aside, what in containment.move_aside(run_dir):
      logs.warning(f"{path}: {what}, never followed in a run directory; moved aside as {os.path.basename(aside)}")
  distributed.agree(True)  # the other hosts wait for process 0's moves before they open anything there


def _previous_mesh(run_dir: str):
  """The mesh the last attempt of this trial ran on (from its summary), or None."""
  try:
    mesh = metrics_lib.read_json(os.path.join(run_dir, "summary.json")).get("mesh")
  except (OSError, ValueError, AttributeError):
    return None
  return mesh if isinstance(mesh, dict) else None


def _memory_per_device(compiled):
  """Bytes one device holds during a step: arguments + outputs (less donated) + temporaries."""
  try:
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes)
  except Exception:  # Not every backend reports it.
    return None


def _host_memory_problem(shapes: dict, eval_batches: int, per_call: int = 1):
  """Why this host cannot hold a dispatch's train batches and the eval set (drawn before anything is
  compiled), or None."""
  batch = sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in shapes.values()) / jax.process_count()
  needed = batch * (eval_batches + 2 * per_call)
  host = host_memory.total_bytes()
  if needed > host * host_memory.SHARE:
    return (f"a batch takes {batch / 2**30:.3g} GiB of host memory, {per_call} of them a dispatch, and the eval set "
            f"{eval_batches} more; "
            f"{needed / 2**30:.3g} GiB is over half of this host's {host / 2**30:.3g} GiB")
  return None


def _memory_limit(limit_gib):
  """Per-device memory in bytes: the config's limit, the device's own, or host RAM on CPU."""
  if limit_gib is not None:
    return int(limit_gib * 2**30)
  stats = jax.local_devices()[0].memory_stats() or {}  # Another host's devices report nothing.
  if "bytes_limit" in stats:
    return int(stats["bytes_limit"])
  if jax.devices()[0].platform == "cpu":
    return host_memory.total_bytes() // jax.local_device_count()
  return None


def _divergence(rows, earlier_losses, max_spike):
  """(index of the first row that diverged, why), or None: a non-finite loss/grad norm, or a loss spike."""
  history = list(earlier_losses[-20:])
  for i, row in enumerate(rows):
    if not math.isfinite(row["loss"]) or not math.isfinite(row["grad_norm"]):
      return i, f"non-finite loss or gradient norm at step {row['step']}"
    if max_spike and len(history) >= 5 and row["loss"] > max_spike * np.mean(history[-20:]):
      return i, (f"loss spike at step {row['step']}: {row['loss']:.4g} > {max_spike:g} x recent mean "
                 f"{np.mean(history[-20:]):.4g}")
    history.append(row["loss"])
  return None


def _health(check, metrics_path, steps_planned):
  """The training curve logged so far, against its forecast (the caller's `check`: analysis/health.assess)."""
  rows = [r for r in metrics_lib.read_metrics(metrics_path) if "loss" in r]
  return check([r["step"] for r in rows], [r["loss"] for r in rows], steps_planned)


def _progress_bar(enabled, total, initial, config, packed=1):
  if not enabled:
    return None
  from scaling import progress
  label = f"{config['model']['family']} size={config['model']['size']}" + (f" x{packed} packed" if packed > 1 else "")
  return progress.bar(total, initial, label, unit="step", leave=False)
