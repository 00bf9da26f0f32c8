"""Things registered by name from modules imported on first lookup: one mechanism for every registry.

Model families, objectives, evaluators and data kinds each live in a module that calls its registry's
`add` when imported. A registry names the package its entries live in and imports every module of it
the first time anything is looked up (discovery: adding a family, objective, evaluator or data kind is
adding one file there), so importing the registry itself stays cheap. Modules of the package that
register nothing (helpers) are imported too, which costs nothing but their import.
"""
import importlib
import pkgutil


class Registry:

  def __init__(self, what: str, package: str):
    self.what, self.package = what, package  # what: the noun in errors, e.g. "objective"
    self._entries, self._loaded = {}, False

  def add(self, name: str, entry) -> None:
    self._entries[name] = entry

  def modules(self) -> list:
    """The package's modules, in name order: what the first lookup imports."""
    path = importlib.import_module(self.package).__path__
    return sorted(f"{self.package}.{m.name}" for m in pkgutil.iter_modules(path) if not m.name.startswith("_"))

  def entries(self) -> dict:
    """{name: entry} of everything registered, the package's modules imported."""
    if not self._loaded:
      for module in self.modules():
        importlib.import_module(module)
      self._loaded = True
    return self._entries

  def get(self, name: str):
    entries = self.entries()
    if name not in entries:
      raise KeyError(f"unknown {self.what} {name!r}; known: {sorted(entries)}")
    return entries[name]
