"""The sweep report on a sweep that trains one ladder with several objectives.

Fake sweep directories (sweep.json, config.json, summary.json, metrics.jsonl in
the layout sweeps/local.py and scaling/train.py write) hold rungs whose numbers
come from known laws, so the report's verdict can be checked against the truth.
"""
import json
import os

import numpy as np
import pytest

from analysis import objectives as objectives_lib
from analysis import report
from analysis.load import load_sweep
from scaling import metrics as metrics_lib
from sweeps import expand

PARAMS = np.logspace(5, 7, 6)  # non-embedding parameters of the 6 rungs
EXAMPLES = 2.0e5  # training examples per rung
TOKENS_PER_EXAMPLE = 64  # patches per image
BOOTSTRAP = 50

UNITS = {"classify": "nats/example", "masked_patches": "mse per normalised pixel", "next_token": "nats/token"}
KINDS = {"classify": "discriminative", "masked_patches": "generative", "next_token": "generative"}


def _curve(final_loss, steps=24):
  """A learning curve (one row per step) that ends at final_loss."""
  step = np.arange(1, steps + 1)
  loss = final_loss * (1 + 1.5 * ((step / steps) ** -0.7 - 1))
  return [{"step": int(s), "tokens": int(s * EXAMPLES * TOKENS_PER_EXAMPLE // steps), "loss": float(v),
           **({"eval_loss": float(v)} if s % 8 == 0 or s == steps else {})} for s, v in zip(step, loss)]


def write_sweep(directory, name, rungs, curve_steps=24):
  """Writes a sweep directory; rungs: list of (objective or None, size, summary fields).

  curve_steps: rows of each metrics.jsonl; under 8 the curves are too short to forecast (faster).
  """
  trials = []
  for objective, size, fields in rungs:
    config = {"model": {"family": "vit" if objective else "gpt", "size": size}}
    if objective is not None:
      config["objective"] = {"name": objective}
    trial_id = expand.config_id(config)  # a run directory is named by its config's id, and checked against it
    run_dir = os.path.join(directory, trial_id)
    os.makedirs(run_dir)
    n = float(fields["params_non_embedding"])
    tokens = EXAMPLES * TOKENS_PER_EXAMPLE
    summary = {"status": "done", "trial_id": trial_id, "params_total": 1.1 * n, "tokens": tokens,
               "flops_per_token": 6.6 * n, "flops_per_token_6n": 6 * n, "flops": 6.6 * n * tokens,
               "flops_6n": 6 * n * tokens, "wall_seconds": 10.0 + size, "tokens_per_second": 1e5,
               "steps": curve_steps, **fields}
    if objective is not None:
      summary.update(objective=objective, objective_kind=KINDS[objective], loss_unit=UNITS[objective],
                     examples=EXAMPLES)
    metrics_lib.write_json_atomic(os.path.join(run_dir, "config.json"), config)
    metrics_lib.write_json_atomic(os.path.join(run_dir, "summary.json"), summary)
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
      f.writelines(json.dumps(row) + "\n" for row in _curve(fields["final_eval_loss"], curve_steps))
    trials.append({"id": trial_id, "axes": {"model.size": size, **({"objective": objective} if objective else {})}})
  metrics_lib.write_json_atomic(os.path.join(directory, "sweep.json"), {"name": name, "trials": trials})
  return directory


def _noisy(values, seed, scale=0.01):
  return np.asarray(values) * np.exp(scale * np.random.default_rng(seed).standard_normal(len(values)))


def _vit_sweep(directory, classify_error, probe_error, n_params=PARAMS, eval_examples=None, curve_steps=24):
  """classify and masked_patches on one ladder; own losses are power laws with floors, in their own units."""
  classify_loss = _noisy(0.5 + 3.0 * (n_params / 1e5) ** -0.6, 5)
  probe_loss = _noisy(0.05 + 0.4 * (n_params / 1e5) ** -0.3, 6)
  extra = {"eval_examples": eval_examples} if eval_examples else {}
  rungs = [("classify", i + 1, {"params_non_embedding": n, "final_eval_loss": l, "final_eval_error": e, **extra})
           for i, (n, l, e) in enumerate(zip(n_params, classify_loss, classify_error))]
  rungs += [("masked_patches", i + 1,
             {"params_non_embedding": n, "final_eval_loss": l, "final_probe_error": e, **extra})
            for i, (n, l, e) in enumerate(zip(n_params, probe_loss, probe_error))]
  return write_sweep(str(directory), "vit", rungs, curve_steps)


def _read(directory, name):
  with open(os.path.join(directory, "analysis", name)) as f:
    return json.load(f) if name.endswith(".json") else f.read()


def test_a_floor_reached_early_saturates_earlier_than_a_clean_power_law(tmp_path):
  # classify: error floor 0.2, reached by the third rung; masked_patches: probe error a power law, no floor.
  classify_error = _noisy(0.2 + 0.5 * (PARAMS / 1e5) ** -2.0, 1)
  probe_error = _noisy(0.6 * (PARAMS / 1e5) ** -0.35, 2)
  directory = _vit_sweep(tmp_path, classify_error, probe_error, curve_steps=4)
  summary = report.analyze(directory, bootstrap=BOOTSTRAP)
  fits = _read(directory, "fits.json")

  # The single-objective fits run per objective, never on the two losses together.
  assert fits["group_by"] == "objective"
  assert set(fits["fits"]) == set(fits["backtest"]) == {"classify", "masked_patches"}
  assert set(fits["fits"]["classify"]["params_non_embedding"]["params"]) == {"E", "A", "alpha"}
  assert fits["fits"]["masked_patches"]["flops"]["n_points"] == 6
  for name in ("loss_vs_params_classify.png", "loss_vs_compute_masked_patches.png", "objectives_vs_params.png",
               "objectives_vs_compute.png"):
    assert os.path.getsize(os.path.join(directory, "analysis", name)) > 0, name

  objectives = fits["objectives"]
  classify = objectives["per_objective"]["classify"]["fits"]["final_eval_error"]["params_non_embedding"]
  assert classify["power"]["ci"]["E"][0] < 0.2 < classify["power"]["ci"]["E"][1]
  assert {"delta_aic", "preferred_aic", "lr_p"} <= set(classify["comparison"])
  probe = objectives["per_objective"]["masked_patches"]["fits"]["final_probe_error"]["params_non_embedding"]
  assert probe["n_points"] == 6 and probe["power"]["params"]["E"] < 0.05
  by_axis = {c["x_column"]: c for c in objectives["comparisons"]}
  assert set(by_axis) == {"params_non_embedding", "flops"}
  verdict = by_axis["params_non_embedding"]
  assert verdict["answer"] == "discriminative_earlier"
  assert verdict["x_star"]["classify"][2] < verdict["x_star"]["masked_patches"][1]  # the intervals back it
  assert not verdict["floors_overlap"]
  assert summary["objectives"]["comparisons"][0]["answer"] == "discriminative_earlier"

  text = _read(directory, "report.md")
  assert "## Objective `classify`" in text and "## Objective `masked_patches`" in text
  assert "discriminative `classify` saturates earlier than `masked_patches` on this ladder" in text
  assert "cannot tell" not in text


def test_the_same_law_for_both_cannot_be_told_apart(tmp_path):
  same = 0.1 + 0.5 * (PARAMS / 1e5) ** -0.5
  directory = _vit_sweep(tmp_path, _noisy(same, 3), _noisy(same, 4), curve_steps=4)
  report.analyze(directory, bootstrap=BOOTSTRAP)
  comparisons = _read(directory, "fits.json")["objectives"]["comparisons"]
  assert [c["answer"] for c in comparisons] == ["cannot_tell", "cannot_tell"]
  assert _read(directory, "report.md").count("the data cannot tell") == 2


def test_few_rungs_and_zero_errors_are_reported_not_fitted(tmp_path, capsys):
  sizes = PARAMS[:4]
  directory = _vit_sweep(tmp_path, [0.5, 0.3, 0.0, 0.2], 0.6 * (sizes / 1e5) ** -0.35, n_params=sizes, curve_steps=4)
  objectives, _ = objectives_lib.analyze(load_sweep(directory).trials, "params_non_embedding", "flops", bootstrap=10)
  classify = objectives["per_objective"]["classify"]
  error_fits = classify["fits"]["final_eval_error"]["params_non_embedding"]
  assert error_fits["n_points"] == 3  # the rung with error 0 left out: no n_eval to raise it to 1/n
  assert error_fits["power"] == {"not_fitted": "needs 4 rungs, has 3"}
  assert error_fits["saturating"] == {"not_fitted": "needs 5 rungs, has 3"}
  assert any("left out" in note for note in classify["notes"])
  assert objectives["comparisons"][0]["answer"] == "not_assessed"
  assert "is not assessed" in "\n".join(objectives_lib.markdown(objectives))

  # With n_eval in the summary the 0 is raised to 1/n_eval and the rung kept.
  raised = _vit_sweep(tmp_path / "raised", [0.5, 0.3, 0.0, 0.2], 0.6 * (sizes / 1e5) ** -0.35, n_params=sizes,
                      eval_examples=1000, curve_steps=4)
  assert report.main([raised, "--bootstrap", "10"]) == 0
  assert "[classify] fit vs params_non_embedding" in capsys.readouterr().out
  notes = _read(raised, "fits.json")["objectives"]["per_objective"]["classify"]["notes"]
  assert any("raised to 1/n_eval" in note for note in notes)


def test_a_one_objective_sweep_keeps_its_report(tmp_path):
  loss = _noisy(1.5 + 40 * PARAMS ** -0.3, 0)
  directory = write_sweep(str(tmp_path), "gpt", [
      (None, i + 1, {"params_non_embedding": n, "final_eval_loss": l, "entropy_floor": 1.4})
      for i, (n, l) in enumerate(zip(PARAMS, loss))], curve_steps=4)
  report.analyze(directory, bootstrap=20)
  fits = _read(directory, "fits.json")
  assert set(fits["fits"]) == {"params_non_embedding", "flops"}
  assert set(fits["fits"]["params_non_embedding"]["params"]) == {"E", "A", "alpha"}
  assert "held_out_trial" in fits["backtest"] and fits["entropy_floor"] == pytest.approx(1.4)
  assert "group_by" not in fits and "objectives" not in fits
  assert os.path.exists(os.path.join(directory, "analysis", "loss_vs_params.png"))
  text = _read(directory, "report.md")
  assert "## Backtest" in text and "Objective" not in text
