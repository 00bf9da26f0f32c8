"""`linear_probe`: a linear classifier on frozen features; its test error is the downstream number.

The model's pooled features (`model.features(images)`) of `train.probe_examples`
training images are standardised, then multinomial logistic regression is fit
by full-batch L-BFGS for each L2 strength of a grid; the strength that does best
on a held-out fifth of those examples is refit on all of them and scored on the
trial's fixed eval set. Metrics: `probe_error` (fraction wrong) and
`probe_loss` (nats/example). Deterministic: no randomness anywhere.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from scaling import distributed, evaluators

L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
ITERATIONS = 100


def _fit_logistic(x, y, num_classes, l2):
  """Weights [d + 1, K] minimising mean cross-entropy + l2 * |W|^2 (bias not decayed)."""
  def loss(w):
    logits = x @ w[:-1] + w[-1]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean() + l2 * jnp.sum(w[:-1] ** 2)

  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)
  w = jnp.zeros((x.shape[1] + 1, num_classes), jnp.float32)

  def iterate(carry, _):
    w, state = carry
    value, grad = value_and_grad(w, state=state)
    updates, state = solver.update(grad, state, w, value=value, grad=grad, value_fn=loss)
    return (optax.apply_updates(w, updates), state), None

  (w, _), _ = jax.lax.scan(iterate, (w, solver.init(w)), None, length=ITERATIONS)
  return w


def _scores(w, x, y):
  logits = x @ w[:-1] + w[-1]
  return (jnp.mean(jnp.argmax(logits, -1) != y),
          optax.softmax_cross_entropy_with_integer_labels(logits, y).mean())


@functools.partial(jax.jit, static_argnums=4)
def _probe(x_train, y_train, x_eval, y_eval, num_classes):
  mean, std = x_train.mean(0), x_train.std(0) + 1e-6
  x_train, x_eval = (x_train - mean) / std, (x_eval - mean) / std
  n_fit = x_train.shape[0] * 4 // 5
  fit_each = jax.vmap(lambda l2: _fit_logistic(x_train[:n_fit], y_train[:n_fit], num_classes, l2))
  held_out_error = jax.vmap(lambda w: _scores(w, x_train[n_fit:], y_train[n_fit:])[0])(fit_each(jnp.array(L2_GRID)))
  best = jnp.array(L2_GRID)[jnp.argmin(held_out_error)]
  return _scores(_fit_logistic(x_train, y_train, num_classes, best), x_eval, y_eval) + (best,)


def probe(x_train, y_train, x_eval, y_eval, num_classes: int) -> dict:
  """Fits on (x_train, y_train), scores on (x_eval, y_eval); features [n, d] float, labels [n] int."""
  error, loss, l2 = _probe(jnp.asarray(x_train, jnp.float32), jnp.asarray(y_train, jnp.int32),
                           jnp.asarray(x_eval, jnp.float32), jnp.asarray(y_eval, jnp.int32), num_classes)
  return {"probe_error": float(error), "probe_loss": float(loss), "probe_l2": float(l2)}


class LinearProbe:

  def __init__(self, context: evaluators.Context):
    train_cfg = context.config["train"]
    batch_size = context.data.batch_size
    n = max(batch_size, train_cfg["probe_examples"] // batch_size * batch_size)
    examples = context.data.probe_train(n)
    chunks = [{k: v[i:i + batch_size] for k, v in examples.items()} for i in range(0, n, batch_size)]
    self.train_batches = [context.placement.place_batch(c) for c in chunks]
    self.eval_batches = [context.placement.place_batch(b) for b in context.eval_sets]
    self.y_train = examples["label"]
    self.y_eval = np.concatenate([b["label"] for b in context.eval_sets])
    self.num_classes = int(context.data.model_inputs["num_classes"])
    self.every = train_cfg["probe_every"]
    graphdef = context.graphdef
    self.features = jax.jit(lambda params, batch: nnx.merge(graphdef, params).features(batch["image"]),
                            in_shardings=(context.param_sharding, context.placement.sharding))

  def due(self, step: int) -> bool:
    return bool(self.every) and step % self.every == 0

  def run(self, params) -> dict:
    features = lambda batches: np.concatenate([distributed.to_host(self.features(params, b)) for b in batches])
    return probe(features(self.train_batches), self.y_train, features(self.eval_batches), self.y_eval,
                 self.num_classes)


evaluators.register("linear_probe", LinearProbe, needs=("num_classes",))
