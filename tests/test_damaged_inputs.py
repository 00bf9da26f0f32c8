"""The input contract: damaged input gives one clear line naming the file and key (exit 2), and a damaged
metrics file loses no good row."""
import glob
import json
import os
import subprocess
import sys

import pytest

from scaling import metrics as metrics_lib
from scaling.data import registry
from scaling.data.text import TextData
from tests.conftest import ROOT, write

SEQ_LEN = 16
SWEEP = """\
name: s
model: {{family: gpt, size: 1, options: {{aspect_ratio: 16, head_dim: 8}}}}
data: {{kind: text, path: {path}}}
train: {{seq_len: %d, batch_size: 4, horizon: {{tokens: 4096}}}}
""" % SEQ_LEN
GOOD = "To be, or not to be, that is the question.\n" * 20


def _bad_path(tmp_path, case):
  """The path of a text corpus damaged as `case` says, and what the error must say."""
  f = tmp_path / "corpus.txt"
  if case == "too_short":
    f.write_text("abcdefghij")  # train split 9 characters, a window needs 17 (and one more)
    return str(f), "train split"
  if case == "eval_too_short":
    f.write_text(("ab" * 50))  # 100 characters: train 90, eval 10
    return str(f), "eval split"
  if case == "empty":
    f.write_bytes(b"")
    return str(f), "is empty"
  if case == "not_utf8":
    f.write_bytes(GOOD.encode("latin-1") + "caf\xe9".encode("latin-1") + GOOD.encode())
    return str(f), "not UTF-8"
  if case == "nul_bytes":
    f.write_bytes(GOOD.encode() + b"\0" * 64 + GOOD.encode())
    return str(f), "binary"
  if case == "non_printable":
    f.write_bytes(bytes(range(1, 32)) * 20 + b"some text")
    return str(f), "binary"
  if case == "one_character":
    f.write_text("a" * 1000)
    return str(f), "single distinct character"
  if case == "directory":
    (tmp_path / "corpus_dir").mkdir()
    return str(tmp_path / "corpus_dir"), "is a directory"
  if case == "fifo":
    os.mkfifo(tmp_path / "corpus.fifo")
    return str(tmp_path / "corpus.fifo"), "not a regular file"
  if case == "device":
    return "/dev/zero", "not a regular file"
  raise AssertionError(case)


CASES = ["too_short", "eval_too_short", "empty", "not_utf8", "nul_bytes", "non_printable", "one_character",
         "directory", "fifo", "device"]


@pytest.mark.parametrize("case", CASES)
def test_unusable_text_file_fails_validate_in_one_line(tmp_path, case):
  data_path, expected = _bad_path(tmp_path, case)
  sweep = write(tmp_path, "s.yaml", SWEEP.format(path=data_path))
  result = subprocess.run([sys.executable, "-m", "sweeps", "validate", sweep], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
  assert result.returncode == 2, (result.returncode, result.stderr)
  assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
  assert f"{sweep}:3: data.path: " in result.stderr and expected in result.stderr, result.stderr


@pytest.mark.parametrize("case", ["too_short", "eval_too_short", "not_utf8", "one_character", "fifo", "device"])
def test_open_refuses_what_model_inputs_refuses(tmp_path, case):
  data_path, expected = _bad_path(tmp_path, case)
  with pytest.raises(registry.DataError, match=expected) as error:
    TextData(kind="text", path=data_path).open(SEQ_LEN)
  assert error.value.key == "path" and "\n" not in str(error.value)


def test_good_text_file_still_opens(tmp_path):
  path = write(tmp_path, "good.txt", GOOD)
  data = TextData(kind="text", path=path)
  assert data.model_inputs(SEQ_LEN) == {"vocab_size": len(set(GOOD)), "seq_len": SEQ_LEN}
  source = data.open(SEQ_LEN)
  alphabet = sorted(set(GOOD))
  assert "".join(alphabet[i] for i in source.train_tokens[:10]) == GOOD[:10]


def _rows(*steps):
  return [json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in steps]


DAMAGED = ("".join(_rows(1, 2, 3)) + '{"step": 4, "lo\n'  # torn, then written past
           + "".join(_rows(5, 6)) + "[1, 2]\n" + '{"loss": 1.0}\n' + '{"step": "7"}\n' + "\n"
           + "".join(_rows(8))).encode() + b'{"step": 9, "note": "\xff"}\n' + "".join(_rows(10, 11)).encode()


def test_damaged_middle_lines_are_skipped_not_a_stop(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_bytes(DAMAGED + b'{"step": 12, "lo')  # and a torn final line
  assert [r["step"] for r in metrics_lib.read_metrics(str(path))] == [1, 2, 3, 5, 6, 8, 10, 11]


def test_truncate_keeps_every_good_row_and_a_copy_of_the_damaged_file(tmp_path):
  path = tmp_path / "metrics.jsonl"
  original = DAMAGED + b'{"step": 12, "lo'
  path.write_bytes(original)
  skipped = metrics_lib.truncate_metrics(str(path), 10)
  assert skipped == 6  # six damaged whole lines; the torn last one is an ordinary crash trace
  assert [r["step"] for r in metrics_lib.read_metrics(str(path))] == [1, 2, 3, 5, 6, 8, 10]
  [copy] = glob.glob(str(path) + ".damaged-*")
  with open(copy, "rb") as f:
    assert f.read() == original
  # The file is clean now: truncating again drops nothing and copies nothing.
  assert metrics_lib.truncate_metrics(str(path), 10) == 0
  assert len(glob.glob(str(path) + ".damaged-*")) == 1


def test_a_torn_last_line_alone_is_dropped_without_a_copy(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text("".join(_rows(1, 2, 3)) + '{"step": 4, "lo')
  assert metrics_lib.truncate_metrics(str(path), 3) == 0
  assert [r["step"] for r in metrics_lib.read_metrics(str(path))] == [1, 2, 3]
  assert not glob.glob(str(path) + ".damaged-*")


def test_truncate_of_a_clean_file_copies_nothing(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text("".join(_rows(*range(1, 300))))
  assert metrics_lib.truncate_metrics(str(path), 275) == 0
  assert [r["step"] for r in metrics_lib.read_metrics(str(path))] == list(range(1, 276))
  assert not glob.glob(str(path) + ".damaged-*")
  assert metrics_lib.truncate_metrics(str(tmp_path / "none.jsonl"), 5) == 0


def test_metrics_file_not_utf8_at_all(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_bytes(b"\xff\xfe\x00garbage\n" + "".join(_rows(1, 2)).encode())
  assert [r["step"] for r in metrics_lib.read_metrics(str(path))] == [1, 2]
  assert metrics_lib.truncate_metrics(str(path), 5) == 1
  assert [r["step"] for r in metrics_lib.read_metrics(str(path))] == [1, 2]


@pytest.fixture(scope="module")
def fox_tfds(tmp_path_factory):
  from scaling.data.tfds_text import prepare
  root = tmp_path_factory.mktemp("tfds")
  (root / "fox.txt").write_text("the quick brown fox jumps over the lazy dog. " * 40)  # 1800 characters
  data_dir = str(root / "data")
  prepare(str(root / "fox.txt"), data_dir, name="fox_short", chunk_chars=256)
  return data_dir


def test_tfds_stream_shorter_than_a_window_or_ids_past_vocab_size(fox_tfds):
  from scaling.data.tfds_source import TfdsData
  data = TfdsData(kind="tfds", name="fox_short", data_dir=fox_tfds)
  with pytest.raises(registry.DataError, match="180 tokens: too few for one window") as error:
    data.open(512)  # the eval split is 180 tokens
  assert error.value.key == "eval_split"
  small = TfdsData(kind="tfds", name="fox_short", data_dir=fox_tfds, vocab_size=5)
  with pytest.raises(registry.DataError, match="smaller than the vocab_size") as error:
    small.model_inputs(16)
  assert error.value.key == "vocab_size"
  with pytest.raises(registry.DataError, match=r"outside \[0, 5\)") as error:
    small.open(16)
  assert error.value.key == "vocab_size"
