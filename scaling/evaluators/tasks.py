"""`tasks`: each synthetic task (data kind `tasks`) scored on its held-out instances, four ways.

The same outputs, an all-or-nothing view and continuous views (Schaeffer et al. 2023):
  <task>_exact_match     fraction of instances whose greedy answer is right in every token
  <task>_logprob         teacher-forced log-probability of the whole correct answer (nats, <= 0)
  <task>_token_accuracy  teacher-forced: fraction of answer tokens that are the argmax given the true prefix
  <task>_edit_distance   Levenshtein distance between the greedy answer and the correct one (tokens)
Greedy decoding starts from the prompt at position 0, as instances sit in training rows, and
writes the answer's fixed number of tokens. Deterministic: the instances are fixed
(`TaskSource.held_out`) and argmax has no randomness.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaling import distributed, evaluators

METRICS = ("exact_match", "logprob", "token_accuracy", "edit_distance")


def answer_scores(logits, answers):
  """Teacher-forced (log-probability of each answer [n], per-token accuracy [n]).

  logits [n, A, V] at the positions that predict the answer's A tokens; answers [n, A] ids.
  """
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  picked = jnp.take_along_axis(log_probs, answers[..., None], axis=-1)[..., 0]
  return picked.sum(-1), (jnp.argmax(logits, -1) == answers).mean(-1)


def edit_distance(a, b) -> int:
  """Levenshtein distance between two sequences (insertions, deletions, substitutions cost 1)."""
  previous = list(range(len(b) + 1))
  for i, x in enumerate(a, 1):
    current = [i]
    for j, y in enumerate(b, 1):
      current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
    previous = current
  return previous[-1]


def summarize(logprob, token_accuracy, greedy, answers) -> dict:
  """The four metrics from per-instance outputs (numpy): means over instances."""
  return {"exact_match": float(np.mean(np.all(greedy == answers, axis=1))),
          "logprob": float(np.mean(logprob)),
          "token_accuracy": float(np.mean(token_accuracy)),
          "edit_distance": float(np.mean([edit_distance(g, a) for g, a in zip(greedy.tolist(), answers.tolist())]))}


def _logits(graphdef, params, inputs):
  """The model's logits; what its layers sow (an MoE's routing statistics) is captured and dropped. A model of
  its own per call, so one inside a loop's trace writes to nothing outside it."""
  return nnx.capture(nnx.merge(graphdef, params), nnx.Intermediate)(inputs)[0]


def _score(graphdef, compute_dtype, prompt_len, answer_len, params, tokens):
  """tokens [B, P + A] (prompt then answer) -> (logprob [B], token accuracy [B], greedy answer [B, A])."""
  if compute_dtype != jnp.float32:
    params = jax.tree.map(lambda p: p.astype(compute_dtype), params)
  inputs = tokens[:, :-1]  # position t predicts token t + 1; the last answer token is never an input
  answers = tokens[:, prompt_len:]
  logprob, token_accuracy = answer_scores(_logits(graphdef, params, inputs)[:, prompt_len - 1:], answers)

  def write_next(i, buffer):  # causal: positions past the prompt + i written tokens do not matter
    logits = _logits(graphdef, params, buffer[:, :-1])
    next_token = jnp.argmax(logits[:, prompt_len - 1 + i], -1).astype(buffer.dtype)
    return jax.lax.dynamic_update_slice_in_dim(buffer, next_token[:, None], prompt_len + i, axis=1)

  greedy = jax.lax.fori_loop(0, answer_len, write_next, tokens.at[:, prompt_len:].set(0))[:, prompt_len:]
  return logprob, token_accuracy, greedy


class TaskEvaluator:

  def __init__(self, context: evaluators.Context):
    source = context.data.source
    batch_size = context.data.batch_size
    compute_dtype = jnp.dtype(context.config["train"]["compute_dtype"])
    self.sets = {}
    for name, task in source.tasks.items():
      prompts, answers = source.held_out(name)
      tokens = np.concatenate([prompts, answers], 1)
      n = len(tokens)
      padded = np.concatenate([tokens, np.repeat(tokens[-1:], -n % batch_size, 0)])  # whole batches
      placement = context.placement.with_shapes({"tokens": (padded[:batch_size].shape, np.int32)})
      batches = [placement.place_batch({"tokens": padded[i:i + batch_size]}) for i in range(0, len(padded), batch_size)]
      score = jax.jit(functools.partial(_score, context.graphdef, compute_dtype, task.prompt_len, task.answer_len),
                      in_shardings=(context.param_sharding, placement.sharding))
      self.sets[name] = (batches, answers, n, score)

  def due(self, step: int) -> bool:
    return True  # at every eval: the metric's curve over training, not only its end

  def run(self, params) -> dict:
    row = {}
    for name, (batches, answers, n, score) in self.sets.items():
      outputs = [[distributed.to_host(x) for x in score(params, batch["tokens"])] for batch in batches]
      logprob, token_accuracy, greedy = (np.concatenate(parts)[:n] for parts in zip(*outputs))
      row.update({f"{name}_{k}": v for k, v in summarize(logprob, token_accuracy, greedy, answers).items()})
    return row


evaluators.register("tasks", TaskEvaluator, needs=("tasks",))
