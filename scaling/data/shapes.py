"""Procedurally generated labelled images, no files: the `shapes` kind, the offline default for vision.

Each image is a textured background with one large "main" object and up to
`distractors` smaller objects of any type; the label is the shape type of the
main (largest) object. The images have structure at three scales, so both a
classifier and a pixel-reconstruction objective keep rewarding bigger models:

  coarse  a low-frequency background (a random grid of ~4x4 values, bilinearly
          upsampled) plus a per-image brightness: predictable from far context
  middle  objects: disk, square, triangle, ring, cross, bar, frame, half-disk at
          random positions, sizes, rotations and (brighter) contrasts, in
          random depth order, so distractors may partly occlude the main object
  fine    anti-aliased edges and i.i.d. Gaussian pixel noise (the irreducible part)

Telling the main object's type needs translation- and rotation-invariant shape
features and a comparison of sizes across the image; the hard pairs (ring/frame,
disk/square, triangle/half-disk/bar) differ only in corners and edges. Measured
on the defaults (16x16x1, 8 classes, chance error 0.875), eval error on fresh draws:

  logistic regression on raw pixels, 1000 full-batch steps on 40k    0.80
  MLP 2x32 / 2x256, Adam, 30 s (14k-15k steps of 128)                0.46 / 0.19
  CNN (2x conv3-conv3-pool, widths 16-32 / 32-64), 900 steps of 128  0.10 / 0.06
  ViT patch 4, d x depth 16x2 / 32x2 / 64x3 (7k / 27k / 153k params),
    1500 steps of 128                                                0.51 / 0.47 / 0.43
    masked-patch MSE, half the patches masked, 1000 steps            0.031 / 0.030 / 0.028
    (pixel-noise floor noise^2 = 0.0025)

Those ladders are at equal examples. At equal wall time (20 s a rung on a shared 2-core
CPU) the bigger ViTs get 8-15x fewer steps and end worse: there the ladder is compute-bound.

Pixels are made only of IEEE-exact float32 operations (+ - * / sqrt, min/max,
no transcendental functions or reductions, the rotation's unit vector comes from
normalising a Gaussian pair) and quantised with floor(x * 255 + 0.5), so a draw
is bit-identical on every platform where numpy's Generator is.
"""
from typing import Literal

import numpy as np
import pydantic

from scaling.data import registry

SHAPES = ("disk", "square", "triangle", "ring", "cross", "bar", "frame", "half_disk")

# Sizes are circumradii as fractions of image_size. The gap between the smallest main
# object and the largest distractor keeps "the largest object" unambiguous.
_MAIN_RADIUS = (0.26, 0.40)
_DISTRACTOR_RADIUS = (0.10, 0.20)
_TEXTURE_GRID = 4  # background control points per side: one per 4x4-pixel ViT patch at 16x16
_TEXTURE_AMPLITUDE = 0.35
# Objects are brighter than the background mean, by this much per channel. Random polarity would make every
# model learn each shape twice: it slowed small ViTs down more than it added useful difficulty (measured).
_CONTRAST = (0.25, 0.6)
_SQRT3_2 = np.float32(np.sqrt(3.0) / 2)


def _box(u, v, half_u, half_v):
  """Approximate signed distance (pixels) to an axis-aligned box in the object's frame."""
  return np.maximum(np.abs(u) - half_u, np.abs(v) - half_v)


def _signed_distance(shape: int, u, v, radius):
  """Signed distance (pixels, negative inside) of points (u, v) in an object's rotated frame.

  u, v: [m, S, S] pixel offsets from the object's centre; radius: [m, 1, 1] in pixels.
  """
  name = SHAPES[shape]
  if name in ("disk", "ring", "half_disk"):
    r = np.sqrt(u * u + v * v)
    if name == "disk":
      return r - radius
    if name == "ring":
      return np.abs(r - 0.7 * radius) - 0.3 * radius
    return np.maximum(r - radius, -v - 0.1 * radius)  # centred so its area sits near the middle
  if name == "square":
    return _box(u, v, 0.75 * radius, 0.75 * radius)
  if name == "triangle":  # equilateral, circumradius `radius`: three half-planes at distance radius / 2
    edge = np.maximum(np.maximum(v, -_SQRT3_2 * u - 0.5 * v), _SQRT3_2 * u - 0.5 * v)
    return edge - 0.5 * radius
  if name == "cross":
    return np.minimum(_box(u, v, radius, 0.3 * radius), _box(u, v, 0.3 * radius, radius))
  if name == "bar":
    return _box(u, v, radius, 0.35 * radius)
  if name == "frame":
    return np.abs(np.maximum(np.abs(u), np.abs(v)) - 0.55 * radius) - 0.22 * radius
  raise ValueError(name)


def _bilinear_upsample(grid, size: int):
  """[n, g, g, C] -> [n, size, size, C] by explicit two-tap blends (no matmul: exact on every BLAS)."""
  g = grid.shape[1]
  position = (np.arange(size, dtype=np.float32) + 0.5) * np.float32(g / size) - 0.5
  position = np.clip(position, 0, g - 1)
  lo = np.minimum(position.astype(np.int64), g - 2)
  weight = (position - lo).astype(np.float32)
  rows = grid[:, lo] * (1 - weight)[None, :, None, None] + grid[:, lo + 1] * weight[None, :, None, None]
  return (rows[:, :, lo] * (1 - weight)[None, None, :, None] + rows[:, :, lo + 1] * weight[None, None, :, None])


def _opacity(shape, centre, direction, radius, size: int):
  """[m, S, S] coverage in [0, 1] of m objects, anti-aliased over one pixel.

  shape [m] (index into SHAPES), centre [m, 2] (row, column in pixels), direction [m, 2] (unit
  vector of the rotation), radius [m] (pixels). Each shape type's distance is computed on just its objects.
  """
  f32 = np.float32
  pixel = np.arange(size, dtype=f32) + f32(0.5)
  dy = pixel[None, :, None] - centre[:, 0, None, None]
  dx = pixel[None, None, :] - centre[:, 1, None, None]
  cos, sin = direction[:, 0, None, None], direction[:, 1, None, None]
  u, v = cos * dx + sin * dy, cos * dy - sin * dx
  distance = np.empty((len(shape), size, size), f32)
  for s in np.unique(shape):
    which = np.flatnonzero(shape == s)
    distance[which] = _signed_distance(int(s), u[which], v[which], radius[which, None, None])
  return np.clip(f32(0.5) - distance, 0, 1)


def render(rng: np.random.Generator, n: int, image_size: int, channels: int, label_shapes: np.ndarray,
           noise: float, distractors: int) -> tuple:
  """(images uint8 [n, S, S, C], labels int32 [n]): a pure function of rng.

  label_shapes[k] is the index into SHAPES of class k's main object.
  """
  S, C, K, f32 = image_size, channels, len(label_shapes), np.float32
  labels = rng.integers(0, K, n).astype(np.int32)
  n_objects = 1 + distractors

  # Background: per-image mean plus a low-frequency texture around it.
  mean = rng.uniform(0.25, 0.75, (n, 1, 1, C)).astype(f32)
  grid = rng.random((n, _TEXTURE_GRID, _TEXTURE_GRID, C), dtype=f32)
  image = mean + f32(_TEXTURE_AMPLITUDE) * (_bilinear_upsample(grid, S) - f32(0.5))

  # Objects: slot 0 is the main one. Absent distractors get zero opacity (a fixed-size draw keeps it pure and fast).
  shape = rng.integers(0, len(SHAPES), (n, n_objects))
  shape[:, 0] = label_shapes[labels]
  present = np.ones((n, n_objects), bool)
  present[:, 1:] = np.arange(distractors)[None] < rng.integers(0, distractors + 1, (n, 1))
  radius = np.concatenate([rng.uniform(*_MAIN_RADIUS, (n, 1)), rng.uniform(*_DISTRACTOR_RADIUS, (n, distractors))],
                          axis=1).astype(f32) * f32(S)
  # The main object stays mostly inside (at most 0.4 radius cut off); distractors may be cut by the border.
  margin = np.concatenate([0.6 * radius[:, :1], np.zeros((n, distractors), f32)], axis=1)
  centre = (margin[..., None] + rng.random((n, n_objects, 2), dtype=f32) * (S - 2 * margin[..., None])).astype(f32)
  direction = rng.standard_normal((n, n_objects, 2)).astype(f32)
  direction /= np.maximum(np.sqrt(direction[..., :1] ** 2 + direction[..., 1:] ** 2), f32(1e-6))
  colour = mean[:, 0, 0][:, None] + rng.uniform(*_CONTRAST, (n, n_objects, C)).astype(f32)
  colour = np.clip(colour, 0, 1)
  depth = np.argsort(rng.random((n, n_objects)), axis=1)  # painting order: depth[:, 0] first

  # Paint back to front, one depth layer of all n images at a time (memory n * S * S, whatever the distractors).
  rows = np.arange(n)[:, None]
  shape, present, radius, centre, direction, colour = (
      x[rows, depth] for x in (shape, present, radius, centre, direction, colour))
  for layer in range(n_objects):
    alpha = _opacity(shape[:, layer], centre[:, layer], direction[:, layer], radius[:, layer], S)
    a = (alpha * present[:, layer, None, None])[..., None]
    image = image * (1 - a) + colour[:, layer, None, None, :] * a

  image = image + f32(noise) * rng.standard_normal(image.shape, dtype=f32)
  pixels = np.floor(np.clip(image, 0, 1) * f32(255) + f32(0.5)).astype(np.uint8)
  return pixels, labels


# ---- The `shapes` data kind ----


@registry.register
class ShapesData(registry.DataSchema):
  """Generated images labelled by the shape type of their largest object (see the module docstring)."""
  kind: Literal["shapes"]
  image_size: int = pydantic.Field(16, ge=8, le=256)  # pixels per side
  channels: Literal[1, 3] = 1
  num_classes: int = pydantic.Field(len(SHAPES), ge=2, le=len(SHAPES))
  noise: float = pydantic.Field(0.05, ge=0, le=1)  # pixel noise std, in units of the [0, 1] intensity range
  distractors: int = pydantic.Field(3, ge=0, le=16)  # each image has 0..distractors of them, uniformly
  seed: int = pydantic.Field(0, ge=0, le=2 ** 32 - 1)  # which shapes are the classes, in which label order; and the pixel stream

  def model_inputs(self, seq_len: int) -> dict:
    return {"image_shape": (self.image_size, self.image_size, self.channels), "num_classes": self.num_classes}

  def open(self, seq_len: int):
    return ShapesSource(self)


class ShapesSource(registry.Source):
  """Fresh examples on every draw; train and eval share one distribution (the caller keeps their rngs apart)."""

  def __init__(self, schema: ShapesData):
    self.schema = schema
    S, C = schema.image_size, schema.channels
    # The dataset's own seed fixes which shapes are the classes (when num_classes < len(SHAPES)) and their labels.
    self.label_shapes = np.random.default_rng(schema.seed).permutation(len(SHAPES))[:schema.num_classes]
    self.features = {"image": ((S, S, C), np.uint8), "label": ((), np.int32)}
    self.model_inputs = schema.model_inputs(0)
    self.info = {**schema.model_dump(), "image_shape": [S, S, C],
                 "class_names": [SHAPES[s] for s in self.label_shapes]}

  def draw(self, rng, n, split, rows=None) -> dict:
    # Mixing in the dataset seed makes two datasets differ pixel for pixel under the same step rngs.
    stream = np.random.default_rng([self.schema.seed, *rng.integers(0, 2 ** 32, 4)])
    s = self.schema
    images, labels = render(stream, n, s.image_size, s.channels, self.label_shapes, s.noise, s.distractors)
    if rows is not None:  # Every row depends on the whole draw's stream: draw all, keep this host's rows.
      images, labels = images[rows], labels[rows]
    return {"image": images, "label": labels}
