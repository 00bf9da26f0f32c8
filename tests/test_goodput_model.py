"""analysis/goodput.py: the failure model's closed forms, its exact optimum, the Monte-Carlo, the CLI.

The kill-harness checks this model against real killed-and-relaunched runs, so these tests
pin the model itself: formulas on a case worked by hand, the Lambert-W optimum against a
numerical maximiser, and the simulation against the formula where failures are frequent.
"""
import json
import math
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.optimize

from analysis import goodput

REPO = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ["--devices", "100000", "--device-mtbf-hours", "16667", "--checkpoint-seconds", "30",
           "--restart-seconds", "300", "--step-seconds", "2"]


def test_closed_forms_on_a_case_worked_by_hand():
  # M = 100 s, S = 10 s, tau = 90 s: (tau + S)/M = 1; R = M ln 2 doubles E.
  # E = 100 * 2 * (e - 1) = 343.65636569180..., G = 90 / E = 0.26188951809...
  mtbf, save, restart = 100.0, 10.0, 100.0 * math.log(2.0)
  assert goodput.segment_seconds(90.0, mtbf, save, restart) == pytest.approx(343.656365691809, rel=1e-12)
  assert goodput.goodput(90.0, mtbf, save, restart) == pytest.approx(0.2618895180911969, rel=1e-12)
  assert goodput.young_interval(mtbf, save) == pytest.approx(math.sqrt(2000.0), rel=1e-15)
  # sqrt(2000) * (1 + sqrt(0.05)/3 + 0.05/9) - 10
  assert goodput.daly_interval(mtbf, save) == pytest.approx(38.3031448808291, rel=1e-12)
  assert goodput.daly_interval(mtbf, 250.0) == mtbf  # S >= 2M: Daly says checkpoint every M.
  tau = goodput.optimal_interval(mtbf, save)
  assert math.exp((tau + save) / mtbf) * (1.0 - tau / mtbf) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("mtbf,save", [(600.0, 20.0), (100.0, 10.0), (3600.0, 1.0),
                                       (50.0, 150.0), (1e6, 100.0)])
def test_lambert_w_optimum_is_the_numerical_maximum(mtbf, save):
  restart = 0.5 * mtbf
  found = scipy.optimize.minimize_scalar(lambda tau: -goodput.goodput(tau, mtbf, save, restart),
                                         bounds=(1e-12 * mtbf, mtbf), method="bounded",
                                         options={"xatol": 1e-13 * mtbf})
  tau = goodput.optimal_interval(mtbf, save)
  assert tau == pytest.approx(found.x, rel=1e-6)
  assert goodput.goodput(tau, mtbf, save, restart) >= -found.fun * (1 - 1e-12)  # Up to rounding.


@pytest.mark.parametrize("ratio", [1e-14, 1e-9, 9.9e-7, 1.01e-6, 1e-4])
def test_optimum_solves_its_equation_down_to_tiny_saves(ratio):
  # Below S/M ~ 1e-4 goodput is too flat for a numerical maximiser (G = 1 - O(sqrt(S/M))
  # differs from its maximum by less than a rounding error), so check the root instead in
  # the well-conditioned form x + log(1 - x) + S/M = 0, x = tau/M. The series branch
  # (S/M < 1e-6) and Lambert W meet there.
  x = goodput.optimal_interval(1.0, ratio)
  assert abs(x + math.log1p(-x) + ratio) <= 1e-8 * ratio


def test_young_daly_and_exact_agree_when_saves_are_cheap():
  mtbf, save, restart = 1e6, 10.0, 300.0  # S/M = 1e-5
  young, daly = goodput.young_interval(mtbf, save), goodput.daly_interval(mtbf, save)
  exact = goodput.optimal_interval(mtbf, save)
  assert young == pytest.approx(exact, rel=2e-3) and daly == pytest.approx(exact, rel=1e-3)
  best = goodput.goodput(exact, mtbf, save, restart)
  for tau in (young, daly):
    assert goodput.goodput(tau, mtbf, save, restart) == pytest.approx(best, rel=1e-6)


@pytest.mark.parametrize("mtbf,save", [(600.0, 30.0), (600.0, 300.0), (100.0, 150.0), (100.0, 400.0)])
def test_exact_optimum_beats_young_and_daly(mtbf, save):
  restart = 60.0
  best = goodput.goodput(goodput.optimal_interval(mtbf, save), mtbf, save, restart)
  young = goodput.goodput(goodput.young_interval(mtbf, save), mtbf, save, restart)
  daly = goodput.goodput(goodput.daly_interval(mtbf, save), mtbf, save, restart)
  assert best >= young and best >= daly
  if save >= mtbf / 2:  # Far from S << M the approximations lose visibly.
    assert best > young * (1 + 1e-3)


def test_huge_saves_and_restarts_underflow_to_zero_without_warnings():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert goodput.goodput(10.0, 1.0, 1e4, 1e4) == 0.0
    assert goodput.segment_seconds(10.0, 1.0, 1e4, 1e4) == math.inf
    assert goodput.goodput(math.inf, 600.0, 30.0, 300.0) == 0.0
    assert goodput.optimal_interval(1.0, 1e6) == pytest.approx(1.0)  # tau* -> M as S/M grows.
    values = goodput.goodput(np.array([1.0, 38.0, 1e6]), 100.0, 10.0, 60.0)
  assert values.shape == (3,) and values[-1] == 0.0 and 0 < values[0] < values[1] < 1


def test_whole_steps_pick_the_better_neighbour():
  mtbf, save, restart, step = 600.0, 30.0, 300.0, 7.0
  tau = goodput.optimal_interval(mtbf, save)
  steps = goodput.best_whole_steps(tau, step, mtbf, save, restart)
  assert steps in (math.floor(tau / step), math.ceil(tau / step))
  other = ({math.floor(tau / step), math.ceil(tau / step)} - {steps}).pop()
  assert goodput.goodput(steps * step, mtbf, save, restart) >= goodput.goodput(other * step, mtbf, save, restart)
  assert goodput.best_whole_steps(tau, 1e4, mtbf, save, restart) == 1  # A step longer than tau*.


def test_monte_carlo_agrees_with_the_formula_when_failures_are_many():
  mtbf, save, restart, work_seconds = 600.0, 20.0, 300.0, 200 * 3600.0
  tau = goodput.optimal_interval(mtbf, save)
  expected = goodput.goodput(tau, mtbf, save, restart)
  result = goodput.simulate(tau, mtbf, save, restart, work_seconds, samples=300, seed=0)
  low, high = result["goodput_interval"]
  assert low <= expected <= high
  assert result["goodput_mean"] == pytest.approx(expected, rel=0.01)
  # Failures per segment, restarts struck included: expm1((tau + S)/M) exp(R/M).
  segments = math.ceil(work_seconds / tau)
  failures = segments * math.expm1((tau + save) / mtbf) * math.exp(restart / mtbf)
  assert result["failures_mean"] == pytest.approx(failures, rel=0.02)
  assert result["goodputs"].shape == (300,)


def test_monte_carlo_is_deterministic_given_the_seed():
  args = (120.0, 600.0, 20.0, 300.0, 3600.0)
  first, again = (goodput.simulate(*args, samples=50, seed=3) for _ in range(2))
  other = goodput.simulate(*args, samples=50, seed=4)
  assert np.array_equal(first["goodputs"], again["goodputs"])
  assert not np.array_equal(first["goodputs"], other["goodputs"])


def _no_nan(token):
  raise AssertionError(f"JSON holds {token}")


def _cli(argv):
  return subprocess.run([sys.executable, "-m", "analysis", "goodput", *argv], cwd=REPO,
                        capture_output=True, text=True, timeout=60)


def test_cli_hundred_thousand_devices():
  done = _cli(EXAMPLE)
  assert done.returncode == 0, done.stderr
  assert done.stderr == ""
  report = json.loads(done.stdout, parse_constant=_no_nan)
  assert report["inputs"]["system_mtbf_seconds"] == pytest.approx(600.012)
  optimum = report["optimum"]
  assert 0 < optimum["interval_seconds"] < report["inputs"]["system_mtbf_seconds"]
  assert optimum["checkpoint_every_steps"] == round(optimum["interval_seconds"] / 2)
  for value in (optimum["goodput"], optimum["goodput_at_steps"], report["young"]["goodput"],
                report["daly"]["goodput"], report["monte_carlo"]["optimum"]["goodput_mean"]):
    assert 0 < value < 1
  assert "yours" not in report and "yours" not in report["monte_carlo"]
  assert report["summary"].startswith("a failure every 10.0 min; checkpoint every")


def test_cli_reports_your_interval(capsys):
  code = goodput.main([*EXAMPLE, "--checkpoint-every-steps", "30", "--work-hours", "2",
                       "--samples", "200"])
  out, err = capsys.readouterr()
  assert code == 0, err
  report = json.loads(out, parse_constant=_no_nan)
  assert report["yours"]["interval_seconds"] == 60.0 and report["yours"]["checkpoint_every_steps"] == 30
  assert report["yours"]["goodput"] < report["optimum"]["goodput"]
  assert report["monte_carlo"]["yours"]["goodput_mean"] > 0
  assert "yours, every 1.0 min" in report["summary"]


def test_cli_goodput_near_zero_prints_nulls_not_nan(capsys):
  code = goodput.main(["--devices", "1", "--device-mtbf-hours", "0.001", "--checkpoint-seconds",
                       "1000", "--restart-seconds", "1000", "--interval-seconds", "1e300"])
  out, err = capsys.readouterr()
  assert code == 0, err
  report = json.loads(out, parse_constant=_no_nan)
  assert report["optimum"]["goodput"] < 1e-200 and report["yours"]["goodput"] == 0.0
  assert report["yours"]["interval_seconds"] == 1e300
  assert report["monte_carlo"]["optimum"]["goodput_mean"] is None


@pytest.mark.parametrize("argv,flag", [([], "--devices"), (["--devices", "8"], "--device-mtbf-hours"),
                                       (EXAMPLE[:-4], "--restart-seconds")])
def test_missing_flags_are_named(argv, flag, capsys):
  code = goodput.main(argv)
  out, err = capsys.readouterr()
  assert code == 2 and out == ""
  assert err.count("\n") == 1 and err.startswith(f"error: {flag}: required"), err


BAD_INPUTS = [  # Each appended to EXAMPLE: a later flag overrides an earlier one.
    (["--devices", "abc"], "--devices"),
    (["--devices", "2.5"], "--devices"),
    (["--devices", "0"], "--devices"),
    (["--device-mtbf-hours", "nan"], "--device-mtbf-hours"),
    (["--checkpoint-seconds", "inf"], "--checkpoint-seconds"),
    (["--checkpoint-seconds", "-1e5"], "--checkpoint-seconds"),
    (["--restart-seconds", "0"], "--restart-seconds"),
    (["--step-seconds", "-2"], "--step-seconds"),
    (["--interval-seconds", "ten"], "--interval-seconds"),
    (["--samples", "100001"], "--samples"),
    (["--samples", "0"], "--samples"),
    (["--work-hours", "1e6"], "--work-hours"),
    (["--seed", "-1"], "--seed"),
    (["--interval-seconds", "60", "--checkpoint-every-steps", "30"], "--checkpoint-every-steps"),
    (["--checkpoint-every-steps", "0"], "--checkpoint-every-steps"),
    (["--bogus", "1"], "--bogus"),
    (["--samples", "100000", "--work-hours", "1000"], "--samples"),  # Too many events.
]


@pytest.mark.parametrize("extra,flag", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_inputs_give_one_line_naming_the_flag(extra, flag, capsys):
  code = goodput.main([*EXAMPLE, *extra])
  out, err = capsys.readouterr()
  assert code == 2 and out == ""
  assert err.count("\n") == 1 and err.startswith(f"error: {flag}: "), err


def test_step_count_without_step_seconds_is_refused(capsys):
  code = goodput.main([*EXAMPLE[:-2], "--checkpoint-every-steps", "30"])
  _, err = capsys.readouterr()
  assert code == 2 and err.startswith("error: --checkpoint-every-steps: needs --step-seconds")


def test_bad_input_in_a_subprocess_has_no_traceback():
  done = _cli([*EXAMPLE, "--devices", "-inf"])
  assert done.returncode == 2 and done.stdout == ""
  assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
  assert done.stderr.startswith("error: --devices: ")
