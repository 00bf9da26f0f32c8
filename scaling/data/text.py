"""Character-level text from a file named by path (e.g. tiny Shakespeare): the `text` data kind.

The vocabulary is the sorted set of characters in the file; the last
`eval_fraction` of the characters is held out, as nanoGPT's shakespeare_char.
"""
import hashlib
import os
import pathlib
from typing import Literal

import numpy as np
import pydantic

from scaling.data import registry


def random_windows(tokens: np.ndarray, rng: np.random.Generator, n_sequences: int, length: int,
                   what: str, rows=None) -> np.ndarray:
  """[n_sequences, length] windows of a token stream at uniformly random offsets.

  rows (a slice) reads only those windows: a host of a multi-host job loads only its shard.
  """
  if len(tokens) <= length:
    raise ValueError(f"{what} has {len(tokens)} tokens, fewer than a window of {length}")
  starts = rng.integers(0, len(tokens) - length, n_sequences)
  if rows is not None:
    starts = starts[rows]
  return tokens[starts[:, None] + np.arange(length)]


class WindowSource(registry.Source):
  """Windows of seq_len + 1 tokens from a train and an eval token stream."""

  def __init__(self, train_tokens, eval_tokens, vocab_size: int, seq_len: int, what: str, info: dict):
    self.train_tokens, self.eval_tokens, self.seq_len, self._what = train_tokens, eval_tokens, seq_len, what
    self.features = {"tokens": ((seq_len + 1,), np.int32)}
    self.model_inputs = {"vocab_size": vocab_size, "seq_len": seq_len}
    self.info = {**info, "vocab_size": vocab_size}

  def draw(self, rng, n, split, rows=None) -> dict:
    tokens = self.train_tokens if split == "train" else self.eval_tokens
    return {"tokens": random_windows(tokens, rng, n, self.seq_len + 1, f"{self._what}: {split} split", rows)}


class TextFile:

  def __init__(self, path: str, eval_fraction: float = 0.1):
    raw = pathlib.Path(path).read_bytes()
    text = raw.decode("utf-8")
    self.path = str(path)
    self.sha256 = hashlib.sha256(raw).hexdigest()
    self.alphabet = sorted(set(text))
    self.vocab_size = len(self.alphabet)
    lookup = {ch: i for i, ch in enumerate(self.alphabet)}
    tokens = np.fromiter((lookup[ch] for ch in text), dtype=np.int32, count=len(text))
    split = int(len(tokens) * (1 - eval_fraction))
    self.train_tokens, self.eval_tokens = tokens[:split], tokens[split:]

  def describe(self) -> dict:
    return {"kind": "text", "path": self.path, "sha256": self.sha256, "vocab_size": self.vocab_size,
            "train_chars": len(self.train_tokens), "eval_chars": len(self.eval_tokens)}


@registry.register
class TextData(registry.DataSchema):
  """Character-level text file named by path."""
  kind: Literal["text"]
  path: str
  eval_fraction: float = pydantic.Field(0.1, gt=0, lt=1)

  def _read(self) -> TextFile:
    if not os.path.isfile(self.path):
      raise registry.DataError("path", f"no such file: {self.path}")
    return TextFile(self.path, self.eval_fraction)

  def model_inputs(self, seq_len: int) -> dict:
    return {"vocab_size": self._read().vocab_size, "seq_len": seq_len}

  def open(self, seq_len: int):
    text = self._read()
    source = WindowSource(text.train_tokens, text.eval_tokens, text.vocab_size, seq_len, self.path,
                          text.describe())
    source.text = text
    return source
