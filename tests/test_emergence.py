"""Emergence analysis (analysis/emergence.py) and `python -m analysis emergence` on evaluations with a known answer."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis import emergence, emergence_cli
from tests.conftest import ROOT

SIZES = np.logspace(6, 11, 11)


def _sigmoid(x, mid, slope=3.0, floor=0.02, ceiling=0.95):
  return floor + (ceiling - floor) / (1 + (x / mid) ** -slope)


def _family(rng, mid, seeds=2, instances=1000):
  """Exact match of a binomial draw of `instances` around a sigmoid with midpoint `mid`; a smooth log-prob."""
  rows = []
  for x in SIZES:
    for seed in range(seeds):
      rows.append({"params": x, "seed": seed, "acc": rng.binomial(instances, _sigmoid(x, mid)) / instances,
                   "logprob": -4 * (x / 1e6) ** -0.25 + rng.normal(0, 0.01),
                   "logprob_sharp": -4 + 3.9 * _sigmoid(x, mid, floor=0, ceiling=1) + rng.normal(0, 0.01)})
  return pd.DataFrame(rows)


def test_a_known_emergence_point_is_recovered_within_its_interval_and_called_sharp():
  rows = _family(np.random.default_rng(0), 3e8)
  entry = emergence.analyze(rows.params, rows.acc, rows.logprob, bootstrap=100)
  lo, hi = entry["emergence_point_ci"]
  assert lo < 3e8 < hi and hi / lo < 2
  assert entry["emergence_point"] == pytest.approx(3e8, rel=0.15)
  assert entry["monotone"] and entry["sharp"] and entry["sigmoid"]["good_fit"]
  assert entry["sigmoid"]["params"]["ceiling"] == pytest.approx(0.95, abs=0.02)
  assert entry["continuous"]["sharp"] is False
  assert entry["verdict"] == "metric-induced"  # smooth power law in log-prob, jump in exact match
  both = emergence.analyze(rows.params, rows.acc, rows.logprob_sharp, bootstrap=50)
  assert both["verdict"] == "sharp in both"
  assert [r["n"] for r in entry["rungs"]] == [2] * len(SIZES)


def test_a_smooth_rise_is_not_sharp():
  x = SIZES
  y = 0.1 + 0.08 * np.log(x / x[0])  # linear in ln x across the whole range
  entry = emergence.describe(x, y, bootstrap=0)
  assert entry["monotone"] and entry["sharp"] is False


def test_a_falling_family_is_flagged_and_given_no_emergence_point():
  rng = np.random.default_rng(1)
  acc = np.concatenate([_sigmoid(SIZES[:7], 1e8), _sigmoid(SIZES[7:], 1e8) - 0.5])  # inverse scaling at the top
  entry = emergence.describe(SIZES, acc + rng.normal(0, 0.005, len(SIZES)), bootstrap=20)
  assert entry["monotone"] is False and "not monotone" in entry["warning"]
  assert entry["emergence_point"] is None and entry["sigmoid"]["good_fit"] is False


def test_flat_noise_is_no_rise():
  rng = np.random.default_rng(2)
  entry = emergence.describe(np.repeat(SIZES, 2), 0.3 + rng.normal(0, 0.01, 2 * len(SIZES)), bootstrap=0)
  assert entry["emergence_point"] is None and entry["monotone"]


def _csv(tmp_path, rows, name="evals.csv"):
  path = tmp_path / name
  rows.to_csv(path, index=False)
  return str(path)


def test_cli_groups_pooled_blank_rows_and_linear_x(tmp_path, capsys):
  rng = np.random.default_rng(3)
  a, b = _family(rng, 1e8).assign(family="a"), _family(rng, 1e10).assign(family="b")
  dip = pd.DataFrame({"params": SIZES, "seed": 0, "family": "c", "logprob": -1.0,
                      "acc": np.where(SIZES > 1e9, 0.1, _sigmoid(SIZES, 1e7))})
  rows = pd.concat([a, b, dip], ignore_index=True)
  rows.loc[3, "acc"] = np.nan  # a blank metric: skipped and counted
  path = _csv(tmp_path, rows)
  out = emergence_cli.run(["--csv", path, "--x", "params", "--metric", "acc", "--group", "family",
                           "--continuous", "logprob", "--log-x", "--bootstrap", "60"])
  groups = out["groups"]
  assert set(groups) == {"a", "b", "c"} and "pooled" in out
  assert out["skipped_rows"] == 1 and groups["a"]["skipped_rows"] == 1 and groups["a"]["n_points"] == 21
  for name, mid in (("a", 1e8), ("b", 1e10)):
    lo, hi = groups[name]["emergence_point_ci"]
    assert lo < mid < hi, name
    assert groups[name]["monotone"] and set(groups[name]["sigmoid"]["ci"]) == {"floor", "ceiling", "slope", "x_mid"}
  assert groups["c"]["monotone"] is False and groups["c"]["warning"] and groups["c"]["emergence_point"] is None
  json.dumps(out, allow_nan=False)
  # Without --group: only pooled. Without --log-x the sigmoid is in x itself: here x = log10 N.
  only_a = _csv(tmp_path, a.assign(log10_params=np.log10(a.params)), "a.csv")
  linear = emergence_cli.run(["--csv", only_a, "--x", "log10_params", "--metric", "acc", "--bootstrap", "40"])
  assert set(linear) >= {"pooled"} and "groups" not in linear
  assert linear["pooled"]["emergence_point"] == pytest.approx(8.0, abs=0.1)
  lo, hi = linear["pooled"]["emergence_point_ci"]
  assert lo < 8.0 < hi


@pytest.mark.parametrize("args,message", [
    (["--x", "nope", "--metric", "acc"], "no column 'nope' (pass --x COL"),
    (["--x", "params", "--metric", "word"], "column 'word' (--metric) has 1 non-numeric"),
    (["--x", "zero", "--metric", "acc", "--log-x"], "must be positive with --log-x"),
    (["--x", "params", "--metric", "acc", "--bootstrap", "-1"], "--bootstrap -1"),
    (["--x", "params", "--metric", "acc", "--group", "family"], "no column 'family'"),
])
def test_cli_bad_input_is_one_line(tmp_path, args, message):
  rows = pd.DataFrame({"params": SIZES, "zero": np.r_[0.0, SIZES[1:]], "acc": _sigmoid(SIZES, 1e8),
                       "word": ["x"] + [0.5] * (len(SIZES) - 1)})
  path = _csv(tmp_path, rows)
  with pytest.raises(emergence_cli.UsageError) as error:
    emergence_cli.run(["--csv", path, *args])
  assert message in str(error.value)


def test_cli_exit_code_and_one_line_on_stderr(tmp_path):
  result = subprocess.run([sys.executable, "-m", "analysis", "emergence", "--csv", str(tmp_path / "missing.csv"),
                           "--x", "a", "--metric", "b"], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and "no such file" in result.stderr


def _many_groups(tmp_path, groups):
  """One evaluation per family: no family has the scales for a fit, so each costs milliseconds."""
  rows = pd.DataFrame({"family": [f"f{i:05d}" for i in range(groups)], "params": np.logspace(6, 11, groups),
                       "acc": np.linspace(0.01, 0.9, groups)})
  return _csv(tmp_path, rows, "many.csv")


def test_more_groups_than_the_bound_are_refused_in_one_line_before_any_fit(tmp_path, capfd):
  from analysis import __main__ as analysis_main
  path = _many_groups(tmp_path, emergence_cli.MAX_GROUPS + 1)
  code = analysis_main.main(["emergence", "--csv", path, "--x", "params", "--metric", "acc", "--group", "family"])
  out, err = capfd.readouterr()
  assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err
  for text in (path, "'family' (--group)", f"{emergence_cli.MAX_GROUPS + 1} groups",
               f"at most {emergence_cli.MAX_GROUPS}", "coarser"):
    assert text in err, (text, err)


def test_many_groups_show_their_progress_on_stderr(tmp_path, capfd):
  from analysis import __main__ as analysis_main
  groups = emergence_cli.PROGRESS_GROUPS + 5
  path = _many_groups(tmp_path, groups)
  code = analysis_main.main(["emergence", "--csv", path, "--x", "params", "--metric", "acc", "--group", "family",
                             "--log-x", "--bootstrap", "0"])
  out, err = capfd.readouterr()
  assert code == 0, err
  assert len(json.loads(out)["groups"]) == groups
  lines = err.splitlines()
  assert lines and all(line.startswith("emergence: ") for line in lines), err
  assert f"{groups}/{groups} groups" in lines[-1]
  few = _many_groups(tmp_path, emergence_cli.PROGRESS_GROUPS)
  assert analysis_main.main(["emergence", "--csv", few, "--x", "params", "--metric", "acc", "--group", "family",
                             "--bootstrap", "0"]) == 0
  assert capfd.readouterr().err == ""  # a few groups: no progress lines


def test_a_group_label_is_its_text_and_an_empty_one_is_refused(tmp_path):
  rows = pd.DataFrame({"family": ["1", "1.0"] * 6, "params": np.repeat(SIZES[:6], 2), "acc": 0.5})
  out = emergence_cli.run(["--csv", _csv(tmp_path, rows), "--x", "params", "--metric", "acc", "--group", "family",
                           "--bootstrap", "0"])
  assert set(out["groups"]) == {"1", "1.0"}  # as written, not as numbers pandas would make of them
  path = tmp_path / "blank_group.csv"
  path.write_text("family,params,acc\na,1e6,0.1\n,1e7,0.2\na,1e8,0.3\n")
  with pytest.raises(emergence_cli.UsageError, match=r"blank_group.csv:3: column 'family' \(--group\) has 1 empty"):
    emergence_cli.run(["--csv", str(path), "--x", "params", "--metric", "acc", "--group", "family"])


def test_a_jump_between_two_rungs_is_placed_between_them_not_at_a_false_point():
  x = np.repeat(np.array([1e3, 4e3, 1.6e4, 6.4e4, 2.56e5, 1e6]), 2)
  rng = np.random.default_rng(4)
  y = np.where(x > 2e4, 0.99, 0.01) + rng.normal(0, 0.005, len(x))  # a step between 1.6e4 and 6.4e4
  entry = emergence.describe(x, y, bootstrap=50)
  assert entry["between_rungs"] == [1.6e4, 6.4e4] and entry["sharp"]
  lo, hi = entry["emergence_point_ci"]
  assert lo <= 1.6e4 and hi >= 6.4e4


def test_intervals_that_straddle_the_threshold_leave_the_shape_undetermined():
  x = np.repeat(np.array([1e3, 6e3, 2e4, 5e4, 1e5, 1.7e5]), 2)
  rng = np.random.default_rng(3)  # a jump from the first rung to the second, then a slow climb (as sort's)
  y = np.clip(np.where(x < 5e3, 0.1, 0.9 - 0.2 * (x < 1.5e4)) + rng.normal(0, 0.05, len(x)), 0, 1)
  entry = emergence.describe(x, y, bootstrap=100)
  lo, hi = entry["sigmoid"]["rise_fraction_ci"]
  assert lo < emergence.SHARP_FRACTION < hi and entry["shape"] == "undetermined" and entry["sharp"] is None
  assert emergence.verdict(entry, entry) == "undetermined"


def _write_task_sweep(directory, seeds=(0, 1)):
  """A sweep directory as sweeps/local.py and scaling/train.py write it, whose `tasks` evaluator scored an
  `addition` that jumps between the 3rd and 4th of six sizes."""
  from scaling import metrics as metrics_lib
  from sweeps import expand
  rng = np.random.default_rng(0)
  trials = []
  for size, n in enumerate((1e3, 4e3, 1.6e4, 6.4e4, 2.56e5, 1e6), start=1):
    for seed in seeds:
      config = {"model": {"family": "gpt", "size": size}, "data": {"kind": "tasks", "eval_instances": 256}, "seed": seed}
      trial_id = expand.config_id(config)
      run_dir = os.path.join(directory, trial_id)
      os.makedirs(run_dir)
      em = float(np.clip((0.01 if n < 2e4 else 0.97) + rng.normal(0, 0.01), 0, 1))
      summary = {"status": "done", "trial_id": trial_id, "params_non_embedding": n, "params_total": 1.2 * n,
                 "tokens": 1e6, "steps": 10, "flops": 6e6 * n, "flops_6n": 6e6 * n, "wall_seconds": 1.0,
                 "tokens_per_second": 1e5, "final_eval_loss": 1.0 - 0.5 * em,
                 "final_addition_exact_match": em, "final_addition_token_accuracy": 0.3 + 0.7 * em,
                 "final_addition_logprob": -7.0 * (1 - em) - 0.01, "final_addition_edit_distance": 3 * (1 - em)}
      metrics_lib.write_json_atomic(os.path.join(run_dir, "config.json"), config)
      metrics_lib.write_json_atomic(os.path.join(run_dir, "summary.json"), summary)
      with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"step": 10, "tokens": 1e6, "loss": summary["final_eval_loss"]}) + "\n")
      trials.append({"id": trial_id, "axes": {"model.size": size, "seed": seed}})
  metrics_lib.write_json_atomic(os.path.join(directory, "sweep.json"), {"name": "em", "trials": trials})
  return directory


def test_the_report_gives_each_task_its_emergence_section_and_plot(tmp_path, capsys):

  from analysis import report
  directory = _write_task_sweep(str(tmp_path / "em"))
  assert report.main([directory, "--bootstrap", "30"]) == 0
  assert "emergence: addition: exact match" in capsys.readouterr().out
  with open(os.path.join(directory, "analysis", "fits.json")) as f:
    section = json.load(f)["emergence"]["addition"]
  em = section["exact_match_vs_params"]
  assert em["between_rungs"] == [1.6e4, 6.4e4] and em["shape"] == "sharp"
  assert section["verdict"] == "sharp in both" and section["n_trials"] == 12
  assert [r["seeds"] for r in section["rungs"]] == [2] * 6 and section["rungs"][0]["size"] == 1
  assert set(section["emergence_point_by_seed"]) == {"0", "1"}
  assert abs(section["two_step"]["error"]) < 0.1
  assert os.path.getsize(os.path.join(directory, "analysis", "emergence.png")) > 10_000
  with open(os.path.join(directory, "analysis", "report.md")) as f:
    assert "## Emergence" in f.read()
