"""Data sources. A batch is a pure function of (seed, step): resuming needs no iterator state.

Every source gives int32 windows [batch, seq_len + 1]; inputs are [:, :-1] and
targets [:, 1:]. Sources that know their own entropy report the Bayes-optimal
loss so the analysis can compare the fitted floor E with the truth.
"""
import numpy as np

from scaling.data.markov import MarkovLanguage, MarkovSpec
from scaling.data.text import TextFile

_EVAL_STREAM = 1 << 40  # Keeps eval draws disjoint from the train draws of any step.


class Batches:
  """Train and eval batches for one trial from a data config (a dict from the sweep YAML)."""

  def __init__(self, data_cfg: dict, seq_len: int, batch_size: int, seed: int):
    kind = data_cfg["kind"]
    options = {k: v for k, v in data_cfg.items() if k != "kind"}
    if kind == "markov":
      if "mix" in options:
        options["mix"] = tuple(options["mix"])
      self.language = MarkovLanguage(MarkovSpec(**options))
      # Sampling is sequential per row, so a host samples the whole batch and keeps its rows.
      self._draw = lambda rng, n, split, rows=None: self.language.sample(rng, n, seq_len + 1)[
          slice(None) if rows is None else rows]
      self.entropy_floor = self.language.optimal_loss(seq_len)
      self.info = self.language.describe()
      self._eval_set_floor = lambda windows: float(np.mean([self.language.score(w).mean() for w in windows]))
    elif kind in ("text", "tfds"):
      from scaling.data.tfds_source import TfdsTokens
      self.text = TextFile(**options) if kind == "text" else TfdsTokens(**options)
      self._draw = lambda rng, n, split, rows=None: self.text.windows(rng, n, seq_len + 1, split, rows)
      self.entropy_floor = None
      self._eval_set_floor = lambda windows: None
      self.info = self.text.describe()
    else:
      raise ValueError(f"unknown data kind {kind!r}")
    self.vocab_size = self.info["vocab_size"]
    self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed

  def train(self, step: int, rows=None) -> np.ndarray:
    """The batch of `step`; `rows` (a slice) draws only this host's rows of it."""
    return self._draw(np.random.default_rng((self.seed, step)), self.batch_size, "train", rows)

  def eval_set_floor(self, eval_windows: list):
    """The Bayes-optimal loss on exactly these eval windows (synthetic data), else None.

    The population floor `entropy_floor` is what the fit's E estimates; this one
    tells how far the finite eval set's own sampling noise moves it.
    """
    return self._eval_set_floor(eval_windows)

  def eval(self, n_batches: int) -> list:
    """A fixed held-out set: the same for every trial on this data, whatever its seed."""
    return [self._draw(np.random.default_rng((_EVAL_STREAM, i)), self.batch_size, "eval")
            for i in range(n_batches)]
