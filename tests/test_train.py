"""The train loop on the synthetic language: learning, the run directory, exact resume."""
import glob
import json
import os
import shutil

import numpy as np
import pytest

from scaling import metrics as metrics_lib
from scaling import train as train_lib
from scaling.data import Batches
from tests.conftest import TINY_RUNTIME


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  from tests.conftest import TINY_RUNTIME, TINY_TRIAL
  run_dir = str(tmp_path_factory.mktemp("runs") / "trial")
  summary = train_lib.train(TINY_TRIAL, run_dir, progress=False, runtime=TINY_RUNTIME)
  return run_dir, summary


def test_loss_falls_towards_the_known_entropy(tiny_trial, tmp_path):
  tiny_trial["model"]["options"]["aspect_ratio"] = 32
  tiny_trial["train"]["horizon"]["tokens"] = 8 * 16 * 300
  tiny_trial["train"]["eval_every"] = 100
  tiny_trial["train"]["eval_batches"] = 32  # 4k eval tokens: sampling noise ~0.02 nats
  summary = train_lib.train(tiny_trial, str(tmp_path / "long"), progress=False, runtime={"tensorboard": False})
  data = Batches(tiny_trial["data"], 16, 8, 0).source
  unigram_entropy, first_order, _ = data.info["conditional_entropy_by_context"]
  floor = summary["entropy_floor"]
  assert floor == pytest.approx(data.language.optimal_loss(16))
  evals = [r["eval_loss"] for r in metrics_lib.read_metrics(str(tmp_path / "long" / "metrics.jsonl"))
           if "eval_loss" in r]
  assert evals == sorted(evals, reverse=True), f"eval loss must fall: {evals}"
  # Beyond what the unigram and bigram explain, i.e. attention to 2 tokens back is in use...
  assert summary["final_eval_loss"] < first_order - 0.05
  # ...and never below the Bayes-optimal loss on the same eval windows.
  assert abs(summary["eval_set_floor"] - floor) < 0.06
  assert summary["final_eval_loss"] > summary["eval_set_floor"] - 0.005
  assert summary["final_eval_loss"] - floor < 0.5 * (unigram_entropy - floor)


def test_run_directory_round_trip(finished_run):
  run_dir, summary = finished_run
  on_disk = metrics_lib.read_json(os.path.join(run_dir, "summary.json"))
  assert on_disk == json.loads(json.dumps(summary))
  for key in ("status", "params_total", "params_non_embedding", "params_embedding", "tokens", "flops",
              "final_train_loss", "final_eval_loss", "wall_seconds", "tokens_per_second", "params_sha256"):
    assert on_disk[key] is not None, key
  assert on_disk["status"] == "done" and on_disk["steps"] == 40 and on_disk["tokens"] == 40 * 8 * 16
  assert on_disk["flops"] == on_disk["flops_per_token"] * on_disk["tokens"]
  # Achieved FLOP/s is the steady-state throughput in model FLOPs; a CPU has no known peak, so no MFU.
  assert on_disk["flops_per_second"] == pytest.approx(on_disk["tokens_per_second"] * on_disk["flops_per_token"])
  assert on_disk["peak_flops_per_second"] is None and on_disk["mfu"] is None
  rows = metrics_lib.read_metrics(os.path.join(run_dir, "metrics.jsonl"))
  train_rows = [r for r in rows if "loss" in r]
  assert [r["step"] for r in train_rows] == list(range(1, 41))
  assert [r["step"] for r in rows if "eval_loss" in r] == [20, 40]
  assert on_disk["final_train_loss"] == pytest.approx(np.mean([r["loss"] for r in train_rows[-10:]]))
  assert on_disk["final_eval_loss"] == rows[-1]["eval_loss"]
  assert metrics_lib.read_json(os.path.join(run_dir, "config.json"))["model"]["size"] == 1
  assert glob.glob(os.path.join(run_dir, "tensorboard", "events.out.tfevents.*"))


def test_checkpoint_holds_the_final_parameters(finished_run, tiny_trial):
  run_dir, summary = finished_run
  from flax import nnx
  from scaling.checkpoint import Checkpoints
  s = train_lib.setup(tiny_trial)
  _, params = nnx.split(s.model)
  optimizer, _ = train_lib.make_optimizer(tiny_trial["optimizer"], s.steps)
  checkpoints = Checkpoints(run_dir)
  assert checkpoints.latest_step() == 40
  state = checkpoints.restore(40, {"params": params, "opt_state": optimizer.init(params)})
  checkpoints.close()
  assert train_lib.params_sha256(state["params"]) == summary["params_sha256"]
  assert train_lib.params_sha256(params) != summary["params_sha256"]


def test_resume_from_a_checkpoint_is_bit_exact(finished_run, tmp_path):
  run_dir, summary = finished_run
  resumed = str(tmp_path / "resumed")
  shutil.copytree(run_dir, resumed)
  # Back to the state of a crash after step 27: checkpoint 20 on disk, a torn metrics line, no summary.
  shutil.rmtree(os.path.join(resumed, "checkpoints", "40"))
  os.remove(os.path.join(resumed, "summary.json"))
  metrics_lib.truncate_metrics(os.path.join(resumed, "metrics.jsonl"), 27)
  with open(os.path.join(resumed, "metrics.jsonl"), "a") as f:
    f.write('{"step": 28, "los')
  config = metrics_lib.read_json(os.path.join(run_dir, "config.json"))
  again = train_lib.train(config, resumed, progress=False, runtime=TINY_RUNTIME)
  assert again["resumed_from_step"] == 20
  assert again["params_sha256"] == summary["params_sha256"]
  assert again["final_eval_loss"] == summary["final_eval_loss"]
  rows = metrics_lib.read_metrics(os.path.join(resumed, "metrics.jsonl"))
  assert [r["step"] for r in rows if "loss" in r] == list(range(1, 41))


def test_torn_metrics_line_is_dropped(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  with open(path, "w") as f:
    f.write('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
  assert [r["step"] for r in metrics_lib.read_metrics(path)] == [1, 2]


def test_checkpoint_every_is_honoured_between_flushes(tiny_trial, tmp_path):
  tiny_trial["train"]["horizon"]["tokens"] = 8 * 16 * 50
  run_dir = tmp_path / "cadence"
  train_lib.train(tiny_trial, str(run_dir), progress=False,
                  runtime={"flush_every": 10, "checkpoint_every": 25, "keep_checkpoints": 5, "tensorboard": False})
  assert sorted(int(d) for d in os.listdir(run_dir / "checkpoints") if d.isdigit()) == [25, 50]
