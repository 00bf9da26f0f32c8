"""`tasks`: synthetic tasks (scaling/data/task_generators.py), alone or mixed into a language.

    data:
      kind: tasks
      tasks:
        - {task: addition, digits: 3}           # name: defaults to the task; give one to run two of a kind
        - {task: recall, pairs: 4, weight: 0.5}
      share: 0.5                                # fraction of training rows that are task rows
      language: {kind: markov}                  # the rest: any language kind (needed when share < 1)

A task row is whole instances (prompt, answer, ";") back to back from position 0, cut at
seq_len + 1 tokens; a language row is a window of the language. Which a row is, and which task,
is drawn per row. Task tokens come after the language's vocabulary (ids V_lang + i). Held-out
rows (the eval set) use held-out prompts only; the `tasks` evaluator scores each task on
`eval_instances` held-out instances of its own (scaling/evaluators/tasks.py).
"""
import inspect
import math
from typing import ClassVar, Literal, Optional

import numpy as np
import pydantic

from scaling.data import registry
from scaling.data import task_generators as gen


MIN_HELD_OUT = 10  # held-out prompts a task must have, at the least, to be evaluated at all


class TaskEntry(pydantic.BaseModel):
  """One task of the mix: `task` (a generator name), its size knobs, an optional `name` and `weight`."""
  model_config = pydantic.ConfigDict(extra="allow", strict=True, frozen=True, allow_inf_nan=False)
  task: Literal[tuple(gen.GENERATORS)]
  name: Optional[str] = pydantic.Field(None, pattern=r"^[a-z][a-z0-9_]*$", max_length=40)
  weight: float = pydantic.Field(1.0, gt=0, le=1e6, strict=False)  # relative to the other tasks'

  @pydantic.model_validator(mode="after")
  def _known_knobs(self):
    self.generator()
    return self

  @property
  def knobs(self) -> dict:
    return dict(self.model_extra or {})

  @property
  def label(self) -> str:
    return self.name or self.task

  def generator(self) -> gen.Task:
    """The Task; unknown or mistyped knobs raise one line naming the knob."""
    signature = inspect.signature(gen.GENERATORS[self.task])
    for knob, value in self.knobs.items():
      parameter = signature.parameters.get(knob)
      if parameter is None:
        raise ValueError(f"unknown option {knob!r} of task {self.task!r}; known: {list(signature.parameters)}")
      if type(value) is not type(parameter.default):
        raise ValueError(f"option {knob!r} of task {self.task!r}: expected {type(parameter.default).__name__}, "
                         f"got {value!r}")
      if isinstance(value, float) and not math.isfinite(value):  # knobs are extras: the schema's setting misses them
        raise ValueError(f"option {knob!r} of task {self.task!r}: expected a finite number, got {value!r}")
    limits = {"digits": (1, 18), "modulus": (2, 10 ** 6), "pairs": (1, 26), "length": (1, 256)}
    for knob, (lo, hi) in limits.items():
      if knob in self.knobs and not lo <= self.knobs[knob] <= hi:
        raise ValueError(f"option {knob!r} of task {self.task!r} must be in [{lo}, {hi}], got {self.knobs[knob]}")
    if self.knobs.get("operation", "add") not in ("add", "mul"):
      raise ValueError(f"option 'operation' of task 'modular' must be 'add' or 'mul', got {self.knobs['operation']!r}")
    return gen.GENERATORS[self.task](**self.knobs)


@registry.register
class TasksData(registry.TokenData):
  """Synthetic tasks with known answers, optionally mixed into a language."""
  nested_data: ClassVar[tuple] = ("language",)
  kind: Literal["tasks"]
  tasks: tuple[TaskEntry, ...] = pydantic.Field(min_length=1, strict=False)
  share: float = pydantic.Field(1.0, gt=0, le=1, strict=False)
  language: Optional[dict] = None  # a language data config (markov, text, tfds); its rows fill the rest
  eval_share: float = pydantic.Field(0.1, ge=0.01, le=0.5)  # fraction of all prompts held out from training
  eval_instances: int = pydantic.Field(256, ge=1, le=1 << 16)  # held-out instances per task the evaluator scores
  # Which next-token targets of a task row the loss counts: every token, or only the answers' (as in
  # fine-tuning; prompts are random, so their tokens are noise to a model). Language rows count throughout.
  loss_on: Literal["all", "answers"] = "all"

  @pydantic.field_validator("tasks", mode="after")
  @classmethod
  def _resolved_knobs(cls, entries):  # every knob spelled out, so leaving one at its default keeps the trial id
    resolved = []
    for entry in entries:
      defaults = {name: p.default for name, p in inspect.signature(gen.GENERATORS[entry.task]).parameters.items()}
      resolved.append(TaskEntry.model_validate({**defaults, **entry.model_dump()}))
    return tuple(resolved)

  @pydantic.field_validator("language", mode="after")
  @classmethod
  def _resolved_language(cls, language):  # defaults filled in, so the trial id does not depend on spelling them
    if language is None:
      return None
    if language.get("kind") == "tasks":
      raise ValueError("must be a language kind (markov, text, tfds), not tasks")
    if language.get("unique_tokens") is not None:
      raise ValueError("unique_tokens belongs to the tasks data itself, not to its language")
    try:
      schema = registry.parse(language)
    except (registry.DataError, pydantic.ValidationError) as e:
      raise ValueError(str(e).splitlines()[0] if isinstance(e, registry.DataError) else _first_error(e)) from None
    if not isinstance(schema, registry.TokenData):
      raise ValueError(f"kind {language.get('kind')!r} is not a language")
    return {k: v for k, v in schema.model_dump().items() if k != "unique_tokens"}

  @pydantic.model_validator(mode="after")
  def _consistent(self):
    labels = [t.label for t in self.tasks]
    if len(set(labels)) != len(labels):
      raise ValueError(f"two tasks are named {sorted(l for l in labels if labels.count(l) > 1)[0]!r}; "
                       "give each a distinct name")
    if self.share < 1 and self.language is None:
      raise ValueError(f"share {self.share} leaves rows for a language; give language: {{kind: ...}}")
    if self.loss_on == "answers" and self.unique_tokens is not None:
      raise ValueError("loss_on: answers marks targets of fresh rows; it cannot be combined with unique_tokens")
    return self

  def _language(self):
    return None if self.language is None else registry.parse(self.language)

  def model_inputs(self, seq_len: int) -> dict:
    for entry in self.tasks:
      task = entry.generator()
      if task.instances * self.eval_share < MIN_HELD_OUT:
        raise registry.DataError("tasks", f"task {entry.label!r} has {task.instances:.0f} distinct prompts, so a "
                                 f"held-out share of {self.eval_share:g} keeps {task.instances * self.eval_share:.1f} "
                                 f"for evaluation; need at least {MIN_HELD_OUT} (a larger task or eval_share)")
      need = task.prompt_len + task.answer_len + 1
      if need > seq_len + 1:
        raise registry.DataError("tasks", f"an instance of task {entry.label!r} is {need} tokens (prompt "
                                 f"{task.prompt_len} + answer {task.answer_len} + separator), longer than a "
                                 f"row of seq_len + 1 = {seq_len + 1}; raise seq_len to at least {need - 1}")
    language = self._language()
    vocab = 0 if language is None else language.model_inputs(seq_len)["vocab_size"]
    return {"vocab_size": vocab + len(gen.ALPHABET), "seq_len": seq_len,
            "tasks": tuple(t.label for t in self.tasks)}

  def open(self, seq_len: int):
    language = self._language()
    return TaskSource(self, None if language is None else language.open(seq_len), seq_len)

  def draw_bytes(self, tokens: int, seq_len: int) -> int:
    # int32 rows, a float32 loss mask and the instances they are cut from; the language draws its share.
    language = self._language()
    return 16 * tokens + (0 if language is None else language.draw_bytes(tokens, seq_len))


def _first_error(error: pydantic.ValidationError) -> str:
  first = error.errors()[0]
  where = ".".join(str(k) for k in first["loc"] if k not in registry.kinds())
  message = f"expected a finite number, got {first['input']!r}" if first["type"] == "finite_number" else first["msg"]
  return f"{where}: {message}" if where else message


class TaskSource(registry.Source):
  """Rows of task instances (and language windows); held-out instances per task for the evaluator."""

  def __init__(self, schema: TasksData, language, seq_len: int):
    self.schema, self.language, self.seq_len = schema, language, seq_len
    self.tasks = {entry.label: entry.generator() for entry in schema.tasks}
    self.offset = 0 if language is None else language.model_inputs["vocab_size"]  # task ids start here
    weights = np.array([entry.weight for entry in schema.tasks])
    self.weights = weights / weights.sum()
    self.features = {"tokens": ((seq_len + 1,), np.int32)}
    if schema.loss_on == "answers":  # 1 where the target (token t + 1) counts: scaling/objectives/next_token.py
      self.features["loss_mask"] = ((seq_len,), np.float32)
    self.model_inputs = {"vocab_size": self.offset + len(gen.ALPHABET), "seq_len": seq_len,
                         "tasks": tuple(self.tasks)}
    self.info = {"kind": "tasks", "alphabet": gen.ALPHABET, "token_offset": self.offset, "share": schema.share,
                 "eval_share": schema.eval_share,
                 "tasks": [{"name": e.label, "task": e.task, **e.knobs, "weight": float(w),
                            "prompt_len": self.tasks[e.label].prompt_len, "answer_len": self.tasks[e.label].answer_len}
                           for e, w in zip(schema.tasks, self.weights)],
                 "language": None if language is None else language.info}

  def task_rows(self, name: str, rng: np.random.Generator, n: int, held_out: bool) -> tuple:
    """([n, seq_len + 1] rows of whole instances of one task (prompt, answer, separator) from position 0,
    [n, seq_len] 1 where the target is an answer token)."""
    task = self.tasks[name]
    per_row = -(-(self.seq_len + 1) // (task.prompt_len + task.answer_len + 1))
    prompts, answers = gen.draw(task, rng, n * per_row, held_out, self.schema.eval_share)
    separator = np.full((len(prompts), 1), gen.SEPARATOR, np.int32)
    instances = np.concatenate([prompts, answers, separator], 1).reshape(n, -1)
    is_answer = np.tile(np.repeat([0, 1, 0], [task.prompt_len, task.answer_len, 1]), per_row)
    return instances[:, :self.seq_len + 1] + self.offset, np.broadcast_to(is_answer[1:self.seq_len + 1], (n, self.seq_len))

  def draw(self, rng, n, split, rows=None) -> dict:
    is_task = rng.random(n) < self.schema.share
    which = rng.choice(len(self.tasks), n, p=self.weights)
    streams = [np.random.default_rng(s) for s in rng.integers(0, 2 ** 63, len(self.tasks) + 1)]
    out, mask = np.empty((n, self.seq_len + 1), np.int32), np.ones((n, self.seq_len), np.float32)
    for i, name in enumerate(self.tasks):
      at = is_task & (which == i)
      if at.any():
        out[at], mask[at] = self.task_rows(name, streams[i], int(at.sum()), split == "eval")
    if (~is_task).any():
      out[~is_task] = self.language.draw(streams[-1], int((~is_task).sum()), split)["tokens"]
    batch = {"tokens": out, "loss_mask": mask} if "loss_mask" in self.features else {"tokens": out}
    return batch if rows is None else {k: v[rows] for k, v in batch.items()}

  def held_out(self, name: str) -> tuple:
    """(prompts [n, P], answers [n, A]) token ids: the task's fixed held-out instances, the same for every trial."""
    prompts, answers = gen.held_out_set(self.tasks[name], self.schema.eval_instances, self.schema.eval_share)
    return prompts + self.offset, answers + self.offset
