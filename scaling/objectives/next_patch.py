"""`next_patch` (AIM / iGPT style): causal attention over patches in raster order; predict each next patch.

Position t sees patches 0..t and predicts the normalised pixels of patch t + 1;
the loss is the mean squared error over the T - 1 predicted patches.
"""
import jax.numpy as jnp

from scaling import objectives
from scaling.objectives import pixels


def next_patch_loss(model, batch, keys, options):
  images = batch["image"]
  patches = model.patchify(images)
  predicted = model.predict_pixels(model.encode(images))  # the family builds causal attention for this objective
  error = pixels.squared_error(predicted[:, :-1], pixels.normalised_patches(patches)[:, 1:])
  return jnp.mean(error), {}


objectives.register("next_patch", loss=next_patch_loss, kind="generative", loss_unit=pixels.PIXEL_UNIT,
                    needs=("image_shape",), evaluators=("linear_probe",))
