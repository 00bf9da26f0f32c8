"""Character-level text from a file named by path (e.g. tiny Shakespeare): the `text` data kind.

The vocabulary is the sorted set of characters in the file; the last
`eval_fraction` of the characters is held out, as nanoGPT's shakespeare_char.
"""
import hashlib
import os
import stat
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

  def unique_windows(self, n: int, length: int) -> np.ndarray:
    """The first n * length tokens of the train split, as n windows: a fixed set of unique tokens."""
    if n * length > len(self.train_tokens):
      raise registry.DataError("unique_tokens", f"{n * length} unique tokens, but the train split of {self._what} "
                               f"has {len(self.train_tokens)}; at most that many")
    return self.train_tokens[:n * length].reshape(n, length)


MAX_TEXT_BYTES = 1 << 30  # A bigger corpus is refused rather than read for minutes into many GiB.
_WHITESPACE = frozenset("\n\r\t\f\v")
_MAX_CONTROL_FRACTION = 0.1  # More non-printable characters than this: a binary file, not text.


def read_text(path: str, eval_fraction: float, seq_len: int) -> tuple:
  """(raw bytes, decoded text) of a text corpus that yields at least one window in each split.

  Raises DataError("path", one line saying what is wrong and what is needed) for a missing path, a
  directory, a FIFO or device (refused before it is read: /dev/zero would never end), a file over
  MAX_TEXT_BYTES, an empty, non-UTF-8 or binary file, one distinct character (loss 0 by construction),
  or a train or eval split too short for one window of seq_len + 1 characters at a random offset.
  """
  need = f"need a UTF-8 text file with at least {seq_len + 2} characters in each of its train and eval splits"
  try:
    st = os.stat(path)
  except FileNotFoundError:
    raise registry.DataError("path", f"no such file: {path}") from None
  except OSError as e:
    raise registry.DataError("path", f"cannot read {path}: {e.strerror}") from None
  if stat.S_ISDIR(st.st_mode):
    raise registry.DataError("path", f"{path} is a directory; {need}")
  if not stat.S_ISREG(st.st_mode):
    raise registry.DataError("path", f"{path} is not a regular file (a FIFO, socket or device); {need}")
  try:  # O_NONBLOCK: should a FIFO replace the file after the stat, opening it does not wait for a writer.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
  except OSError as e:
    raise registry.DataError("path", f"cannot read {path}: {e.strerror}") from None
  with os.fdopen(fd, "rb") as f:
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
      raise registry.DataError("path", f"{path} is not a regular file (a FIFO, socket or device); {need}")
    raw = f.read(MAX_TEXT_BYTES + 1)  # Bounded even if the file grows while it is read.
  if len(raw) > MAX_TEXT_BYTES:
    raise registry.DataError("path", f"{path} is over {MAX_TEXT_BYTES} bytes, the most a text corpus "
                             "may be; need a smaller file")
  if not raw:
    raise registry.DataError("path", f"{path} is empty; {need}")
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise registry.DataError("path", f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}: "
                             f"{e.reason}); {need}") from None
  if "\0" in text:
    raise registry.DataError("path", f"{path} is a binary file (it holds NUL bytes); {need}")
  alphabet = set(text)
  control = sum(text.count(ch) for ch in alphabet if not ch.isprintable() and ch not in _WHITESPACE)
  if control > _MAX_CONTROL_FRACTION * len(text):
    raise registry.DataError("path", f"{path} is a binary file ({control} of its {len(text)} characters are not "
                             f"printable); {need}")
  if len(alphabet) < 2:
    raise registry.DataError("path", f"{path} has a single distinct character {text[0]!r} (a vocabulary of one "
                             "trains to loss 0); need a text of at least 2 distinct characters")
  train_chars = int(len(text) * (1 - eval_fraction))
  for split, chars in (("train", train_chars), ("eval", len(text) - train_chars)):
    if chars <= seq_len + 1:  # random_windows draws offsets in [0, chars - (seq_len + 1)): none if equal
      where = "the first" if split == "train" else "the last"
      share = 1 - eval_fraction if split == "train" else eval_fraction
      raise registry.DataError("path", f"{path} has {len(text)} characters, so its {split} split ({where} "
                               f"{share:g} of them) has {chars}: a window of seq_len + 1 = {seq_len + 1} at a "
                               f"random offset needs at least {seq_len + 2}"
                               + (" (a longer file or a larger eval_fraction)" if split == "eval" else ""))
  return raw, text


class TextFile:

  def __init__(self, path: str, eval_fraction: float = 0.1, seq_len: int = 0):
    raw, text = read_text(str(path), eval_fraction, seq_len)
    self.path = str(path)
    self.sha256 = hashlib.sha256(raw).hexdigest()
    self.alphabet = sorted(set(text))
    self.vocab_size = len(self.alphabet)
    # Ids by code point order (= the sorted alphabet), vectorised: a large corpus tokenises in seconds.
    codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    tokens = np.searchsorted(np.array([ord(ch) for ch in self.alphabet], np.uint32), codepoints).astype(np.int32)
    split = int(len(tokens) * (1 - eval_fraction))
    self.train_tokens, self.eval_tokens = tokens[:split], tokens[split:]

  def describe(self) -> dict:
    return {"kind": "text", "path": self.path, "sha256": self.sha256, "vocab_size": self.vocab_size,
            "train_chars": len(self.train_tokens), "eval_chars": len(self.eval_tokens)}


@registry.register
class TextData(registry.TokenData):
  """Character-level text file named by path."""
  kind: Literal["text"]
  path: str
  eval_fraction: float = pydantic.Field(0.1, gt=0, lt=1)

  def model_inputs(self, seq_len: int) -> dict:
    _, text = read_text(self.path, self.eval_fraction, seq_len)  # All checks; no tokenising.
    train_chars = int(len(text) * (1 - self.eval_fraction))
    if self.unique_tokens is not None and self.unique_tokens > train_chars:
      raise registry.DataError("unique_tokens", f"{self.unique_tokens} unique tokens, but the train split of "
                               f"{self.path} has {train_chars} characters; at most that many")
    return {"vocab_size": len(set(text)), "seq_len": seq_len}

  def open(self, seq_len: int):
    text = TextFile(self.path, self.eval_fraction, seq_len)
    source = WindowSource(text.train_tokens, text.eval_tokens, text.vocab_size, seq_len, self.path,
                          text.describe())
    source.text = text
    return source
