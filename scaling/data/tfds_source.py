"""Token sequences from a TFDS dataset named by name (and data_dir), read without TensorFlow: the `tfds` kind.

Reads ArrayRecord datasets through `tfds.data_source` (random access, no
tf.data), so any TFDS dataset prepared with `file_format="array_record"` whose
examples hold a 1-D integer feature works offline: the records of a split are
concatenated into one stream and windows are drawn from it like from a text
file. `scaling/data/tfds_text.py` prepares such a dataset from a text file.
"""
from typing import Literal, Optional

import numpy as np
import pydantic

from scaling.data import registry
from scaling.data.text import WindowSource


def find_builder(name: str, data_dir, splits: tuple):
  """The TFDS builder of a prepared dataset, or DataError naming what is missing (no download)."""
  import tensorflow_datasets as tfds  # Imported here: only TFDS data pays for it.
  from absl import logging
  tfds.disable_progress_bar()
  logging.set_verbosity(logging.ERROR)  # TFDS warns about folders it probes; our errors say what is missing.
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    available = builder.info.splits
  except Exception as e:  # TFDS raises many types for "not found here"
    raise registry.DataError("name", f"TFDS dataset {name!r} not found in {data_dir or 'the default data_dir'}: "
                             f"{str(e).splitlines()[0]}") from None
  for split in splits:
    if split not in available:
      raise registry.DataError("split", f"TFDS dataset {name!r} has no split {split!r}; it has {sorted(available)}")
  return builder


class TfdsNamed(registry.DataSchema):
  """What names a TFDS dataset: its name, where it is, and its train and eval splits."""
  name: str
  data_dir: Optional[str] = None  # default: TFDS's own (~/tensorflow_datasets)
  split: str = "train"
  eval_split: str = "test"


@registry.register
class TfdsData(TfdsNamed, registry.TokenData):
  """A TFDS dataset (ArrayRecord files) named by name, with a 1-D integer feature; read without TensorFlow."""
  kind: Literal["tfds"]
  feature: str = "tokens"
  vocab_size: Optional[int] = pydantic.Field(None, ge=2, le=1 << 24)  # default: the dataset's metadata, else max id + 1

  def model_inputs(self, seq_len: int) -> dict:
    """Checks what the dataset's info tells cheaply: splits with examples, a declared vocab_size that
    covers the stored one. Stream lengths and token ids are checked at open()."""
    builder = find_builder(self.name, self.data_dir, (self.split, self.eval_split))
    for key, split in (("split", self.split), ("eval_split", self.eval_split)):
      if builder.info.splits[split].num_examples == 0:
        raise registry.DataError(key, f"TFDS dataset {self.name!r} split {split!r} has no examples; need over "
                                 f"{seq_len + 1} tokens for one window of seq_len + 1")
    stored = (builder.info.metadata or {}).get("vocab_size") if builder.info.metadata is not None else None
    if self.vocab_size is not None and stored is not None and self.vocab_size < int(stored):
      raise registry.DataError("vocab_size", f"{self.vocab_size} is smaller than the vocab_size {stored} stored "
                               f"with TFDS dataset {self.name!r}; token ids must be < vocab_size")
    if self.unique_tokens is not None:  # Needs the train stream's length: read it, as open() does.
      train_tokens = self.open(seq_len).info["train_tokens"]
      if self.unique_tokens > train_tokens:
        raise registry.DataError("unique_tokens", f"{self.unique_tokens} unique tokens, but split {self.split!r} "
                                 f"of TFDS dataset {self.name!r} has {train_tokens} tokens; at most that many")
    return {"vocab_size": self.vocab_size or stored, "seq_len": seq_len}

  def open(self, seq_len: int):
    import tensorflow_datasets as tfds
    builder = find_builder(self.name, self.data_dir, (self.split, self.eval_split))
    streams = {}
    for role, key, split_name in (("train", "split", self.split), ("eval", "eval_split", self.eval_split)):
      source = tfds.data_source(self.name, data_dir=self.data_dir, split=split_name, download=False)
      records = source.__getitems__(list(range(len(source))))
      arrays = []
      for r in records:
        if self.feature not in r:
          raise registry.DataError("feature", f"TFDS dataset {self.name!r} has no feature {self.feature!r}; "
                                   f"it has {sorted(r)}")
        array = np.asarray(r[self.feature])
        if not np.issubdtype(array.dtype, np.integer):
          raise registry.DataError("feature", f"feature {self.feature!r} of TFDS dataset {self.name!r} holds "
                                   f"{array.dtype}, not integer token ids")
        arrays.append(array.astype(np.int64).ravel())
      stream = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
      if len(stream) <= seq_len + 1:  # random_windows needs more than one window's length
        raise registry.DataError(key, f"TFDS dataset {self.name!r} split {split_name!r} has {len(stream)} tokens: "
                                 f"too few for one window of seq_len + 1 = {seq_len + 1}; need over {seq_len + 1}")
      streams[role] = stream
    metadata = builder.info.metadata or {}
    lowest = min(int(s.min()) for s in streams.values())
    highest = max(int(s.max()) for s in streams.values())
    vocab_size = int(self.vocab_size or metadata.get("vocab_size") or highest + 1)
    if lowest < 0 or highest >= vocab_size:
      declared = "declared" if self.vocab_size else "stored"
      raise registry.DataError("vocab_size" if self.vocab_size else "name",
                               f"TFDS dataset {self.name!r} holds token ids in [{lowest}, {highest}], outside "
                               f"[0, {vocab_size}) of its {declared} vocab_size {vocab_size}; need ids < vocab_size")
    streams = {role: s.astype(np.int32) for role, s in streams.items()}
    info = {"kind": "tfds", "name": self.name, "version": str(builder.info.version), "data_dir": self.data_dir,
            "feature": self.feature, "train_tokens": int(len(streams["train"])),
            "eval_tokens": int(len(streams["eval"]))}
    source = WindowSource(streams["train"], streams["eval"], vocab_size, seq_len, f"tfds {self.name}", info)
    source.alphabet = metadata.get("alphabet")
    return source
