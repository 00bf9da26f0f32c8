"""The input contract of `python -m analysis fit` (issue 9): every bad input
exits 2 with exactly one line on stderr naming the file and the column or
flag, in bounded time and memory, and never a traceback.

Each case runs the CLI's `main` in this process, with its stdout and stderr
captured; the cases where the process itself matters (exit status, bounded
time on /dev/zero, an empty file) also run the real CLI in a subprocess.
"""
import contextlib
import io
import json
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


def _fifo(tmp) -> str:
  path = os.path.join(str(tmp), "fifo.csv")
  if not os.path.exists(path):
    os.mkfifo(path)
  return path


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
      "dev_zero": (["--csv", "/dev/zero"] + power, ["/dev/zero", "not a regular file"]),
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


# Every CLI that reads a CSV, through its one reader (analysis/csv_input.py; issue 29) -----------------
#
# Each command runs in this process through `python -m analysis`'s main, its output read with capfd.

def _analysis(capfd, argv):
  from analysis import __main__ as analysis_main
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    code = analysis_main.main(list(argv))
  out, err = capfd.readouterr()
  return types.SimpleNamespace(returncode=code, stdout=out, stderr=err)


def _one_line_exit_2(proc, *fragments):
  assert "Traceback" not in proc.stderr, proc.stderr
  assert proc.returncode == 2 and proc.stdout == "", (proc.returncode, proc.stdout, proc.stderr)
  lines = proc.stderr.splitlines()
  assert len(lines) == 1 and proc.stderr.endswith("\n"), proc.stderr
  for text in fragments:
    assert text in lines[0], (text, lines[0])
  return lines[0]


# A command -> (its argv, {csv} for the file; the columns it reads, each (column, flag, blanks skipped)).
CSV_COMMANDS = {
    "fit": (["fit", "--csv", "{csv}", "--law", "chinchilla", "--bootstrap", "0"],
            [("params", "--n", False), ("tokens", "--d", False), ("loss", "--y", False)]),
    "fit_one_input": (["fit", "--csv", "{csv}", "--law", "power", "--x", "flops", "--bootstrap", "0"],
                      [("flops", "--x", False), ("loss", "--y", False)]),
    "plan": (["plan", "--csv", "{csv}", "--budget", "1e21", "--bootstrap", "0"],
             [("params", "--n", False), ("tokens", "--d", False), ("loss", "--y", False)]),
    "emergence": (["emergence", "--csv", "{csv}", "--x", "params", "--metric", "acc", "--continuous", "loss",
                   "--group", "family", "--bootstrap", "0"],
                  [("params", "--x", False), ("acc", "--metric", True), ("loss", "--continuous", True)]),
}

# A cell that is not a finite float64 -> what the line says of it.
BAD_CELLS = {
    "401_digits": ("9" * 401, "(401 characters) is too large for a float64"),
    "1e400": ("1e400", "'1e400' is too large for a float64"),
    "-1e400": ("-1e400", "'-1e400' is too large for a float64"),
    "1e-400": ("1e-400", "'1e-400' is too small for a float64"),
    "nan": ("nan", "'nan' is not a finite number"),
    "NaN": ("NaN", "'NaN' is not a finite number"),
    "inf": ("inf", "'inf' is not a finite number"),
    "-inf": ("-inf", "'-inf' is not a finite number"),
    "Infinity": ("Infinity", "'Infinity' is not a finite number"),
    "empty": ("", "an empty cell"),
    "spaces": ("  ", "an empty cell"),
    "word": ("big", "'big' is not a number"),
    "NA": ("NA", "'NA' is not a number"),
    "hex": ("0x10", "'0x10' is not a number"),
    "underscores": ("1_000", "'1_000' is not a number"),  # Python's float() takes it; a CSV reader must not
    "arabic_digit": ("\u0663", "is not a number"),  # float() reads it as 3
}
BAD_ROW = 5  # 1-based data row of the bad cell; a blank line after the header puts it on file line 7
BAD_LINE = 7


def _runs_csv(directory, name, bad=None, header=None):
  """Runs good for every command (12 rows), with the cell `bad` = (column, text) at data row BAD_ROW."""
  n = np.repeat(np.logspace(7, 9, 4), 3)
  d = np.tile(np.logspace(9, 11, 3), 4)
  rows = [{"family": f"f{i % 2}", "params": f"{a:g}", "tokens": f"{b:g}", "flops": f"{6 * a * b:g}",
           "loss": f"{1.7 + 400 / a ** 0.34 + 410 / b ** 0.28:.6f}",
           "acc": f"{1 / (1 + (a / 1e8) ** -3):.4f}", "notes": "ok"} for i, (a, b) in enumerate(zip(n, d))]
  if bad is not None:
    rows[BAD_ROW - 1][bad[0]] = bad[1]
  names = list(rows[0])
  lines = [header or ",".join(names), ""] + [",".join(row[k] for k in names) for row in rows]
  return _write(directory, name, "\n".join(lines) + "\n")


def _bad_cell_cases():
  for command, (_, columns) in CSV_COMMANDS.items():
    for column, flag, blanks_skipped in columns:
      for kind in BAD_CELLS:
        if not (blanks_skipped and kind in ("empty", "spaces")):
          yield pytest.param(command, column, flag, kind, id=f"{command}-{flag}-{kind}")


@pytest.mark.parametrize("command, column, flag, kind", list(_bad_cell_cases()))
def test_a_cell_that_is_not_a_finite_float64_is_one_line_naming_file_line_row_and_column(
    command, column, flag, kind, tmp_path, capfd):
  text, why = BAD_CELLS[kind]
  path = _runs_csv(tmp_path, "runs.csv", bad=(column, text))
  argv, _ = CSV_COMMANDS[command]
  line = _one_line_exit_2(_analysis(capfd, [a.format(csv=path) for a in argv]),
                          f"{path}:{BAD_LINE}: ", f"column '{column}' ({flag})", f"data row {BAD_ROW}", why)
  assert len(line) < 400, line  # a 401-digit cell is shown cut


@pytest.mark.parametrize("command", ["fit_one_input", "emergence"])
@pytest.mark.parametrize("kind", list(BAD_CELLS))
def test_a_bad_cell_in_a_column_the_command_does_not_read_is_left_alone(command, kind, tmp_path, capfd):
  path = _runs_csv(tmp_path, "runs.csv", bad=("notes", BAD_CELLS[kind][0]))
  argv, _ = CSV_COMMANDS[command]
  proc = _analysis(capfd, [a.format(csv=path) for a in argv])
  assert proc.returncode == 0, proc.stderr
  json.loads(proc.stdout)


def test_the_good_runs_pass_every_command(tmp_path, capfd):
  """The control of the cases above: without its bad cell the same file passes each command."""
  path = _runs_csv(tmp_path, "runs.csv")
  for command, (argv, _) in CSV_COMMANDS.items():
    proc = _analysis(capfd, [a.format(csv=path) for a in argv])
    assert proc.returncode == 0, (command, proc.stderr)
    json.loads(proc.stdout)


@pytest.mark.parametrize("command", list(CSV_COMMANDS))
@pytest.mark.parametrize("header, name, columns", [
    ("family,params,tokens,flops,loss,acc,loss", "loss", "5 and 7"),  # the case: a second loss
    ("family,params,tokens,flops,loss,acc, loss", "' loss'", "5 and 7"),  # spaces aside, the same name
    ("family,params,tokens,flops,loss,acc,family", "family", "1 and 7"),
    ("notes,params,tokens,flops,loss,acc,notes", "notes", "1 and 7"),  # even a column no flag names
])
def test_a_header_naming_a_column_twice_is_refused(command, header, name, columns, tmp_path, capfd):
  path = _runs_csv(tmp_path, "dup.csv", header=header)
  argv, _ = CSV_COMMANDS[command]
  _one_line_exit_2(_analysis(capfd, [a.format(csv=path) for a in argv]), f"{path}:1: ", f"{name}", "twice",
                   f"columns {columns}")


def _file_cases(tmp):
  header = "family,params,tokens,flops,loss,acc\n"  # every column each command reads
  row = "a,1e7,2e9,1.2e17,3.0,0.5\n"
  binary = tmp / "binary.csv"
  binary.write_bytes(bytes(range(256)) * 8)
  latin1 = tmp / "latin1.csv"
  latin1.write_bytes((header + row + "b,2e7,4e9,4.8e17,2.9 \xe9,0.6\n").encode("latin-1"))
  directory = tmp / "a_directory"
  directory.mkdir(exist_ok=True)
  return {
      "missing": (str(tmp / "missing.csv"), ["missing.csv", "no such file"]),
      "directory": (str(directory), ["a_directory", "directory"]),
      "dev_zero": ("/dev/zero", ["/dev/zero", "not a regular file"]),
      "fifo": (_fifo(tmp), ["fifo.csv", "not a regular file"]),  # nothing writes it: reading would block forever
      "empty": (_write(tmp, "empty.csv", ""), ["empty.csv", "no header"]),
      "blank_lines": (_write(tmp, "blank.csv", "\n\n\n"), ["blank.csv", "no header"]),
      "binary": (str(binary), ["binary.csv", "binary"]),
      "not_utf8": (str(latin1), ["latin1.csv:3:", "UTF-8"]),
      "too_many_rows": (_write(tmp, "many.csv", header + row * 100_001), ["many.csv", "more than 100000 rows"]),
      "ragged": (_write(tmp, "ragged.csv", header + row + "\n" + row.strip() + ",7\n"), ["ragged.csv:4:", "7 fields"]),
      "unclosed_quote": (_write(tmp, "quote.csv", header + row + 'b,2e7,4e9,4.8e17,2.9,"0.6\n'),
                         ["quote.csv", "not a readable CSV"]),
      "no_header": (_write(tmp, "noheader.csv", row * 3), ["noheader.csv", "no column", "lack a header line"]),
  }


@pytest.mark.parametrize("command", ["fit", "plan", "emergence"])
@pytest.mark.parametrize("case", ["missing", "directory", "dev_zero", "empty", "blank_lines", "binary", "not_utf8",
                                  "too_many_rows", "ragged", "unclosed_quote", "no_header"])
def test_a_file_that_is_not_a_readable_csv_is_refused_alike_by_every_command(command, case, tmp_path, capfd):
  path, fragments = _file_cases(tmp_path)[case]
  argv, _ = CSV_COMMANDS[command]
  _one_line_exit_2(_analysis(capfd, [a.format(csv=path) for a in argv]), *fragments)


# Flags: an error names its own command, and a negative value reaches the flag's own check -------------

@pytest.mark.parametrize("argv, fragments", [
    (["plan", "--csv", "{csv}", "--budget", "-1e12"], ["--budget: '-1e12' must be a positive"]),  # the case
    (["plan", "--csv", "{csv}", "--budget", "-inf"], ["--budget: '-inf' must be a positive"]),
    (["plan", "--csv", "{csv}", "--budget", "-1e12,1e20"], ["--budget: '-1e12' must be a positive"]),
    (["plan", "--csv", "{csv}", "--budg", "-1e12"], ["--budget: '-1e12' must be a positive"]),  # an abbreviation
    (["plan", "--csv", "{csv}", "--budget", "1e20", "--bootstrap", "-1e3"],
     ["plan: argument --bootstrap: invalid int value: '-1e3'"]),
    (["plan", "--csv", "{csv}", "--budget", "1e20", "--method", "cubic"], ["plan: argument --method"]),
    (["plan", "--csv", "{csv}", "--budget"], ["plan: argument --budget: expected one argument"]),
    (["fit", "--csv", "{csv}", "--law", "power", "--bootstrap", "0", "--predict-at", "-1e9"],
     ["--predict-at: '-1e9' must be positive"]),
    (["fit", "--csv", "{csv}", "--law", "data_constrained", "--u", "tokens", "--tokens-per-param", "-2e1"],
     ["--tokens-per-param -20: must be a positive number"]),
    (["fit", "--csv", "{csv}", "--law", "power", "--seed", "-1e3"], ["fit: argument --seed: invalid int value"]),
    (["fit", "--csv", "{csv}", "--law", "power", "--nope"], ["fit: unrecognized arguments: --nope"]),
    (["emergence", "--csv", "{csv}", "--x", "params", "--metric", "acc", "--bootstrap", "-1e3"],
     ["emergence: argument --bootstrap: invalid int value: '-1e3'"]),
    (["emergence", "--csv", "{csv}", "--x", "params", "--metric", "acc", "--seed", "-5"],
     ["--seed: must be 0 or more"]),
    (["emergence", "--csv", "{csv}", "--x", "-params", "--metric", "acc"], ["no column '-params' (pass --x COL"]),
    (["compare", "{dir}", "{dir}", "--bootstrap", "-1e3"], ["compare: argument --bootstrap: invalid int value"]),
    (["compare", "{dir}", "{dir}", "--seed", "-1"], ["--seed -1: must be 0 or more"]),
    (["compare", "{dir}", "{dir}", "--x", "steps"], ["compare: argument --x: invalid choice"]),
])
def test_flag_errors_name_their_command_and_negative_values_reach_the_check(argv, fragments, tmp_path, capfd):
  path = _runs_csv(tmp_path, "runs.csv")
  argv = [a.format(csv=path, dir=tmp_path) for a in argv]
  line = _one_line_exit_2(_analysis(capfd, argv), *fragments)
  others = {"fit", "plan", "emergence", "compare"} - {argv[0]}
  assert not any(f"{name}: " in line for name in others), line
  if argv[-1] != "--budget":  # a flag given a value is never told it was given none
    assert "expected one argument" not in line, line
