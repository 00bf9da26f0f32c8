"""The text-file source on tiny Shakespeare (../shared/data), and the shipped sweep files."""
import glob
import os

import numpy as np
import pytest

from scaling.data import Batches
from sweeps import expand
from tests.conftest import ROOT, SHARED_DATA

SHAKESPEARE = os.path.join(SHARED_DATA, "tiny_shakespeare", "input.txt")


@pytest.mark.skipif(not os.path.exists(SHAKESPEARE), reason="../shared/data is not beside the checkout")
def test_tiny_shakespeare_by_path():
  data = Batches({"kind": "text", "path": SHAKESPEARE, "eval_fraction": 0.1}, seq_len=32, batch_size=4, seed=0)
  text = data.source.text
  assert data.model_inputs == {"vocab_size": 65, "seq_len": 32} and data.info["sha256"].startswith("86c4e6aa")
  assert len(text.train_tokens) + len(text.eval_tokens) == 1_115_394
  batch = data.train(step=3)["tokens"]
  assert batch.shape == (4, 33) and batch.dtype == np.int32
  np.testing.assert_array_equal(batch, data.train(step=3)["tokens"])  # a pure function of (seed, step)
  decoded = "".join(text.alphabet[i] for i in batch[0])
  assert decoded in open(SHAKESPEARE).read()[: len(text.train_tokens)]
  assert data.entropy_floor is None
  # A host of a multi-host job reads only its rows of the global batch, and they are the same rows.
  np.testing.assert_array_equal(data.train(step=3, rows=slice(1, 3))["tokens"], batch[1:3])
  # Eval windows come from the held-out tail only.
  held_out = open(SHAKESPEARE).read()[len(text.train_tokens):]
  assert "".join(text.alphabet[i] for i in data.eval(1)[0]["tokens"][0]) in held_out


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "sweeps", "configs", "*.yaml"))))
def test_shipped_sweeps_validate_and_document_themselves(path, monkeypatch):
  monkeypatch.chdir(ROOT)  # configs name data relative to the repository root
  if "../shared/data" in open(path).read() and not os.path.isdir(SHARED_DATA):
    pytest.skip("../shared/data is not beside the checkout")
  sweep = expand.load(os.path.relpath(path, ROOT))
  assert sweep.trials
  header = open(path).read().split("\nname:")[0]
  assert "python -m sweeps run" in header and "Expected" in header and "Runtime" in header, \
      f"{path} must open with a comment block: what, command, runtime, expected result"
  for line in header.splitlines():  # each with a figure, not a placeholder
    if line.startswith(("# Runtime", "# Expected")):
      assert any(c.isdigit() for c in line) or line.rstrip().endswith(":"), f"{path}: {line}"
