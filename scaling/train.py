"""Trains one trial into its run directory: the single training loop of the platform.

Run directory after a trial:
  config.json      the resolved trial config (its hash is the directory name)
  metrics.jsonl    one row per step (loss, grad norm, lr, the objective's metrics, examples, tokens)
                   plus eval rows (eval_loss, eval_<metric>, evaluator metrics such as probe_error)
  summary.json     status, objective and loss unit, parameter counts, examples, tokens, FLOPs,
                   final losses and metrics, throughput, params_sha256
  checkpoints/     orbax checkpoints; a re-run resumes from the latest one
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

from models import counting, moe, registry
from scaling import checkpoint as checkpoint_lib
from scaling import distributed
from scaling import evaluators as evaluators_lib
from scaling import logs
from scaling import mesh as mesh_lib
from scaling import metrics as metrics_lib
from scaling import objectives
from scaling import throughput
from scaling import timeline as timeline_lib
from scaling.data import Batches


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
  warmup = min(opt_cfg["warmup_steps"], max(steps - 1, 0))
  peak, end = opt_cfg["lr"], opt_cfg["lr"] * opt_cfg["min_lr_ratio"]
  if opt_cfg.get("schedule", "cosine") == "cosine":
    return optax.warmup_cosine_decay_schedule(init_value=0.0, peak_value=peak, warmup_steps=warmup,
                                              decay_steps=max(steps, warmup + 1), end_value=end)
  decay_start = max(warmup, steps - max(1, round(opt_cfg.get("decay_fraction", 0.2) * steps)))
  return optax.join_schedules(
      [optax.linear_schedule(0.0, peak, max(warmup, 1)), optax.constant_schedule(peak),
       optax.linear_schedule(peak, end, max(steps - decay_start, 1))], [warmup, decay_start])


def make_optimizer(opt_cfg: dict, steps: int):
  """(AdamW with the lr schedule (`lr_schedule`) and optional clipping, its lr schedule)."""
  schedule = lr_schedule(opt_cfg, steps)
  # Decay matrices only; norm scales are not weights to shrink.
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
  adamw = optax.adamw(schedule, b1=opt_cfg["b1"], b2=opt_cfg["b2"], eps=opt_cfg["eps"],
                      weight_decay=opt_cfg["weight_decay"], mask=decay_mask)
  if opt_cfg["grad_clip"] > 0:
    return optax.chain(optax.clip_by_global_norm(opt_cfg["grad_clip"]), adamw), schedule
  return adamw, schedule


def example_keys(seed: int, step, batch_size: int):
  """One PRNG key per example of the batch of `step`: the objective's randomness (masks, noise).

  A pure function of (seed, step, row), so resume is exact, and splitting the batch into
  microbatches or over devices does not change any example's draw.
  """
  step_key = jax.random.fold_in(jax.random.key(seed % 2**32), step)
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(step_key, jnp.arange(batch_size))


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
  from sweeps.spec import RuntimeSpec  # The schema holds the defaults, once.
  return RuntimeSpec().model_dump()


def make_train_step(graphdef, objective, objective_options, optimizer, schedule, train_cfg, seed):
  """The pure step (params, opt_state, batch, step) -> (params, opt_state, metrics) for any objective,
  and the eval function (params, batch, eval batch index) -> (loss, metrics)."""
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

  def train_step(params, opt_state, batch, step):
    batch_size = jax.tree.leaves(batch)[0].shape[0]
    (loss, metrics), grads = loss_and_grads(params, batch, example_keys(seed, step, batch_size))
    if train_cfg["inject_nan_at_step"] is not None:  # Fault injection for tests of divergence handling.
      poison = jnp.where(step + 1 == train_cfg["inject_nan_at_step"], jnp.nan, 1.0)
      loss, grads = loss * poison, jax.tree.map(lambda g: g * poison, grads)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    if train_cfg["inject_corruption_at_step"] is not None:  # Fault injection for tests of live health.
      params = _corrupt(params, step + 1 == train_cfg["inject_corruption_at_step"], seed)
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
  keys = jax.random.split(jax.random.fold_in(jax.random.key(seed % 2**32), _EVAL_SEED + 1), len(leaves))
  noisy = [p + jnp.where(hit, jnp.std(p) + 1e-3, 0.0) * jax.random.normal(k, p.shape, p.dtype)
           for p, k in zip(leaves, keys)]
  return jax.tree.unflatten(treedef, noisy)


class Placement:
  """Puts batches (dicts of numpy arrays, batch dimension first) onto the mesh; each host draws only its rows."""

  def __init__(self, mesh, shapes: dict):
    self.sharding = mesh_lib.batch_sharding(mesh)
    self.shapes = shapes  # {feature: (global shape, dtype)}
    self.batch_size = next(iter(shapes.values()))[0][0]
    # The rows of the global batch this host's devices hold: a host draws only those.
    self.local_rows = mesh_lib.host_rows(self.sharding, (self.batch_size,))

  def abstract(self) -> dict:
    return {k: jax.ShapeDtypeStruct(shape, dtype, sharding=self.sharding) for k, (shape, dtype) in self.shapes.items()}

  def place(self, draw) -> dict:
    """Global batch arrays from draw(rows) -> {feature: rows of the batch (numpy)}."""
    if jax.process_count() == 1:
      return jax.device_put(draw(None), self.sharding)
    local, start = draw(self.local_rows), self.local_rows.start

    def leaf(name):
      def rows_for_device(index):
        lo, hi, _ = index[0].indices(self.batch_size)
        return local[name][lo - start: hi - start]
      return jax.make_array_from_callback(self.shapes[name][0], self.sharding, rows_for_device)

    return {name: leaf(name) for name in self.shapes}

  def place_batch(self, batch: dict) -> dict:
    return self.place(lambda rows: batch if rows is None else {k: v[rows] for k, v in batch.items()})

  def with_shapes(self, shapes: dict) -> "Placement":
    """The same placement for batches of other shapes (the same batch size): an evaluator's own inputs."""
    return Placement(self.sharding.mesh, shapes)


def train(config: dict, run_dir: str, progress: bool = True, runtime: dict | None = None,
          staged=None) -> dict:
  """Runs (or resumes) one trial and returns its summary.

  `runtime` says how to run, not what: the mesh, a memory limit, logging and
  checkpoint cadence. It is not part of the trial id, so the same trial runs
  on a laptop or a pod slice. `staged`: run_dir is the local staging copy of a run
  directory on a bucket (sweeps/storage.Staged): checkpoints go to `staged.checkpoint_dir`
  on the bucket, and the other files are pushed there before each save, so that the
  bucket's metrics never lag its latest checkpoint.
  """
  entered = time.time()
  previous_mesh = _previous_mesh(run_dir)  # Read before this attempt's summary replaces it.
  os.makedirs(run_dir, exist_ok=True)
  timeline = timeline_lib.Timeline(run_dir, timeline_lib.attempt_origin(entered), enabled=distributed.is_writer())
  if timeline.damaged:
    logs.warning(f"{timeline.path}: damaged; kept beside it as timeline.json.damaged-*, goodput counts from this "
                 f"attempt")
  try:
    return _train(config, run_dir, progress, {**default_runtime(), **(runtime or {})}, previous_mesh, timeline,
                  staged)
  except DoesNotFit:
    timeline.write("failed")
    raise
  except (Interrupted, KeyboardInterrupt):
    timeline.write("interrupted")
    raise
  except BaseException:
    timeline.write("crashed")
    raise


def _train(config, run_dir, progress, runtime, previous_mesh, timeline, staged) -> dict:
  wall_start = time.time()
  writer_process = distributed.is_writer()  # Only process 0 writes files other than checkpoints.
  if writer_process:
    metrics_lib.write_json_atomic(os.path.join(run_dir, "config.json"), config)
  train_cfg = config["train"]
  s = setup(config)
  objective_options = {k: v for k, v in train_cfg["objective"].items() if k != "name"}
  optimizer, schedule = make_optimizer(config["optimizer"], s.steps)
  mesh = mesh_lib.make_mesh(runtime["mesh"])

  problem = _host_memory_problem(s.data.shapes(), train_cfg["eval_batches"])

  # What is known before the first step; the summary says "running" until the end.
  static = {
      "trial_id": os.path.basename(os.path.normpath(run_dir)),
      "objective": s.objective.name,
      "objective_kind": s.objective.kind,
      "loss_unit": s.objective.loss_unit,
      **s.counts,
      **s.flops,
      "steps_planned": s.steps,
      "examples_planned": s.steps * s.examples_per_step,
      "tokens_planned": s.steps * s.tokens_per_step,
      "entropy_floor": s.data.entropy_floor,
      "arch": dataclasses.asdict(s.arch),
      "data": s.data.info,
      "device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind} x{jax.device_count()}",
      "mesh": mesh_lib.describe(mesh),
      "processes": jax.process_count(),
  }
  summary_path = os.path.join(run_dir, "summary.json")

  def write_summary(summary):
    if writer_process:
      metrics_lib.write_json_atomic(summary_path, summary)

  def refuse(reason, static):
    write_summary({"status": "failed", "reason": reason, **static})
    raise DoesNotFit(reason)

  write_summary({"status": "running", **static})
  if problem:
    refuse(f"{problem}; lower train.batch_size or train.eval_batches (train.microbatches keeps the batch size)",
           static)

  # ---- Shard & functional state ----
  graphdef, params = nnx.split(s.model)
  param_sharding = mesh_lib.param_shardings(params, mesh)
  params = jax.device_put(params, param_sharding)
  static["param_shardings"] = {path: str(spec) for path, spec in mesh_lib.leaf_specs(params)}
  replicated = mesh_lib.replicated(mesh)
  # optax's init does not propagate shardings (zeros_like); state follows its parameter.
  opt_sharding = optax.tree_map_params(optimizer, lambda _, sharding: sharding,
                                       jax.eval_shape(optimizer.init, params), param_sharding,
                                       transform_non_params=lambda _: replicated)
  opt_state = jax.jit(optimizer.init, out_shardings=opt_sharding)(params)
  placement = Placement(mesh, s.data.shapes())
  batch_sharding = placement.sharding

  train_step, eval_fn = make_train_step(graphdef, s.objective, objective_options, optimizer, schedule, train_cfg,
                                        config["seed"])
  on_cpu = jax.devices()[0].platform == "cpu"
  train_step = jax.jit(train_step, in_shardings=(param_sharding, opt_sharding, batch_sharding, replicated),
                       out_shardings=(param_sharding, opt_sharding, replicated),
                       donate_argnums=() if on_cpu else (0, 1))

  # ---- Ahead-of-time compile: memory per device, before any step runs ----
  compile_start = time.time()
  timeline.add("startup", compile_start - timeline.record["start"])
  train_step = train_step.lower(params, opt_state, placement.abstract(), np.int32(0)).compile()
  timeline.add("compile", time.time() - compile_start)
  memory = _memory_per_device(train_step)
  static["memory_per_device_bytes"] = memory
  limit = _memory_limit(runtime["memory_limit_gib"])
  if memory is not None and limit is not None and memory > limit:
    reason = (f"needs {memory / 2**30:.3f} GiB per device (parameters, optimizer state, activations) but a device "
              f"has {limit / 2**30:.3f} GiB; shard more (runtime.mesh fsdp/tensor), use train.microbatches, "
              f"or lower train.batch_size")
    refuse(reason, static)
  # The eval set is drawn once the step is known to fit: a batch far beyond memory never gets sampled.
  try:
    eval_sets = s.data.eval(train_cfg["eval_batches"])
  except MemoryError:
    refuse("drawing the eval set ran out of host memory; lower train.batch_size or train.eval_batches", static)
  static["eval_set_floor"] = s.data.eval_set_floor(eval_sets)
  static["eval_examples"] = len(eval_sets) * s.examples_per_step
  write_summary({"status": "running", **static})
  timeline.write(force=True)

  # ---- Evaluation: the objective on the fixed held-out set, then the evaluators ----
  eval_step = jax.jit(eval_fn, in_shardings=(param_sharding, batch_sharding, replicated),
                      out_shardings=replicated)
  eval_batches = [placement.place_batch(batch) for batch in eval_sets]

  def evaluate(params) -> dict:
    outputs = [eval_step(params, batch, np.int32(i)) for i, batch in enumerate(eval_batches)]
    row = {"eval_loss": float(np.mean([loss for loss, _ in outputs]))}
    for name in outputs[0][1]:
      row[f"eval_{name}"] = float(np.mean([metrics[name] for _, metrics in outputs]))
    return row

  evaluators = evaluators_lib.build_all(evaluators_lib.Context(
      config=config, data=s.data, objective=s.objective, graphdef=graphdef, placement=placement,
      eval_sets=eval_sets, param_sharding=param_sharding))

  # ---- Resume ----
  checkpoints = checkpoint_lib.Checkpoints(run_dir, keep=runtime["keep_checkpoints"],
                                           directory=staged.checkpoint_dir if staged else None)
  metrics_path = os.path.join(run_dir, "metrics.jsonl")
  start_step = 0
  restore_start = time.time()
  latest = checkpoints.latest_step()
  if latest is not None:
    state = checkpoints.restore(latest, {"params": params, "opt_state": opt_state})
    params, opt_state, start_step = state["params"], state["opt_state"], latest
    if previous_mesh is not None and previous_mesh != static["mesh"]:  # orbax restored onto the new shardings
      static["resumed_from_mesh"] = previous_mesh
  if writer_process:  # Steps past the checkpoint are redone; damaged lines are kept in a copy, and said.
    damaged = metrics_lib.truncate_metrics(metrics_path, start_step)
    if damaged:
      static["metrics_damaged_lines"] = damaged
      logs.warning(f"{metrics_path}: {damaged} damaged line(s) skipped; the original is kept beside it as "
                   f"metrics.jsonl.damaged-*")
  timeline.started_at(start_step)
  timeline.add("restore", time.time() - restore_start)
  writer = metrics_lib.MetricsWriter(run_dir, tensorboard=runtime["tensorboard"], enabled=writer_process)
  # Collectives on a multi-device CPU client deadlock if many steps are in flight: sync every step.
  sync_every_step = on_cpu and mesh.size > 1

  # ---- Train loop ----
  bar = _progress_bar(progress, s.steps, start_step, config)
  pending, last_eval = [], None
  # Losses logged before a resume count towards final_train_loss and spike detection. Only rows up
  # to the checkpoint: other hosts may read before or after process 0 truncates the file.
  recent_losses = [r["loss"] for r in metrics_lib.read_metrics(metrics_path)
                   if "loss" in r and r["step"] <= start_step][-20:]
  compile_seconds = first_step_seconds = None
  steady_first_step = start_step
  last_checkpoint_time = time.time()
  status, reason = "done", None
  # Where the curve is checked against its forecast (train.stop_when_off_forecast): every tenth of the run.
  # Checked at the first flush at or past each tenth (flushes come every flush_every steps, not on the tenths).
  health_check_every = max(s.steps // 10, 1) if train_cfg["stop_when_off_forecast"] else 0
  next_health_check = (start_step // health_check_every + 1) * health_check_every if health_check_every else None

  def progress_so_far(step):
    return {"step": step, "examples": step * s.examples_per_step, "tokens": step * s.tokens_per_step}

  def flush():
    """Writes the pending rows; returns them and why they show divergence (None if they do not)."""
    nonlocal pending
    rows, earlier = jax.device_get(pending), recent_losses[-20:]  # all _divergence reads of the history
    pending = []
    for row in rows:
      row.update({k: float(v) for k, v in row.pop("device").items()})
      recent_losses.append(row["loss"])
    writer.write(rows)
    return rows, _divergence(rows, earlier, train_cfg["max_loss_spike"])

  def eval_row(step, final=False):
    row = {**progress_so_far(step), **evaluate(params)}
    for evaluator in evaluators:
      if final or evaluator.due(step):
        row.update(evaluator.run(params))
    return row

  def save(step, wait=False):
    with timed("checkpoint"):
      if staged is not None:
        staged.sync()
      checkpoints.save(step, {"params": params, "opt_state": opt_state}, wait=wait)
    timeline.saved()

  def timed(category):
    return _Timed(timeline, category)

  with _Preemption() as preemption:
    step = start_step
    steps_clock = loop_start = time.time()  # Step time: the loop's, less eval and checkpoint saves.
    while step < s.steps:
      batch = placement.place(lambda rows: s.data.train(step, rows))
      params, opt_state, step_metrics = train_step(params, opt_state, batch, np.int32(step))
      step += 1
      if sync_every_step:
        jax.block_until_ready(step_metrics["loss"])
      pending.append({**progress_so_far(step), "device": step_metrics})
      is_last = step == s.steps
      if first_step_seconds is None:  # Throughput is timed from the end of the first step.
        jax.block_until_ready(step_metrics)
        first_step_seconds, steady_first_step = time.time() - loop_start, step
        compile_seconds = time.time() - compile_start
      checkpoint_step = bool(runtime["checkpoint_every"]) and step % runtime["checkpoint_every"] == 0
      if len(pending) >= runtime["flush_every"] or is_last or step % train_cfg["eval_every"] == 0 or checkpoint_step:
        rows, reason = flush()
        if reason:
          status = "diverged"
          break
        if bar is not None:
          bar.update(len(rows))
          bar.set_postfix(loss=f"{rows[-1]['loss']:.4f}", refresh=False)
        timeline.add("steps", time.time() - steps_clock)
        timeline.reached(step)
        steps_clock = time.time()
        if next_health_check is not None and step >= next_health_check and not is_last:
          next_health_check = (step // health_check_every + 1) * health_check_every
          with timed("eval"):
            health = _health(metrics_path, s.steps) if writer_process else None
          if distributed.agree(health is not None and health.stops):  # Process 0 read the curve; all stop.
            status, reason = "flagged", f"off its forecast at step {step}: {health.message if health else ''}"
            steps_clock = time.time()
            break
        if step % train_cfg["eval_every"] == 0 or is_last:
          with timed("eval"):
            last_eval = eval_row(step, final=is_last)
          writer.write([last_eval])
        checkpoint_due = checkpoint_step or time.time() - last_checkpoint_time > 60 * runtime["checkpoint_minutes"]
        checkpoint_due = distributed.agree(checkpoint_due)  # Hosts' clocks differ; a save is collective.
        if checkpoint_due and not is_last:
          save(step)
          last_checkpoint_time = time.time()
        timeline.write(force=checkpoint_due)  # A kill loses at most the steps since this record.
        steps_clock = time.time()
      if preemption.at(step) and not is_last:
        if pending:  # The unflushed steps are checked like any others: a NaN is never checkpointed.
          _, reason = flush()
          if reason:
            status = "diverged"
            break
        timeline.add("steps", time.time() - steps_clock)
        timeline.reached(step)
        save(step, wait=True)
        writer.close()
        checkpoints.close()
        raise Interrupted(f"{preemption.signal} at step {step}; checkpoint saved")
    timeline.add("steps", time.time() - steps_clock)
    steady_seconds = timeline.record["seconds"]["steps"] - first_step_seconds if first_step_seconds else 0.0

  if bar is not None:
    bar.close()
  if status == "done" and last_eval is None:  # Resumed from a checkpoint at the last step.
    with timed("eval"):
      last_eval = eval_row(step, final=True)
    if not any(r.get("eval_loss") is not None and r["step"] == step for r in metrics_lib.read_metrics(metrics_path)):
      writer.write([last_eval])
  if status in ("done", "flagged") and checkpoints.latest_step() != step:  # a flagged trial may be resumed
    save(step)
  with timed("checkpoint"):  # Waits for the asynchronous writes still in flight.
    checkpoints.close()
  writer.close()
  timeline.write(status)
  goodput = timeline.breakdown()

  # ---- Summary ----
  tail = recent_losses[-10:]  # final_train_loss: mean of the last 10 steps (or fewer)
  steady_steps = step - steady_first_step
  per_second = lambda count: count / steady_seconds if steady_seconds > 0 and count else None
  finals = {f"final_{k}": v for k, v in (last_eval or {}).items() if k not in progress_so_far(0)}
  summary = {
      "status": status,
      "reason": reason,
      **static,
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
      "resumed_from_step": start_step or None,
      "goodput": goodput["goodput"],
      "time_seconds": {**goodput["seconds"], "total": goodput["total_seconds"]},
      "attempts": goodput["attempts"],
      "checkpoint_saves": goodput["saves"],
      "params_sha256": params_sha256(params),
  }
  write_summary(summary)
  return summary


_EVAL_SEED = 1 << 30  # The eval set's objective randomness (masks): fixed, whatever the trial's seed.


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


def _host_memory_problem(shapes: dict, eval_batches: int):
  """Why this host cannot hold a train batch and the eval set (drawn before anything is compiled), or None."""
  batch = sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in shapes.values()) / jax.process_count()
  needed, host = batch * (eval_batches + 2), os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  if needed > host / 2:
    return (f"a batch takes {batch / 2**30:.3g} GiB of host memory and the eval set {eval_batches} more; "
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
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // jax.local_device_count()
  return None


def _divergence(rows, earlier_losses, max_spike):
  """Why these steps show divergence, or None: a non-finite loss/grad norm, or a loss spike."""
  history = list(earlier_losses[-20:])
  for row in rows:
    if not math.isfinite(row["loss"]) or not math.isfinite(row["grad_norm"]):
      return f"non-finite loss or gradient norm at step {row['step']}"
    if max_spike and len(history) >= 5 and row["loss"] > max_spike * np.mean(history[-20:]):
      return f"loss spike at step {row['step']}: {row['loss']:.4g} > {max_spike:g} x recent mean {np.mean(history[-20:]):.4g}"
    history.append(row["loss"])
  return None


def _health(metrics_path, steps_planned):
  """The training curve logged so far, against its forecast (analysis/health.py)."""
  from analysis import health
  rows = [r for r in metrics_lib.read_metrics(metrics_path) if "loss" in r]
  return health.assess([r["step"] for r in rows], [r["loss"] for r in rows], steps_planned)


def _progress_bar(enabled, total, initial, config):
  if not enabled:
    return None
  from scaling import progress
  label = f"{config['model']['family']} size={config['model']['size']}"
  return progress.bar(total, initial, label, unit="step", leave=False)
