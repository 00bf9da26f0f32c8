"""Expands a sweep file into trials: the cartesian product of every list given where one value is expected.

A trial's id is a short hash of its fully resolved config (defaults filled in),
so the same trial in two sweep files, or in an edited file, has the same id and
its finished run directory is reused.
"""
import dataclasses
import itertools
import json
import math
import typing

import pydantic

from scaling import rundir  # a sweep name, like a trial id, names a directory
from scaling.trial_id import config_id
from sweeps import spec as spec_lib

_TOP_LEVEL = ("name", "model", "data", "train", "optimizer", "seed", "runtime")


@dataclasses.dataclass(frozen=True)
class Trial:
  id: str
  spec: spec_lib.TrialSpec
  axes: dict  # dotted key -> this trial's value, for every grid axis of the sweep

  def config(self) -> dict:
    """The resolved config as plain JSON types; what is hashed and saved as config.json."""
    return self.spec.model_dump(mode="json")


def trial_id(spec: spec_lib.TrialSpec) -> str:
  return config_id(spec.model_dump(mode="json"))


def load(path: str) -> spec_lib.Sweep:
  """Reads, validates and expands a sweep file; raises SpecError with a one-line message."""
  document, lines = spec_lib.read_yaml(path)
  for key in document:
    if key not in _TOP_LEVEL:
      raise spec_lib.error_at(path, lines, (key,), f"unknown key; expected one of {list(_TOP_LEVEL)}")
  name = document.get("name")
  if not isinstance(name, str) or not rundir.PLAIN_NAME.fullmatch(name):
    raise spec_lib.error_at(path, lines, ("name",),
                            "expected a sweep name of letters, digits, '_', '-', '.' (it names the output folder)")
  try:
    runtime = spec_lib.RuntimeSpec.model_validate(document.get("runtime") or {})
  except pydantic.ValidationError as e:
    raise spec_lib.validation_error(path, lines, e, prefix=("runtime",)) from None
  train = document.get("train")
  for key in spec_lib.RUNTIME_ONLY:
    if isinstance(train, dict) and key in train:
      raise spec_lib.error_at(path, lines, ("train", key), f"moved to runtime.{key}: it says how to run, not what, "
                              "and is not part of the trial id")
  body = {k: v for k, v in document.items() if k not in ("name", "runtime")}
  axes = _find_axes(body)
  n_trials = math.prod(len(values) for _, values in axes)
  if n_trials > spec_lib.MAX_TRIALS:
    raise spec_lib.error_at(path, lines, axes[0][0] if axes else (),
                            f"the grid expands to {n_trials:,} trials; the limit is {spec_lib.MAX_TRIALS:,}")
  for key_path, values in axes:
    if not values:
      raise spec_lib.error_at(path, lines, key_path, "an empty list gives no trials")
  trials, seen, checked = [], set(), set()
  for combination in itertools.product(*(values for _, values in axes)):
    trial_doc = json.loads(json.dumps(body))
    for (key_path, _), value in zip(axes, combination):
      _set(trial_doc, key_path, value)
    _default_objective(trial_doc)
    try:
      trial_spec = spec_lib.TrialSpec.model_validate(trial_doc)
    except pydantic.ValidationError as e:
      raise spec_lib.validation_error(path, lines, e) from None
    pairing = json.dumps([trial_spec.model.model_dump(mode="json"), trial_spec.data.model_dump(mode="json"),
                          trial_spec.train.model_dump(mode="json")])
    if pairing not in checked:  # Grids repeat these; check each once (TFDS lookups are slow).
      spec_lib.check_trial(path, lines, trial_spec)
      checked.add(pairing)
    trial = Trial(id=trial_id(trial_spec), spec=trial_spec,
                  axes={".".join(map(str, k)): v for (k, _), v in zip(axes, combination)})
    if trial.id not in seen:  # Two grid points that resolve to the same config run once.
      seen.add(trial.id)
      trials.append(trial)
  return spec_lib.Sweep(name=name, path=path, trials=trials, runtime=runtime)


def _default_objective(trial_doc) -> None:
  """A trial that names no objective gets its family's first (next_token for gpt)."""
  from models import registry
  train, model = trial_doc.get("train"), trial_doc.get("model")
  if not isinstance(train, dict) or "objective" in train or not isinstance(model, dict):
    return
  try:
    train["objective"] = registry.get(model.get("family", "gpt")).objectives[0]
  except (KeyError, TypeError):  # An unknown family is reported by validation, with its line.
    pass


def _find_axes(node, key_path=()) -> list:
  """[(key path, values)] for every list that stands where the schema wants one value."""
  if isinstance(node, dict):
    return [axis for key, value in node.items() for axis in _find_axes(value, key_path + (key,))]
  if isinstance(node, list):
    if _expects_sequence(key_path):  # A sequence field is an axis only as a list of sequences.
      return [(key_path, node)] if node and all(isinstance(v, list) for v in node) else []
    return [(key_path, node)]
  return []


def _expects_sequence(key_path) -> bool:
  """True where the schema's field at `key_path` is itself a tuple/list (e.g. data.mix)."""
  model = spec_lib.TrialSpec
  for i, key in enumerate(key_path):
    fields = _fields_of(model)
    if key not in fields:
      return False
    if key in _nested_data(model):  # e.g. data.language: a data config of its own
      model = spec_lib.DataSpec
      continue
    annotation = fields[key]
    options = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Union else (annotation,)
    if any(typing.get_origin(option) in (tuple, list) for option in options):  # Optional[tuple] too
      return i == len(key_path) - 1
    model = annotation
  return False


def _variants(model) -> tuple:
  if typing.get_origin(model) is typing.Annotated:
    model = typing.get_args(model)[0]
  return typing.get_args(model) if typing.get_origin(model) is typing.Union else (model,)


def _nested_data(model) -> set:
  return {name for v in _variants(model) for name in getattr(v, "nested_data", ())}


def _fields_of(model) -> dict:
  """Field annotations of a model, or of every variant of a discriminated union."""
  fields = {}
  for variant in _variants(model):
    if isinstance(variant, type) and issubclass(variant, pydantic.BaseModel):
      fields.update({name: f.annotation for name, f in variant.model_fields.items()})
  return fields


def _set(document, key_path, value):
  for key in key_path[:-1]:
    document = document[key]
  document[key_path[-1]] = value
