"""The routed law and the MoE-over-dense multipliers, fitted from results tables (analysis/moe_report.py)."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis import fit as fit_lib
from analysis import laws, moe_report
from tests.conftest import ROOT, write

TRUE = {"a": -0.12, "b": -0.06, "c": 0.002, "d": 1.9}
SIZES = (1e4, 3e4, 1e5, 3e5, 1e6)  # active non-embedding parameters of each ladder's rungs


def _ladders(noise=0.002, seed=0):
  """Trials of a dense ladder and 4- and 8-expert ladders at matched active size, losses from TRUE with noise."""
  rng = np.random.default_rng(seed)
  rows, steps = [], []
  for experts in (0, 4, 8):
    for size, n in enumerate(SIZES, start=1):
      e = max(experts, 1)
      loss = float(laws.ROUTED.predict(TRUE, {"params": [n], "experts": [e]})[0]) * np.exp(rng.normal(0, noise))
      trial = f"t{experts}_{size}"
      rows.append({"trial_id": trial, "status": "done", "config.model.size": size, moe_report.EXPERTS: experts,
                   moe_report.TOP_K: 1, "params_active": n + 100, "params_embedding": 100,
                   "params_total": n * max(experts, 1) + 100, "flops": 6 * n * 1e6, "final_eval_loss": loss,
                   "loss_unit": "nats/token"})
      if experts:
        steps += [{"trial_id": trial, "step": s, "moe_dropped": 0.1 * s, "moe_load_entropy": 0.9} for s in (1, 2)]
  return pd.DataFrame(rows), pd.DataFrame(steps)


def test_the_routed_law_is_recovered_with_intervals_that_cover_it():
  done, steps = _ladders()
  summary, drawn = moe_report.analyze(done, steps, bootstrap=100)
  law = summary["routed_law"]
  for name, value in TRUE.items():
    lo, hi = law["ci"][name]
    assert lo <= value <= hi, (name, law["ci"][name])
  assert law["params"]["b"] < 0 and law["n_points"] == 15
  slope = law["experts_slope"]  # b + c log N at the geometric-mean size: what one e-fold of experts buys there
  n_mid = np.exp(np.mean(np.log(SIZES)))
  assert slope["at_params"] == pytest.approx(n_mid)
  assert slope["ci"][0] <= TRUE["b"] + TRUE["c"] * np.log(n_mid) <= slope["ci"][1] < 0
  assert drawn["fit"].law is laws.ROUTED


def test_each_expert_count_gets_a_compute_multiplier_over_dense():
  done, steps = _ladders()
  summary, _ = moe_report.analyze(done, steps, bootstrap=100)
  m4, m8 = summary["multipliers"]["E=4"], summary["multipliers"]["E=8"]
  # Same FLOPs per active parameter, so k solves L_dense(k C) = L_E(C): from the true law at the largest
  # shared budget (N = 1e6), k = (L_E / L_dense)^(1 / a), 1.44x for 4 experts and 1.73x for 8.
  for m, e in ((m4, 4), (m8, 8)):
    lo, hi = m["largest"]["multiplier_ci"]
    ratio = np.exp(TRUE["b"] * np.log(e) + TRUE["c"] * np.log(1e6) * np.log(e))
    expected = ratio ** (1 / TRUE["a"])
    assert lo < expected < hi and m["largest"]["multiplier"] > 1.3
  assert m8["largest"]["multiplier"] > m4["largest"]["multiplier"]
  rows = {r["trial_id"]: r for r in summary["trials"]}
  assert rows["t4_1"]["dropped"] == pytest.approx(0.15) and rows["t0_1"]["dropped"] is None
  assert rows["t0_1"]["experts"] == 1 and not rows["t0_1"]["routed"]
  json.dumps(summary, allow_nan=False)  # fits.json takes it as it is
  text = "\n".join(moe_report.markdown(summary))
  assert "E=4" in text and "Routed law" in text and "15.0%" in text


def test_without_dense_trials_or_a_second_expert_count_it_says_why():
  done, steps = _ladders()
  summary, _ = moe_report.analyze(done[done[moe_report.EXPERTS] > 0], steps, bootstrap=0)
  assert "no dense trial" in summary["multipliers"]["error"]
  summary, _ = moe_report.analyze(done[done[moe_report.EXPERTS] < 8].iloc[:6], steps, bootstrap=0)
  assert summary["multipliers"]["E=4"]["error"]  # one MoE rung: no law to compare
  one_size = done[done["config.model.size"] == 1]
  summary, _ = moe_report.analyze(one_size, steps, bootstrap=0)
  assert "constant" in summary["routed_law"]["error"]


def test_fit_cli_fits_the_routed_law_from_a_csv(tmp_path):
  done, _ = _ladders()
  csv = tmp_path / "moe.csv"
  pd.DataFrame({"params": done.params_active - 100, "experts": done[moe_report.EXPERTS].clip(lower=1),
                "loss": done.final_eval_loss}).to_csv(csv, index=False)
  result = subprocess.run([sys.executable, "-m", "analysis", "fit", "--csv", str(csv), "--law", "routed",
                           "--bootstrap", "50", "--predict-at", "1e6:1,1e6:8"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout)
  assert out["params"]["b"] == pytest.approx(TRUE["b"], abs=0.03)
  # Two N:E points make a square [2, 2] input, which once came out transposed.
  expected = laws.ROUTED.predict(TRUE, {"params": [1e6, 1e6], "experts": [1, 8]})
  np.testing.assert_allclose(out["predictions"], expected, rtol=0.01)
  bad = subprocess.run([sys.executable, "-m", "analysis", "fit", "--csv", str(csv), "--law", "routed",
                        "--e", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert bad.returncode == 2 and "no column 'nope'" in bad.stderr and "--e" in bad.stderr
