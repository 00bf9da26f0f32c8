"""The data-constrained law (Muennighoff et al. 2023): D', its fit, its CLI.

The coverage test draws 100 noisy datasets from a known law on one design and
fits them with `fit.fit_many` (one batch: starts, polish and bootstrap refits
of every draw together), from a coarse 64-point grid that does not know the
truth, as tests/test_fit_coverage.py does for Chinchilla: the default
13,500-point grid costs ~6 s per fit and finds the same optimum here.
"""
import itertools
import json
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis import fit, laws

REPO = pathlib.Path(__file__).resolve().parents[1]
LAW = laws.DATA_CONSTRAINED
# The paper's fit (Muennighoff et al. 2023, sec. 6): R*_D = 15.4.
TRUTH = {"E": 1.87, "A": 521.0, "B": 1488.0, "alpha": 0.353, "beta": 0.353,
         "R_D_star": 15.4}
N_DRAWS = 100


def design():
  """4 sizes x 4 unique-token budgets x 1..32 epochs: inputs [3, 96]."""
  grid = itertools.product([1e8, 4e8, 1.6e9, 6.4e9], [1e9, 4e9, 1.6e10, 6.4e10],
                           [1, 2, 4, 8, 16, 32])
  n_params, unique_tokens, epochs = np.array(list(grid)).T
  return np.stack([n_params, unique_tokens * epochs, unique_tokens])


def noisy_losses(inputs, n_draws, seed, noise=0.01):
  """[n_draws, n] losses from TRUTH with lognormal noise of `noise` (log sd)."""
  clean = LAW.predict(TRUTH, inputs)
  rng = np.random.default_rng(seed)
  return clean * np.exp(noise * rng.standard_normal((n_draws, clean.size)))


def coarse_starts(log_scale):
  """2^6 raw (e, a, b, alpha, beta, log R*) starts, mapped into fit space."""
  raw = np.array(list(itertools.product(
      [0.0, 0.5], [5.0, 10.0], [5.0, 10.0], [0.25, 0.75], [0.25, 0.75],
      np.log([3.0, 30.0]))))
  e, a, b, alpha, beta, log_r = raw.T
  return np.stack([e, a - alpha * log_scale[0], b - beta * log_scale[1],
                   alpha, beta, log_r], axis=1)


# Effective data ------------------------------------------------------------------

def test_effective_data_is_the_data_itself_without_repetition():
  tokens = np.array([1e8, 5e8, 1e9])
  np.testing.assert_array_equal(laws.effective_data(tokens, 1e9, 15.4), tokens)


def test_effective_data_saturates_at_unique_times_one_plus_r_star():
  unique = 1e9
  many_epochs = laws.effective_data(unique * 1e6, unique, 15.4)
  np.testing.assert_allclose(many_epochs, unique * (1 + 15.4), rtol=1e-12)
  epochs = np.array([1.5, 4.0, 32.0, 1e3])  # Rises with epochs, below D.
  dprime = laws.effective_data(unique * epochs, unique, 15.4)
  assert np.all(np.diff(dprime) > 0) and np.all(dprime < unique * epochs)


def test_a_repeated_token_is_worth_half_a_new_one_at_half_worth_epochs():
  r_star, unique = 15.4, 1e9
  epochs = laws.half_worth_epochs(r_star)
  np.testing.assert_allclose(epochs, 1 + r_star * np.log(2))
  step = 1e-4 * unique
  tokens = epochs * unique
  worth = (laws.effective_data(tokens + step, unique, r_star)
           - laws.effective_data(tokens - step, unique, r_star)) / (2 * step)
  np.testing.assert_allclose(worth, 0.5, rtol=1e-6)


# The law object ------------------------------------------------------------------

def test_centred_model_is_the_raw_formula():
  """D and U share one scale, so the fit-space law equals the written formula
  with D' from effective_data, and the parameter maps invert each other."""
  inputs = design()
  log_x = np.log(inputs)
  log_scale = laws.log_scale_of(LAW, log_x)
  assert log_scale[1] == log_scale[2]
  theta = LAW.from_params(np.array([[TRUTH[k] for k in LAW.param_names]]), log_scale)
  np.testing.assert_allclose(LAW.to_params(theta, log_scale)[0],
                             [TRUTH[k] for k in LAW.param_names], rtol=1e-12)
  f, _ = LAW.model(theta, log_x - log_scale[:, None])
  n_params, tokens, unique = inputs
  dprime = laws.effective_data(tokens, unique, TRUTH["R_D_star"])
  expected = (TRUTH["E"] + TRUTH["A"] / n_params ** TRUTH["alpha"]
              + TRUTH["B"] / dprime ** TRUTH["beta"])
  np.testing.assert_allclose(np.exp(f[0]), expected, rtol=1e-12)
  np.testing.assert_allclose(LAW.predict(TRUTH, inputs), expected, rtol=1e-12)


def test_registered_and_reads_named_inputs():
  assert laws.get("data_constrained") is LAW
  n, d, u = np.array([1e8, 2e8]), np.array([4e9, 8e9]), np.array([1e9, 1e9])
  frame = pd.DataFrame({"U": u, "tokens": d, "params": n})
  np.testing.assert_array_equal(laws.as_inputs(LAW, frame), np.stack([n, d, u]))


# Fitting -------------------------------------------------------------------------

@pytest.mark.slow  # a coverage study
def test_95_percent_intervals_cover_the_true_r_star():
  inputs = design()
  losses = noisy_losses(inputs, N_DRAWS, seed=1)
  starts = coarse_starts(laws.log_scale_of(LAW, np.log(inputs)))

  results = fit.fit_many(LAW, inputs, losses, bootstrap=40, seed=0, starts=starts)

  covered = sum(r.ci["R_D_star"][0] <= TRUTH["R_D_star"] <= r.ci["R_D_star"][1]
                for r in results)
  assert covered >= 90, f"R_D_star: 95% intervals covered the truth in {covered} of 100"
  true_epochs = laws.half_worth_epochs(TRUTH["R_D_star"])
  epochs_covered = sum(lo <= true_epochs <= hi for _, lo, hi in (
      r.interval(lambda p: laws.half_worth_epochs(p["R_D_star"])) for r in results))
  assert epochs_covered == covered  # A monotone map of R_D_star's percentiles.


# CLI -------------------------------------------------------------------------------

def cli(*argv):
  return subprocess.run([sys.executable, "-m", "analysis", "fit", *map(str, argv)],
                        cwd=REPO, capture_output=True, text=True, timeout=300)


def write_runs(path, **columns):
  inputs = design()
  frame = pd.DataFrame({"params": inputs[0], "tokens": inputs[1], "unique": inputs[2],
                        "loss": noisy_losses(inputs, 1, seed=2)[0]})
  for name, values in columns.items():
    frame[name] = values
  frame.to_csv(path, index=False)
  return path


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory):
  return write_runs(tmp_path_factory.mktemp("dc") / "runs.csv")


def test_cli_fits_and_reports_r_star_and_half_worth_epochs(runs_csv):
  done = cli("--csv", runs_csv, "--law", "data_constrained", "--n", "params",
             "--d", "tokens", "--u", "unique", "--y", "loss", "--bootstrap", "50",
             "--predict-at", "1e9:1e11:1e10")
  assert done.returncode == 0, done.stderr
  out = json.loads(done.stdout)
  assert out["law"] == "data_constrained" and out["n_points"] == 96
  assert list(out["params"]) == ["E", "A", "B", "alpha", "beta", "R_D_star"]
  lo, hi = out["ci"]["R_D_star"]
  assert lo <= out["params"]["R_D_star"] <= hi and lo <= TRUTH["R_D_star"] <= hi
  epochs = out["derived"]["half_worth_epochs"]
  assert epochs == pytest.approx(1 + out["params"]["R_D_star"] * np.log(2))
  np.testing.assert_allclose(out["derived_ci"]["half_worth_epochs"],
                             [1 + lo * np.log(2), 1 + hi * np.log(2)], rtol=1e-9)
  assert out["predict_at"] == [[1e9, 1e11, 1e10]] and len(out["predictions"]) == 1


@pytest.mark.parametrize("argv, columns, messages", [
    pytest.param([], {}, ["--u: the data_constrained law needs"], id="no --u"),
    pytest.param(["--u", "unique"], {"unique": 0.0},
                 ["'unique' (--u) must be positive"], id="U <= 0"),
    pytest.param(["--u", "unique"], {"unique": 1e13},
                 ["no row repeats data", "R_D_star is not identifiable"],
                 id="no repetition"),
    pytest.param(["--u", "unique"], {"unique": "lots"},
                 ["column 'unique' (--u) has 96 missing, non-numeric"], id="non-numeric U"),
    pytest.param(["--u", "unique_tokens"], {}, ["no column 'unique_tokens' (pass --u"],
                 id="no such column"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, argv, columns, messages):
  path = write_runs(tmp_path / "runs.csv", **columns)
  done = cli("--csv", path, "--law", "data_constrained", "--bootstrap", "0", *argv)
  assert done.returncode == 2, done.stdout
  assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
  for message in messages:
    assert message in done.stderr, done.stderr


FULL = laws.DATA_CONSTRAINED_FULL
TRUTH_FULL = {**TRUTH, "R_N_star": 5.3}  # the paper's excess-parameter constant


def full_design(tokens_per_param=20.0):
  """design() and U_N = min(N, U / 20): a third of the runs have excess parameters."""
  inputs = design()
  return np.vstack([inputs, laws.unique_params(inputs[0], inputs[2], tokens_per_param)])


@pytest.mark.slow  # a coverage study
def test_full_law_95_percent_intervals_cover_both_decay_constants():
  inputs = full_design()
  assert 0.3 < (inputs[0] > inputs[3]).mean() < 0.7
  clean = FULL.predict(TRUTH_FULL, inputs)
  losses = clean * np.exp(0.01 * np.random.default_rng(5).standard_normal((N_DRAWS, clean.size)))
  log_scale = laws.log_scale_of(FULL, np.log(inputs))
  assert log_scale[0] == log_scale[3] and log_scale[1] == log_scale[2]
  coarse = coarse_starts(log_scale)
  starts = np.concatenate([coarse, np.full((len(coarse), 1), np.log(3.0))], axis=1)  # 64 starts, as for R*_D

  results = fit.fit_many(FULL, inputs, losses, bootstrap=40, seed=0, starts=starts)

  for name in ("R_D_star", "R_N_star"):
    covered = sum(r.ci[name][0] <= TRUTH_FULL[name] <= r.ci[name][1] for r in results)
    assert covered >= 90, f"{name}: 95% intervals covered the truth in {covered} of 100"


def test_cli_tokens_per_param_fits_the_full_law(tmp_path):
  inputs = full_design()
  keep = np.isin(inputs[0], [1e8, 1.6e9]) & np.isin(inputs[2], [1e9, 6.4e10]) & np.isin(inputs[1] / inputs[2], [1, 4, 32])
  path = tmp_path / "runs.csv"
  pd.DataFrame({"params": inputs[0, keep], "tokens": inputs[1, keep], "unique": inputs[2, keep],
                "loss": FULL.predict(TRUTH_FULL, inputs[:, keep])}).to_csv(path, index=False)
  done = cli("--csv", path, "--law", "data_constrained", "--u", "unique", "--tokens-per-param", "20",
             "--bootstrap", "0", "--predict-at", "1e10:1e11:1e10")
  assert done.returncode == 0, done.stderr
  out = json.loads(done.stdout)
  assert out["law"] == "data_constrained_full" and out["tokens_per_param"] == 20 and out["n_points"] == 12
  assert list(out["params"]) == list(FULL.param_names)
  expected = FULL.predict(out["params"], [[1e10], [1e11], [1e10], [1e10 / 20]])  # U_N = U / 20 < N
  assert out["predictions"] == pytest.approx(list(expected))
  assert "half_worth_epochs" in out["derived"]


@pytest.mark.parametrize("argv, message", [
    (["--law", "chinchilla", "--tokens-per-param", "20"], "only the data_constrained law takes it"),
    (["--law", "data_constrained", "--u", "unique", "--tokens-per-param", "-1"], "must be a positive number"),
    (["--law", "data_constrained", "--u", "unique", "--tokens-per-param", "1e-6"],
     "no row has more parameters than U_N"),
])
def test_cli_tokens_per_param_bad_input_is_one_line(runs_csv, argv, message):
  done = cli("--csv", runs_csv, "--bootstrap", "0", *argv)
  assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
