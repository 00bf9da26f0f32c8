"""The input contract of `python -m analysis fit` (issue 9): every bad input
exits 2 with exactly one line on stderr naming the file and the column or
flag, in bounded time and memory, and never a traceback.

Each case runs the CLI's `main` in this process, with its stdout and stderr
captured; the cases where the process itself matters (exit status, bounded
time on /dev/zero, an empty file) also run the real CLI in a subprocess.
"""
import contextlib
import io
import os
import pathlib
import subprocess
import sys
import time
import types
import warnings

import numpy as np
import pytest

from analysis import fit, fit_cli, laws

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 60  # Per case; each takes about a second.


def _write(directory, name, text):
  path = directory / name
  path.write_text(text)
  return str(path)


def _csv(directory, name, x, y, x_name="params", y_name="loss"):
  rows = "".join(f"{a},{b}\n" for a, b in zip(x, y))
  return _write(directory, name, f"{x_name},{y_name}\n{rows}")


def _cases(tmp):
  """name -> (argv after `fit`, substrings the one stderr line must hold)."""
  x = np.logspace(6, 9, 12)
  y = 2.0 + 30.0 * x ** -0.3
  good = _csv(tmp, "good.csv", x, y)
  binary = tmp / "binary.csv"
  binary.write_bytes(bytes(range(256)) * 8)
  latin1 = tmp / "latin1.csv"
  latin1.write_bytes("params,loss\n1e6,3.0\n2e6,2.9 \xe9\n".encode("latin-1"))
  directory = tmp / "a_directory"
  directory.mkdir()
  seeds = _csv(tmp, "one_size.csv", [1e7] * 3, [3.1, 3.0, 3.2])
  two_sizes = _csv(tmp, "two_sizes.csv", [1e7, 1e7, 1e8, 1e8, 1e7, 1e8],
                   [3.1, 3.0, 2.6, 2.5, 3.05, 2.55])
  many_rows = _write(tmp, "many_rows.csv",
                     "params,loss\n" + "1,2\n" * (100_001))
  chin = _write(tmp, "chin.csv", "params,tokens,loss\n" + "".join(
      f"1e7,{d:g},{3 - 0.1 * i}\n" for i, d in enumerate(np.logspace(9, 11, 8))))
  power = ["--law", "power", "--bootstrap", "0"]
  return {
      "empty": (["--csv", _write(tmp, "empty.csv", "")] + power, ["empty.csv", "--csv"]),
      "blank_lines": (["--csv", _write(tmp, "blank.csv", "\n\n\n")] + power, ["blank.csv"]),
      "header_only": (["--csv", _write(tmp, "header.csv", "params,loss\n")] + power,
                      ["header.csv", "0 rows"]),
      "no_header": (["--csv", _write(tmp, "noheader.csv", "1e6,3.0\n2e6,2.9\n4e6,2.8\n")] + power,
                    ["noheader.csv", "'loss'", "header"]),
      "wrong_columns": (["--csv", _csv(tmp, "cols.csv", x, y, "size", "err")] + power,
                        ["cols.csv", "'loss'", "--y"]),
      "wrong_y_column": (["--csv", good, "--y", "val_loss"] + power,
                         ["good.csv", "'val_loss'", "--y"]),
      "non_numeric_x": (["--csv", _csv(tmp, "text.csv", ["big"] + list(x[1:]), y)] + power,
                        ["text.csv", "'params'", "--x"]),
      "nan_y": (["--csv", _csv(tmp, "nan.csv", x, [np.nan] + list(y[1:]))] + power,
                ["nan.csv", "'loss'", "--y"]),
      "inf_x": (["--csv", _csv(tmp, "inf.csv", [np.inf] + list(x[1:]), y)] + power,
                ["inf.csv", "'params'"]),
      "negative_x": (["--csv", _csv(tmp, "neg.csv", -x, y)] + power,
                     ["neg.csv", "'params'", "positive"]),
      "negative_y": (["--csv", _csv(tmp, "negy.csv", x, -y)] + power,
                     ["negy.csv", "'loss'", "positive"]),
      "ragged": (["--csv", _write(tmp, "ragged.csv", "params,loss\n1,2\n3,4,5,6\n")] + power,
                 ["ragged.csv", "--csv"]),
      "directory": (["--csv", str(directory)] + power, ["a_directory", "directory"]),
      "dev_zero": (["--csv", "/dev/zero"] + power, ["/dev/zero", "MiB"]),
      "binary": (["--csv", str(binary)] + power, ["binary.csv", "binary"]),
      "not_utf8": (["--csv", str(latin1)] + power, ["latin1.csv", "UTF-8"]),
      "too_many_rows": (["--csv", many_rows] + power, ["many_rows.csv", "rows"]),
      "all_equal_x": (["--csv", _csv(tmp, "same_x.csv", [1e7] * 12, y)] + power,
                      ["same_x.csv", "'params'", "1 distinct", "3 distinct"]),
      "one_size_three_seeds": (["--csv", seeds, "--law", "power"],
                               ["one_size.csv", "1 distinct", "at least 3"]),
      "two_sizes": (["--csv", two_sizes] + power, ["two_sizes.csv", "2 distinct", "at least 3"]),
      "chinchilla_constant_n": (["--csv", chin, "--law", "chinchilla", "--bootstrap", "0"],
                                ["chin.csv", "'params' (--n)", "constant"]),
      "bnsl_breaks_over_data": (["--csv", good, "--law", "bnsl", "--breaks", "5"],
                                ["good.csv", "18 parameters", "--breaks"]),
      "bnsl_breaks_silly": (["--csv", good, "--law", "bnsl", "--breaks", "11"], ["--breaks"]),
      "bnsl_breaks_huge": (["--csv", good, "--law", "bnsl", "--breaks", "1000000"], ["--breaks"]),
      "bootstrap_huge": (["--csv", good, "--law", "power", "--bootstrap", "1000000000"],
                         ["--bootstrap"]),
      "seed_negative": (["--csv", good, "--law", "power", "--bootstrap", "5", "--seed", "-1"],
                        ["--seed"]),
  }


SUBPROCESS_CASES = ("empty", "dev_zero", "bootstrap_huge")


def _in_process(argv):
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
      code = fit_cli.main(list(argv))
    except SystemExit as e:  # argparse
      code = e.code
  return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def _subprocess(argv):
  try:
    return subprocess.run([sys.executable, "-m", "analysis", "fit", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=TIMEOUT_S, env={**os.environ, "PYTHONWARNINGS": "ignore"})
  except subprocess.TimeoutExpired:
    return None


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
  cases = _cases(tmp_path_factory.mktemp("contract"))
  results = {}
  for name, (argv, expected) in cases.items():
    start = time.monotonic()
    results[name] = (expected, _in_process(argv), time.monotonic() - start)
    if name in SUBPROCESS_CASES:
      results[name + " (subprocess)"] = (expected, _subprocess(argv), time.monotonic() - start)
  return results


CASE_NAMES = [
    "empty", "blank_lines", "header_only", "no_header", "wrong_columns", "wrong_y_column",
    "non_numeric_x", "nan_y", "inf_x", "negative_x", "negative_y", "ragged", "directory",
    "dev_zero", "binary", "not_utf8", "too_many_rows", "all_equal_x", "one_size_three_seeds",
    "two_sizes", "chinchilla_constant_n", "bnsl_breaks_over_data", "bnsl_breaks_silly",
    "bnsl_breaks_huge", "bootstrap_huge", "seed_negative",
]


def test_case_list_is_complete(tmp_path):
  assert sorted(_cases(tmp_path)) == sorted(CASE_NAMES)


@pytest.mark.parametrize("name", CASE_NAMES + [f"{n} (subprocess)" for n in SUBPROCESS_CASES])
def test_bad_input_gives_one_line_and_exit_2(name, outcomes):
  expected, proc, took = outcomes[name]
  assert proc is not None, f"{name}: no answer within {TIMEOUT_S} s"
  assert "Traceback" not in proc.stderr, proc.stderr
  assert proc.returncode == 2, (proc.returncode, proc.stderr)
  assert proc.stdout == ""
  lines = proc.stderr.splitlines()
  assert len(lines) == 1 and proc.stderr.endswith("\n"), proc.stderr
  for text in expected:
    assert text in lines[0], (text, lines[0])


# The library side of the same contract ----------------------------------------

@pytest.mark.parametrize("x, y, needed", [
    ([1e7] * 5, [3.0, 3.1, 2.9, 3.05, 2.95], "1 distinct x value "),
    ([1e7, 1e7, 1e7], [3.1, 3.0, 3.2], "1 distinct x value "),  # One size, three seeds.
    ([1e7, 1e8, 1e7, 1e8], [3.1, 2.6, 3.0, 2.5], "2 distinct x values"),
])
def test_fit_law_refuses_too_few_distinct_x(x, y, needed):
  with pytest.raises(fit.FitError, match=needed + ".*at least 3 distinct"):
    fit.fit_law(laws.POWER, x, y, bootstrap=5)


def test_fit_law_refuses_a_constant_input_of_chinchilla():
  d = np.logspace(9, 11, 8)
  with pytest.raises(fit.FitError, match="n_params is constant"):
    fit.fit_law(laws.CHINCHILLA, {"n_params": np.full(8, 1e7), "tokens": d},
                np.linspace(3, 2.5, 8))


@pytest.mark.parametrize("breaks", [1, 2, 5, 10, 40])
def test_bnsl_start_grid_is_bounded(breaks):
  x = np.logspace(1, 5, 40)
  y = 0.1 + 20 * x ** -0.2
  log_x = np.log(x)[None]
  log_scale = log_x.mean(1)
  law = laws.bnsl(breaks)
  start = time.monotonic()
  grid = law.starts(log_x - log_scale[:, None], y, log_scale)
  assert time.monotonic() - start < 1.0
  assert grid.shape == (min(9 * 27 ** breaks, 600), law.n_params)
  assert np.isfinite(grid).all()
  assert len(np.unique(grid, axis=0)) == len(grid)
