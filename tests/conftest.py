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

TINY_TRIAL = {
    "model": {"family": "gpt", "size": 1, "options": {"aspect_ratio": 16, "head_dim": 8}},
    "data": {"kind": "markov", "vocab_size": 8, "order": 2, "mix": [0.2, 0.3, 0.5], "support": 2,
             "concentration": 0.5, "zipf": 1.0, "seed": 0},
    "train": {"seq_len": 16, "batch_size": 8, "horizon": {"tokens": 8 * 16 * 40, "tokens_per_param": None,
                                                          "param_count": "non_embedding"},
              "eval_every": 20, "eval_batches": 2, "flush_every": 5, "checkpoint_every": 20,
              "checkpoint_minutes": 10.0, "keep_checkpoints": 2, "tensorboard": True},
    "optimizer": {"name": "adamw", "lr": 1e-2, "weight_decay": 0.0, "b1": 0.9, "b2": 0.95, "eps": 1e-8,
                  "warmup_steps": 5, "min_lr_ratio": 0.1, "grad_clip": 1.0},
    "seed": 0,
}


@pytest.fixture
def tiny_trial():
  """A resolved trial config that trains in a second or two."""
  return copy.deepcopy(TINY_TRIAL)


def write(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  return str(path)
