"""Token sequences from a TFDS dataset named by name (and data_dir), read without TensorFlow.

Reads ArrayRecord datasets through `tfds.data_source` (random access, no
tf.data), so any TFDS dataset prepared with `file_format="array_record"` whose
examples hold a 1-D integer feature works offline: the records of a split are
concatenated into one stream and windows are drawn from it like from a text
file. `scaling/data/tfds_text.py` prepares such a dataset from a text file.
"""
import numpy as np

from scaling.data.text import random_windows


class TfdsTokens:

  def __init__(self, name: str, data_dir=None, split: str = "train", eval_split: str = "test",
               feature: str = "tokens", vocab_size=None):
    import tensorflow_datasets as tfds  # Imported here: only trials on TFDS data pay for it.
    tfds.disable_progress_bar()
    self.name, self.data_dir, self.feature = name, data_dir, feature
    builder = tfds.builder(name, data_dir=data_dir)
    self.streams = {}
    for role, split_name in (("train", split), ("eval", eval_split)):
      source = tfds.data_source(name, data_dir=data_dir, split=split_name, download=False)
      records = source.__getitems__(list(range(len(source))))
      self.streams[role] = np.concatenate([np.asarray(r[feature], dtype=np.int32).ravel() for r in records])
    stored = (builder.info.metadata or {}).get("vocab_size") if builder.info.metadata is not None else None
    self.vocab_size = int(vocab_size or stored or max(s.max() for s in self.streams.values()) + 1)
    self.alphabet = (builder.info.metadata or {}).get("alphabet") if builder.info.metadata is not None else None
    self.version = str(builder.info.version)

  def windows(self, rng: np.random.Generator, n_sequences: int, length: int, split: str, rows=None) -> np.ndarray:
    tokens = self.streams["train" if split == "train" else "eval"]
    return random_windows(tokens, rng, n_sequences, length, f"tfds {self.name}: {split} split", rows)

  def describe(self) -> dict:
    return {"kind": "tfds", "name": self.name, "version": self.version, "data_dir": self.data_dir,
            "feature": self.feature, "vocab_size": self.vocab_size,
            "train_tokens": int(len(self.streams["train"])), "eval_tokens": int(len(self.streams["eval"]))}
