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
