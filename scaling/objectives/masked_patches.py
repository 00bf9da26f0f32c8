"""`masked_patches` (SimMIM / MAE style): hide a random subset of patches, predict their normalised pixels.

The encoder sees every position, with a learned mask token in place of each
hidden patch's embedding (SimMIM), and a linear head predicts the pixels; the
loss is the mean squared error over hidden patches only.
"""
import jax
import jax.numpy as jnp
import pydantic

from scaling import objectives
from scaling.objectives import pixels


class MaskedPatchesOptions(objectives.NoOptions):
  mask_ratio: float = pydantic.Field(0.6, gt=0, lt=1)  # fraction of patches hidden per image


def random_mask(keys, n_patches: int, ratio: float):
  """bool [B, n_patches] from one key per row: exactly round(ratio * n_patches) (at least 1) True, uniformly placed."""
  n_masked = max(1, round(ratio * n_patches))
  noise = jax.vmap(lambda key: jax.random.uniform(key, (n_patches,)))(keys)
  return jnp.argsort(jnp.argsort(noise, axis=-1), axis=-1) < n_masked


def masked_patches_loss(model, batch, keys, options):
  images = batch["image"]
  patches = model.patchify(images)  # [B, T, patch_dim] in [0, 1]
  mask = random_mask(keys, patches.shape[1], options["mask_ratio"])
  predicted = model.predict_pixels(model.encode(images, mask=mask))
  error = pixels.squared_error(predicted, pixels.normalised_patches(patches))
  return jnp.sum(error * mask) / jnp.sum(mask), {}


objectives.register("masked_patches", loss=masked_patches_loss, kind="generative", loss_unit=pixels.PIXEL_UNIT,
                    needs=("image_shape",), options=MaskedPatchesOptions, evaluators=("linear_probe",))
