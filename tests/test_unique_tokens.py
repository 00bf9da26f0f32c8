"""data.unique_tokens: a fixed set of training tokens repeated epoch after epoch (data-constrained scaling)."""
import os

import numpy as np
import pytest

from scaling.data import Batches, epoch_order
from sweeps import expand
from sweeps.spec import SpecError
from tests.conftest import ROOT, write

MARKOV = {"kind": "markov", "vocab_size": 16, "order": 2, "mix": [0.2, 0.3, 0.5]}


def test_each_epoch_sees_every_window_once_and_hosts_see_their_rows():
  n, batch = 30, 8
  seen = np.concatenate([epoch_order(n, 0, step, batch) for step in range(15)])  # 120 examples: 4 epochs
  for epoch in range(4):
    assert sorted(seen[epoch * n:(epoch + 1) * n]) == list(range(n))
  assert not np.array_equal(seen[:n], seen[n:2 * n])  # a fresh order each epoch
  full = epoch_order(n, 0, 3, batch)  # this batch spans the end of epoch 0 and the start of epoch 1
  assert np.array_equal(np.concatenate([epoch_order(n, 0, 3, batch, slice(0, 4)),
                                        epoch_order(n, 0, 3, batch, slice(4, 8))]), full)


def test_markov_trains_only_on_its_unique_windows_and_evaluates_on_others():
  data = Batches({**MARKOV, "unique_tokens": 17 * 40}, seq_len=16, batch_size=8, seed=0)
  assert data.info["unique_tokens"] == 17 * 40 and data.unique.shape == (40, 17)
  unique = {row.tobytes() for row in data.unique}
  trained = {row.tobytes() for step in range(20) for row in data.train(step)["tokens"]}
  assert trained == unique  # 160 examples: 4 epochs over all 40 windows
  assert not unique & {row.tobytes() for b in data.eval(4) for row in b["tokens"]}


def test_text_uses_the_first_unique_tokens_of_its_train_split(tmp_path):
  path = write(tmp_path, "corpus.txt", "".join(chr(97 + i % 26) for i in range(2000)))
  data = Batches({"kind": "text", "path": path, "unique_tokens": 170}, seq_len=16, batch_size=4, seed=0)
  assert data.unique.shape == (10, 17) and np.array_equal(data.unique.ravel(), data.source.train_tokens[:170])


def test_more_unique_tokens_than_the_text_has_is_one_line(tmp_path):
  path = write(tmp_path, "corpus.txt", "abcdefghij" * 100)
  sweep = write(tmp_path, "s.yaml", f"""\
name: s
model: {{family: gpt, size: 1, options: {{aspect_ratio: 16, head_dim: 8}}}}
data: {{kind: text, path: {path}, unique_tokens: 5000}}
train: {{seq_len: 16, batch_size: 4, horizon: {{tokens: 4096}}}}
""")
  with pytest.raises(SpecError, match=r"s.yaml:3: data.unique_tokens: 5000 unique tokens, but the train split of "
                                      r".* has 900 characters"):
    expand.load(sweep)


def test_unique_tokens_unset_keeps_every_trial_id(tmp_path):
  plain = write(tmp_path, "a.yaml", "name: a\nmodel: {family: gpt, size: 1}\ndata: {kind: markov}\n"
                                    "train: {horizon: {tokens: 4096}}\n")
  spelled = write(tmp_path, "b.yaml", "name: a\nmodel: {family: gpt, size: 1}\ndata: {kind: markov, unique_tokens: null}\n"
                                      "train: {horizon: {tokens: 4096}}\n")
  assert expand.load(plain).trials[0].id == expand.load(spelled).trials[0].id
  # A key added later must not move the ids of trials already run: the quickstart's first rung keeps its id.
  assert expand.load(os.path.join(ROOT, "sweeps", "configs", "quickstart.yaml")).trials[0].id == "277058e5d031"


def test_horizon_epochs_counts_passes_over_the_unique_windows(tmp_path):
  from scaling.train import setup
  sweep = write(tmp_path, "s.yaml", """\
name: s
model: {family: gpt, size: 1, options: {aspect_ratio: 8, head_dim: 4}}
data: {kind: markov, vocab_size: 12, unique_tokens: [2640, 5280]}
train: {seq_len: 32, batch_size: 8, horizon: {epochs: [1, 2.5]}}
""")
  steps = {(t.config()["data"]["unique_tokens"], t.config()["train"]["horizon"]["epochs"]): setup(t.config()).steps
           for t in expand.load(sweep).trials}
  assert steps == {(2640, 1): 10, (2640, 2.5): 25, (5280, 1): 20, (5280, 2.5): 50}  # 80 / 160 windows, batch 8
  stream = write(tmp_path, "t.yaml", "name: t\nmodel: {family: gpt, size: 1}\ndata: {kind: markov}\n"
                                     "train: {horizon: {epochs: 2}}\n")
  with pytest.raises(SpecError, match=r"t.yaml:4: train.horizon.epochs: .* or set data.unique_tokens"):
    expand.load(stream)
