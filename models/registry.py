"""Model families by name. Adding a family is adding a file that calls `register`."""
import dataclasses
from typing import Callable

from scaling.lazy_registry import Registry

_FAMILIES = Registry("model family", "models")  # every module of models/


@dataclasses.dataclass(frozen=True)
class Family:
  name: str
  ladder: Callable  # (dial, **inputs, **family_options) -> architecture config
  build: Callable  # (architecture config, seed) -> nnx.Module
  # architecture config -> {"exact": training FLOPs per example, "tokens": tokens (positions) per example}
  flops_per_example: Callable
  embedding_leaves: tuple  # top-level parameter names that are lookup tables (no FLOPs)
  # Keyword inputs of `ladder` that come from the data (vocab_size, image_shape, ...) or the objective
  # (`objective`), never from `model.options`.
  inputs: tuple
  objectives: tuple  # objectives the family's models support; the first is the default

  def ladder_inputs(self, data_inputs: dict, objective: str) -> dict:
    """The keyword inputs of the ladder that come from the data and the objective, not from options."""
    given = {**data_inputs, "objective": objective}
    return {name: given[name] for name in self.inputs if name in given}


def register(name, **fields):
  _FAMILIES.add(name, Family(name=name, **fields))


def get(name) -> Family:
  return _FAMILIES.get(name)


def names() -> list:
  return sorted(_FAMILIES.entries())
