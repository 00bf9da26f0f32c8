"""Pixel targets shared by the generative vision objectives."""
import jax.numpy as jnp

PIXEL_UNIT = "mse per normalised pixel"


def normalised_patches(patches, eps=1e-6):
  """Each patch's pixels standardised by its own mean and variance (MAE's normalised-pixel target).

  patches: float [B, T, patch_dim]. A flat patch (zero variance) becomes all zeros.
  """
  mean = patches.mean(axis=-1, keepdims=True)
  var = patches.var(axis=-1, keepdims=True)
  return (patches - mean) / jnp.sqrt(var + eps)


def squared_error(predicted, target):
  """Mean squared error per pixel, [B, T]."""
  return jnp.mean(jnp.square(predicted.astype(jnp.float32) - target), axis=-1)
