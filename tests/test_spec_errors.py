"""Every malformed sweep file gets one line naming the file and the key or line; the CLI exits 2."""
import glob
import os
import subprocess
import sys

import typing

import pydantic
import pytest

from scaling import objectives
from scaling.data import registry as data_registry
from scaling.data import tasks as tasks_data
from sweeps import expand, spec
from sweeps.spec import SpecError
from tests.conftest import ROOT

CORPUS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "malformed", "*.yaml")))


def expected_message(path):
  with open(path) as f:
    first = f.readline()
  assert first.startswith("# expect: "), f"{path} must start with '# expect: <message>'"
  return first[len("# expect: "):].strip()


def test_corpus_is_large_enough():
  assert len(CORPUS) >= 25


@pytest.mark.parametrize("path", CORPUS, ids=[os.path.basename(p)[:-5] for p in CORPUS])
def test_malformed_file_gives_one_line_error(path):
  with pytest.raises(SpecError) as error:
    expand.load(path)
  message = str(error.value)
  assert "\n" not in message
  assert message.startswith(path + ":"), message
  assert expected_message(path) in message, message


def test_missing_file(tmp_path):
  with pytest.raises(SpecError, match="file not found"):
    expand.load(str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize("name,command", [("unknown_nested_key", "validate"), ("wrong_type_int", "run"),
                                          ("malformed_indent", "run"), ("missing", "run")])
def test_cli_exits_2_with_one_line_and_creates_nothing(tmp_path, name, command):
  path = os.path.join(ROOT, "tests", "malformed", f"{name}.yaml")
  out = tmp_path / "out"
  argv = [sys.executable, "-m", "sweeps", command, path] + (["--out", str(out)] if command == "run" else [])
  result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
  assert path in result.stderr
  assert not out.exists()


def _schema_models(annotation, found) -> set:
  """Every pydantic model an annotation reaches (through Optional, Union, tuple, dict, Annotated)."""
  if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
    if annotation not in found:
      found.add(annotation)
      for field in annotation.model_fields.values():
        _schema_models(field.annotation, found)
  for argument in typing.get_args(annotation):
    _schema_models(argument, found)
  return found


def test_every_schema_model_refuses_nan_and_infinity():
  """One setting (allow_inf_nan=False) on every model of the schema, so a float field added later is finite too."""
  roots = [spec.TrialSpec, spec.RuntimeSpec, spec.ObjectiveSpec, *data_registry.schemas(), tasks_data.TaskEntry]
  roots += [objectives.get(name).options for name in objectives.names()]
  models = set()
  for root in roots:
    _schema_models(root, models)
  assert len(models) > 15
  lax = sorted(m.__name__ for m in models if m.model_config.get("allow_inf_nan", True))
  assert not lax, f"schema models that let NaN or infinity through: {lax}"


@pytest.mark.parametrize("out", ["", "  "])
def test_an_empty_out_is_refused_before_anything_is_written(tmp_path, out):
  path = os.path.join(ROOT, "tests", "malformed", "negative_lr.yaml")
  result = subprocess.run([sys.executable, "-m", "sweeps", "run", path, "--out", out], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
  assert result.returncode == 2
  assert result.stderr == "error: argument --out: an empty path; give the output root (default: runs)\n"
  assert os.listdir(tmp_path) == []
