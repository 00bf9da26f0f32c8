"""Model families by name. Adding a family is adding a file that calls `register`."""
import dataclasses
import importlib
from typing import Callable

_FAMILIES: dict = {}
_BUILTIN = ("models.gpt",)  # Modules imported lazily so `import models` stays cheap.


@dataclasses.dataclass(frozen=True)
class Family:
  name: str
  ladder: Callable  # (dial, **family_options) -> architecture config
  build: Callable  # (architecture config, seed) -> nnx.Module
  flops_per_token: Callable  # architecture config -> {"exact": training FLOPs per token}
  embedding_leaves: tuple  # top-level parameter names that are lookup tables


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
