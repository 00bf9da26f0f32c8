"""A ViT ladder on generated images, discriminative and generative, through the CLI to the report."""
import json
import os
import subprocess
import sys

import pytest

from scaling import metrics as metrics_lib
from tests.conftest import ROOT, write

pytestmark = pytest.mark.slow  # whole vision sweeps through the real commands

SWEEP = """\
name: vision_micro
model: {family: vit, size: [1, 2], options: {aspect_ratio: 16, head_dim: 8, patch_size: 4}}
data: {kind: shapes, image_size: 8}
train:
  objective: [classify, next_patch, {name: masked_patches, mask_ratio: 0.5}]
  batch_size: 16
  horizon: {examples: 480}
  eval_every: 15
  eval_batches: 2
  probe_examples: 64
optimizer: {lr: 3e-3, warmup_steps: 5}
runtime: {tensorboard: false}
"""


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("vision")
  path = write(tmp, "vision_micro.yaml", SWEEP)
  result = subprocess.run([sys.executable, "-m", "sweeps", "run", path, "--out", str(tmp / "runs"), "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return str(tmp / "runs" / "vision_micro")


def summaries(sweep_dir):
  manifest = metrics_lib.read_json(os.path.join(sweep_dir, "sweep.json"))
  return [metrics_lib.read_json(os.path.join(sweep_dir, t["id"], "summary.json")) for t in manifest["trials"]]


def test_each_objective_reports_its_unit_and_its_downstream_error(sweep_dir):
  for s in summaries(sweep_dir):
    assert s["status"] == "done"
    assert s["examples"] == 480 and s["tokens"] == 480 * 4  # 8x8 images, patch 4: 4 tokens per image
    assert s["flops"] == s["flops_per_example"] * s["examples"]
    assert s["examples_per_second"] > 0
    if s["objective"] == "classify":
      assert s["loss_unit"] == "nats/example" and 0 <= s["final_eval_error"] <= 1
      assert "final_probe_error" not in s
    else:
      assert s["objective_kind"] == "generative" and s["loss_unit"] == "mse per normalised pixel"
      assert 0 <= s["final_probe_error"] <= 1 and "final_eval_error" not in s


def test_eval_rows_carry_objective_metrics_and_probe(sweep_dir):
  for s in summaries(sweep_dir):
    rows = metrics_lib.read_metrics(os.path.join(sweep_dir, s["trial_id"], "metrics.jsonl"))
    evals = [r for r in rows if "eval_loss" in r]
    assert [r["step"] for r in evals] == [15, 30]
    if s["objective"] == "classify":
      assert all("eval_error" in r for r in evals) and all("error" in r for r in rows if "loss" in r)
    else:
      assert "probe_error" in evals[-1] and "probe_error" not in evals[0]  # probe_every 0: at the end only


def test_report_compares_the_objectives_without_mixing_them(sweep_dir):
  fits = json.load(open(os.path.join(sweep_dir, "analysis", "fits.json")))
  assert fits["group_by"] == "objective"
  assert set(fits["fits"]) == {"classify", "next_patch", "masked_patches"}
  assert {c["generative"] for c in fits["objectives"]["comparisons"]} == {"next_patch", "masked_patches"}
  report = open(os.path.join(sweep_dir, "analysis", "report.md")).read()
  assert "Does the discriminative curve saturate earlier than the generative one?" in report
  assert os.path.exists(os.path.join(sweep_dir, "analysis", "objectives_vs_params.png"))
