"""Synthetic tasks with known answers: the abilities an emergence study watches appear with scale.

A task instance is a prompt and an answer, both fixed-length strings over one shared alphabet
(`ALPHABET`), stored as int ids into it. Every task's answer is a function of its prompt, so the
held-out split is a property of the prompt alone: an instance is held out iff a hash of its
prompt falls below `eval_share` (`is_held_out`). Training draws never hold a held-out prompt and
evaluation draws only held-out ones, so the two never overlap, for every seed and every step.

Generators (the `task:` key; each one's size knob beside it):
  addition  digits (d):     123 + 456 as "321+654=" -> "9750": every number zero-padded (the sum to
                            d + 1 digits) and written least significant digit first (reverse: true,
                            the default; false writes "123+456=0579"). Carries then flow in writing
                            order and digit k of each number sits a fixed distance back, which a small
                            model can learn (Lee et al. 2023, "Teaching arithmetic to small transformers")
  modular   modulus (p):    "17+85=" -> (a + b) mod p (or a * b with operation: mul), zero-padded
  recall    pairs (k):      "a3x7q1|x=" -> "7": associative recall of the value bound to the queried key
  copy      length (m):     "qzkt|" -> "qzkt": in-context copying, the induction-head ability
  sort      length (m):     "5193|" -> "1359": the digits in ascending order
"""
import dataclasses
from typing import Callable

import numpy as np

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz+*=|;"
SEPARATOR = ALPHABET.index(";")  # ends every instance in a training row
_DIGITS = np.arange(10)
_LETTERS = np.arange(10, 36)
PLUS, TIMES, EQUALS, BAR = (ALPHABET.index(c) for c in "+*=|")


def encode(text: str) -> np.ndarray:
  return np.array([ALPHABET.index(c) for c in text], np.int32)


def decode(ids) -> str:
  return "".join(ALPHABET[int(i)] for i in ids)


def digits_of(values: np.ndarray, width: int) -> np.ndarray:
  """[n, width] decimal digits (ids 0-9), most significant first, zero-padded."""
  powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
  return ((values[:, None].astype(np.int64) // powers) % 10).astype(np.int32)


def _column(n, token):
  return np.full((n, 1), token, np.int32)


@dataclasses.dataclass(frozen=True)
class Task:
  """A generator: `make(rng, n) -> (prompts [n, prompt_len], answers [n, answer_len])`, ids into ALPHABET."""
  kind: str
  prompt_len: int
  answer_len: int
  make: Callable
  instances: float  # how many distinct prompts exist (bounds the held-out set)


def addition(digits: int = 3, reverse: bool = True) -> Task:
  def make(rng, n):
    a, b = rng.integers(0, 10 ** digits, n), rng.integers(0, 10 ** digits, n)
    order = slice(None, None, -1) if reverse else slice(None)
    a_digits, b_digits = digits_of(a, digits)[:, order], digits_of(b, digits)[:, order]
    prompt = np.concatenate([a_digits, _column(n, PLUS), b_digits, _column(n, EQUALS)], 1)
    return prompt, digits_of(a + b, digits + 1)[:, order]
  return Task("addition", 2 * digits + 2, digits + 1, make, 100.0 ** digits)


def modular(modulus: int = 97, operation: str = "add") -> Task:
  width = len(str(modulus - 1))

  def make(rng, n):
    a, b = rng.integers(0, modulus, n), rng.integers(0, modulus, n)
    result = (a + b) % modulus if operation == "add" else (a * b) % modulus
    op = PLUS if operation == "add" else TIMES
    prompt = np.concatenate([digits_of(a, width), _column(n, op), digits_of(b, width), _column(n, EQUALS)], 1)
    return prompt, digits_of(result, width)
  return Task("modular", 2 * width + 2, width, make, float(modulus) ** 2)


def recall(pairs: int = 4) -> Task:
  def make(rng, n):
    keys = _LETTERS[np.argsort(rng.random((n, len(_LETTERS))), axis=1)[:, :pairs]]  # distinct keys per prompt
    values = rng.integers(0, 10, (n, pairs)).astype(np.int32)
    query = rng.integers(0, pairs, n)
    bound = np.stack([keys, values], 2).reshape(n, 2 * pairs)
    prompt = np.concatenate([bound, _column(n, BAR), keys[np.arange(n), query][:, None], _column(n, EQUALS)], 1)
    return prompt.astype(np.int32), values[np.arange(n), query][:, None]
  return Task("recall", 2 * pairs + 3, 1, make, 26.0 ** pairs * 10.0 ** pairs * pairs)


def copy(length: int = 6) -> Task:
  def make(rng, n):
    text = rng.choice(_LETTERS, (n, length)).astype(np.int32)
    return np.concatenate([text, _column(n, BAR)], 1), text
  return Task("copy", length + 1, length, make, 26.0 ** length)


def sort(length: int = 6) -> Task:
  def make(rng, n):
    text = rng.integers(0, 10, (n, length)).astype(np.int32)
    return np.concatenate([text, _column(n, BAR)], 1), np.sort(text, axis=1)
  return Task("sort", length + 1, length, make, 10.0 ** length)


GENERATORS = {"addition": addition, "modular": modular, "recall": recall, "copy": copy, "sort": sort}


# ---- The held-out split: a property of the prompt ----

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix(x: np.ndarray) -> np.ndarray:
  with np.errstate(over="ignore"):
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
    return x ^ (x >> np.uint64(31))


def prompt_hash(kind: str, prompts: np.ndarray) -> np.ndarray:
  """[n] uint64 hash of each prompt row (and of the task kind, so tasks split independently)."""
  h = np.full(len(prompts), sum(ord(c) << (8 * i) for i, c in enumerate(kind[:8])), np.uint64)
  for column in prompts.T:
    h = _splitmix(h ^ column.astype(np.uint64))
  return h


def is_held_out(kind: str, prompts: np.ndarray, eval_share: float) -> np.ndarray:
  """[n] bool: the prompt belongs to the held-out split (a fixed eval_share of all prompts)."""
  return prompt_hash(kind, prompts) < np.uint64(min(eval_share, 1.0) * float(2 ** 64 - 1))


def draw(task: Task, rng: np.random.Generator, n: int, held_out: bool, eval_share: float) -> tuple:
  """n instances of one split (rejection sampling: a held-out share of eval_share costs 1 / eval_share draws)."""
  prompts, answers, have = [], [], 0
  share = eval_share if held_out else 1 - eval_share
  for _ in range(1000):  # bounded: a split with (almost) no prompts would otherwise loop for ever
    if have >= n:
      break
    p, a = task.make(rng, max(16, int(1.2 * (n - have) / share) + 1))
    keep = is_held_out(task.kind, p, eval_share) == held_out
    prompts.append(p[keep]), answers.append(a[keep])
    have += int(keep.sum())
  if have < n:
    raise ValueError(f"task {task.kind!r}: fewer than {n} {'held-out' if held_out else 'training'} prompts "
                     f"found in 1000 rounds of draws")
  return np.concatenate(prompts)[:n], np.concatenate(answers)[:n]


def held_out_set(task: Task, n: int, eval_share: float, seed: int = 0) -> tuple:
  """Up to n distinct held-out instances, the same for every trial (fewer if the task has fewer)."""
  n = min(n, int(task.instances * eval_share * 0.5) or 1)  # a small task gives what its held-out split holds
  rng = np.random.default_rng((1 << 43, seed))
  prompts, answers = np.empty((0, task.prompt_len), np.int32), np.empty((0, task.answer_len), np.int32)
  for _ in range(64):
    p, a = draw(task, rng, 2 * n, True, eval_share)
    prompts, answers = np.concatenate([prompts, p]), np.concatenate([answers, a])
    _, first = np.unique(prompts, axis=0, return_index=True)
    first = np.sort(first)
    prompts, answers = prompts[first], answers[first]
    if len(prompts) >= n:
      break
  return prompts[:n], answers[:n]
