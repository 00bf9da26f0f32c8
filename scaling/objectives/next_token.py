"""`next_token`: mean cross-entropy of each next token given the ones before it (nats/token)."""
import optax

from scaling import objectives


def next_token_loss(model, batch, keys, options):
  tokens = batch["tokens"]  # int32 [B, L + 1]: inputs [:, :-1], targets [:, 1:]
  logits = model(tokens[:, :-1])
  return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean(), {}


objectives.register("next_token", loss=next_token_loss, kind="generative", loss_unit="nats/token",
                    needs=("vocab_size", "seq_len"))
