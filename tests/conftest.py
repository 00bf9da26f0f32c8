"""Shared test setup: a persistent JAX compile cache and tiny trial configs."""
import copy
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
os.environ.setdefault("SCALING_JAX_CACHE", os.path.join(ROOT, ".jax_cache"))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from scaling import runtime  # noqa: E402

runtime.configure_jax()

from sweeps.spec import TrialSpec  # noqa: E402

# Resolved through the schema, so every default the trainer reads is present.
TINY_TRIAL = TrialSpec.model_validate({
    "model": {"family": "gpt", "size": 1, "options": {"aspect_ratio": 16, "head_dim": 8}},
    "data": {"kind": "markov", "vocab_size": 8, "order": 2, "mix": [0.2, 0.3, 0.5], "support": 2,
             "concentration": 0.5, "zipf": 1.0, "seed": 0},
    "train": {"seq_len": 16, "batch_size": 8, "horizon": {"tokens": 8 * 16 * 40}, "eval_every": 20,
              "eval_batches": 2},
    "optimizer": {"lr": 1e-2, "weight_decay": 0.0, "warmup_steps": 5},
}).model_dump(mode="json")


# How the tiny trial runs (runtime: not part of its id): flush and checkpoint often enough to test resume.
TINY_RUNTIME = {"flush_every": 5, "checkpoint_every": 20}
QUIET_RUNTIME = {"flush_every": 1, "checkpoint_every": 0, "tensorboard": False}


@pytest.fixture
def tiny_trial():
  """A resolved trial config that trains in a second or two."""
  return copy.deepcopy(TINY_TRIAL)


def write(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def tree_digest(root) -> dict:
  """Every entry below `root` (links not followed) -> its bytes' sha256, its link's target, or "dir"; {} if none:
  what a containment test compares before and after a command."""
  import hashlib
  out = {}
  for folder, dirs, files in os.walk(root):
    for name in dirs + files:
      path = os.path.join(folder, name)
      rel = os.path.relpath(path, root)
      if os.path.islink(path):
        out[rel] = "link:" + os.readlink(path)
      elif os.path.isdir(path):
        out[rel] = "dir"
      else:
        with open(path, "rb") as f:
          out[rel] = hashlib.sha256(f.read()).hexdigest()
  return out
