"""Synthetic tasks (scaling/data/task_generators.py, tasks.py) and their evaluator (scaling/evaluators/tasks.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling.data import registry
from scaling.data import task_generators as gen
from scaling.evaluators import tasks as task_eval


def _strings(task, n=200, seed=0):
  prompts, answers = task.make(np.random.default_rng(seed), n)
  assert prompts.shape == (n, task.prompt_len) and answers.shape == (n, task.answer_len)
  return [(gen.decode(p), gen.decode(a)) for p, a in zip(prompts, answers)]


@pytest.mark.parametrize("digits,reverse", [(1, True), (3, True), (3, False), (5, True)])
def test_addition_answers_are_the_sums(digits, reverse):
  for prompt, answer in _strings(gen.addition(digits, reverse)):
    a, b = prompt.rstrip("=").split("+")
    if reverse:  # every number least significant digit first
      a, b, answer = a[::-1], b[::-1], answer[::-1]
    assert len(a) == len(b) == digits and len(answer) == digits + 1
    assert int(answer) == int(a) + int(b)


@pytest.mark.parametrize("modulus,operation", [(97, "add"), (7, "mul"), (113, "add")])
def test_modular_answers(modulus, operation):
  for prompt, answer in _strings(gen.modular(modulus, operation)):
    a, b = prompt.rstrip("=").split("+" if operation == "add" else "*")
    expected = (int(a) + int(b)) % modulus if operation == "add" else int(a) * int(b) % modulus
    assert int(answer) == expected and int(a) < modulus and int(b) < modulus


def test_recall_copy_and_sort_answers():
  for prompt, answer in _strings(gen.recall(5)):
    pairs, query = prompt.rstrip("=").split("|")
    bound = dict(zip(pairs[0::2], pairs[1::2]))
    assert len(bound) == 5  # distinct keys
    assert bound[query] == answer
  for prompt, answer in _strings(gen.copy(7)):
    assert prompt == answer + "|"
  for prompt, answer in _strings(gen.sort(6)):
    assert answer == "".join(sorted(prompt.rstrip("|")))


def _data(**fields):
  return registry.parse({"kind": "tasks", "tasks": [{"task": "addition", "digits": 2}, {"task": "copy", "length": 4},
                                                    {"task": "modular", "modulus": 11}], **fields})


def _instances(rows, offset, task):
  """Whole instances (prompt, answer) parsed back out of training rows."""
  length = task.prompt_len + task.answer_len + 1
  out = []
  for row in rows - offset:
    for start in range(0, len(row) - length + 1, length):
      if row[start + length - 1] == gen.SEPARATOR:
        out.append(tuple(row[start:start + task.prompt_len]))
  return out


@pytest.mark.parametrize("entry", [{"task": "addition", "digits": 2}, {"task": "copy", "length": 4},
                                   {"task": "modular", "modulus": 11}, {"task": "recall", "pairs": 2}])
def test_train_and_held_out_instances_never_overlap(entry):
  source = registry.parse({"kind": "tasks", "tasks": [entry]}).open(31)
  (name, task), = source.tasks.items()
  held = {tuple(p) for p in source.held_out(name)[0]}
  if name == "modular":  # 121 prompts: the held-out set is what the held-out split holds, not 256
    assert len(held) == int(121 * 0.1 * 0.5)
  seen = set()
  for step in range(30):
    seen.update(_instances(source.draw(np.random.default_rng((7, step)), 64, "train")["tokens"], 0, task))
  assert len(seen) > 100 or name == "modular"
  assert not seen & held
  assert gen.is_held_out(task.kind, np.array(list(held)), 0.1).all()
  assert not gen.is_held_out(task.kind, np.array(list(seen)), 0.1).any()
  # Eval rows hold held-out prompts only.
  evals = _instances(source.draw(np.random.default_rng(3), 64, "eval")["tokens"], 0, task)
  assert gen.is_held_out(task.kind, np.array(evals), 0.1).all()


def test_mixing_share_loss_mask_and_token_offset():
  data = registry.parse({"kind": "tasks", "tasks": [{"task": "addition", "digits": 2}], "share": 0.25,
                         "language": {"kind": "markov", "vocab_size": 8, "order": 2, "mix": [0.2, 0.3, 0.5]},
                         "loss_on": "answers"})
  assert data.model_inputs(16) == {"vocab_size": 8 + len(gen.ALPHABET), "seq_len": 16, "tasks": ("addition",)}
  source = data.open(16)
  batch = source.draw(np.random.default_rng(0), 2000, "train")
  is_task = (batch["tokens"] >= 8).any(1)
  assert abs(is_task.mean() - 0.25) < 0.03
  assert (batch["tokens"][~is_task] < 8).all() and (batch["loss_mask"][~is_task] == 1).all()
  first = batch["tokens"][is_task][0] - 8  # prompt 6, answer 3, separator: the mask marks the answer targets
  assert list(batch["loss_mask"][is_task][0][:10]) == [0, 0, 0, 0, 0, 1, 1, 1, 0, 0]
  assert gen.decode(first[:10]).endswith(";")
  again = source.draw(np.random.default_rng(0), 2000, "train")  # a pure function of the generator
  assert all((again[k] == batch[k]).all() for k in batch)
  assert "loss_mask" not in _data().open(31).features  # loss_on: all (the default) adds no feature


@pytest.mark.parametrize("fields,message", [
    ({"tasks": [{"task": "addition", "digit": 3}]}, "unknown option 'digit' of task 'addition'"),
    ({"tasks": [{"task": "addition", "digits": "3"}]}, "expected int"),
    ({"tasks": [{"task": "copy"}, {"task": "copy"}]}, "two tasks are named 'copy'"),
    ({"tasks": [{"task": "copy"}], "share": 0.5}, "give language"),
    ({"tasks": [{"task": "copy"}], "share": 0.5, "language": {"kind": "markov", "vocab": 3}}, "vocab"),
    ({"tasks": [{"task": "division"}]}, "division"),
])
def test_bad_task_configs_are_one_line_errors(fields, message):
  with pytest.raises(Exception) as error:
    registry.parse({"kind": "tasks", **fields})
  assert message in str(error.value)


def test_an_instance_longer_than_a_row_names_the_key():
  with pytest.raises(registry.DataError) as error:
    _data().model_inputs(8)
  assert error.value.key == "tasks" and "raise seq_len to at least" in str(error.value)


# ---- The evaluator's metrics on hand-made logits ----

def test_answer_scores_on_hand_made_logits():
  # Two instances, answers of 2 tokens over a vocabulary of 3.
  logits = jnp.log(jnp.array([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]],
                              [[0.3, 0.4, 0.3], [0.5, 0.25, 0.25]]]))
  answers = jnp.array([[0, 2], [0, 0]])
  logprob, token_accuracy = jax.device_get(task_eval.answer_scores(logits, answers))
  np.testing.assert_allclose(logprob, [np.log(0.7) + np.log(0.8), np.log(0.3) + np.log(0.5)], rtol=1e-6)
  np.testing.assert_allclose(token_accuracy, [1.0, 0.5])


def test_summary_metrics_and_edit_distance():
  assert task_eval.edit_distance("kitten", "sitting") == 3
  assert task_eval.edit_distance([1, 2, 3], [1, 2, 3]) == 0
  assert task_eval.edit_distance([1, 2, 3], [2, 3, 4]) == 2  # delete the 1, insert the 4
  greedy, answers = np.array([[1, 2, 3], [1, 2, 4], [3, 2, 1]]), np.array([[1, 2, 3], [1, 2, 3], [1, 2, 3]])
  metrics = task_eval.summarize(np.array([-0.1, -1.0, -4.0]), np.array([1.0, 2 / 3, 1 / 3]), greedy, answers)
  assert metrics["exact_match"] == pytest.approx(1 / 3)
  assert metrics["logprob"] == pytest.approx(-5.1 / 3)
  assert metrics["token_accuracy"] == pytest.approx(2 / 3)
  assert metrics["edit_distance"] == pytest.approx((0 + 1 + 2) / 3)


def test_greedy_decoding_matches_a_step_by_step_decode_of_a_real_model():
  from flax import nnx

  from models import gpt
  cfg = gpt.ladder(1, vocab_size=len(gen.ALPHABET), seq_len=16, aspect_ratio=16, head_dim=8)
  graphdef, params = nnx.split(gpt.build(cfg, 0), nnx.Param)
  prompts, answers = gen.addition(2).make(np.random.default_rng(0), 4)
  tokens = jnp.asarray(np.concatenate([prompts, answers], 1))
  logprob, token_accuracy, greedy = task_eval._score(graphdef, jnp.float32, 6, 3, params, tokens)
  model = nnx.merge(graphdef, params)
  sequence = jnp.asarray(prompts)
  for _ in range(3):  # append the argmax of the last position, one token at a time
    sequence = jnp.concatenate([sequence, jnp.argmax(model(sequence)[:, -1], -1)[:, None]], 1)
  np.testing.assert_array_equal(np.asarray(greedy), np.asarray(sequence[:, 6:]))
  log_probs = jax.nn.log_softmax(model(tokens[:, :-1]), -1)
  expected = sum(log_probs[np.arange(4), 5 + i, answers[:, i]] for i in range(3))
  np.testing.assert_allclose(np.asarray(logprob), np.asarray(expected), rtol=1e-5)
