"""Data sources by kind. Adding a kind is adding a file: its schema, its source, one `register` call.

A kind's schema is a strict pydantic model with `kind: Literal["<name>"]`; the
sweep schema (sweeps/spec.py) takes the union of every registered schema, so a
new kind needs no edit there. A schema knows, cheaply and before anything runs:

  schema.model_inputs(seq_len) -> dict   what the model needs from this data, e.g.
      {"vocab_size": 65, "seq_len": 64} or {"image_shape": (28, 28, 1), "num_classes": 10};
      raises DataError(key, message) if the named data is missing or unusable
  schema.open(seq_len) -> Source         the source itself (may read files)
  schema.train_examples(seq_len)         training examples of a fixed set (what `horizon.epochs` counts),
                                         None for a stream or where only opening the data would tell

A Source draws batches as dicts of numpy arrays with a leading batch dimension:

  source.features      {name: (per-example shape, numpy dtype)}, e.g.
                       {"tokens": ((seq_len + 1,), int32)} or {"image": ((28, 28, 1), uint8), "label": ((), int32)}
  source.model_inputs  as the schema's
  source.info          JSON-able description for the summary (identity: path + sha256, name + version, sizes)
  source.draw(rng, n, split, rows=None) -> {name: array [n or len(rows), ...]}
                       split is "train" or "eval"; rows (a slice of the n) draws only those examples,
                       so a host of a multi-host job reads only its shard. A pure function of rng.
  source.fixed_eval(n) -> dict or None   the first n held-out examples (finite datasets), else None:
                       the eval set is then drawn from a stream disjoint from training
  source.entropy_floor, source.eval_set_floor(batches)   Bayes-optimal loss, where known (else None)
"""
from typing import ClassVar, Optional

import numpy as np
import pydantic

from scaling.lazy_registry import Registry

UNIQUE_STREAM = 1 << 42  # The fixed training set of `unique_tokens`: disjoint from every other draw.
_KINDS = Registry("data kind", "scaling.data")  # every module of scaling/data/


class DataError(ValueError):
  """Named data that is missing or unusable: `key` is the data key at fault (e.g. "path")."""

  def __init__(self, key: str, message: str):
    super().__init__(message)
    self.key = key


class DataSchema(pydantic.BaseModel):
  """Base of every kind's schema: strict, unknown keys refused, immutable, every float finite."""
  model_config = pydantic.ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)
  finite: ClassVar[bool] = False  # a fixed set of training examples (so `horizon.epochs` means something)
  nested_data: ClassVar[tuple] = ()  # fields that hold another data config (its lists are values, not grid axes)

  def model_inputs(self, seq_len: int) -> dict:
    raise NotImplementedError

  def open(self, seq_len: int):
    raise NotImplementedError

  def train_examples(self, seq_len: int) -> Optional[int]:
    return None


class TokenData(DataSchema):
  """Base of the language kinds: what they share.

  unique_tokens: train on a fixed set of this many tokens, repeated (data-constrained scaling); the
  eval set stays disjoint from it. A trial of D tokens then trains D / unique_tokens epochs.
  """
  unique_tokens: Optional[int] = pydantic.Field(None, ge=1)

  def train_examples(self, seq_len: int) -> Optional[int]:
    return None if self.unique_tokens is None else self.unique_tokens // (seq_len + 1)

  def draw_bytes(self, tokens: int, seq_len: int) -> int:
    """Host bytes at the peak of drawing `tokens` tokens as windows of seq_len + 1 (the fixed set of
    unique_tokens, checked against the host's memory before anything runs): int32 windows; a kind whose
    draw holds more says so."""
    return 4 * tokens


class Source:
  """Defaults for the optional parts of a source."""
  entropy_floor = None

  def unique_windows(self, n: int, length: int) -> np.ndarray:
    """A fixed set of n training windows of `length` tokens (for `unique_tokens`): fresh draws of a stream."""
    return self.draw(np.random.default_rng(UNIQUE_STREAM), n, "train")["tokens"]

  def draw_each(self, rngs: list, n: int, split: str) -> list:
    """draw(rng, n, split) for each generator; a source may draw them together, with the same result."""
    return [self.draw(rng, n, split) for rng in rngs]

  def fixed_eval(self, n: int):
    return None

  def eval_set_floor(self, batches: list):
    return None


def register(schema: type) -> type:
  """Class decorator for a kind's schema."""
  _KINDS.add(schema.model_fields["kind"].annotation.__args__[0], schema)
  return schema


def schemas() -> tuple:
  return tuple(_KINDS.entries().values())


def kinds() -> tuple:
  return tuple(_KINDS.entries())


def parse(data_cfg: dict) -> DataSchema:
  """The schema object of a resolved data config (a dict from config.json)."""
  try:
    schema = _KINDS.get(data_cfg.get("kind"))
  except KeyError as e:
    raise DataError("kind", str(e.args[0])) from None
  return schema.model_validate(data_cfg, strict=False)
