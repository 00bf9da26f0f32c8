"""Character-level text from a file named by path (e.g. tiny Shakespeare).

The vocabulary is the sorted set of characters in the file; the last
`eval_fraction` of the characters is held out, as nanoGPT's shakespeare_char.
"""
import hashlib
import pathlib

import numpy as np


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

  def windows(self, rng: np.random.Generator, n_sequences: int, length: int, split: str, rows=None) -> np.ndarray:
    tokens = self.train_tokens if split == "train" else self.eval_tokens
    return random_windows(tokens, rng, n_sequences, length, f"{self.path}: {split} split", rows)

  def describe(self) -> dict:
    return {"kind": "text", "path": self.path, "sha256": self.sha256, "vocab_size": self.vocab_size,
            "train_chars": len(self.train_tokens), "eval_chars": len(self.eval_tokens)}
