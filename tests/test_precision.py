"""Gradient accumulation and bfloat16 compute change how a step is computed, not what it computes.

- `microbatches: 4` sums the gradients of four quarter-batches: the same update as one
  full batch, so the loss curve matches to float32 rounding.
- `compute_dtype: bfloat16` casts the float32 master parameters for the forward and
  backward pass only: the loss stays near the float32 one, and the checkpoint holds float32.
"""
import os

import numpy as np
import orbax.checkpoint as ocp
import pytest
import jax

from scaling import metrics as metrics_lib
from scaling import train as train_lib
from tests.conftest import QUIET_RUNTIME, TINY_TRIAL

STEPS = 12


def _train(tmp_path_factory, **train_overrides):
  config = {**TINY_TRIAL, "train": {**TINY_TRIAL["train"], "horizon": {"tokens": STEPS * 8 * 16, "tokens_per_param": None},
                                    **train_overrides}}
  run_dir = str(tmp_path_factory.mktemp("_".join(f"{k}{v}" for k, v in train_overrides.items()) or "float32"))
  summary = train_lib.train(config, run_dir, progress=False, runtime=QUIET_RUNTIME)
  rows = metrics_lib.read_metrics(os.path.join(run_dir, "metrics.jsonl"))
  return {"summary": summary, "run_dir": run_dir, "losses": np.array([r["loss"] for r in rows if "loss" in r])}


@pytest.fixture(scope="module")
def float32(tmp_path_factory):
  return _train(tmp_path_factory)


def test_microbatches_give_the_full_batch_losses(float32, tmp_path_factory):
  accumulated = _train(tmp_path_factory, microbatches=4)
  assert len(accumulated["losses"]) == len(float32["losses"]) == STEPS
  np.testing.assert_allclose(accumulated["losses"], float32["losses"], rtol=1e-5)
  assert accumulated["summary"]["final_eval_loss"] == pytest.approx(float32["summary"]["final_eval_loss"], rel=1e-5)


def test_bfloat16_trains_near_float32_with_float32_parameters(float32, tmp_path_factory):
  bf16 = _train(tmp_path_factory, compute_dtype="bfloat16")
  losses = bf16["losses"]
  assert bf16["summary"]["status"] == "done" and np.isfinite(losses).all()
  assert losses[-3:].mean() < losses[:3].mean() - 0.1  # It learns.
  # bf16 has an 8-bit mantissa (~0.4% per rounding): close to float32 early, before paths drift apart.
  np.testing.assert_allclose(losses[:5], float32["losses"][:5], rtol=1e-2)
  assert not np.array_equal(losses, float32["losses"])  # bf16 really was used.

  step_dir = os.path.join(bf16["run_dir"], "checkpoints", str(STEPS), "default")
  metadata = ocp.StandardCheckpointer().metadata(step_dir)
  tree = getattr(metadata, "item_metadata", metadata)
  leaves = jax.tree_util.tree_flatten_with_path(getattr(tree, "tree", tree))[0]
  params = {jax.tree_util.keystr(path): leaf.dtype for path, leaf in leaves if jax.tree_util.keystr(path).startswith("['params']")}
  assert params and all(dtype == np.float32 for dtype in params.values()), params
