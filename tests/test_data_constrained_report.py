"""The sweep report of a data-constrained sweep (analysis/data_constrained.py).

A fake sweep directory (the files sweeps/local.py and scaling/train.py write) holds trials
whose final losses come from the data-constrained law with a known R*_D, on the design the
shipped example uses: sizes x unique budgets x epochs, where budgets a factor 2 apart make
trials of equal compute that differ only in how often they repeat.
"""
import json
import os

import numpy as np
import pandas as pd

from analysis import data_constrained, laws, report
from scaling import metrics as metrics_lib
from sweeps import expand

TRUTH = {"E": 1.6, "A": 40.0, "B": 300.0, "alpha": 0.4, "beta": 0.35, "R_D_star": 4.0}
SIZES = (1e4, 4e4, 1.6e5)
UNIQUE = (1e5, 2e5, 4e5)
EPOCHS = (1, 2, 4, 8, 16)


def _loss(n, d, u):
  p = TRUTH
  return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / laws.effective_data(d, u, p["R_D_star"]) ** p["beta"]


def _write_sweep(directory, noise=0.003, seed=0, sizes=SIZES, unique=UNIQUE, epochs_grid=EPOCHS):
  rng = np.random.default_rng(seed)
  trials = []
  for n in sizes:
    for u in unique:
      for epochs in epochs_grid:
        config = {"model": {"family": "gpt", "size": int(n)}, "data": {"kind": "markov", "unique_tokens": int(u)},
                  "train": {"horizon": {"epochs": epochs}}}
        trial_id = expand.config_id(config)
        run_dir = os.path.join(directory, trial_id)
        os.makedirs(run_dir)
        d = u * epochs
        summary = {"status": "done", "trial_id": trial_id, "params_non_embedding": n, "params_total": 1.1 * n,
                   "tokens": d, "unique_tokens": u * 33 / 32, "epochs": float(epochs), "steps": 10,
                   "flops": 6 * n * d, "flops_6n": 6 * n * d, "wall_seconds": 1.0, "tokens_per_second": 1e5,
                   "final_eval_loss": float(_loss(n, d, u) * np.exp(noise * rng.standard_normal()))}
        metrics_lib.write_json_atomic(os.path.join(run_dir, "config.json"), config)
        metrics_lib.write_json_atomic(os.path.join(run_dir, "summary.json"), summary)
        with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
          f.write(json.dumps({"step": 10, "tokens": d, "loss": summary["final_eval_loss"]}) + "\n")
        trials.append({"id": trial_id, "axes": {"model.size": int(n), "data.unique_tokens": int(u),
                                                "train.horizon.epochs": epochs}})
  metrics_lib.write_json_atomic(os.path.join(directory, "sweep.json"), {"name": "dc", "trials": trials})
  return directory


def test_report_recovers_r_star_and_lays_out_loss_against_epochs_at_fixed_compute(tmp_path, capsys):
  directory = _write_sweep(str(tmp_path / "dc"))
  assert report.main([directory, "--bootstrap", "40"]) == 0
  with open(os.path.join(directory, "analysis", "fits.json")) as f:
    section = json.load(f)["data_constrained"]
  lo, hi = section["fit"]["ci"]["R_D_star"]
  assert lo < TRUTH["R_D_star"] < hi and hi / lo < 3, (lo, hi)
  half_lo, half_hi = section["half_worth_epochs"]["ci"]
  assert half_lo < laws.half_worth_epochs(TRUTH["R_D_star"]) < half_hi
  # Equal compute: per size, D = 4e5 (U 1e5 x 4, 2e5 x 2, 4e5 x 1), 8e5, 1.6e6 (three each), 2e5 and 3.2e6 (two).
  groups = {}
  for row in section["fixed_compute"]:
    groups.setdefault(row["group"], []).append(row)
  assert len(groups) == 3 * 5
  assert sorted(len(g) for g in groups.values()) == [2] * 6 + [3] * 9
  for rows in groups.values():
    assert len({(r["params"], r["tokens"]) for r in rows}) == 1
    assert rows[0]["loss_change_pct"] == 0 and all(r["loss_change_pct"] > 0 for r in rows[1:])  # repeats cost
  with open(os.path.join(directory, "analysis", "report.md")) as f:
    text = f.read()
  assert "## Repeated data" in text and "| R*_D" in text and "`loss_vs_epochs.png`" in text
  assert os.path.getsize(os.path.join(directory, "analysis", "loss_vs_epochs.png")) > 10_000
  assert "data-constrained: R_D_star=" in capsys.readouterr().out


def test_a_sweep_that_never_repeats_gets_no_section_and_one_budget_is_not_fitted():
  assert not data_constrained.applies(pd.DataFrame({"epochs": [1.0, 1.0]}))
  rows = data_constrained.table(pd.DataFrame({
      "trial_id": list("abcdefg"), "params_non_embedding": [1e4, 2e4, 4e4, 1e4, 2e4, 4e4, 8e4],
      "tokens": [1e5, 2e5, 4e5, 8e5, 1.6e6, 3.2e6, 6.4e6], "epochs": [1.0, 2, 4, 8, 16, 32, 64],
      "final_eval_loss": np.linspace(3, 2, 7)}), "params_non_embedding")
  result, why = data_constrained.fit(rows, bootstrap=0)
  assert result is None and "U" in why and "constant" in why


def test_with_tokens_per_param_the_report_fits_the_excess_parameter_term_too(tmp_path):
  from analysis.load import load_sweep
  done = load_sweep(_write_sweep(str(tmp_path / "dc"), sizes=SIZES[1:], unique=UNIQUE[:2], epochs_grid=(1, 4, 16))).trials
  section, drawn = data_constrained.analyze(done, "params_non_embedding", bootstrap=0, tokens_per_param=20.0)
  assert section["fit"]["law"] == "data_constrained_full" and "R_N_star" in section["fit"]["params"]
  assert drawn["predict"](np.array([1e4]), np.array([4e5]), np.array([1e5])).shape == (1,)
  text = "\n".join(data_constrained.markdown(section))
  assert "U_N = U / 20" in text and "N' = U_N" in text
