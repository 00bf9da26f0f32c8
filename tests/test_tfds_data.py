"""A TFDS dataset prepared from a text file (ArrayRecord, no TensorFlow), named by TFDS name in a sweep."""
import os
import subprocess
import sys

import pytest

from scaling import metrics as metrics_lib
from scaling.data.tfds_text import prepare
from sweeps import expand
from sweeps.spec import SpecError
from tests.conftest import ROOT, write

TEXT = "the quick brown fox jumps over the lazy dog. " * 400

SWEEP = """\
name: tfds_micro
model: {{family: gpt, size: 1, options: {{aspect_ratio: 32, head_dim: 8}}}}
data: {{kind: tfds, name: {name}, data_dir: {data_dir}{extra}}}
train: {{seq_len: 16, batch_size: 8, horizon: {{tokens: 12800}}, eval_every: 50, eval_batches: 2}}
runtime: {{tensorboard: false}}
optimizer: {{lr: 1e-2, warmup_steps: 5}}
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("tfds")
  text = root / "fox.txt"
  text.write_text(TEXT)
  data_dir = str(root / "data")
  prepare(str(text), data_dir, name="fox_chars", chunk_chars=256)
  return data_dir


def test_train_on_a_tfds_dataset_by_name(dataset, tmp_path):
  path = write(tmp_path, "s.yaml", SWEEP.format(name="fox_chars", data_dir=dataset, extra=""))
  out = tmp_path / "runs"
  result = subprocess.run([sys.executable, "-m", "sweeps", "run", path, "--out", str(out), "--no-progress",
                           "--no-analysis"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  [trial] = expand.load(path).trials
  summary = metrics_lib.read_json(os.path.join(out, "tfds_micro", trial.id, "summary.json"))
  assert summary["data"]["kind"] == "tfds" and summary["data"]["vocab_size"] == len(set(TEXT))
  assert summary["data"]["train_tokens"] + summary["data"]["eval_tokens"] == len(TEXT)
  evals = [r["eval_loss"] for r in metrics_lib.read_metrics(os.path.join(out, "tfds_micro", trial.id, "metrics.jsonl"))
           if "eval_loss" in r]
  # A repeated sentence is learnable: far below the uniform loss log(vocab) ~ 3.3 nats.
  assert evals[-1] < 0.5 and evals == sorted(evals, reverse=True)


def test_unknown_tfds_name_or_split_is_a_one_line_error(dataset, tmp_path):
  with pytest.raises(SpecError, match=r"data\.name: TFDS dataset 'no_such_set' not found"):
    expand.load(write(tmp_path, "a.yaml", SWEEP.format(name="no_such_set", data_dir=dataset, extra="")))
  with pytest.raises(SpecError, match=r"data\.split: TFDS dataset 'fox_chars' has no split 'validation'"):
    expand.load(write(tmp_path, "b.yaml", SWEEP.format(name="fox_chars", data_dir=dataset,
                                                       extra=", split: validation")))


def test_more_unique_tokens_than_the_tfds_train_split_is_one_line(dataset, tmp_path):
  with pytest.raises(SpecError, match=r"c.yaml:3: data\.unique_tokens: 90000 unique tokens, but split 'train' of "
                                      r"TFDS dataset 'fox_chars' has \d+ tokens"):
    expand.load(write(tmp_path, "c.yaml", SWEEP.format(name="fox_chars", data_dir=dataset,
                                                       extra=", unique_tokens: 90000")))
  assert len(expand.load(write(tmp_path, "d.yaml", SWEEP.format(
      name="fox_chars", data_dir=dataset, extra=", unique_tokens: 1700"))).trials) == 1
