"""Evaluators by name (`train.evaluators`): measurements of a model beyond its own objective.

An evaluator is built once per trial from a `Context` and then runs on the
parameters at eval steps (when `due(step)`) and at the end; it returns scalar
metrics, logged in the eval rows of metrics.jsonl and as `final_<metric>` in the
summary. Adding one is adding a file that calls `register`.
"""
import dataclasses
from typing import Callable

from scaling.lazy_registry import Registry

_EVALUATORS = Registry("evaluator", "scaling.evaluators")  # every module of scaling/evaluators/


@dataclasses.dataclass
class Context:
  """What an evaluator may use: the trial's config, data, objective, model graph and batch placement."""
  config: dict
  data: object  # scaling.data.Batches
  objective: object  # scaling.objectives.Objective
  graphdef: object  # nnx graph of the model; nnx.merge(graphdef, params) is the model
  placement: object  # scaling.train.Placement: puts numpy batches on the mesh
  eval_sets: list  # the fixed held-out batches (numpy dicts)
  param_sharding: object


@dataclasses.dataclass(frozen=True)
class Spec:
  name: str
  build: Callable  # Context -> object with .run(params) -> {metric: float} and .due(step) -> bool
  needs: tuple = ()  # model inputs the data must give (e.g. ("num_classes",): labels)


def register(name: str, build: Callable, needs: tuple = ()) -> None:
  _EVALUATORS.add(name, Spec(name, build, needs))


def get(name: str) -> Spec:
  return _EVALUATORS.get(name)


def build_all(context: Context) -> list:
  """The trial's evaluators: those `train.evaluators` names, else the objective's defaults that apply."""
  named = context.config["train"].get("evaluators")
  if named is None:
    named = [n for n in context.objective.evaluators if all(k in context.data.model_inputs for k in get(n).needs)]
  return [get(n).build(context) for n in named]
