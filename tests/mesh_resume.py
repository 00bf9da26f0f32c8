"""Run in a subprocess with 8 fake CPU devices: a trial checkpointed on 8 devices resumes on 4 and on 1.

Prints one JSON line: the uninterrupted 8-device losses, and for each resume the losses after
the checkpoint, the mesh it resumed on and the mesh the summary says it came from.
"""
import json
import os
import shutil
import sys
import tempfile

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scaling import metrics as metrics_lib  # noqa: E402
from scaling import runtime as runtime_lib  # noqa: E402
from scaling import train as train_lib  # noqa: E402
from sweeps.spec import TrialSpec  # noqa: E402

STEPS, CHECKPOINT = 20, 10


def runtime(data, fsdp=1):
  return {"mesh": {"data": data, "fsdp": fsdp, "tensor": 1}, "flush_every": 1, "checkpoint_every": CHECKPOINT,
          "keep_checkpoints": 5, "tensorboard": False}


def losses(run_dir):
  return [r["loss"] for r in metrics_lib.read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "loss" in r]


def main():
  runtime_lib.configure_jax()
  config = TrialSpec.model_validate({
      "model": {"family": "gpt", "size": 1, "options": {"aspect_ratio": 32, "head_dim": 8}},
      "data": {"kind": "markov", "vocab_size": 8, "order": 2, "mix": [0.2, 0.3, 0.5]},
      "train": {"seq_len": 16, "batch_size": 16, "horizon": {"tokens": STEPS * 16 * 16}, "eval_every": STEPS,
                "eval_batches": 1},
      "optimizer": {"lr": 1e-2, "warmup_steps": 2},
  }).model_dump(mode="json")
  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    full = os.path.join(tmp, "full")
    train_lib.train(config, full, progress=False, runtime=runtime(4, fsdp=2))
    results["full"] = losses(full)
    for name, mesh in (("to4", runtime(4)), ("to1", runtime(1))):
      run_dir = os.path.join(tmp, name)
      shutil.copytree(full, run_dir)
      # Back to the state of a crash after step 14 of the 8-device run: checkpoint 10, a summary saying running.
      shutil.rmtree(os.path.join(run_dir, "checkpoints", str(STEPS)))
      summary = metrics_lib.read_json(os.path.join(run_dir, "summary.json"))
      metrics_lib.write_json_atomic(os.path.join(run_dir, "summary.json"), {**summary, "status": "running"})
      metrics_lib.truncate_metrics(os.path.join(run_dir, "metrics.jsonl"), 14)
      resumed = train_lib.train(config, run_dir, progress=False, runtime=mesh)
      results[name] = {"losses": losses(run_dir), "mesh": resumed["mesh"], "from": resumed.get("resumed_from_mesh"),
                       "resumed_from_step": resumed["resumed_from_step"], "status": resumed["status"]}
  print(json.dumps(results))


if __name__ == "__main__":
  main()
