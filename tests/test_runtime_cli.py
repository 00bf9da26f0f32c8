"""Runtime problems found only at launch (the mesh against the devices, the cluster environment):
`sweeps run` exits 2 with one line naming the file and key, and writes nothing."""
import os

import pytest

from sweeps.__main__ import main
from tests.conftest import write

TRIAL = """\
name: s
model: {family: gpt, size: 1, options: {aspect_ratio: 16, head_dim: 8}}
data: {kind: markov, vocab_size: 8, order: 2, mix: [0.2, 0.3, 0.5]}
train: {seq_len: 16, batch_size: 4, horizon: {tokens: 4096}}
"""


@pytest.mark.parametrize("mesh,message", [
    ("{data: 64, fsdp: 64}", "needs 4096 devices"),
    ("{data: -1, fsdp: -1}", "at most one axis may be -1"),
])
def test_mesh_the_devices_cannot_hold_exits_2(tmp_path, capsys, mesh, message):
  path = write(tmp_path, "sweep.yaml", TRIAL + f"runtime:\n  mesh: {mesh}\n")
  out = tmp_path / "out"
  assert main(["run", path, "--out", str(out), "--no-progress"]) == 2
  stderr = capsys.readouterr().err
  assert stderr.count("\n") == 1 and stderr.startswith(f"error: {path}:6: runtime.mesh: "), stderr
  assert message in stderr
  assert not out.exists()


def test_incomplete_cluster_environment_exits_2(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("SCALING_COORDINATOR", "127.0.0.1:1234")  # but no SCALING_NUM_PROCESSES
  monkeypatch.delenv("SCALING_NUM_PROCESSES", raising=False)
  path = write(tmp_path, "sweep.yaml", TRIAL)
  out = tmp_path / "out"
  assert main(["run", path, "--out", str(out), "--no-progress"]) == 2
  stderr = capsys.readouterr().err
  assert stderr.count("\n") == 1 and "SCALING_NUM_PROCESSES" in stderr, stderr
  assert not out.exists()


def test_unknown_cpu_dot_library_exits_2(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("SCALING_CPU_DOTS", "mkl")
  path = write(tmp_path, "sweep.yaml", TRIAL)
  out = tmp_path / "out"
  assert main(["run", path, "--out", str(out), "--no-progress"]) == 2
  stderr = capsys.readouterr().err
  assert stderr == "error: SCALING_CPU_DOTS='mkl': one of eigen, ynn\n", stderr
  assert not out.exists()


def test_cpu_dot_library_becomes_the_xla_flag(monkeypatch):
  from scaling import runtime
  eigen = "--xla_cpu_experimental_ynn_fusion_type="
  for choice, given, expected in (("eigen", "--xla_force_host_platform_device_count=8",
                                   f"--xla_force_host_platform_device_count=8 {eigen}"),
                                  ("ynn", f"{eigen} --xla_cpu_enable_fast_math=false", "--xla_cpu_enable_fast_math=false"),
                                  ("eigen", "--xla_cpu_experimental_ynn_fusion_type=dot", eigen),
                                  (None, eigen, eigen)):  # unset: XLA_FLAGS decides
    if choice is None:
      monkeypatch.delenv("SCALING_CPU_DOTS", raising=False)
    else:
      monkeypatch.setenv("SCALING_CPU_DOTS", choice)
    monkeypatch.setenv("XLA_FLAGS", given)
    runtime.configure_cpu_dots()
    assert os.environ["XLA_FLAGS"] == expected
