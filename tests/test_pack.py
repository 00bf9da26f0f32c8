"""Packed trials (`runtime.pack: true`): one vmapped program for trials that differ only in hyperparameters.

Checked through the real sweep runner: the same trial ids and the same losses as unpacked training
(within float32 tolerance), each trial's own run directory; a NaN in one packed trial stops that trial
only; a packed sweep killed at random steps resumes bit-exactly; which trials pack together.
"""
import os
import random
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling import metrics as metrics_lib
from scaling import pack as pack_lib
from scaling import runtime
from sweeps import expand, local
from tests.conftest import write
from tests.test_faults import launch, wait_for

SWEEP = """\
name: {name}
model: {{family: gpt, size: 1, options: {{aspect_ratio: 16, head_dim: 8}}}}
data: {{kind: markov, vocab_size: 8, order: 2, mix: [0.2, 0.3, 0.5]}}
train:
  seq_len: 16
  batch_size: 8
  horizon: {{tokens: {tokens}}}
  eval_every: 10
  eval_batches: 2
  inject_nan_at_step: {nan}
seed: {seed}
optimizer: {{lr: {lr}, warmup_steps: 5, weight_decay: {wd}}}
runtime: {{pack: {pack}, flush_every: 1, checkpoint_every: 5, tensorboard: false}}
"""
STEPS = 30


def sweep(tmp_path, name, pack, seed="[0, 1]", lr="[1e-2, 3e-3]", wd="0.1", nan="null", steps=STEPS):
  return write(tmp_path, f"{name}.yaml", SWEEP.format(name=name, pack=str(pack).lower(), seed=seed, lr=lr, wd=wd,
                                                      nan=nan, tokens=steps * 8 * 16))


def rows(run_dir):
  return metrics_lib.read_metrics(os.path.join(run_dir, "metrics.jsonl"))


def summary(run_dir):
  return metrics_lib.read_json(os.path.join(run_dir, "summary.json"))


@pytest.fixture(scope="module")
def packed_and_unpacked(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("pack")
  runs = {}
  for pack in (False, True):
    spec = expand.load(sweep(tmp, "grid", pack))
    out = tmp / ("packed" if pack else "unpacked")
    states = local.run(spec, str(out), progress=False, log=lambda line: None)
    runs[pack] = (spec, str(out / "grid"), states)
  return runs


def test_packed_trials_keep_their_ids_and_give_the_unpacked_losses(packed_and_unpacked):
  (plain, plain_dir, plain_states), (packed, packed_dir, packed_states) = (packed_and_unpacked[False],
                                                                           packed_and_unpacked[True])
  ids = [t.id for t in plain.trials]
  assert len(ids) == 4 and ids == [t.id for t in packed.trials]  # runtime.pack is not part of a trial id
  assert set(plain_states.values()) == set(packed_states.values()) == {"done"}
  hashes = set()
  for trial_id in ids:
    a, b = os.path.join(plain_dir, trial_id), os.path.join(packed_dir, trial_id)
    train_a, train_b = [r for r in rows(a) if "loss" in r], [r for r in rows(b) if "loss" in r]
    assert [r["step"] for r in train_b] == list(range(1, STEPS + 1))
    for key in ("loss", "grad_norm", "lr"):
      np.testing.assert_allclose([r[key] for r in train_b], [r[key] for r in train_a], rtol=2e-4, atol=1e-6,
                                 err_msg=f"{trial_id} {key}")
    evals_a, evals_b = [r for r in rows(a) if "eval_loss" in r], [r for r in rows(b) if "eval_loss" in r]
    assert [r["step"] for r in evals_b] == [r["step"] for r in evals_a] == [10, 20, 30]
    np.testing.assert_allclose([r["eval_loss"] for r in evals_b], [r["eval_loss"] for r in evals_a], rtol=2e-4)
    sa, sb = summary(a), summary(b)
    assert sb["status"] == "done" and sb["steps"] == STEPS
    assert sorted(sb["packed_with"]) == sorted(set(ids) - {trial_id}) and "packed_with" not in sa
    np.testing.assert_allclose(sb["final_eval_loss"], sa["final_eval_loss"], rtol=2e-4)
    assert sb["params_total"] == sa["params_total"] and sb["tokens"] == sa["tokens"]
    assert sb["tokens_per_second"] > 0
    hashes.add(sb["params_sha256"])
    from scaling.checkpoint import Checkpoints  # each trial checkpoints its own, unstacked state
    checkpoints = Checkpoints(b)
    assert checkpoints.latest_step() == STEPS
    checkpoints.close()
  assert len(hashes) == 4  # four different trained models, not one model written four times


def test_a_nan_in_one_packed_trial_stops_that_trial_only(tmp_path, packed_and_unpacked):
  spec = expand.load(sweep(tmp_path, "nan", True, seed="0", lr="1e-2", nan="[null, 7]"))
  assert len(pack_lib.groups(spec.trials, lambda t: frozenset({0}), 32)) == 1  # the two trials pack
  states = local.run(spec, str(tmp_path / "runs"), progress=False, log=lambda line: None)
  by_nan = {t.axes["train.inject_nan_at_step"]: t.id for t in spec.trials}
  assert states == {by_nan[None]: "done", by_nan[7]: "diverged"}
  bad, good = (os.path.join(str(tmp_path / "runs" / "nan"), by_nan[k]) for k in (7, None))
  assert summary(bad)["status"] == "diverged" and "step 7" in summary(bad)["reason"]
  assert max(r["step"] for r in rows(bad)) == 7
  from scaling.checkpoint import Checkpoints
  checkpoints = Checkpoints(bad)
  assert checkpoints.latest_step() == 5  # the last good checkpoint, nothing after the NaN
  checkpoints.close()
  assert summary(good)["status"] == "done" and summary(good)["steps"] == STEPS
  # The healthy trial is the grid's (seed 0, lr 1e-2) trial, unpacked: the same losses after its partner died.
  _, plain_dir, _ = packed_and_unpacked[False]
  assert good.endswith(by_nan[None])
  reference = [r["loss"] for r in rows(os.path.join(plain_dir, by_nan[None])) if "loss" in r]
  np.testing.assert_allclose([r["loss"] for r in rows(good) if "loss" in r], reference, rtol=2e-4, atol=1e-6)


@pytest.mark.slow  # a real kill
def test_a_killed_packed_sweep_resumes_bit_exactly(tmp_path, packed_and_unpacked):
  _, reference_dir, _ = packed_and_unpacked[True]
  path = sweep(tmp_path, "grid", True)
  out = tmp_path / "runs"
  run_dirs = [str(out / "grid" / t.id) for t in expand.load(path).trials]
  last_step = lambda: min(max((r["step"] for r in rows(d) if "loss" in r), default=0) for d in run_dirs)
  # Kills land once every trial has a checkpoint on disk (orbax renames a step's directory into place when it is
  # complete), so there is a step to resume from; where the later saves stand is left to chance. Not step 5's in
  # particular: with keep_checkpoints 2 it is gone once step 15 is saved, and a later kill would never land.
  saved = lambda d: os.path.isdir(os.path.join(d, "checkpoints")) and any(
      name.isdigit() for name in os.listdir(os.path.join(d, "checkpoints")))
  first_saved = lambda: all(saved(d) for d in run_dirs)
  seed = int.from_bytes(os.urandom(4), "little")
  kill_steps = sorted(random.Random(seed).sample(range(6, STEPS), 2))
  print(f"kill seed {seed}: SIGKILL at steps {kill_steps}")
  for kill_step in kill_steps:
    process = launch(path, out)
    wait_for(lambda: last_step() >= kill_step and first_saved(), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
  final = launch(path, out)
  _, stderr = final.communicate(timeout=300)
  assert final.returncode == 0, stderr[-2000:]
  for run_dir in run_dirs:
    resumed, reference = summary(run_dir), summary(os.path.join(reference_dir, os.path.basename(run_dir)))
    assert resumed["status"] == "done" and resumed["resumed_from_step"], f"kill seed {seed}"
    assert resumed["params_sha256"] == reference["params_sha256"], f"kill seed {seed}"
    assert resumed["final_eval_loss"] == reference["final_eval_loss"]
    assert [r["step"] for r in rows(run_dir) if "loss" in r] == list(range(1, STEPS + 1))


def test_which_trials_pack_together(tmp_path):
  spec = expand.load(sweep(tmp_path, "mixed", True, seed="[0, 1]", lr="[1e-2, 3e-3]", wd="[0.0, 0.1]"))
  everything_fresh = lambda trial: frozenset({0})
  assert [len(p) for p in pack_lib.groups(spec.trials, everything_fresh, 32)] == [8]  # all scalars
  assert [len(p) for p in pack_lib.groups(spec.trials, everything_fresh, 3)] == [3, 3, 2]
  # Trials that ran alone pack by their latest checkpoint's step: none starts over, a fresh trial never packs
  # with a resumed one. A killed pack packs again as itself, from the latest step all its trials saved.
  steps = {t.id: frozenset({0, 5, 10}) if i < 2 else frozenset({0, 5}) if i < 4 else frozenset({0})
           for i, t in enumerate(spec.trials)}
  assert [len(p) for p in pack_lib.groups(spec.trials, lambda t: steps[t.id], 32)] == [2, 2, 4]
  killed = frozenset(t.id for t in spec.trials[:4])
  previous = lambda t: killed if t.id in killed else None
  assert [len(p) for p in pack_lib.groups(spec.trials, lambda t: steps[t.id], 32, previous)] == [4, 4]
  assert pack_lib.groups(spec.trials, lambda t: frozenset(), 32) == [[t] for t in spec.trials]  # unusable: alone
  # A different shape (size), schedule or clipping on/off is a different program.
  key = pack_lib.pack_key(spec.trials[0].config())
  for path, value in ((("model", "size"), 2), (("optimizer", "warmup_steps"), 7), (("optimizer", "grad_clip"), 0.0),
                      (("train", "batch_size"), 4)):
    config = spec.trials[0].config()
    config[path[0]][path[1]] = value
    assert pack_lib.pack_key(config) != key, path
  config = spec.trials[0].config()
  config["optimizer"]["grad_clip"] = 0.5
  assert pack_lib.pack_key(config) == key  # the clipping threshold itself is a traced scalar


def test_packed_programs_on_cpu_compile_their_products_without_ynnpack():
  """The compiler options packed programs get (scaling/runtime.py) are ones this XLA knows, and take effect."""
  def products(x, w):
    return jax.vmap(jnp.dot)(x, w)
  args = (jnp.ones((3, 64, 32)), jnp.ones((3, 32, 48)))
  default = jax.jit(products).lower(*args).compile().as_text()
  packed = jax.jit(products, compiler_options=runtime.packed_compiler_options("cpu")).lower(*args).compile().as_text()
  assert "__ynn_fusion" in default and "__ynn_fusion" not in packed
  assert runtime.packed_compiler_options("gpu") is None
