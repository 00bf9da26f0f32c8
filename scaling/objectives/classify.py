"""`classify`: cross-entropy of the label given the image (nats/example), and the error rate."""
import jax.numpy as jnp
import optax

from scaling import objectives


def classify_loss(model, batch, keys, options):
  logits = model(batch["image"])  # [B, num_classes]
  labels = batch["label"]
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss, {"error": jnp.mean(jnp.argmax(logits, axis=-1) != labels)}


objectives.register("classify", loss=classify_loss, kind="discriminative", loss_unit="nats/example",
                    needs=("image_shape", "num_classes"))
