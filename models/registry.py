"""Model families by name. Adding a family is adding a file that calls `register`."""
import dataclasses
import importlib
from typing import Callable

_FAMILIES: dict = {}
_BUILTIN = ("models.gpt", "models.vit")  # Modules imported lazily so `import models` stays cheap.


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


def register(name, **fields):
  _FAMILIES[name] = Family(name=name, **fields)


def get(name) -> Family:
  for module in _BUILTIN:
    importlib.import_module(module)
  if name not in _FAMILIES:
    raise KeyError(f"unknown model family {name!r}; known: {sorted(_FAMILIES)}")
  return _FAMILIES[name]


def names() -> list:
  for module in _BUILTIN:
    importlib.import_module(module)
  return sorted(_FAMILIES)
