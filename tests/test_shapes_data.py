"""The `shapes` kind: generated images must be a pure, sliceable, balanced function of the rng, pixel for pixel."""
import hashlib

import numpy as np
import pydantic
import pytest

from scaling.data import registry
from scaling.data.shapes import SHAPES, ShapesData


def open_source(**knobs):
  return registry.parse({"kind": "shapes", **knobs}).open(seq_len=0)


def digest(batch) -> str:
  return hashlib.sha256(batch["image"].tobytes() + batch["label"].tobytes()).hexdigest()


def test_schema_reports_model_inputs_without_generating():
  schema = registry.parse({"kind": "shapes", "image_size": 24, "channels": 3, "num_classes": 5})
  assert schema.model_inputs(seq_len=0) == {"image_shape": (24, 24, 3), "num_classes": 5}


def test_draw_is_a_pure_function_of_the_rng():
  source = open_source()
  first = source.draw(np.random.default_rng(7), 64, "train")
  again = source.draw(np.random.default_rng(7), 64, "train")
  other = source.draw(np.random.default_rng(8), 64, "train")
  assert digest(first) == digest(again)
  assert digest(first) != digest(other)
  # The dataset's own seed gives a different dataset under the same step rng.
  assert digest(open_source(seed=1).draw(np.random.default_rng(7), 64, "train")) != digest(first)


def test_rows_are_the_matching_rows_of_the_full_draw():
  source = open_source()
  full = source.draw(np.random.default_rng(3), 48, "train")
  part = source.draw(np.random.default_rng(3), 48, "train", rows=slice(16, 32))
  for name in full:
    np.testing.assert_array_equal(part[name], full[name][16:32])


@pytest.mark.parametrize("knobs", [{}, {"image_size": 8, "channels": 3, "num_classes": 3, "distractors": 0},
                                   {"image_size": 33, "noise": 1.0, "distractors": 6}])
def test_features_dtype_shape_and_range(knobs):
  source = open_source(**knobs)
  (S, _, C), K = source.model_inputs["image_shape"], source.model_inputs["num_classes"]
  batch = source.draw(np.random.default_rng(0), 32, "eval")
  assert set(batch) == set(source.features)
  for name, (shape, dtype) in source.features.items():
    assert batch[name].shape == (32,) + tuple(shape) and batch[name].dtype == dtype
  assert batch["image"].shape == (32, S, S, C)
  assert batch["label"].min() >= 0 and batch["label"].max() < K
  info = source.info
  assert info["kind"] == "shapes" and info["num_classes"] == K and info["image_shape"] == [S, S, C]
  assert all(info[k] == v for k, v in knobs.items())


def test_classes_are_balanced():
  source = open_source()
  labels = source.draw(np.random.default_rng(11), 10_000, "train")["label"]
  counts = np.bincount(labels, minlength=len(SHAPES))
  expected = 10_000 / len(SHAPES)
  assert np.all(np.abs(counts - expected) < 0.2 * expected), counts


def test_images_vary_between_and_within_classes():
  source = open_source()
  batch = source.draw(np.random.default_rng(5), 2000, "train")
  images = batch["image"].astype(np.float32)
  assert images.std(axis=(1, 2, 3)).min() > 0  # no image is flat
  class_means = np.stack([images[batch["label"] == k].mean(0) for k in range(len(SHAPES))])
  within = np.mean([images[batch["label"] == k].std(0).mean() for k in range(len(SHAPES))])
  assert within > 30  # grey levels: examples of a class differ
  # Class means differ (the mean object shape shows through), though by much less than examples do.
  assert np.abs(class_means[:, None] - class_means[None]).max() > 15


def test_noise_knob_is_the_pixel_noise_std():
  # Noise is drawn last, so the same rng gives the same scene: the difference is the noise (less clipping at 0 and 1).
  clean = open_source(noise=0.0).draw(np.random.default_rng(2), 256, "train")["image"].astype(np.float32)
  noisy = open_source(noise=0.1).draw(np.random.default_rng(2), 256, "train")["image"].astype(np.float32)
  assert 0.8 * 25.5 < (noisy - clean).std() < 1.02 * 25.5


def test_pixels_and_labels_are_exactly_the_recorded_ones():
  # A change to the generator changes the dataset: update this hash only on purpose.
  batch = open_source().draw(np.random.default_rng(0), 64, "train")
  assert batch["label"][:8].tolist() == LABELS_0_8
  assert digest(batch) == DIGEST


LABELS_0_8 = [0, 3, 5, 5, 0, 1, 2, 4]
DIGEST = "1e6731506c0d72eceb3796b5e810dc0250e059da8c8014b6c899bc55f7dc5b59"


@pytest.mark.parametrize("knobs", [{"num_classes": len(SHAPES) + 1}, {"num_classes": 1}, {"image_size": 4},
                                   {"channels": 2}, {"noise": -0.1}, {"noise": 1.5}, {"distractors": -1},
                                   {"unknown": 1}])
def test_bad_knobs_are_refused(knobs):
  with pytest.raises(pydantic.ValidationError):
    registry.parse({"kind": "shapes", **knobs})


def test_kind_is_registered():
  assert "shapes" in registry.kinds()
  assert isinstance(registry.parse({"kind": "shapes"}), ShapesData)
