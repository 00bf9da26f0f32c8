"""`next_token`: mean cross-entropy of each next token given the ones before it (nats/token).

The GPT option `cross_entropy_impl` (models/gpt.py) picks the fused Pallas cross-entropy instead of
logits then optax's. A batch with a `loss_mask` [B, L] (data that marks which targets count, e.g. `tasks` with
loss_on: answers) averages over the marked targets only.
"""
import jax.numpy as jnp
import optax

from scaling import objectives


def next_token_loss(model, batch, keys, options):
  tokens = batch["tokens"]  # int32 [B, L + 1]: inputs [:, :-1], targets [:, 1:]
  impl = getattr(model.cfg, "cross_entropy_impl", "xla")
  if impl == "xla":
    losses = optax.softmax_cross_entropy_with_integer_labels(model(tokens[:, :-1]), tokens[:, 1:])
  else:  # The fused kernel: logits = hidden @ unembedding a tile at a time, never all at once.
    import pallas_kernels
    hidden = model.hidden(tokens[:, :-1])
    losses = pallas_kernels.cross_entropy(hidden.reshape(-1, hidden.shape[-1]), model.unembedding.kernel[...],
                                          tokens[:, 1:].reshape(-1), impl=impl).reshape(tokens[:, 1:].shape)
  if "loss_mask" not in batch:
    return losses.mean(), {}
  mask = batch["loss_mask"]
  return jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1.0), {}


objectives.register("next_token", loss=next_token_loss, kind="generative", loss_unit="nats/token",
                    needs=("vocab_size", "seq_len"), evaluators=("tasks",))
