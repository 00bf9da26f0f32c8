"""The ViT family and the vision objectives: counting, FLOPs, axis names, patches, masks, causality, the probe."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models import counting, registry
from scaling import mesh as mesh_lib
from scaling import objectives
from scaling.evaluators import linear_probe
from scaling.objectives import masked_patches, pixels

IMAGE = (16, 16, 1)


def vit(objective, depth=2, **options):
  family = registry.get("vit")
  arch = family.ladder(depth, image_shape=IMAGE, num_classes=10, objective=objective,
                       **{"aspect_ratio": 16, "head_dim": 8, "patch_size": 4, **options})
  return family, arch, family.build(arch, 0)


@pytest.mark.parametrize("objective", ["classify", "masked_patches", "next_patch"])
def test_parameters_counted_three_ways_and_flops_two_ways(objective):
  family, arch, model = vit(objective)
  counts = counting.count_params(model, family.embedding_leaves)
  d, f, p, t = arch.width, arch.mlp_width, arch.patch_dim, arch.n_patches
  per_layer = 4 * d * d + 2 * d * f + 2 * d  # qkv + out, up + down, two norm scales
  head = d * 10 if objective == "classify" else d * p
  assert counts["params_non_embedding"] == p * d + arch.depth * per_layer + d + head
  assert counts["params_embedding"] == t * d + (d if objective == "masked_patches" else 0)
  flops = counting.training_flops(family, arch, counts)
  assert flops["tokens_per_example"] == t == 16
  assert flops["flops_per_example_6n"] == 6 * counts["params_non_embedding"] * t
  # The exact count adds attention over all patches; the class head runs once per image, not per patch.
  attention = 3 * t * arch.depth * (4 * t * d + 3 * arch.n_heads * t)
  norms = 6 * t * (2 * arch.depth + 1) * d
  head_correction = 6 * d * 10 * (1 - t) if objective == "classify" else 0
  assert flops["flops_per_example"] == flops["flops_per_example_6n"] + attention - norms + head_correction


def test_one_dial_and_bad_patch_size():
  family = registry.get("vit")
  widths = [family.ladder(d, image_shape=IMAGE, num_classes=10, aspect_ratio=16, head_dim=8).width for d in (1, 2, 3)]
  assert widths == [16, 32, 48]
  with pytest.raises(ValueError, match="patch_size 5 does not divide the 16x16 image"):
    family.ladder(1, image_shape=IMAGE, num_classes=10, patch_size=5, aspect_ratio=16, head_dim=8)


def test_every_parameter_has_logical_axis_names_the_rules_know():
  _, _, model = vit("masked_patches")
  known = {name for name, _ in mesh_lib.RULES}
  for path, leaf in jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param),
                                                         is_leaf=lambda x: isinstance(x, nnx.Variable))[0]:
    names = leaf.get_metadata().get("out_sharding")
    assert names and len(names) == leaf.get_value().ndim and set(names) <= known, (jax.tree_util.keystr(path), names)


def test_patchify_is_raster_order():
  _, arch, model = vit("classify")
  images = np.arange(16 * 16, dtype=np.uint8).reshape(1, 16, 16, 1)
  patches = np.asarray(model.patchify(jnp.asarray(images))) * 255
  assert patches.shape == (1, 16, 16)
  np.testing.assert_allclose(patches[0, 1], images[0, 0:4, 4:8, 0].ravel(), atol=1e-3)  # second patch: right of the first
  np.testing.assert_allclose(patches[0, 4], images[0, 4:8, 0:4, 0].ravel(), atol=1e-3)  # fifth: below the first


def test_next_patch_attention_is_causal_and_classify_is_not():
  for objective, causal in (("next_patch", True), ("classify", False)):
    _, _, model = vit(objective)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2,) + IMAGE, dtype=np.uint8)
    changed = images.copy()
    changed[:, 12:, 12:] = 255 - changed[:, 12:, 12:]  # only the last patch changes
    before, after = (np.asarray(model.encode(jnp.asarray(x))) for x in (images, changed))
    assert np.allclose(before[:, :-1], after[:, :-1], atol=1e-5) == causal, objective


def test_masks_hide_exactly_the_ratio_and_depend_only_on_each_rows_key():
  keys = jax.random.split(jax.random.key(0), 8)
  mask = np.asarray(masked_patches.random_mask(keys, 16, 0.6))
  assert mask.shape == (8, 16) and (mask.sum(1) == round(0.6 * 16)).all()
  assert (np.asarray(masked_patches.random_mask(keys, 16, 0.6)) == mask).all()
  assert (np.asarray(masked_patches.random_mask(jax.random.split(jax.random.key(1), 8), 16, 0.6)) != mask).any()
  assert (np.asarray(masked_patches.random_mask(keys[4:], 16, 0.6)) == mask[4:]).all()  # a microbatch: same rows


def test_normalised_pixel_targets():
  patches = jnp.asarray(np.random.default_rng(0).random((2, 3, 16)), jnp.float32)
  target = np.asarray(pixels.normalised_patches(patches))
  np.testing.assert_allclose(target.mean(-1), 0, atol=1e-5)
  np.testing.assert_allclose(target.std(-1), 1, atol=1e-3)
  assert np.asarray(pixels.normalised_patches(jnp.zeros((1, 1, 16)))).max() == 0  # a flat patch: no NaN


def test_objective_losses_are_finite_with_their_metrics():
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4,) + IMAGE, dtype=np.uint8))
  batch = {"image": images, "label": jnp.arange(4, dtype=jnp.int32)}
  for name in ("classify", "masked_patches", "next_patch"):
    objective = objectives.get(name)
    _, _, model = vit(name)
    options = {"mask_ratio": 0.5} if name == "masked_patches" else {}
    loss, metrics = objective.loss(model, batch, jax.random.split(jax.random.key(0), 4), options)
    assert np.isfinite(float(loss)), name
    assert set(metrics) == ({"error"} if name == "classify" else set())
  assert objectives.get("classify").kind == "discriminative" and objectives.get("next_patch").kind == "generative"


def test_linear_probe_separates_separable_features_and_not_noise():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, 1000)
  centres = rng.normal(size=(4, 8)) * 3
  features = centres[labels] + rng.normal(size=(1000, 8))
  good = linear_probe.probe(features[:800], labels[:800], features[800:], labels[800:], 4)
  assert good["probe_error"] < 0.05
  noise = linear_probe.probe(rng.normal(size=(800, 8)), labels[:800], rng.normal(size=(200, 8)), labels[800:], 4)
  assert noise["probe_error"] > 0.6  # chance is 0.75


def test_microbatches_give_the_full_batch_masked_patch_losses(tmp_path):
  from scaling import train as train_lib
  from sweeps.spec import TrialSpec
  config = TrialSpec.model_validate({
      "model": {"family": "vit", "size": 1, "options": {"aspect_ratio": 16, "head_dim": 8, "patch_size": 4}},
      "data": {"kind": "shapes", "image_size": 8},
      "train": {"objective": "masked_patches", "batch_size": 16, "horizon": {"examples": 16 * 8}, "eval_every": 8,
                "eval_batches": 1, "evaluators": []},
  }).model_dump(mode="json")
  losses = {}
  for microbatches in (1, 4):
    config["train"]["microbatches"] = microbatches
    run_dir = str(tmp_path / str(microbatches))
    train_lib.train(config, run_dir, progress=False, runtime={"flush_every": 1, "tensorboard": False})
    from scaling import metrics as metrics_lib
    losses[microbatches] = [r["loss"] for r in metrics_lib.read_metrics(f"{run_dir}/metrics.jsonl") if "loss" in r]
  np.testing.assert_allclose(losses[4], losses[1], rtol=1e-5)
