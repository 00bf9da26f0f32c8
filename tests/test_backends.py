"""The cluster backends against real engines: a local Ray cluster the driver starts, submitit's local executor.

Every test runs the real CLI (`python -m sweeps run FILE --backend ...`) in a subprocess and checks
the trials against the local backend's: same ids, same final parameters (params_sha256), every
metrics row logged once, whatever was killed on the way.
"""
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from scaling import metrics as metrics_lib
from tests.conftest import ROOT, write

pytestmark = pytest.mark.slow  # Ray and submitit: real local clusters and drivers

pytest.importorskip("ray")
pytest.importorskip("submitit")

STEPS = 60
SWEEP = f"""\
name: micro
model: {{family: gpt, size: 1, options: {{aspect_ratio: 16, head_dim: 8}}}}
data: {{kind: markov, vocab_size: 8, order: 2, mix: [0.2, 0.3, 0.5]}}
train:
  seq_len: 16
  batch_size: 8
  horizon: {{tokens: {STEPS * 8 * 16}}}
  eval_every: 20
  eval_batches: 2
optimizer: {{lr: 1.0e-2, warmup_steps: 5}}
seed: [0, 1]
runtime: {{flush_every: 1, checkpoint_every: 5, tensorboard: false, retries: 2, ray: {{cpus: 1}}}}
"""


_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}


def _launch(path, out, *flags, env=None):
  return subprocess.Popen([sys.executable, "-m", "sweeps", "run", path, "--out", str(out), "--no-progress",
                           "--no-analysis", *flags], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env={**_ENV, **(env or {})}, start_new_session=True)


def _finish(process, timeout=300):
  stdout, stderr = process.communicate(timeout=timeout)
  assert process.returncode == 0, stderr[-3000:]
  return stdout


def _ended(process, timeout=60):
  """(stdout, stderr) of a driver that must end by itself, promptly: killed, and the test failed, if it does not."""
  try:
    return process.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    raise AssertionError(f"the driver was still waiting after {timeout} s") from None


def _trials(sweep_dir):
  """{trial id: summary} of the sweep, after checking each trial's metrics rows are there once each."""
  out = {}
  for trial in metrics_lib.read_json(os.path.join(sweep_dir, "sweep.json"))["trials"]:
    run_dir = os.path.join(sweep_dir, trial["id"])
    steps = [r["step"] for r in metrics_lib.read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "loss" in r]
    assert steps == list(range(1, STEPS + 1)), trial["id"]
    out[trial["id"]] = metrics_lib.read_json(os.path.join(run_dir, "summary.json"))
  return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("local")
  path = write(tmp, "micro.yaml", SWEEP)
  _finish(_launch(path, tmp / "runs"))
  summaries = _trials(str(tmp / "runs" / "micro"))
  return path, {i: s["params_sha256"] for i, s in summaries.items()}, summaries


def _wait_for(predicate, process, timeout=240):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return
    if process.poll() is not None:
      raise AssertionError(f"the driver exited early: {process.communicate()[1][-2000:]}")
    time.sleep(0.05)
  raise AssertionError("timed out")


def _status(sweep_dir, trial_id):
  path = os.path.join(sweep_dir, trial_id, "summary.json")
  return metrics_lib.read_json(path).get("status") if os.path.exists(path) else None


def _running(sweep_dir):
  """(run dir, claim) of a trial being trained by a worker that has logged a few steps and committed a
  checkpoint (orbax saves asynchronously: a step directory is there once the save is whole), or None."""
  if not os.path.isdir(sweep_dir):
    return None
  for name in sorted(os.listdir(sweep_dir)):
    run_dir = os.path.join(sweep_dir, name)
    claim = os.path.join(run_dir, "claim.json")
    metrics = os.path.join(run_dir, "metrics.jsonl")
    try:
      info = json.loads(open(claim).read())
      rows = metrics_lib.read_metrics(metrics)
    except (OSError, ValueError):
      continue
    committed = os.path.isdir(os.path.join(run_dir, "checkpoints")) and any(
        name.isdigit() for name in os.listdir(os.path.join(run_dir, "checkpoints")))
    if committed and 10 <= sum("loss" in r for r in rows) < STEPS - 10:
      return run_dir, info
  return None


def test_ray_sweep_on_a_bucket_survives_a_killed_worker_and_matches_the_local_backend(reference, tmp_path):
  """--out is a URL, so the run directories are a bucket's (scaling/storage.py, through fsspec; file:// takes the
  code path of gs:// and s3://): workers train in staged copies and push them, orbax checkpoints straight to
  the bucket, the driver reads its own mirror. A worker killed mid-trial is retried from the bucket."""
  path, expected, _ = reference
  bucket = tmp_path / "bucket"
  staging = {"SCALING_STAGING": str(tmp_path / "staging")}  # the driver's mirror, the workers' staged copies
  driver = _launch(path, f"file://{bucket}", "--backend", "ray", env=staging)
  sweep_dir = str(bucket / "micro")
  found = []
  _wait_for(lambda: found.append(_running(sweep_dir)) or found[-1] is not None, driver)
  run_dir, claim = found[-1]
  os.kill(claim["pid"], signal.SIGKILL)  # the Ray worker process training this trial
  _finish(driver)
  trials = _trials(sweep_dir)
  assert {i: s["params_sha256"] for i, s in trials.items()} == expected
  assert all(s["status"] == "done" for s in trials.values())
  killed = trials[os.path.basename(run_dir)]
  assert killed["resumed_from_step"] is not None and killed["resumed_from_step"] > 0
  with open(os.path.join(run_dir, "attempts.jsonl")) as f:
    attempts = [json.loads(line) for line in f]
  assert [r["outcome"] for r in attempts] == ["done"] and attempts[0]["pid"] != claim["pid"]  # the retry, fresh
  assert not any(os.path.exists(os.path.join(sweep_dir, i, "claim.json")) for i in expected)  # released
  assert all(os.path.isdir(os.path.join(sweep_dir, i, "checkpoints")) for i in expected)  # orbax wrote there
  assert len(os.listdir(tmp_path / "staging" / "stage")) == 1  # only the killed attempt's staged copy is left
  status = subprocess.run([sys.executable, "-m", "sweeps", "status", f"file://{bucket}/micro"], cwd=ROOT, text=True,
                          capture_output=True, env={**_ENV, **staging}, timeout=120)
  assert status.returncode == 0 and status.stdout.count(" done ") == len(expected), status.stdout + status.stderr


def test_ray_driver_stopped_with_ctrl_c_and_started_again_finishes_with_nothing_lost(reference, tmp_path):
  path, expected, _ = reference
  out = tmp_path / "ray"
  driver = _launch(path, out, "--backend", "ray")
  sweep_dir = str(out / "micro")
  _wait_for(lambda: _running(sweep_dir) is not None, driver)
  os.killpg(driver.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole process group
  driver.communicate(timeout=120)
  assert driver.returncode == 130
  assert sum(_status(sweep_dir, i) == "done" for i in expected) < len(expected)  # stopped mid-sweep
  _finish(_launch(path, out, "--backend", "ray"))
  trials = _trials(sweep_dir)
  assert {i: s["params_sha256"] for i, s in trials.items()} == expected


def test_slurm_backend_through_submitits_local_executor(reference, tmp_path):
  path, expected, _ = reference
  out = tmp_path / "slurm"
  stdout = _finish(_launch(path, out, "--backend", "slurm", "--slurm-cluster", "local"))
  assert "submitted as job array" in stdout
  trials = _trials(str(out / "micro"))
  assert {i: s["params_sha256"] for i, s in trials.items()} == expected
  assert os.path.isdir(out / "micro" / "slurm")  # submitit's logs


# Ray Client is what `pip install ray` leaves out; where it is installed, the same address reaches nothing.
_NO_RAY_CLIENT = "the `ray[client]` extra" if importlib.util.find_spec("grpc") is None else "no Ray cluster answers"


@pytest.mark.parametrize("address,message", [("127.0.0.1:1", "no Ray cluster answers there"),
                                             ("nonsense", "expected HOST:PORT"),
                                             ("ray://127.0.0.1:1", _NO_RAY_CLIENT)])
def test_ray_address_without_a_cluster_is_one_line_and_exit_2_not_a_wait(tmp_path, address, message):
  path = write(tmp_path, "micro.yaml", SWEEP)
  process = _launch(path, tmp_path / "runs", "--backend", "ray", "--address", address)
  _, stderr = _ended(process)
  assert process.returncode == 2 and stderr.count("\n") == 1 and message in stderr and address in stderr, stderr
  assert not (tmp_path / "runs").exists()  # checked before anything is written


def test_ray_trial_on_two_hosts_is_retried_as_one_unit_when_a_host_dies(reference, tmp_path):
  """`runtime.ray.hosts: 2`: a placement group of two bundles, one process each, joined by jax.distributed
  (gloo on CPU) into one trial whose mesh spans both. Process 0 is killed after a checkpoint: process 1
  would wait in a collective forever, so the driver cancels it and starts the pair again, which resumes."""
  _, _, summaries = reference
  gang = (SWEEP.replace("seed: [0, 1]", "seed: 0")
          .replace("ray: {cpus: 1}", "ray: {cpus: 1, hosts: 2, placement: pack}"))
  path = write(tmp_path, "micro.yaml", gang)
  out = tmp_path / "ray"
  driver = _launch(path, out, "--backend", "ray")
  sweep_dir = str(out / "micro")
  found = []
  _wait_for(lambda: found.append(_running(sweep_dir)) or found[-1] is not None, driver)
  run_dir, claim = found[-1]
  os.kill(claim["pid"], signal.SIGKILL)  # process 0 of the two: the coordinator's host is lost
  _finish(driver)
  (trial_id, summary), = _trials(sweep_dir).items()  # every metrics row once
  assert summary["status"] == "done" and summary["processes"] == 2
  assert summary["resumed_from_step"] is not None and summary["resumed_from_step"] > 0
  # The same trial as the local backend's (runtime is not in the id); data parallel over two processes
  # instead of one device changes only the order of float32 sums.
  assert abs(summary["final_eval_loss"] - summaries[trial_id]["final_eval_loss"]) < 1e-4
  with open(os.path.join(run_dir, "attempts.jsonl")) as f:
    attempts = [json.loads(line) for line in f]
  assert [r["outcome"] for r in attempts] == ["done"] and attempts[0]["pid"] != claim["pid"]


# ------------------------------------------------------------------ what no node of the cluster can give, refused
# One cluster for the checks below, of a known shape (not this machine's): started in this process, and joined by
# the drivers with --address as a cluster started by `ray start` is. Kept last in the file so that it is up only
# while they run.
WIDGETS = 1  # a custom resource only this cluster's one node has


@pytest.fixture(scope="module")
def cluster():
  import ray
  handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}  # ray.init installs its own
  auth_mode = os.environ.get("RAY_AUTH_MODE")
  os.environ["RAY_AUTH_MODE"] = "disabled"  # as the drivers it serves have it
  ray.init(num_cpus=2, num_gpus=0, resources={"widget": WIDGETS}, include_dashboard=False, log_to_driver=False)
  try:
    yield ray.get_runtime_context().gcs_address
  finally:
    ray.shutdown()
    for s, handler in handlers.items():
      signal.signal(s, handler)
    if auth_mode is None:
      os.environ.pop("RAY_AUTH_MODE")
    else:
      os.environ["RAY_AUTH_MODE"] = auth_mode


def test_ray_resources_no_node_has_are_one_line_and_exit_2_before_anything_is_submitted(cluster, tmp_path):
  """`runtime.ray.gpus: 1` on a cluster without GPUs: Ray would wait for such a node forever, silently."""
  path = write(tmp_path, "micro.yaml", SWEEP.replace("ray: {cpus: 1}", "ray: {cpus: 1, gpus: 1}"))
  process = _launch(path, tmp_path / "runs", "--backend", "ray", "--address", cluster)
  _, stderr = _ended(process)
  assert process.returncode == 2 and stderr.count("\n") == 1, stderr
  # Where the file asks (runtime: is line 12), what it asks, and what the cluster has.
  assert f"{path}:12: runtime.ray: asks for {{CPU: 1, GPU: 1}}" in stderr, stderr
  assert f"its nodes: 1 x {{CPU: 2, widget: {WIDGETS}}}" in stderr, stderr
  assert not [f for _, _, files in os.walk(tmp_path / "runs") for f in files]  # no manifest, no trial


@pytest.mark.parametrize("ray_cfg,refused", [
    ({"cpus": 2}, None),
    ({"cpus": 1, "resources": {"widget": WIDGETS}}, None),
    ({"cpus": 1, "hosts": 2, "placement": "pack"}, None),  # two processes on the one node
    ({"cpus": 3}, "asks for {CPU: 3}"),  # more CPUs than any node has
    ({"cpus": 1, "resources": {"widget": WIDGETS + 1}}, f"asks for {{CPU: 1, widget: {WIDGETS + 1}}}"),
    ({"cpus": 1, "resources": {"TPU": 4}}, "asks for {CPU: 1, TPU: 4}"),
    ({"cpus": 1, "hosts": 2}, "asks for 2 processes of {CPU: 1} on distinct nodes (placement: spread)"),
    ({"cpus": 1, "hosts": 3, "placement": "pack"}, "asks for 3 processes of {CPU: 1}"),
    ({"tpu": {"topology": "2x2", "version": "v4"}}, "asks for a TPU v4 slice (2x2)"),
])
def test_ray_what_the_cluster_can_hold_is_submitted_and_what_it_cannot_is_refused(cluster, ray_cfg, refused):
  """The same check, on the same cluster, through the function the driver calls (a cluster start saved per case).
  The cluster's own v1 monitor reports on it as an autoscaler that adds nothing: that must not read as one."""
  from ray.experimental import internal_kv
  from ray._private import ray_constants

  from sweeps import ray_backend
  from scaling.runtime_spec import RaySpec
  deadline = time.time() + 30
  while b"autoscaler_report" not in (internal_kv._internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS) or b""):
    assert time.time() < deadline, "the cluster's monitor never reported"
    time.sleep(0.2)  # its first report comes a few seconds after the cluster starts
  notes = []
  problem = ray_backend.placement_problem(RaySpec.model_validate(ray_cfg).model_dump(), log=notes.append)
  assert notes == []
  if refused is None:
    assert problem is None
  else:
    assert problem.startswith(refused) and f"its nodes: 1 x {{CPU: 2, widget: {WIDGETS}}}" in problem, problem


def _serve_once(reply: bytes) -> int:
  """A port where something other than Ray listens: it answers the first connection with `reply` and closes."""
  server = socket.create_server(("127.0.0.1", 0))

  def answer():
    with server, server.accept()[0] as conn:
      conn.sendall(reply)
  threading.Thread(target=answer, daemon=True).start()
  return server.getsockname()[1]


def test_ray_every_address_it_cannot_serve_is_named_in_one_line_within_seconds(cluster, monkeypatch):
  from sweeps import ray_backend
  monkeypatch.delenv("RAY_ADDRESS", raising=False)
  assert ray_backend.connection_problem(cluster) is None  # a Ray head answers
  assert ray_backend.connection_problem(None) is None  # a local cluster
  http_1 = _serve_once(b"HTTP/1.1 400 Bad Request\r\n\r\n")
  cases = {
      "http://127.0.0.1:8265": "an http address is the dashboard's",
      "nosuchmodule://head:1": "this Ray cannot serve nosuchmodule://",
      f"127.0.0.1:{http_1}": "does not answer as Ray does",  # ray.init would retry these for minutes
      f"127.0.0.1:{_serve_once(b'')}": "does not answer as Ray does",
  }
  for address, message in cases.items():
    started = time.time()
    problem = ray_backend.connection_problem(address)
    assert problem.startswith(f"--address {address}: ") and message in problem and "\n" not in problem, problem
    assert time.time() - started < 10
  monkeypatch.setenv("RAY_ADDRESS", "ray://127.0.0.1:1")  # what ray.init reads when --address is left out
  assert ray_backend.connection_problem(None).startswith("RAY_ADDRESS=ray://127.0.0.1:1: ")
