"""Labelled-image data kinds: IDX files by path (`idx`) and TFDS datasets by name (`tfds_images`, no TensorFlow)."""
import gzip
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from scaling.data import idx, registry
from scaling.data.tfds_images import prepare
from tests.conftest import ROOT, SHARED_DATA, write

# sha256 of the decoded arrays: images uint8 [N, 28, 28, 1] C order, labels little-endian int32 [N].
# Cross-check: the MNIST train pixels behind a 2051/60000/28/28 header give the README's raw-IDX MD5 6bbc9ace...
EXPECTED = {
    "mnist": {
        "train": ("741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
                  "ba2e26c82ab7a46fbcd5ec6de8eee4d541cf3829f5050669177da23b515defeb",
                  [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]),
        "eval": ("6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
                 "52aa149c856ca033d02e1d2e5cc61033b4c56ed4a56f0edc328206a178c42126",
                 [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]),
        "file": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",  # train-images .gz (README)
    },
    "fashion_mnist": {
        "train": ("2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
                  "d69b1d6e0b8064974aa5aecc2786f961b8b2be829ee3a39dd8989efee46cad5a", [6000] * 10),
        "eval": ("c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
                 "53fdd09ed9cbcd893df0e3b0af7802f2d62457de11c87273d4b4186f4992a40c", [1000] * 10),
        "file": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    },
}
MNIST = os.path.join(SHARED_DATA, "mnist")


def sha256(array) -> str:
  return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_idx_pixels_and_labels_are_the_published_ones(name):
  path = os.path.join(SHARED_DATA, name)
  schema = registry.parse({"kind": "idx", "path": path})
  assert schema.model_inputs(0) == {"image_shape": (28, 28, 1), "num_classes": 10}
  source = schema.open(0)
  assert source.features == {"image": ((28, 28, 1), np.uint8), "label": ((), np.int32)}
  assert source.model_inputs == {"image_shape": (28, 28, 1), "num_classes": 10}
  info = source.info
  assert (info["train_examples"], info["eval_examples"], info["image_shape"]) == (60000, 10000, [28, 28, 1])
  assert info["sha256"]["train-images-idx3-ubyte.gz"] == EXPECTED[name]["file"]
  data = idx.decode(os.path.abspath(path))
  for split, count in (("train", 60000), ("eval", 10000)):
    images, labels = data[split]
    assert images.shape == (count, 28, 28, 1) and images.dtype == np.uint8 and labels.dtype == np.int32
    image_sha, label_sha, histogram = EXPECTED[name][split]
    assert (sha256(images), sha256(labels.astype("<i4"))) == (image_sha, label_sha), split
    assert np.bincount(labels).tolist() == histogram, split


def test_draw_is_a_pure_function_of_the_rng_and_rows_slice_it():
  source = registry.parse({"kind": "idx", "path": MNIST}).open(0)
  train, test = (idx.decode(os.path.abspath(MNIST))[split] for split in ("train", "eval"))
  full = source.draw(np.random.default_rng(7), 64, "train")
  again = source.draw(np.random.default_rng(7), 64, "train")
  part = source.draw(np.random.default_rng(7), 64, "train", rows=slice(16, 40))
  index = np.random.default_rng(7).integers(0, 60000, 64)
  for key, array in (("image", train[0]), ("label", train[1])):
    np.testing.assert_array_equal(full[key], array[index])
    np.testing.assert_array_equal(again[key], full[key])
    np.testing.assert_array_equal(part[key], full[key][16:40])
  assert full["image"].shape == (64, 28, 28, 1) and full["label"].dtype == np.int32
  held_out = source.draw(np.random.default_rng(7), 64, "eval")
  np.testing.assert_array_equal(held_out["label"], test[1][np.random.default_rng(7).integers(0, 10000, 64)])
  first = source.fixed_eval(100)
  np.testing.assert_array_equal(first["image"], test[0][:100])
  np.testing.assert_array_equal(first["label"], test[1][:100])
  assert len(source.fixed_eval(10**6)["label"]) == 10000


# A user reaching the prepared datasets by name, in a fresh process where this file's builder class never existed.
READER = """\
import sys
import numpy as np
from scaling.data import registry
data_dir, out = sys.argv[1], sys.argv[2]
arrays = {}
for name in ("mnist", "mnist_raw"):
  schema = registry.parse({"kind": "tfds_images", "name": name, "data_dir": data_dir})
  arrays[name + "_inputs"] = np.array([*schema.model_inputs(0)["image_shape"], schema.model_inputs(0)["num_classes"]])
  source = schema.open(0)
  train = source.draw(np.random.default_rng(0), 4000, "train")
  test = source.fixed_eval(10**9)
  arrays.update({f"{name}_{k}": v for k, v in (("train_image", train["image"]), ("train_label", train["label"]),
                                               ("test_image", test["image"]), ("test_label", test["label"]))})
  arrays[name + "_counts"] = np.array([source.info["train_examples"], source.info["eval_examples"]])
assert "tensorflow" not in sys.modules
np.savez(out, **arrays)
"""


def test_tfds_mnist_prepared_offline_reads_back_the_idx_arrays(tmp_path):
  limit = 300
  data_dir = str(tmp_path / "tfds")
  assert prepare(MNIST, data_dir, "mnist", limit=limit).endswith(os.path.join("mnist", "3.0.1"))  # TFDS's version
  prepare(MNIST, data_dir, "mnist_raw", limit=limit // 2, raw=True)  # images as a uint8 Tensor feature
  assert "tensorflow" not in sys.modules
  out = str(tmp_path / "read.npz")
  result = subprocess.run([sys.executable, write(tmp_path, "reader.py", READER), data_dir, out], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  read = np.load(out)
  train, test = (idx.decode(os.path.abspath(MNIST))[split] for split in ("train", "eval"))
  for name, n in (("mnist", limit), ("mnist_raw", limit // 2)):
    assert read[name + "_inputs"].tolist() == [28, 28, 1, 10]
    assert read[name + "_counts"].tolist() == [n, n]
    index = np.random.default_rng(0).integers(0, n, 4000)
    assert len(np.unique(index)) == n  # the draw covers every record
    np.testing.assert_array_equal(read[name + "_train_image"], train[0][index])
    np.testing.assert_array_equal(read[name + "_train_label"], train[1][index])
    np.testing.assert_array_equal(read[name + "_test_image"], test[0][:n])
    np.testing.assert_array_equal(read[name + "_test_label"], test[1][:n])


def data_error(cfg: dict, opening: bool = False) -> registry.DataError:
  schema = registry.parse(cfg)
  with pytest.raises(registry.DataError) as error:
    schema.open(0) if opening else schema.model_inputs(0)
  assert "\n" not in str(error.value)
  return error.value


def test_unknown_or_unprepared_tfds_name_is_a_one_line_error(tmp_path):
  data_dir = str(tmp_path / "empty")
  error = data_error({"kind": "tfds_images", "name": "no_such_images", "data_dir": data_dir})
  assert error.key == "name" and "'no_such_images' not found in " + data_dir in str(error)
  # TFDS knows mnist, but it is not in this data_dir: nothing is downloaded.
  error = data_error({"kind": "tfds_images", "name": "mnist", "data_dir": data_dir}, opening=True)
  assert error.key == "name" and str(error) == (f"TFDS dataset 'mnist' is not in {data_dir} "
                                                f"and download is off (download: false)")
  assert not os.path.exists(data_dir)


def write_idx(directory, n=5, gz=False, truncate=None, magic=2051, images_n=None):
  """Tiny IDX files (n images of 3x2 pixels, labels 0..2); truncate=(file stem, bytes kept)."""
  os.makedirs(directory, exist_ok=True)
  images = np.arange((images_n or n) * 6, dtype=np.uint8).reshape(-1, 3, 2)
  labels = np.arange(n, dtype=np.uint8) % 3
  for prefix in ("train", "t10k"):
    for stem, raw in ((f"{prefix}-images-idx3-ubyte",
                       np.array([magic, images_n or n, 3, 2], ">u4").tobytes() + images.tobytes()),
                      (f"{prefix}-labels-idx1-ubyte", np.array([2049, n], ">u4").tobytes() + labels.tobytes())):
      raw = gzip.compress(raw) if gz else raw
      if truncate and truncate[0] == stem:
        raw = raw[:truncate[1]]
      with open(os.path.join(directory, stem + (".gz" if gz else "")), "wb") as f:
        f.write(raw)
  return str(directory)


@pytest.mark.parametrize("gz", [False, True])
def test_plain_and_gzipped_idx_files_are_read(tmp_path, gz):
  source = registry.parse({"kind": "idx", "path": write_idx(tmp_path / "d", gz=gz)}).open(0)
  assert source.model_inputs == {"image_shape": (3, 2, 1), "num_classes": 3}
  np.testing.assert_array_equal(source.fixed_eval(2)["image"][..., 0], np.arange(12).reshape(2, 3, 2))
  np.testing.assert_array_equal(source.fixed_eval(9)["label"], [0, 1, 2, 0, 1])


def test_missing_or_bad_idx_files_are_one_line_errors_naming_the_path(tmp_path):
  missing = str(tmp_path / "nope")
  assert str(data_error({"kind": "idx", "path": missing})) == f"no such directory: {missing}"
  empty = str(tmp_path / "empty")
  os.makedirs(empty)
  assert str(data_error({"kind": "idx", "path": empty})) == f"no train-images-idx3-ubyte[.gz] in {empty}"
  for gz in (False, True):
    directory = write_idx(tmp_path / f"cut{gz}", gz=gz, truncate=("train-images-idx3-ubyte", 30))
    bad = os.path.join(directory, "train-images-idx3-ubyte" + (".gz" if gz else ""))
    for opening in (False, True):
      error = data_error({"kind": "idx", "path": directory}, opening)
      assert error.key == "path" and str(error).startswith(bad + ": ") and "truncated" in str(error), str(error)
  directory = write_idx(tmp_path / "magic", magic=2049)
  assert "IDX magic number 2049, expected 2051" in str(data_error({"kind": "idx", "path": directory}))
  directory = write_idx(tmp_path / "count", images_n=4)
  labels = os.path.join(directory, "train-labels-idx1-ubyte")
  assert str(data_error({"kind": "idx", "path": directory})).endswith(f"has 4 images but {labels} has 5 labels")
