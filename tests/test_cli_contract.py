"""Bad command lines and damaged sweep directories: one line, exit 2, no traceback; healthy trials go on."""
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, write

SWEEP = """\
name: contract
model: {family: gpt, size: 1, options: {aspect_ratio: 16, head_dim: 8}}
data: {kind: markov, vocab_size: 8, order: 2, mix: [0.2, 0.3, 0.5]}
train: {seq_len: 16, batch_size: 8, horizon: {tokens: 1280}, eval_every: 5, eval_batches: 1}
runtime: {tensorboard: false}
"""


def cli(*argv, timeout=300):
  return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def assert_one_line_exit_2(result, *fragments):
  assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
  assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
  for fragment in fragments:
    assert fragment in result.stderr, result.stderr


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("contract")
  path = write(tmp, "contract.yaml", SWEEP)
  result = cli("sweeps", "run", path, "--out", str(tmp / "runs"), "--no-progress", "--no-analysis")
  assert result.returncode == 0, result.stderr[-2000:]
  return path, tmp / "runs" / "contract"


def test_bad_command_lines(tmp_path, finished):
  path, _ = finished
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  assert_one_line_exit_2(cli("sweeps", "run", path, "--out", str(a_file)), "--out", "Not a directory")
  os.symlink("/nonexistent/target", tmp_path / "dangling")
  assert_one_line_exit_2(cli("sweeps", "run", path, "--out", str(tmp_path / "dangling")), "--out")
  assert_one_line_exit_2(cli("sweeps", "run", path, "--retries", "-1"), "--retries")
  assert_one_line_exit_2(cli("sweeps", "validate", "/dev/zero"), "/dev/zero: not a regular file")
  assert_one_line_exit_2(cli("sweeps", "validate", str(tmp_path)), "not a regular file")
  assert not (tmp_path / "runs").exists()


def test_rerunning_the_archived_sweep_file_is_a_no_op(finished):
  _, sweep_dir = finished
  result = cli("sweeps", "run", str(sweep_dir / "sweep.yaml"), "--out", str(sweep_dir.parent), "--no-progress",
               "--no-analysis")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "1/1 trials done" in result.stdout


def test_damaged_summary_is_reported_then_rewritten_by_the_next_run(finished, tmp_path):
  path, sweep_dir = finished
  copy = tmp_path / "runs" / "contract"
  shutil.copytree(sweep_dir, copy)
  trial = next(d for d in os.listdir(copy) if os.path.isdir(copy / d) and d != "analysis")
  (copy / trial / "summary.json").write_text('{"status": "do')
  status = cli("sweeps", "status", str(copy))
  assert status.returncode == 0 and "damaged" in status.stdout, status.stdout + status.stderr
  assert_one_line_exit_2(cli("analysis", "plot", str(copy)), "no trial has finished (1 damaged)")
  rerun = cli("sweeps", "run", path, "--out", str(tmp_path / "runs"), "--no-progress", "--no-analysis")
  assert rerun.returncode == 0 and "1/1 trials done" in rerun.stdout, rerun.stderr[-2000:]


def test_damaged_or_empty_sweep_directories(tmp_path, finished):
  _, sweep_dir = finished
  copy = tmp_path / "contract"
  shutil.copytree(sweep_dir, copy)
  (copy / "sweep.json").write_text("[")
  assert_one_line_exit_2(cli("sweeps", "status", str(copy)), "sweep.json")
  assert_one_line_exit_2(cli("analysis", "plot", str(copy)), "sweep.json")
  assert_one_line_exit_2(cli("analysis", "plot", str(tmp_path / "nowhere")), "not a directory")
