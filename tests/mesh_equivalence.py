"""Run in a subprocess with 8 fake CPU devices: the same trial on several meshes.

  python tests/mesh_equivalence.py [gpt] [moe] [vit] [--dtype bfloat16]

Prints one JSON line: per mesh, the per-step training losses and the
PartitionSpec of a few parameters, for tests/test_mesh.py to compare. The
groups named (all three if none) run; tests/test_mesh.py splits them over
two processes that run at once, since the runs are mostly compiles.
"""
import argparse
import json
import os
import sys
import tempfile

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scaling import metrics as metrics_lib  # noqa: E402
from scaling import runtime as runtime_lib  # noqa: E402
from scaling import train as train_lib  # noqa: E402
from sweeps.spec import TrialSpec  # noqa: E402

MESHES = {"single": {"data": 1}, "data8": {"data": 8}, "data2_fsdp4": {"data": 2, "fsdp": 4},
          "fsdp2_tensor4": {"fsdp": 2, "tensor": 4}, "data2_expert4": {"data": 2, "expert": 4},
          "expert4_tensor2": {"expert": 4, "tensor": 2}}


def _train(config, run_dir, mesh):
  summary = train_lib.train(config, run_dir, progress=False, runtime={
      "mesh": {"data": 1, "fsdp": 1, "expert": 1, "tensor": 1, **mesh}, "flush_every": 1, "checkpoint_every": 0,
      "tensorboard": False})
  rows = metrics_lib.read_metrics(os.path.join(run_dir, "metrics.jsonl"))
  return {"losses": [r["loss"] for r in rows if "loss" in r], "mesh": summary["mesh"],
          "shardings": summary["param_shardings"], "eval": summary["final_eval_loss"],
          "dropped": [r["moe_dropped"] for r in rows if "moe_dropped" in r]}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("groups", nargs="*", help="gpt, moe, vit (default: all)")
  parser.add_argument("--dtype", default="float32", help="train.compute_dtype")
  args = parser.parse_args()
  groups = args.groups or ["gpt", "moe", "vit"]
  if set(groups) - {"gpt", "moe", "vit"}:
    parser.error(f"unknown group(s) {sorted(set(groups) - {'gpt', 'moe', 'vit'})}")
  runtime_lib.configure_jax()
  gpt = {
      "model": {"family": "gpt", "size": 1, "options": {"aspect_ratio": 32, "head_dim": 8}},
      "data": {"kind": "markov", "vocab_size": 8, "order": 2, "mix": [0.2, 0.3, 0.5]},
      "train": {"seq_len": 16, "batch_size": 16, "horizon": {"tokens": 20 * 16 * 16}, "eval_every": 20,
                "eval_batches": 1,
                "compute_dtype": args.dtype},
      "optimizer": {"lr": 1e-2, "warmup_steps": 2},
  }
  config = TrialSpec.model_validate(gpt).model_dump(mode="json")
  # A mixture of 4 experts, top-2, with a capacity that drops tokens: expert-parallel meshes split it.
  moe = TrialSpec.model_validate({**gpt, "model": {**gpt["model"], "options": {
      **gpt["model"]["options"], "experts": 4, "top_k": 2, "capacity_factor": 1.0}}}).model_dump(mode="json")
  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    for name in ("single", "data8", "data2_fsdp4", "fsdp2_tensor4") if "gpt" in groups else ():
      results[name] = _train(config, os.path.join(tmp, name), MESHES[name])
    for name in ("single", "data2_expert4", "expert4_tensor2") if "moe" in groups else ():
      results[f"moe_{name}"] = _train(moe, os.path.join(tmp, f"moe_{name}"), MESHES[name])
    # A ViT with a random-mask objective: image batches (a dict of uint8 images and labels) split the same way.
    vit = TrialSpec.model_validate({
        "model": {"family": "vit", "size": 2, "options": {"aspect_ratio": 16, "head_dim": 8, "patch_size": 4}},
        "data": {"kind": "shapes"},
        "train": {"objective": "masked_patches", "batch_size": 16, "horizon": {"examples": 20 * 16}, "eval_every": 20,
                  "eval_batches": 1, "evaluators": []},
        "optimizer": {"lr": 1e-2, "warmup_steps": 2},
    }).model_dump(mode="json")
    for name in ("single", "fsdp2_tensor4") if "vit" in groups else ():
      results[f"vit_{name}"] = _train(vit, os.path.join(tmp, f"vit_{name}"), MESHES[name])
  print(json.dumps(results))


if __name__ == "__main__":
  main()
