"""Packed trials (`runtime.pack: true`): same-shape trials trained as one vmapped program.

Trials pack together when their configs agree on everything except HYPERPARAMETERS: scalars
that change no shape and no decision taken in Python. The seed (model init, data order, the
objective's randomness), AdamW's lr, weight_decay, b1, b2, eps, min_lr_ratio and grad_clip
(its value; whether it clips at all is structural), and the fault-injection steps. A pack's
parameters and optimizer states are stacked on a leading trial axis, its batches too (each
trial draws its own), and the step maps over that axis with each trial's hyperparameters as
traced values. Each trial keeps its own run directory, metrics, checkpoints (unstacked: a
packed trial's checkpoint is an unpacked trial's) and summary; its id is unchanged, since
`runtime` is never hashed.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

OPTIMIZER_SCALARS = ("lr", "weight_decay", "b1", "b2", "eps", "min_lr_ratio", "grad_clip")
FAULT_STEPS = ("inject_nan_at_step", "inject_corruption_at_step")


def pack_key(config: dict) -> str:
  """What trials of one pack share: the config without its hyperparameters (and whether it clips)."""
  rest = json.loads(json.dumps(config))
  rest.pop("seed", None)
  clips = rest["optimizer"]["grad_clip"] > 0
  for name in OPTIMIZER_SCALARS:
    rest["optimizer"].pop(name, None)
  for name in FAULT_STEPS:
    rest["train"].pop(name, None)
  return json.dumps({**rest, "clips": clips}, sort_keys=True)


def hyperparameters(configs: list) -> dict:
  """The trials' hyperparameters: one trial's as the Python values of its config (compiled in as
  constants, the program of an unpacked trial, which takes only the seed as an argument), several as
  arrays with one entry per trial.

  A fault step no trial sets is None (the step has no such branch); else 0 marks "never".
  """
  if len(configs) == 1:
    c = configs[0]
    return {"seed": c["seed"], "optimizer": {k: c["optimizer"][k] for k in OPTIMIZER_SCALARS},
            **{k: c["train"][k] for k in FAULT_STEPS}}
  faults = {k: None if all(c["train"][k] is None for c in configs)
            else np.array([c["train"][k] or 0 for c in configs], np.int32) for k in FAULT_STEPS}
  return {"seed": np.array([c["seed"] % 2**32 for c in configs], np.uint32),
          "optimizer": {k: np.array([c["optimizer"][k] for c in configs], np.float32) for k in OPTIMIZER_SCALARS},
          **faults}


def stack(trees: list, shardings):
  """One tree whose leaves stack the trees' leaves on a new leading axis, placed on `shardings` (the
  stacked ones); a single tree as it is."""
  if len(trees) == 1:
    return trees[0]
  return jax.device_put(jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees), shardings)


def member(tree, index: int, size: int):
  """Trial `index`'s slice of a stacked tree (of a pack of `size`)."""
  return tree if size == 1 else jax.tree.map(lambda leaf: leaf[index], tree)


def stacked_shardings(shardings, size: int):
  """The shardings of stacked leaves: the trial axis replicated, each trial's dimensions as before."""
  if size == 1:
    return shardings
  return jax.tree.map(lambda s: NamedSharding(s.mesh, PartitionSpec(None, *s.spec)), shardings,
                      is_leaf=lambda s: isinstance(s, NamedSharding))


def groups(trials: list, saved_steps, max_trials: int, previous_pack=lambda trial: None) -> list:
  """The trials in packs, in order of each pack's first trial: same pack key, at most `max_trials`, and a
  step that each can resume from (`saved_steps(trial)`: its checkpoints' steps and 0; empty if unusable).

  A trial that ran in a pack (`previous_pack(trial)`: the ids of that pack, None if it ran alone or never)
  packs again with the rest of that pack only, which resumes from the latest step all of them saved: the
  same program, so a killed pack continues bit-exactly even when the kill fell between its trials' saves.
  Other trials pack with those whose latest checkpoint is at the same step, so none starts over.
  """
  packs = []  # [pack key, steps in common, trials]
  for trial in trials:
    steps, previous = saved_steps(trial), previous_pack(trial)
    key = (pack_key(trial.config()), previous if previous is not None else max(steps, default=None))
    for entry in packs:
      if entry[0] == key and len(entry[2]) < max_trials and entry[1] & steps:
        entry[1], entry[2] = entry[1] & steps, entry[2] + [trial]
        break
    else:
      packs.append([key, steps, [trial]])
  return [entry[2] for entry in packs]
