"""The report of an IsoFLOP sweep (analysis/isoflop_report.py): approaches 2 and 3 on the same runs.

A fake sweep directory holds runs drawn from Epoch's fit of Chinchilla on an IsoFLOP design, each
trial declared by its budget (`train.horizon.flops`), so the allocation exponent is known.
"""
import json
import os

import numpy as np

from analysis import isoflop, report
from scaling import metrics as metrics_lib
from sweeps import expand


def _write_sweep(directory, runs):
  trials = []
  for i, r in enumerate(runs.itertuples()):
    config = {"model": {"family": "gpt", "size": i + 1}, "train": {"horizon": {"flops": float(r.flops)}}}
    trial_id = expand.config_id(config)
    os.makedirs(os.path.join(directory, trial_id))
    summary = {"status": "done", "trial_id": trial_id, "params_non_embedding": r.params, "params_total": 1.25 * r.params,
               "tokens": r.tokens, "flops": r.flops, "flops_6n": r.flops, "steps": 4, "wall_seconds": 1.0,
               "final_eval_loss": r.loss}
    metrics_lib.write_json_atomic(os.path.join(directory, trial_id, "config.json"), config)
    metrics_lib.write_json_atomic(os.path.join(directory, trial_id, "summary.json"), summary)
    with open(os.path.join(directory, trial_id, "metrics.jsonl"), "w") as f:
      f.write(json.dumps({"step": 4, "tokens": r.tokens, "loss": r.loss}) + "\n")
    trials.append({"id": trial_id, "axes": {"model.size": i + 1, "train.horizon.flops": float(r.flops)}})
  metrics_lib.write_json_atomic(os.path.join(directory, "sweep.json"), {"name": "iso", "trials": trials})
  return directory


def test_both_approaches_recover_the_allocation_exponent_and_agree(tmp_path):
  runs = isoflop.synthetic_runs(budgets=np.logspace(18, 21, 4), sizes_per_budget=7, noise=0.005, seed=0)
  directory = _write_sweep(str(tmp_path / "iso"), runs)
  summary = report.analyze(directory, bootstrap=60)
  section = summary["isoflop"]
  truth = isoflop.allocation_exponents(isoflop.EPOCH_PARAMS)[0]
  assert section["budgets_declared"] == sorted(runs.flops.unique())
  for name in ("non_embedding", "total"):
    s = section[name]
    assert all(m["interior_minimum"] for m in s["minima"]) and len(s["minima"]) == 4
    if name == "non_embedding":  # the truth is in non-embedding parameters
      for approach in ("approach2", "approach3"):
        lo, hi = s[approach]["exponent_n_ci"]
        assert lo < truth < hi, (approach, lo, hi)
      assert s["agree"] is True
    ratios = [p["tokens_per_param"] for p in s["approach3"]["frontier"]]
    assert len(ratios) == 4 and all(r > 0 for r in ratios)
  # Counting 1.25x the parameters moves the optimal tokens per parameter down by about that factor.
  ne = section["non_embedding"]["approach3"]["frontier"][0]["tokens_per_param"]
  total = section["total"]["approach3"]["frontier"][0]["tokens_per_param"]
  assert 1.2 < ne / total < 2.0
  with open(os.path.join(directory, "analysis", "report.md")) as f:
    text = f.read()
  assert "## IsoFLOP" in text and "agree within their intervals" in text and "| budget C (6ND)" in text
  assert os.path.getsize(os.path.join(directory, "analysis", "isoflop.png")) > 10_000
