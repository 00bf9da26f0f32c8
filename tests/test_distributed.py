"""Two processes joined by jax.distributed on localhost train one trial like one process does.

The same `python -m sweeps run` command is launched twice, as on the two hosts of
a cluster: SCALING_COORDINATOR names process 0's port, each process has 2 CPU
devices, and the mesh (data=2, fsdp=2) spans both, so batches and parameters are
split across processes and every step runs cross-process collectives (gloo).
A single process with 4 devices runs the same sweep as the reference: the global
batch is the same, only split across hosts, so the losses agree to float32 rounding.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import yaml

from scaling import checkpoint as checkpoint_lib
from scaling import metrics as metrics_lib
from scaling import train as train_lib
from tests.conftest import ROOT, TINY_TRIAL

pytestmark = pytest.mark.slow  # several jax.distributed processes

STEPS = 8
TIMEOUT_SECONDS = 120  # A collective that never completes must fail the test, not hang the suite.


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _sweep_file(tmp_path) -> str:
  trial = json.loads(json.dumps(TINY_TRIAL))
  trial["train"].update({"horizon": {"tokens": STEPS * 8 * 16, "tokens_per_param": None},
                         "eval_every": 4})
  document = {"name": "two_hosts", **trial, "runtime": {"mesh": {"data": 2, "fsdp": 2, "tensor": 1}, "flush_every": 1,
                                                         "checkpoint_every": 4, "tensorboard": False}}
  path = tmp_path / "two_hosts.yaml"
  path.write_text(yaml.safe_dump(document))
  return str(path)


def _launch(sweep, out, log, devices, process=None, port=None):
  env = {k: v for k, v in os.environ.items() if not k.startswith(("SCALING_COORDINATOR", "SCALING_NUM", "SCALING_PROCESS"))}
  env.update({"JAX_NUM_CPU_DEVICES": str(devices), "PYTHONUNBUFFERED": "1"})
  env.pop("XLA_FLAGS", None)
  if process is not None:
    env.update({"SCALING_COORDINATOR": f"127.0.0.1:{port}", "SCALING_NUM_PROCESSES": "2",
                "SCALING_PROCESS_ID": str(process)})
  # Output to files, not pipes: a full pipe would stall one process inside a collective.
  return subprocess.Popen([sys.executable, "-m", "sweeps", "run", sweep, "--out", out, "--no-analysis"],
                          cwd=ROOT, env=env, stdout=open(f"{log}.out", "w"), stderr=open(f"{log}.err", "w"),
                          start_new_session=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp("distributed")
  sweep = _sweep_file(tmp_path)
  port = _free_port()
  logs = {name: str(tmp_path / name) for name in ("host0", "host1", "single")}
  procs = {"host0": _launch(sweep, str(tmp_path / "two"), logs["host0"], 2, 0, port),
           "host1": _launch(sweep, str(tmp_path / "two"), logs["host1"], 2, 1, port),
           "single": _launch(sweep, str(tmp_path / "one"), logs["single"], 4)}
  outputs = {}
  try:
    deadline = time.time() + TIMEOUT_SECONDS
    for name, proc in procs.items():
      proc.wait(timeout=max(1, deadline - time.time()))
      outputs[name] = {"rc": proc.returncode, "stdout": open(f"{logs[name]}.out").read(),
                       "stderr": open(f"{logs[name]}.err").read()}
  finally:
    for proc in procs.values():  # Only the process groups this test started.
      if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
  for name, output in outputs.items():
    assert output["rc"] == 0, f"{name}: rc {output['rc']}\n{output['stderr'][-3000:]}"
  two = tmp_path / "two" / "two_hosts"
  one = tmp_path / "one" / "two_hosts"
  trial_id = json.loads((two / "sweep.json").read_text())["trials"][0]["id"]
  return {"outputs": outputs, "two": str(two / trial_id), "one": str(one / trial_id)}


def _losses(run_dir):
  return [(r["step"], r["loss"]) for r in metrics_lib.read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "loss" in r]


def test_two_processes_give_the_single_process_losses(runs):
  two, one = _losses(runs["two"]), _losses(runs["one"])
  assert [step for step, _ in one] == list(range(1, STEPS + 1))
  assert [step for step, _ in two] == list(range(1, STEPS + 1))  # Each step written once, by process 0.
  np.testing.assert_allclose([loss for _, loss in two], [loss for _, loss in one], rtol=1e-5, atol=1e-6)
  summary = metrics_lib.read_json(os.path.join(runs["two"], "summary.json"))
  assert summary["status"] == "done" and summary["processes"] == 2
  assert summary["mesh"] == {"data": 2, "fsdp": 2, "expert": 1, "tensor": 1}
  assert summary["device"].endswith("x4")
  reference = metrics_lib.read_json(os.path.join(runs["one"], "summary.json"))
  assert summary["final_eval_loss"] == pytest.approx(reference["final_eval_loss"], rel=1e-5)


def test_only_process_0_reports_and_writes(runs):
  host0, host1 = runs["outputs"]["host0"], runs["outputs"]["host1"]
  assert "1/1 trials done" in host0["stdout"]
  # gloo's own log lines (its threads may split one: "[Gloo] Rank " + "3 is connected to ...") are not ours.
  assert [line for line in host1["stdout"].splitlines() if "[Gloo]" not in line and "peer ranks" not in line] == []
  assert "sweep two_hosts" in host0["stderr"] and "sweep two_hosts" not in host1["stderr"]  # progress bars
  for i, host in enumerate((host0, host1)):  # absl log lines say which process wrote them
    assert f"[process {i}/2 {socket.gethostname()}]" in host["stderr"] and "attempt 1 starts" in host["stderr"]
  with open(os.path.join(runs["two"], "attempts.jsonl")) as f:
    assert [json.loads(line)["outcome"] for line in f] == ["done"]
  assert not os.path.exists(os.path.join(runs["two"], "claim.json"))
  assert sorted(os.listdir(runs["two"])) == ["attempts.jsonl", "checkpoints", "config.json", "metrics.jsonl",
                                             "summary.json", "timeline.json"]


def test_checkpoint_is_complete_and_restores_the_final_parameters(runs):
  config = json.loads(open(os.path.join(runs["two"], "config.json")).read())
  setup = train_lib.setup(config)
  optimizer, _ = train_lib.make_optimizer(config["optimizer"], setup.steps)
  from flax import nnx
  _, params = nnx.split(setup.model)
  like = {"params": params, "opt_state": jax.jit(optimizer.init)(params)}
  checkpoints = checkpoint_lib.Checkpoints(runs["two"])
  assert checkpoints.latest_step() == STEPS
  restored = checkpoints.restore(STEPS, like)
  checkpoints.close()
  summary = metrics_lib.read_json(os.path.join(runs["two"], "summary.json"))
  assert train_lib.params_sha256(restored["params"]) == summary["params_sha256"]
  reference = checkpoint_lib.Checkpoints(runs["one"])
  expected = reference.restore(STEPS, like)
  reference.close()
  for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(expected)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)


def test_environment_decides_whether_to_initialize(monkeypatch):
  from scaling import distributed
  for name in ("SCALING_COORDINATOR", "JAX_COORDINATOR_ADDRESS", "SCALING_NUM_PROCESSES", "SCALING_PROCESS_ID",
               "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES",
               "MEGASCALE_COORDINATOR_ADDRESS", "SCALING_DISTRIBUTED"):
    monkeypatch.delenv(name, raising=False)
  assert distributed.initialize() is False  # A laptop: one process, nothing to join.
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1")
  monkeypatch.setenv("SCALING_NUM_PROCESSES", "1")
  monkeypatch.setenv("SCALING_PROCESS_ID", "0")
  assert distributed.initialize() is False  # A cluster of one.
  monkeypatch.setenv("SCALING_NUM_PROCESSES", "2")
  monkeypatch.setenv("SCALING_PROCESS_ID", "2")
  with pytest.raises(distributed.DistributedError, match=r"expected 0\.\.1 \(SCALING_NUM_PROCESSES=2\)"):
    distributed.initialize()
  assert not distributed._on_tpu_pod()
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "t1v-0,t1v-1,t1v-2,t1v-3")
  assert distributed._on_tpu_pod()
  assert distributed.agree(True) and not distributed.agree(False)  # One process: its own value.
