"""Batches for one trial. A batch is a pure function of (seed, step): resuming needs no iterator state.

A batch is a dict of numpy arrays whose layout the data source declares (its
`features`): `{"tokens": int32 [B, L+1]}` for language, `{"image": uint8
[B, H, W, C], "label": int32 [B]}` for labelled images. Sources live in a
registry by kind (scaling/data/registry.py); sources that know their own
entropy report the Bayes-optimal loss so the analysis can compare the fitted
floor E with the truth.
"""
import numpy as np

from scaling.data import registry

_EVAL_STREAM = 1 << 40  # Keeps eval draws disjoint from the train draws of any step.
_PROBE_STREAM = 1 << 41  # Training examples for evaluators that fit on frozen features (linear probe).


class Batches:
  """Train and eval batches for one trial from a data config (a dict from the sweep YAML)."""

  def __init__(self, data_cfg: dict, seq_len: int, batch_size: int, seed: int):
    schema = registry.parse(data_cfg)
    self.source = schema.open(seq_len)
    self.info = self.source.info
    self.unique = None  # With `unique_tokens`: the fixed training windows, repeated epoch after epoch.
    if getattr(schema, "unique_tokens", None) is not None:
      self.unique = unique_set(self.source, schema.unique_tokens, seq_len, batch_size)
      # A finite training set now: `horizon.epochs` counts passes over these windows.
      self.info = {**self.info, "unique_tokens": int(self.unique.size), "train_examples": len(self.unique)}
    self.features = self.source.features
    self.model_inputs = self.source.model_inputs
    self.entropy_floor = self.source.entropy_floor
    self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
    self.data_cfg = dict(data_cfg)

  def train(self, step: int, rows=None) -> dict:
    """The batch of `step`; `rows` (a slice) draws only this host's rows of it."""
    if self.unique is not None:
      return {"tokens": self.unique[epoch_order(len(self.unique), self.seed, step, self.batch_size, rows)]}
    return self.source.draw(np.random.default_rng((self.seed, step)), self.batch_size, "train", rows)

  def shapes(self) -> dict:
    """{feature: (global batch shape, dtype)}."""
    return {name: ((self.batch_size,) + tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in self.features.items()}

  def eval(self, n_batches: int) -> list:
    """A fixed held-out set: the same for every trial on this data, whatever its seed.

    Finite datasets give their first n_batches * batch_size held-out examples (fewer
    batches if the split is smaller); streams draw from a stream no training step uses.
    """
    fixed = self.source.fixed_eval(n_batches * self.batch_size)
    if fixed is None:
      return [self.source.draw(np.random.default_rng((_EVAL_STREAM, i)), self.batch_size, "eval")
              for i in range(n_batches)]
    n_full = len(next(iter(fixed.values()))) // self.batch_size
    return [{k: v[i * self.batch_size:(i + 1) * self.batch_size] for k, v in fixed.items()} for i in range(n_full)]

  def probe_train(self, n_examples: int) -> dict:  # (never from the unique set: evaluators are not training)
    """Training-split examples for evaluators that fit on frozen features; the same for every seed."""
    return self.source.draw(np.random.default_rng((_PROBE_STREAM, 0)), n_examples, "train")

  def eval_set_floor(self, eval_batches: list):
    """The Bayes-optimal loss on exactly these eval batches (synthetic data), else None.

    The population floor `entropy_floor` is what the fit's E estimates; this one
    tells how far the finite eval set's own sampling noise moves it.
    """
    return self.source.eval_set_floor(eval_batches)


def train_steps(trials: list, first: int, n: int, rows=None) -> dict:
  """The batches of steps first .. first + n - 1 of each trial: {feature: [n, len(trials), batch rows, ...]}.

  The trials share shapes (a pack). Trials on the same stream (data config, window, batch) draw all their
  steps in one pass (Source.draw_each), the same windows as one draw per step and trial; `rows` (a slice)
  keeps this host's rows of each batch.
  """
  head = trials[0]
  steps = range(first, first + n)
  if head.unique is None and all((b.data_cfg, b.seq_len, b.batch_size) == (head.data_cfg, head.seq_len,
                                                                           head.batch_size) for b in trials):
    rngs = [np.random.default_rng((b.seed, step)) for step in steps for b in trials]
    draws = head.source.draw_each(rngs, head.batch_size, "train")
    if rows is not None:
      draws = [{k: v[rows] for k, v in d.items()} for d in draws]
  else:
    draws = [b.train(step, rows) for step in steps for b in trials]
  return {k: np.stack([d[k] for d in draws]).reshape(n, len(trials), *draws[0][k].shape) for k in draws[0]}


def unique_set(source, unique_tokens: int, seq_len: int, batch_size: int) -> np.ndarray:
  """The fixed training set of a data-constrained trial: unique_tokens // (seq_len + 1) windows."""
  n = unique_tokens // (seq_len + 1)
  if n < batch_size:
    raise registry.DataError("unique_tokens", f"{unique_tokens} unique tokens make {n} windows of seq_len + 1 = "
                             f"{seq_len + 1}, fewer than one batch of {batch_size}; need at least "
                             f"{batch_size * (seq_len + 1)}")
  return np.asarray(source.unique_windows(n, seq_len + 1), np.int32)


def epoch_order(n: int, seed: int, step: int, batch_size: int, rows=None) -> np.ndarray:
  """Which of the n unique windows the rows of `step`'s batch are: each epoch is a fresh permutation of all n.

  Example i = step * batch_size + row is window perm_e[i % n] of epoch e = i // n, so D tokens trained
  are exactly D / unique_tokens epochs, and every window is seen once per epoch.
  """
  index = step * batch_size + np.arange(batch_size)
  if rows is not None:
    index = index[rows]
  epochs = index // n
  out = np.empty_like(index)
  for epoch in np.unique(epochs):
    order = np.random.default_rng((seed, registry.UNIQUE_STREAM, int(epoch))).permutation(n)
    at = epochs == epoch
    out[at] = order[index[at] % n]
  return out
