"""Layers point one way: a package imports only the packages below it, function-level imports included.

pallas_kernels < models < scaling < analysis < sweeps. The run-directory format (scaling/rundir.py, claims.py,
storage.py, trial_id.py) and the runtime defaults (scaling/runtime_spec.py) sit in scaling, below every package
that reads them; the trainer takes the forecast check as a callback (train(..., health=)). The registry helper,
scaling/lazy_registry.py, imports nothing of ours: neutral ground that models may use too.
"""
import ast
import glob
import os

from tests.conftest import ROOT

LAYERS = ("pallas_kernels", "models", "scaling", "analysis", "sweeps")
NEUTRAL = ("scaling.lazy_registry",)  # imports nothing of ours (checked below), so any layer may import it


def imports_of(path: str) -> list:
  """(line, module) of every import in the file, at any depth (inside functions too)."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [(node.lineno, alias.name) for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      out += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
  return out


def upward_imports(root: str = ROOT) -> list:
  found = []
  for layer in LAYERS:
    for path in glob.glob(os.path.join(root, layer, "**", "*.py"), recursive=True):
      below = LAYERS[:LAYERS.index(layer) + 1]
      for line, module in imports_of(path):
        top = module.split(".")[0]
        if top in LAYERS and top not in below and not module.startswith(NEUTRAL):
          found.append(f"{os.path.relpath(path, root)}:{line}: imports {module}")
  return sorted(set(found))


def test_no_package_imports_a_package_above_it():
  assert upward_imports() == []


def test_the_neutral_registry_helper_imports_nothing_of_ours():
  for name in NEUTRAL:
    path = os.path.join(ROOT, *name.split(".")) + ".py"
    assert [m for _, m in imports_of(path) if m.split(".")[0] in LAYERS] == [], name


def test_the_check_sees_an_upward_import(tmp_path):
  """The check itself can fail: a function-level `from sweeps import spec` in a scaling module is found."""
  (tmp_path / "scaling").mkdir()
  (tmp_path / "scaling" / "planted.py").write_text("def f():\n  from sweeps import spec\n  return spec\n")
  assert upward_imports(str(tmp_path)) == ["scaling/planted.py:2: imports sweeps", "scaling/planted.py:2: imports sweeps.spec"]


def test_a_registry_discovers_every_module_of_its_package(tmp_path, monkeypatch):
  """Adding an objective, evaluator, data kind or family is adding one file: its package's registry imports every
  module of the package at the first lookup (scaling/lazy_registry.py), with no list to edit."""
  from scaling.lazy_registry import Registry
  package = tmp_path / "discovered_things"
  package.mkdir()
  (package / "__init__.py").write_text("from scaling.lazy_registry import Registry\nTHINGS = Registry('thing', "
                                       "'discovered_things')\n")
  for name in ("alpha", "beta"):
    (package / f"{name}.py").write_text(f"from discovered_things import THINGS\nTHINGS.add({name!r}, {name!r}.upper())\n")
  (package / "helper.py").write_text("VALUE = 1  # registers nothing\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  things = __import__("discovered_things").THINGS
  assert isinstance(things, Registry) and things.get("beta") == "BETA" and sorted(things.entries()) == ["alpha", "beta"]
  for registry in ("scaling.objectives._OBJECTIVES", "scaling.evaluators._EVALUATORS", "scaling.data.registry._KINDS",
                   "models.registry._FAMILIES"):
    module, name = registry.rsplit(".", 1)
    assert isinstance(getattr(__import__(module, fromlist=[name]), name).package, str), registry
