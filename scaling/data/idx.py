"""Labelled images from the original IDX files (MNIST, Fashion-MNIST) in a directory: the `idx` data kind.

The directory holds train-images-idx3-ubyte, train-labels-idx1-ubyte,
t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each plain or gzipped
(`.gz`). The t10k files are the held-out split. Decoded with numpy alone.
"""
import functools
import gzip
import hashlib
import os
from typing import Literal

import numpy as np

from scaling.data import registry

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "eval": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # uint8 data, 3 dims / 1 dim


class ImageSource(registry.Source):
  """Uniformly random labelled images from a train and an eval split held in memory.

  images: uint8 [N, H, W, C]; labels: int32 [N], in 0..num_classes-1.
  """

  def __init__(self, train: tuple, eval_: tuple, num_classes: int, info: dict):
    self._splits = {"train": train, "eval": eval_}
    image_shape = tuple(int(d) for d in train[0].shape[1:])
    self.features = {"image": (image_shape, np.uint8), "label": ((), np.int32)}
    self.model_inputs = {"image_shape": image_shape, "num_classes": int(num_classes)}
    self.info = {**info, "train_examples": int(len(train[1])), "eval_examples": int(len(eval_[1])),
                 "image_shape": list(image_shape), "num_classes": int(num_classes)}

  def draw(self, rng, n, split, rows=None) -> dict:
    images, labels = self._splits["train" if split == "train" else "eval"]
    # All n indices are drawn even for a slice of rows, so every host sees the same draw.
    index = rng.integers(0, len(labels), n)
    if rows is not None:
      index = index[rows]
    return {"image": images[index], "label": labels[index]}

  def fixed_eval(self, n: int) -> dict:
    images, labels = self._splits["eval"]
    return {"image": images[:n], "label": labels[:n]}


def find_file(directory: str, stem: str) -> str:
  """The path of `stem` or `stem.gz` in directory, or DataError naming what is missing."""
  for name in (stem, stem + ".gz"):
    path = os.path.join(directory, name)
    if os.path.isfile(path):
      return path
  raise registry.DataError("path", f"no {stem}[.gz] in {directory}")


def _open(path: str):
  return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def read_header(path: str, magic: int) -> tuple:
  """The dims (count, rows, cols or count) of an IDX file from its header; checks magic and file size."""
  n_dims = 3 if magic == IMAGES_MAGIC else 1
  try:
    with _open(path) as f:
      head = f.read(4 + 4 * n_dims)
  except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
    raise registry.DataError("path", f"{path}: unreadable ({e})") from None
  if len(head) < 4 + 4 * n_dims:
    raise registry.DataError("path", f"{path}: truncated IDX header ({len(head)} bytes)")
  found, *dims = np.frombuffer(head, dtype=">u4").tolist()
  if found != magic:
    raise registry.DataError("path", f"{path}: IDX magic number {found}, expected {magic}")
  expected = 4 + 4 * n_dims + int(np.prod(dims))
  # gzip's trailer holds the uncompressed size mod 2**32: a size check without decompressing.
  if path.endswith(".gz"):
    with open(path, "rb") as f:
      f.seek(-4, os.SEEK_END)
      stored = int.from_bytes(f.read(4), "little")
    if stored != expected % 2**32:
      raise registry.DataError("path", f"{path}: truncated or corrupt (gzip size {stored} bytes, header "
                                       f"implies {expected})")
  elif os.path.getsize(path) != expected:
    raise registry.DataError("path", f"{path}: truncated or corrupt ({os.path.getsize(path)} bytes, header "
                                     f"implies {expected})")
  return tuple(dims)


def read_array(path: str, magic: int) -> np.ndarray:
  """The whole IDX array: uint8 [count, rows, cols] or [count]."""
  dims = read_header(path, magic)
  try:
    with _open(path) as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise registry.DataError("path", f"{path}: truncated or corrupt ({e})") from None
  offset = 4 + 4 * len(dims)
  if len(raw) != offset + int(np.prod(dims)):
    raise registry.DataError("path", f"{path}: {len(raw)} bytes decoded, header implies {offset + np.prod(dims)}")
  return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def split_paths(directory: str, split: str) -> tuple:
  if not os.path.isdir(directory):
    raise registry.DataError("path", f"no such directory: {directory}")
  return tuple(find_file(directory, stem) for stem in FILES[split])


def read_labels(directory: str, split: str) -> np.ndarray:
  """int32 [N] labels of a split ("train" or "eval"), checked against the images' count (header only)."""
  images_path, labels_path = split_paths(directory, split)
  labels = read_array(labels_path, LABELS_MAGIC).astype(np.int32)
  if not len(labels):
    raise registry.DataError("path", f"{labels_path} holds no labels")
  count = read_header(images_path, IMAGES_MAGIC)[0]
  if count != len(labels):
    raise registry.DataError("path", f"{images_path} has {count} images but {labels_path} has {len(labels)} labels")
  return labels


@functools.lru_cache(maxsize=4)  # several trials of a sweep open the same directory
def decode(directory: str) -> dict:
  """{split: (uint8 images [N, H, W, 1], int32 labels [N])} and the files' sha256: the whole directory."""
  out = {"sha256": {}}
  for split in FILES:
    images_path, labels_path = split_paths(directory, split)
    labels = read_labels(directory, split)
    images = read_array(images_path, IMAGES_MAGIC)[..., None]
    images.flags.writeable = False  # shared by every source of this process
    labels.flags.writeable = False
    out[split] = (images, labels)
    for path in (images_path, labels_path):
      with open(path, "rb") as f:
        out["sha256"][os.path.basename(path)] = hashlib.sha256(f.read()).hexdigest()
  if out["train"][0].shape[1:] != out["eval"][0].shape[1:]:
    raise registry.DataError("path", f"{directory}: train images are {out['train'][0].shape[1:]}, "
                                     f"t10k images {out['eval'][0].shape[1:]}")
  return out


@registry.register
class IdxData(registry.DataSchema):
  """Labelled images in IDX files (MNIST layout) in the directory `path`."""
  finite = True
  kind: Literal["idx"]
  path: str

  def model_inputs(self, seq_len: int) -> dict:
    # Labels are small (60 KB); of the images only the 16-byte headers are read.
    labels = [read_labels(self.path, split) for split in FILES]
    shapes = {split: read_header(split_paths(self.path, split)[0], IMAGES_MAGIC)[1:] for split in FILES}
    if shapes["train"] != shapes["eval"]:
      raise registry.DataError("path", f"{self.path}: train images are {shapes['train']}, t10k images "
                                       f"{shapes['eval']}")
    return {"image_shape": (*shapes["train"], 1), "num_classes": int(max(l.max() for l in labels)) + 1}

  def train_examples(self, seq_len: int) -> int:
    return read_header(split_paths(self.path, "train")[0], IMAGES_MAGIC)[0]

  def open(self, seq_len: int) -> ImageSource:
    data = decode(os.path.abspath(self.path))
    num_classes = int(max(data[split][1].max() for split in FILES)) + 1
    info = {"kind": "idx", "path": self.path, "sha256": data["sha256"]}
    return ImageSource(data["train"], data["eval"], num_classes, info)
