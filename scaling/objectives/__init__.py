"""Training objectives by name (`train.objective`). Adding one is adding a file that calls `register`.

An objective maps (model, batch, keys, options) to (loss, metrics): a scalar loss
to minimise and a dict of scalar metrics logged beside it (train rows, and with
an `eval_` prefix on the held-out set). `keys` holds one PRNG key per example
[B], derived from (seed, step, row) by the loop, so random masking is a pure
function of the step (resume stays exact) and of the row (microbatches and
devices see the same draws as the whole batch).
"""
import dataclasses
from typing import Callable

import pydantic

from scaling.lazy_registry import Registry

_OBJECTIVES = Registry("objective", "scaling.objectives")  # every module of scaling/objectives/


class NoOptions(pydantic.BaseModel):
  """Base of every objective's options: strict, unknown keys refused, every float finite."""
  model_config = pydantic.ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


@dataclasses.dataclass(frozen=True)
class Objective:
  name: str
  loss: Callable  # (model, batch, keys [B], options: dict) -> (scalar loss, {metric: scalar})
  kind: str  # "generative" (models its input) or "discriminative" (predicts a label)
  loss_unit: str  # what one unit of the loss is, for the summary and the report
  needs: tuple  # model inputs the data must give (scaling/data/registry.py), e.g. ("image_shape", "num_classes")
  options: type = NoOptions  # pydantic model of the objective's options, with defaults
  evaluators: tuple = ()  # evaluators run by default when the data allows (scaling/evaluators/)


def register(name: str, **fields) -> None:
  _OBJECTIVES.add(name, Objective(name=name, **fields))


def get(name: str) -> Objective:
  return _OBJECTIVES.get(name)


def names() -> list:
  return sorted(_OBJECTIVES.entries())
