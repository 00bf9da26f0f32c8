"""The ahead-of-time memory check refuses a trial that does not fit, before any step runs."""
import json
import os
import subprocess
import sys

import pytest

from scaling import metrics as metrics_lib
from scaling import train as train_lib
from tests.conftest import ROOT, write

TINY_GIB = 1e-6  # ~1 KiB per device: nothing fits.

SWEEP = """\
name: too_big
model: {family: gpt, size: 1, options: {aspect_ratio: 16, head_dim: 8}}
data: {kind: markov, vocab_size: 8, order: 2, mix: [0.2, 0.3, 0.5]}
train: {seq_len: 16, batch_size: 8, horizon: {tokens: 1280}}
runtime: {memory_limit_gib: 1e-6, tensorboard: false}
"""


def test_trial_over_the_memory_limit_is_failed_before_any_step(tiny_trial, tmp_path):
  run_dir = str(tmp_path / "run")
  with pytest.raises(train_lib.DoesNotFit, match="GiB per device"):
    train_lib.train(tiny_trial, run_dir, progress=False, runtime={"memory_limit_gib": TINY_GIB})
  summary = metrics_lib.read_json(os.path.join(run_dir, "summary.json"))
  assert summary["status"] == "failed"
  assert "GiB per device" in summary["reason"] and "0.000 GiB" in summary["reason"]
  assert summary["memory_per_device_bytes"] > TINY_GIB * 2**30
  assert "steps" not in summary  # The summary of a trial that never stepped.
  assert not os.path.exists(os.path.join(run_dir, "metrics.jsonl"))
  assert not os.path.exists(os.path.join(run_dir, "checkpoints")) or not os.listdir(os.path.join(run_dir, "checkpoints"))


def test_sweep_finishes_with_the_trial_failed(tmp_path):
  path = write(tmp_path, "too_big.yaml", SWEEP)
  out = tmp_path / "out"
  result = subprocess.run([sys.executable, "-m", "sweeps", "run", path, "--out", str(out), "--no-progress", "--no-analysis"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 1, result.stderr[-3000:]  # a failed trial: scripts and schedulers notice
  assert "0/1 trials done (1 failed)" in result.stdout, result.stdout
  assert "GiB per device" in result.stdout  # The sweep's log line gives the reason.
  (trial_dir,) = [d for d in (out / "too_big").iterdir() if d.is_dir()]
  assert json.loads((trial_dir / "summary.json").read_text())["status"] == "failed"
  attempts = [json.loads(line) for line in (trial_dir / "attempts.jsonl").read_text().splitlines()]
  assert [a["outcome"] for a in attempts] == ["failed"]  # Not retried: retrying cannot make it fit.


@pytest.mark.parametrize("batch_size, seq_len, runtime, says", [
    (1 << 24, 4096, {}, "of host memory"),  # 275 GB of tokens: refused before it is drawn or compiled
    (4096, 64, {"memory_limit_gib": TINY_GIB}, "GiB per device"),  # the compiled step does not fit: never drawn
])
def test_a_batch_beyond_memory_is_refused_before_it_is_sampled(tiny_trial, tmp_path, batch_size, seq_len, runtime, says):
  trial = json.loads(json.dumps(tiny_trial))
  trial["train"].update({"batch_size": batch_size, "seq_len": seq_len})
  run_dir = str(tmp_path / "run")
  with pytest.raises(train_lib.DoesNotFit, match=says):
    train_lib.train(trial, run_dir, progress=False, runtime=runtime)
  summary = metrics_lib.read_json(os.path.join(run_dir, "summary.json"))
  assert summary["status"] == "failed" and says in summary["reason"]
  assert "eval_examples" not in summary  # the eval set was never drawn
