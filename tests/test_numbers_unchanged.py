"""Refactoring the loop must not change numbers: GPT parameters after training are bit-identical.

Two checks. (1) The quickstart's rungs, shortened to 60 steps, against the
params_sha256 recorded on the development machine with the loop as it was
before objectives, batch pytrees and data registries existed (2026-12-01,
commit 3f05216) with XLA's default CPU dots (SCALING_CPU_DOTS=ynn); float results
depend on the CPU's instruction set, so this runs only where the CPU and jax match
the recording. (2) Everywhere: the
loop's parameters equal, bit for bit, those of a plain jitted AdamW loop on the
same batches written here from scratch.
"""
import hashlib
import json
import os
import platform
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from scaling import train as train_lib
from sweeps import expand
from tests.conftest import QUIET_RUNTIME, ROOT

# Recorded with the pre-refactor loop: rung depth -> params_sha256 after 60 steps (8 x 32 tokens each).
RECORDED_MACHINE = "7018ca9dfc78"
RECORDED = {
    1: "7a225af829bfd5a99c05ba6a2189afcb45c526de9630213a80ce3bd0e9a02d8d",
    2: "cfdb0255efefd2588f3e7cb9d588a6cb181248ee27b402d1afba1511680cb992",
    3: "12e32ef6eeb6c0847f31df31993c573baa71bb0efd89150d0b5f2b900efa3d07",
    4: "0818f6e848485aaedc87c1b0687829a92218be9190e34982f1599e57236ef4d2",
    6: "cfb4a7a6a187c787d855380d54017fd4a79e0277b22dc0f7d1668c9689646369",
}
STEPS = 60


def machine_fingerprint() -> str:
  """CPU model and instruction-set flags, and the jax version: what float results depend on."""
  model, flags = platform.processor(), ""
  if os.path.exists("/proc/cpuinfo"):
    first = open("/proc/cpuinfo").read().split("\n\n")[0].splitlines()
    model = next((l.split(":", 1)[1].strip() for l in first if l.startswith("model name")), model)
    flags = " ".join(sorted(next((l.split(":", 1)[1].split() for l in first if l.startswith("flags")), [])))
  return hashlib.sha256(f"{model}|{flags}|{jax.__version__}".encode()).hexdigest()[:12]


def quickstart_rungs(steps=STEPS):
  sweep = expand.load(os.path.join(ROOT, "sweeps", "configs", "quickstart.yaml"))
  for trial in sweep.trials:
    config = trial.config()
    config["train"]["horizon"]["tokens"] = 8 * 32 * steps
    config["train"]["eval_batches"] = 4
    yield config


def quickstart_hashes(out_dir) -> dict:
  """{depth: params_sha256} of the shortened quickstart rungs trained in this process."""
  return {config["model"]["size"]: train_lib.train(config, os.path.join(out_dir, str(config["model"]["size"])),
                                                   progress=False, runtime=QUIET_RUNTIME)["params_sha256"]
          for config in quickstart_rungs()}


@pytest.mark.skipif(machine_fingerprint() != RECORDED_MACHINE,
                    reason=f"hashes recorded on machine {RECORDED_MACHINE}; this one is {machine_fingerprint()}")
def test_quickstart_rungs_match_the_pre_refactor_hashes(tmp_path):
  # Recorded with XLA's default CPU dots (YNNPACK): in a process of their own that uses them.
  code = ("import json, sys; from tests.test_numbers_unchanged import quickstart_hashes; "
          "print(json.dumps(quickstart_hashes(sys.argv[1])))")
  out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "SCALING_CPU_DOTS": "ynn"}, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  hashes = {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}
  assert hashes == RECORDED


def test_loop_equals_a_plain_adamw_loop(tmp_path):
  config = next(quickstart_rungs(steps=25))
  summary = train_lib.train(config, str(tmp_path / "loop"), progress=False, runtime=QUIET_RUNTIME)

  s = train_lib.setup(config)
  graphdef, params = nnx.split(s.model)
  optimizer, _ = train_lib.make_optimizer(config["optimizer"], s.steps)

  def loss(params, tokens):
    logits = nnx.merge(graphdef, params)(tokens[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

  @jax.jit
  def step(params, opt_state, tokens):
    grads = jax.grad(loss)(params, tokens)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  opt_state = optimizer.init(params)
  for i in range(s.steps):
    params, opt_state = step(params, opt_state, np.asarray(s.data.train(i)["tokens"]))
  assert train_lib.params_sha256(params) == summary["params_sha256"]
