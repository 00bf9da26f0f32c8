"""The sweep YAML schema: one file is one sweep; a list where one value is expected is a grid axis.

`load(path)` returns a validated `Sweep` or raises `SpecError`, whose message is
one line: `FILE:LINE: key.path: what was expected`. Nothing is written to disk
while loading, so a bad file leaves no trace.
"""
import inspect
import math
import re
from typing import Annotated, Literal, Optional, Union

import pydantic
import yaml

from scaling import evaluators, host_memory, objectives
from scaling.data import registry as data_registry
# The `runtime:` section lives below every package that reads it (scaling/runtime_spec.py), the strict base too;
# expand.py reads the runtime schema and its bounds from here.
from scaling.runtime_spec import MAX_STEPS, MAX_TRIALS, RUNTIME_ONLY, RuntimeSpec, Strict as _Strict  # noqa: F401


class SpecError(ValueError):
  """A one-line, user-facing error about a sweep file."""


class ModelSpec(_Strict):
  family: str = "gpt"
  size: int = pydantic.Field(ge=1, le=1024)  # The family's one size dial (depth for gpt).
  options: dict = {}  # Keyword options of the family's ladder function (e.g. aspect_ratio).


# Each data kind's schema sits beside its source (scaling/data/<kind>.py); the union is built from the registry.
DataSpec = Annotated[Union[data_registry.schemas()], pydantic.Field(discriminator="kind")]
_DATA_KINDS = data_registry.kinds()


class ObjectiveSpec(pydantic.BaseModel):
  """The training objective (scaling/objectives/): its name and its options, defaults filled in."""
  model_config = pydantic.ConfigDict(extra="allow", strict=True, frozen=True, allow_inf_nan=False)
  name: str = "next_token"

  @pydantic.model_validator(mode="before")
  @classmethod
  def _resolve(cls, value):
    if isinstance(value, str):
      value = {"name": value}
    if not isinstance(value, dict):
      raise ValueError(f"expected an objective name or {{name: ..., <options>}}, got {value!r}")
    name = value.get("name", "next_token")
    try:
      objective = objectives.get(name)
    except KeyError as e:
      raise ValueError(str(e.args[0])) from None
    given = {k: v for k, v in value.items() if k != "name"}
    unknown = sorted(set(given) - set(objective.options.model_fields))
    if unknown:
      raise ValueError(f"unknown option {unknown[0]!r} of objective {name!r}; known: {sorted(objective.options.model_fields)}")
    try:
      options = objective.options.model_validate(given)
    except pydantic.ValidationError as e:
      first = e.errors()[0]
      raise ValueError(f"option {'.'.join(map(str, first['loc']))} of objective {name!r}: {_message(first)}") from None
    return {"name": name, **options.model_dump()}


class HorizonSpec(_Strict):
  """Training length: tokens (a ViT's tokens are its patches), tokens per parameter (Chinchilla ~20),
  examples (sequences or images), epochs of a finite dataset, or a FLOP budget (a grid of sizes x
  budgets is an IsoFLOP sweep), counted as `flop_count` says: `exact` (per layer, attention
  included: the `flops` summary key) or `6n` (6 x non-embedding parameters per token: `flops_6n`).
  `tokens_per_param` counts the parameters `param_count` names: non_embedding, total, or active
  (what one token uses: a mixture of experts' total less the experts it is not routed to)."""
  tokens: Optional[int] = pydantic.Field(None, gt=0, le=10 ** 15)
  tokens_per_param: Optional[float] = pydantic.Field(None, gt=0, le=10 ** 6)
  examples: Optional[int] = pydantic.Field(None, gt=0, le=10 ** 13)
  epochs: Optional[float] = pydantic.Field(None, gt=0, le=10 ** 6, strict=False)
  flops: Optional[float] = pydantic.Field(None, gt=0, le=1e30, strict=False)
  param_count: Literal["non_embedding", "total", "active"] = "non_embedding"
  flop_count: Literal["exact", "6n"] = "exact"

  @pydantic.model_validator(mode="after")
  def _exactly_one(self):
    if sum(v is not None for v in (self.tokens, self.tokens_per_param, self.examples, self.epochs, self.flops)) != 1:
      raise ValueError("give exactly one of tokens, tokens_per_param, examples, epochs or flops")
    return self

  @pydantic.model_validator(mode="after")
  def _counting_applies(self):  # else it would change the trial id and nothing else
    if self.param_count != "non_embedding" and self.tokens_per_param is None:
      raise ValueError(f"param_count {self.param_count!r} applies to tokens_per_param (which parameters the ratio "
                       "counts); this horizon counts no parameters")
    if self.flop_count != "exact" and self.flops is None:
      raise ValueError(f"flop_count {self.flop_count!r} applies to flops (how a FLOP budget is counted); "
                       "this horizon is no FLOP budget")
    return self


class OptimizerSpec(_Strict):
  """AdamW with linear warmup, then cosine decay to min_lr_ratio * lr (`cosine`), or constant lr and a
  linear decay to min_lr_ratio * lr over the last decay_fraction of the steps (`wsd`)."""
  name: Literal["adamw"] = "adamw"
  lr: float = pydantic.Field(3e-3, gt=0, le=10)
  weight_decay: float = pydantic.Field(0.1, ge=0)
  b1: float = pydantic.Field(0.9, ge=0, lt=1)
  b2: float = pydantic.Field(0.95, ge=0, lt=1)
  eps: float = pydantic.Field(1e-8, gt=0)
  warmup_steps: int = pydantic.Field(50, ge=0, le=MAX_STEPS)
  min_lr_ratio: float = pydantic.Field(0.1, ge=0, le=1)
  grad_clip: float = pydantic.Field(1.0, ge=0)  # 0 disables clipping.
  schedule: Literal["cosine", "wsd"] = "cosine"
  decay_fraction: float = pydantic.Field(0.2, gt=0, le=1, strict=False)  # wsd: share of the steps that decay

  @pydantic.model_validator(mode="after")
  def _decay_fraction_is_wsds(self):  # else it would change the trial id and nothing else
    if self.schedule != "wsd" and self.decay_fraction != 0.2:
      raise ValueError("decay_fraction applies to schedule: wsd (cosine decays over all the steps after warmup)")
    return self


class TrainSpec(_Strict):
  seq_len: int = pydantic.Field(64, ge=2, le=1 << 20)
  batch_size: int = pydantic.Field(16, ge=1, le=1 << 24)
  horizon: HorizonSpec
  eval_every: int = pydantic.Field(100, ge=1, le=MAX_STEPS)  # steps
  eval_batches: int = pydantic.Field(8, ge=1, le=1 << 14)
  objective: ObjectiveSpec = ObjectiveSpec()  # a name, or {name: ..., <its options>}
  # Evaluators run at eval steps and at the end (scaling/evaluators/); default: the objective's own, where
  # the data allows (a generative objective on labelled images gets `linear_probe`).
  evaluators: Optional[tuple[str, ...]] = pydantic.Field(None, strict=False)
  probe_examples: int = pydantic.Field(4096, ge=16, le=1 << 22)  # linear probe: training examples it fits on
  probe_every: int = pydantic.Field(0, ge=0, le=MAX_STEPS)  # steps between linear probes; 0: only at the end
  compute_dtype: Literal["float32", "bfloat16"] = "float32"  # parameters stay float32 either way
  # gradient accumulation: batch_size / microbatches rows at a time (so at most batch_size of them)
  microbatches: int = pydantic.Field(1, ge=1, le=1 << 24)
  max_loss_spike: float = pydantic.Field(0.0, ge=0)  # stop as diverged if loss > this x the recent mean; 0: off
  inject_nan_at_step: Optional[int] = pydantic.Field(None, ge=1, le=MAX_STEPS)  # testing: poison this step's gradients
  # testing: silent data corruption: after this step, add noise as large as each parameter's spread
  inject_corruption_at_step: Optional[int] = pydantic.Field(None, ge=1, le=MAX_STEPS)
  # End the trial early as `flagged` when its loss curve stays above its forecast band (analysis/health.py).
  stop_when_off_forecast: bool = False


  @pydantic.model_validator(mode="after")
  def _microbatches_divide(self):
    if self.batch_size % self.microbatches:
      raise ValueError(f"batch_size {self.batch_size} is not divisible by microbatches {self.microbatches}")
    return self


class TrialSpec(_Strict):
  """One fully resolved trial: what the trainer reads; its hash is the trial id."""
  model: ModelSpec
  data: DataSpec
  train: TrainSpec
  optimizer: OptimizerSpec = OptimizerSpec()
  seed: int = pydantic.Field(0, ge=0, le=2 ** 31 - 1)  # model init, data order and objective randomness


class Sweep(pydantic.BaseModel):
  model_config = pydantic.ConfigDict(frozen=True, arbitrary_types_allowed=True)
  name: str
  path: str
  trials: list  # of sweeps.expand.Trial
  runtime: RuntimeSpec = RuntimeSpec()


# ---- YAML with line numbers ----

class _Loader(yaml.SafeLoader):
  """SafeLoader that reads 3e-4 as a float (YAML 1.2), which YAML 1.1 reads as a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?(?:[eE][-+]?\d+)$|^[-+]?\d[\d_]*\.\d*$|^[-+]?\.\d+$"),
    list("-+0123456789."))


def _line_index(node, path=(), out=None) -> dict:
  """Maps key paths (tuples) to 1-based line numbers in the YAML source."""
  out = {} if out is None else out
  out[path] = node.start_mark.line + 1
  if isinstance(node, yaml.MappingNode):
    for key, value in node.value:
      _line_index(value, path + (key.value,), out)
      out[path + (key.value,)] = key.start_mark.line + 1
  elif isinstance(node, yaml.SequenceNode):
    for i, value in enumerate(node.value):
      _line_index(value, path + (i,), out)
  return out


MAX_FILE_BYTES = 1 << 20  # A sweep file is a page of YAML; anything bigger is the wrong file.
MAX_DEPTH = 64  # nesting levels
MAX_EXPANDED_NODES = 200_000  # nodes once aliases are expanded: refuses "billion laughs" files


def read_yaml(path: str):
  """Returns (document, {key path: line}); raises SpecError on I/O, syntax, duplicate keys or hostile input."""
  from scaling import metrics as metrics_lib
  try:
    with metrics_lib.open_regular(path, follow_links=True) as f:
      raw = f.read(MAX_FILE_BYTES + 1)
  except metrics_lib.UnusableFile:
    raise SpecError(f"{path}: not a regular file") from None
  except FileNotFoundError:
    raise SpecError(f"{path}: file not found") from None
  except OSError as e:
    raise SpecError(f"{path}: cannot read: {e.strerror or e}") from None
  if len(raw) > MAX_FILE_BYTES:
    raise SpecError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB; a sweep file is a short YAML document")
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise SpecError(f"{path}: not UTF-8 text (byte {e.start})") from None
  try:
    node = yaml.compose(text, Loader=_Loader)
    if node is not None:
      _check_node(path, node)
    document = yaml.load(text, Loader=_Loader)
  except RecursionError:
    raise SpecError(f"{path}: nested too deeply (more than {MAX_DEPTH} levels)") from None
  except yaml.YAMLError as e:
    mark = getattr(e, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark else path
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    raise SpecError(f"{where}: malformed YAML: {problem}") from None
  if not isinstance(document, dict):
    raise SpecError(f"{path}:1: expected a mapping of keys (name, model, data, train, ...) at the top level")
  return document, (_line_index(node) if node is not None else {})


def _check_node(path: str, root) -> None:
  """Duplicate keys, nesting depth and alias expansion, checked without recursion (hostile files are deep)."""
  expanded, open_nodes, stack = {}, set(), [(root, 1, False)]
  while stack:  # Post-order walk: a node's expanded size once its children's are known.
    node, depth, children_done = stack.pop()
    if depth > MAX_DEPTH:
      raise SpecError(f"{path}:{node.start_mark.line + 1}: nested too deeply (more than {MAX_DEPTH} levels)")
    if id(node) in expanded:
      continue
    if id(node) in open_nodes and not children_done:
      raise SpecError(f"{path}:{node.start_mark.line + 1}: a YAML alias refers to itself")
    open_nodes.add(id(node))
    children = []
    if isinstance(node, yaml.MappingNode):
      seen = {}
      for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
          if key.value in seen:
            raise SpecError(f"{path}:{key.start_mark.line + 1}: duplicate key {key.value!r} "
                            f"(first given on line {seen[key.value]})")
          seen[key.value] = key.start_mark.line + 1
        children += [key, value]
    elif isinstance(node, yaml.SequenceNode):
      children = list(node.value)
    if children_done or not children:
      expanded[id(node)] = 1 + sum(expanded[id(c)] for c in children)
      if expanded[id(node)] > MAX_EXPANDED_NODES:
        raise SpecError(f"{path}:{node.start_mark.line + 1}: expands to more than {MAX_EXPANDED_NODES:,} "
                        f"values (YAML aliases); a sweep file is small")
      continue
    stack.append((node, depth, True))
    stack.extend((c, depth + 1, False) for c in children if id(c) not in expanded)


def error_at(path: str, lines: dict, key_path: tuple, message: str) -> SpecError:
  """A SpecError naming the deepest known line of `key_path`."""
  for depth in range(len(key_path), -1, -1):
    if key_path[:depth] in lines:
      line = lines[key_path[:depth]]
      break
  dotted = ".".join(str(k) for k in key_path) or "(top level)"
  return SpecError(f"{path}:{line}: {dotted}: {message}")


def validation_error(path: str, lines: dict, error: pydantic.ValidationError, prefix=()) -> SpecError:
  first = error.errors()[0]
  # Discriminated unions put the variant's tag in the location; it is not a key of the file.
  # (Only there: a kind's name may also be a key, as `tasks` is of the tasks kind.)
  loc = tuple(first["loc"])
  at = 1 if loc[:1] == ("data",) else 0
  if len(loc) > at and loc[at] in _DATA_KINDS:
    loc = loc[:at] + loc[at + 1:]
  return error_at(path, lines, prefix + loc, _message(first))


def _message(error: dict) -> str:
  """What one pydantic error says, in the words of the other SpecErrors."""
  message = error["msg"].removeprefix("Value error, ")
  if error["type"] == "extra_forbidden":
    return "unknown key"
  if error["type"] == "missing":
    return "required key is missing"
  if error["type"] == "finite_number":
    return f"expected a finite number, got {error['input']!r}"
  if "input" in error and error["type"].endswith("_type"):
    return f"{message} (got {error['input']!r})"
  return message


def check_trial(path, lines, trial: TrialSpec) -> None:
  """Family, options, objective and data fit together, checked before anything runs.

  The family's ladder is called with what the data really gives (its vocabulary
  or image shape), so its own checks (width divisible by head_dim, patch size
  dividing the image) fail here with the key to fix.
  """
  from models import registry
  model, objective = trial.model, trial.train.objective
  try:
    family = registry.get(model.family)
  except KeyError as e:
    raise error_at(path, lines, ("model", "family"), str(e.args[0])) from None
  signature = inspect.signature(family.ladder)
  for name, value in model.options.items():
    parameter = signature.parameters.get(name)
    if parameter is None or name in family.inputs or parameter.kind != parameter.KEYWORD_ONLY:
      allowed = [p for p, v in signature.parameters.items() if v.kind == v.KEYWORD_ONLY and p not in family.inputs]
      raise error_at(path, lines, ("model", "options", name), f"unknown option for family {model.family!r}; known: {allowed}")
    default = parameter.default
    if (default is not inspect.Parameter.empty and type(value) is not type(default)
        and not (type(default) is float and type(value) is int)):  # 1 for a float option is 1.0
      raise error_at(path, lines, ("model", "options", name),
                     f"expected {type(default).__name__}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):  # a free-form dict: the schema's setting misses it
      raise error_at(path, lines, ("model", "options", name), f"expected a finite number, got {value!r}")
  if objective.name not in family.objectives:
    raise error_at(path, lines, ("train", "objective"), f"objective {objective.name!r} is not supported by family "
                   f"{model.family!r}; it supports {list(family.objectives)}")
  try:
    data_inputs = trial.data.model_inputs(trial.train.seq_len)
  except data_registry.DataError as e:
    raise error_at(path, lines, ("data", e.key), str(e)) from None
  unique = getattr(trial.data, "unique_tokens", None)
  if unique is not None and unique // (trial.train.seq_len + 1) < trial.train.batch_size:
    raise error_at(path, lines, ("data", "unique_tokens"), f"{unique} unique tokens make "
                   f"{unique // (trial.train.seq_len + 1)} windows of seq_len + 1 = {trial.train.seq_len + 1}, fewer "
                   f"than one batch of {trial.train.batch_size}; need at least "
                   f"{trial.train.batch_size * (trial.train.seq_len + 1)}")
  if unique is not None:
    problem = _unique_set_memory_problem(trial.data, trial.train.seq_len)
    if problem:
      raise error_at(path, lines, ("data", "unique_tokens"), problem)
  if trial.train.horizon.epochs is not None and not trial.data.finite and unique is None:
    raise error_at(path, lines, ("train", "horizon", "epochs"), f"data kind {trial.data.kind!r} has no fixed "
                   "training set to count epochs of; give examples or tokens, or set data.unique_tokens")
  needed = objectives.get(objective.name).needs
  missing = [k for k in needed if k not in data_inputs]
  if missing:
    raise error_at(path, lines, ("data", "kind"), f"objective {objective.name!r} needs data that gives {missing} "
                   f"(data kind {trial.data.kind!r} gives {sorted(data_inputs)})")
  for name in trial.train.evaluators or ():
    try:
      missing = [k for k in evaluators.get(name).needs if k not in data_inputs]
    except KeyError as e:
      raise error_at(path, lines, ("train", "evaluators"), str(e.args[0])) from None
    if missing:
      raise error_at(path, lines, ("train", "evaluators"), f"evaluator {name!r} needs data that gives {missing}")
  try:  # The ladder's own checks (e.g. width divisible by head_dim), before anything runs.
    arch = family.ladder(model.size, **family.ladder_inputs(data_inputs, objective.name), **model.options)
  except ValueError as e:
    raise error_at(path, lines, ("model", "options"), str(e)) from None
  short = _horizon_under_one_step(trial, family, arch)
  if short:
    key, message = short
    raise error_at(path, lines, ("train", "horizon", key), message + "; raise the horizon or shrink the batch")


def _unique_set_memory_problem(data, seq_len: int) -> Optional[str]:
  """Why this host cannot draw and hold a data-constrained trial's fixed set of unique tokens, or None.

  The rule the trainer applies to a batch and the eval set (scaling/train.py): at most half the host's memory.
  """
  needed = data.draw_bytes(data.unique_tokens, seq_len)
  host = host_memory.total_bytes()
  allowed = host * host_memory.SHARE
  if needed <= allowed:
    return None
  most = int(data.unique_tokens * allowed / needed)
  return (f"{data.unique_tokens:,} unique tokens take {needed / 2**30:.3g} GiB of host memory to draw and hold, "
          f"over half of this host's {host / 2**30:.3g} GiB; at most about {most:,} here")


def _horizon_under_one_step(trial: TrialSpec, family, arch) -> Optional[tuple]:
  """(horizon key, why) when the horizon is less than one optimizer step, the same rule for every kind of
  horizon (the trainer would round it up to one step, or down to none); None when it is at least one."""
  from models import counting
  horizon, batch, size = trial.train.horizon, trial.train.batch_size, trial.model.size
  if horizon.examples is not None:
    if horizon.examples < batch:
      return "examples", f"{horizon.examples} examples is less than one step of {batch} examples"
    return None
  if horizon.epochs is not None:
    examples = trial.data.train_examples(trial.train.seq_len)
    if examples is not None and horizon.epochs * examples < batch:
      return "epochs", (f"{horizon.epochs:g} epochs of {examples:,} training examples is "
                        f"{horizon.epochs * examples:.4g} examples, less than one step of {batch} examples")
    return None
  counts = counting.abstract_counts(family, arch) if horizon.tokens is None else None
  if horizon.flops is not None:
    per_step = counting.flops_per_step(family, arch, counts, batch, horizon.flop_count)
    if horizon.flops < per_step:
      return "flops", (f"{horizon.flops:.3g} FLOPs is less than one step of size {size} ({per_step:.3g} FLOPs per "
                       f"step of {batch} examples, counted {horizon.flop_count})")
    return None
  tokens_per_example = int(family.flops_per_example(arch)["tokens"])
  per_step = batch * tokens_per_example
  if horizon.tokens is not None:
    if horizon.tokens < per_step:
      return "tokens", (f"{horizon.tokens:,} tokens is less than one step of {per_step:,} tokens ({batch} examples "
                        f"of {tokens_per_example})")
    return None
  params = counts[f"params_{horizon.param_count}"]
  if horizon.tokens_per_param * params < per_step:
    return "tokens_per_param", (f"{horizon.tokens_per_param:g} tokens per parameter x {params:,} "
                                f"{horizon.param_count.replace('_', '-')} parameters of size {size} is "
                                f"{horizon.tokens_per_param * params:.4g} tokens, less than one step of "
                                f"{per_step:,} tokens ({batch} examples of {tokens_per_example})")
  return None
