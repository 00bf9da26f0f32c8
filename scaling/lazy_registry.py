"""Things registered by name from modules imported on first lookup: one mechanism for every registry.

Model families, objectives, evaluators and data kinds each live in a module that
calls its registry's `add` when imported; the registry imports its built-in
modules the first time anything is looked up, so importing it stays cheap.
"""
import importlib


class Registry:

  def __init__(self, what: str, builtin: tuple):
    self.what, self.builtin = what, builtin  # what: the noun in errors, e.g. "objective"
    self._entries, self._loaded = {}, False

  def add(self, name: str, entry) -> None:
    self._entries[name] = entry

  def entries(self) -> dict:
    """{name: entry} of everything registered, built-ins loaded."""
    if not self._loaded:
      for module in self.builtin:
        importlib.import_module(module)
      self._loaded = True
    return self._entries

  def get(self, name: str):
    entries = self.entries()
    if name not in entries:
      raise KeyError(f"unknown {self.what} {name!r}; known: {sorted(entries)}")
    return entries[name]
