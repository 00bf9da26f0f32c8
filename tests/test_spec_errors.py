"""Every malformed sweep file gets one line naming the file and the key or line; the CLI exits 2."""
import glob
import os
import subprocess
import sys

import pytest

from sweeps import expand
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
