"""Labelled images from a TFDS dataset named by name (mnist, fashion_mnist, cifar10, ...): the `tfds_images` kind.

Read through `tfds.data_source` (ArrayRecord files, random access), never
TensorFlow: an `Image` feature is decoded by PIL, a uint8 `Tensor` feature is
read as stored. With `download: false` (the default) nothing is fetched.

Also prepares such a dataset offline from IDX files (the `idx` kind's decoder):

  python -m scaling.data.tfds_images --idx /work/shared/data/mnist --data_dir ~/tensorflow_datasets --name mnist

For a name TFDS itself knows (mnist, fashion_mnist) the dataset is written with
TFDS's own version and features (PNG `Image`, `ClassLabel` with names), so
TFDS's registered builder reads it. Records keep the IDX order (no shuffling
on write), so `fixed_eval(n)` is the first n t10k images.
"""
import argparse
import functools
import io
import os
import re
from typing import Literal, Optional

import numpy as np

from scaling.data import registry
from scaling.data.idx import ImageSource
from scaling.data.tfds_source import TfdsNamed, find_builder

_CHUNK = 4096  # records per data_source read: bounds the list of dicts held at once


def image_features(builder, name: str, image_key: str, label_key: str) -> tuple:
  """((H, W, C), num_classes) from a builder's feature metadata; reads no records."""
  import tensorflow_datasets as tfds
  features = builder.info.features
  for key, feature_key in (("image_key", image_key), ("label_key", label_key)):
    if feature_key not in features:
      raise registry.DataError(key, f"TFDS dataset {name!r} has no feature {feature_key!r}; it has {sorted(features)}")
  image, label = features[image_key], features[label_key]
  if not isinstance(image, (tfds.features.Image, tfds.features.Tensor)) or np.dtype(image.np_dtype) != np.uint8:
    raise registry.DataError("image_key", f"TFDS dataset {name!r}: feature {image_key!r} is {image!r}, "
                                          f"not a uint8 Image or Tensor")
  shape = tuple(image.shape)
  if len(shape) != 3 or None in shape:
    raise registry.DataError("image_key", f"TFDS dataset {name!r}: feature {image_key!r} has shape {shape}; "
                                          f"need a fixed (H, W, C)")
  if not isinstance(label, tfds.features.ClassLabel):
    raise registry.DataError("label_key", f"TFDS dataset {name!r}: feature {label_key!r} is {label!r}, "
                                          f"not a ClassLabel")
  return shape, int(label.num_classes)


@functools.lru_cache(maxsize=8)  # several trials of a sweep open the same split
def read_split(name: str, data_dir, split: str, image_key: str, label_key: str, shape: tuple) -> tuple:
  """A whole split as (uint8 images [N, H, W, C], int32 labels [N]), in record order."""
  import tensorflow_datasets as tfds
  source = tfds.data_source(name, data_dir=data_dir, split=split, download=False)
  images = np.empty((len(source), *shape), np.uint8)
  labels = np.empty(len(source), np.int32)
  for start in range(0, len(source), _CHUNK):
    records = source.__getitems__(list(range(start, min(start + _CHUNK, len(source)))))
    for i, record in enumerate(records, start):
      images[i] = record[image_key]  # Image decoded to (H, W, C) by PIL; Tensor as stored
      labels[i] = record[label_key]
  images.flags.writeable = False  # shared by every source of this process
  labels.flags.writeable = False
  return images, labels


@registry.register
class TfdsImagesData(TfdsNamed):
  """A TFDS image-classification dataset (ArrayRecord files) named by name; read without TensorFlow."""
  finite = True
  kind: Literal["tfds_images"]
  image_key: str = "image"
  label_key: str = "label"
  download: bool = False  # the switch: false never fetches anything

  def _builder(self):
    builder = find_builder(self.name, self.data_dir, ())
    if not builder.is_prepared():
      if not self.download:
        raise registry.DataError("name", f"TFDS dataset {self.name!r} is not in {builder.data_dir_root} "
                                         f"and download is off (download: false)")
      return builder  # features come from TFDS's code; splits are known once prepared
    for split in (self.split, self.eval_split):
      if split not in builder.info.splits:
        raise registry.DataError("split", f"TFDS dataset {self.name!r} has no split {split!r}; "
                                          f"it has {sorted(builder.info.splits)}")
    return builder

  def model_inputs(self, seq_len: int) -> dict:
    shape, num_classes = image_features(self._builder(), self.name, self.image_key, self.label_key)
    return {"image_shape": shape, "num_classes": num_classes}

  def train_examples(self, seq_len: int):
    builder = self._builder()  # the split's size is in the prepared dataset's metadata; unprepared, not yet known
    return builder.info.splits[self.split].num_examples if builder.is_prepared() else None

  def open(self, seq_len: int) -> ImageSource:
    builder = self._builder()
    shape, num_classes = image_features(builder, self.name, self.image_key, self.label_key)
    if not builder.is_prepared():
      try:
        builder.download_and_prepare(file_format="array_record")
      except Exception as e:  # network, missing TensorFlow for the encoder, ...
        raise registry.DataError("name", f"TFDS could not download and prepare {self.name!r}: "
                                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    splits = [read_split(self.name, self.data_dir, split, self.image_key, self.label_key, shape)
              for split in (self.split, self.eval_split)]
    info = {"kind": "tfds_images", "name": self.name, "version": str(builder.info.version),
            "data_dir": self.data_dir, "split": self.split, "eval_split": self.eval_split}
    return ImageSource(splits[0], splits[1], num_classes, info)


# Preparing a dataset from IDX files.

def _png(image: np.ndarray) -> bytes:
  """PNG bytes of a uint8 (H, W, 1 or 3) image: TFDS's Image feature encodes arrays with TensorFlow, bytes as is."""
  import PIL.Image
  buffer = io.BytesIO()
  PIL.Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="png")
  return buffer.getvalue()


def _builder_class(name: str, version: str, features, splits: dict, png: bool):
  import tensorflow_datasets as tfds

  # skip_registration: TFDS may already have a builder by this name (its mnist reads what this writes).
  class _IdxImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version(version)
    # No code file to look for a checksums.tsv next to: TFDS's lookup for a class in a package needs the
    # undeclared importlib_resources, so download_and_prepare fails under `scaling.data...` without this.
    code_path = None

    def _info(self):
      # DatasetInfo(builder=self) rather than dataset_info_from_configs: works for builders defined in code.
      # disable_shuffling keeps the IDX order, so the first test records are the first t10k images.
      return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

    def _split_generators(self, dl_manager):
      return {split: self._generate_examples(*arrays) for split, arrays in splits.items()}

    def _generate_examples(self, images, labels):
      for i in range(len(labels)):
        yield i, {"image": _png(images[i]) if png else images[i], "label": int(labels[i])}

  _IdxImages.name = name
  return _IdxImages


def prepare(idx_dir: str, data_dir: str, name: str = "mnist", limit: Optional[int] = None,
            raw: bool = False) -> str:
  """Builds TFDS dataset `name` (splits train, test) in data_dir from IDX files; returns its directory.

  limit: keep only the first `limit` examples of each split (for tests).
  raw: store images as a uint8 Tensor rather than PNG (faster to read; not for names TFDS itself knows).
  """
  import tensorflow_datasets as tfds
  from scaling.data import idx
  if not re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", name):
    raise ValueError(f"dataset name {name!r}: use snake_case letters and digits")
  tfds.disable_progress_bar()
  data = idx.decode(os.path.abspath(idx_dir))
  splits = {"train": data["train"], "test": data["eval"]}
  if limit is not None:
    splits = {split: (images[:limit], labels[:limit]) for split, (images, labels) in splits.items()}
  shape = data["train"][0].shape[1:]
  num_classes = int(max(labels.max() for _, labels in (data["train"], data["eval"]))) + 1
  try:
    own = tfds.builder_cls(name)
  except tfds.core.registered.DatasetNotFoundError:
    own = None
  if own is None:
    image = (tfds.features.Tensor(shape=shape, dtype=np.uint8) if raw else tfds.features.Image(shape=shape))
    features = tfds.features.FeaturesDict({"image": image, "label": tfds.features.ClassLabel(num_classes=num_classes)})
    version = "1.0.0"
  else:
    # TFDS reads a dataset of its own name with its own code's features and version: match them.
    if raw or own.BUILDER_CONFIGS:
      raise ValueError(f"TFDS's own {name!r} {'has configs' if own.BUILDER_CONFIGS else 'stores PNG images'}; "
                       f"prepare under another name")
    own_builder = tfds.builder(name, data_dir=data_dir)
    features = own_builder.info.features
    found = image_features(own_builder, name, "image", "label")
    if found != (shape, num_classes) or set(features) != {"image", "label"}:
      raise ValueError(f"TFDS's own {name!r} has features {sorted(features)} with (image shape, "
                       f"classes) {found}; {idx_dir} has {(shape, num_classes)}")
    version = str(own.VERSION)
  builder = _builder_class(name, version, features, splits, png=not raw)(data_dir=data_dir,
                                                                          file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return str(builder.data_dir)


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m scaling.data.tfds_images")
  parser.add_argument("--idx", required=True, help="directory of IDX files (MNIST layout, plain or .gz)")
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--name", default="mnist")
  parser.add_argument("--limit", type=int, default=None, help="first N examples of each split only")
  parser.add_argument("--raw", action="store_true", help="store uint8 tensors, not PNG")
  args = parser.parse_args(argv)
  print(prepare(args.idx, args.data_dir, args.name, args.limit, args.raw))


if __name__ == "__main__":
  main()
