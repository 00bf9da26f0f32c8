"""The one reader of the CSV files the analysis CLIs take (`fit`, `plan`, `emergence`), and its refusals.

  table = csv_input.read(path, {"--x": "params", "--y": "loss"})   # flag -> the column it names
  x, y = table.numbers("--x"), table.numbers("--y")                # float64 arrays, every value finite

Each refusal is a UsageError of one line, `FILE: reason` or `FILE:LINE: reason`, where LINE is the
line of the file (the header's, or the one a data row starts on) and the data row, counted from 1
after the header, is named beside it. Refused: a file that cannot be read, is not UTF-8 text, holds
NUL bytes, is over MAX_CSV_BYTES or MAX_ROWS data rows, or is not well-formed CSV (a row with more
fields than the header, an unclosed quote); a header that names one column twice (pandas would rename
the second `loss.1` and every command would read the first without a word); a flag naming a column the
header lacks; and in a column the command uses, a cell that is not a finite float64: empty (where the
command does not skip those), not a number, nan, inf or -inf, too large for a float64 (a 401-digit
integer) or so small it rounds to 0 (1e-400). Only the columns a command names are kept, so memory is
the file's size plus its rows times those columns.
"""
import csv
import io
import math
import re

import numpy as np
import pandas as pd

from scaling import metrics as metrics_lib

# A scaling-law fit has tens to thousands of points; every resample and start costs memory and time in
# proportion to the rows.
MAX_CSV_BYTES = 64 * 2 ** 20
MAX_ROWS = 100_000

_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
_NON_FINITE = re.compile(r"[+-]?(nan|inf|infinity)", re.IGNORECASE)
_SHOWN_CHARS = 24  # a cell longer than this is shown cut, with its length


class UsageError(Exception):
  """A bad flag or input; its message is the one line printed to stderr (every analysis CLI raises it)."""


def read(path: str, columns: dict) -> "Table":
  """The CSV at path with the columns {flag: column name} the command uses; UsageError naming the file,
  line and column of the first thing wrong with it."""
  text = _text(path)
  rows = csv.reader(io.StringIO(text), strict=True)
  header, header_line = _header(rows, path)
  _refuse_duplicates(header, header_line, path)
  where = {}
  for flag, name in columns.items():
    if name not in header:
      raise UsageError(f"{path}: no column {name!r} (pass {flag} COL; columns: {column_list(header)})")
    where[flag] = header.index(name)
  lines, cells = [], {flag: [] for flag in columns}
  try:
    line = rows.line_num
    for row in rows:
      start, line = line + 1, rows.line_num
      if not row:  # a blank line, as pandas skips it
        continue
      if len(row) > len(header):
        raise UsageError(f"{path}:{start}: {len(row)} fields but the header has {len(header)} (--csv)")
      if len(lines) == MAX_ROWS:
        raise UsageError(f"{path}: more than {MAX_ROWS} rows (--csv)")
      lines.append(start)
      for flag, at in where.items():
        cells[flag].append(row[at] if at < len(row) else "")  # a short row's missing cells are empty
  except csv.Error as err:
    raise UsageError(f"{path}:{rows.line_num}: not a readable CSV (--csv): {err}") from None
  return Table(path, columns, np.asarray(lines, dtype=np.int64), cells)


class Table:
  """The columns a command uses, as the text of their cells, with the file line each data row starts on."""

  def __init__(self, path, columns, lines, cells):
    self.path, self.columns, self.lines, self._cells = path, columns, lines, cells

  def at(self, row: int) -> str:
    """`FILE:LINE` of the 0-based data row `row`, for a message that also names it as 'data row row + 1'."""
    return f"{self.path}:{self.lines[row]}"

  def text(self, flag: str) -> np.ndarray:
    """The column `flag` names, its cells as written (labels such as a model family)."""
    return np.asarray(self._cells[flag], dtype=object)

  def numbers(self, flag: str, blank_ok: bool = False) -> np.ndarray:
    """The column `flag` names as float64, or UsageError at its first cell that is not a finite float64;
    with blank_ok an empty cell is NaN (a row the command skips)."""
    cells = self._cells[flag]
    values = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce").to_numpy(dtype=np.float64, copy=True)
    # pandas reads every finite decimal as Python's float() would; what it turns into NaN, inf or 0 may
    # be a refusal, so those cells alone are read again, slowly, to say why.
    problems = []
    for i in np.flatnonzero(~np.isfinite(values) | (values == 0)):
      values[i], why = _parse(cells[i], blank_ok)
      if why:
        problems.append((i, why))
    if problems:
      row, why = problems[0]
      kinds = "non-numeric or non-finite" if blank_ok else "missing, non-numeric or non-finite"
      raise UsageError(f"{self.at(row)}: column {self.columns[flag]!r} ({flag}) has {len(problems)} {kinds} "
                       f"values; the first, in data row {row + 1}: {why}")
    return values


def _parse(cell: str, blank_ok: bool) -> tuple:
  """(value, None) for a finite float64 (NaN for a blank cell where blanks are skipped), else (NaN, why not)."""
  text = cell.strip()
  if not text:
    return math.nan, None if blank_ok else "an empty cell"
  shown = _show(cell)
  decimal = _DECIMAL.fullmatch(text)
  if not decimal:
    return math.nan, f"{shown} is not a finite number" if _NON_FINITE.fullmatch(text) else f"{shown} is not a number"
  value = float(text)
  if math.isinf(value):
    return math.nan, f"{shown} is too large for a float64 (at most 1.8e308)"
  if value == 0 and decimal.group(1).strip("0.") != "":  # nonzero digits that round to 0
    return math.nan, f"{shown} is too small for a float64 (it rounds to 0; the smallest is 4.9e-324)"
  return value, None


def _show(cell: str) -> str:
  if len(cell) <= _SHOWN_CHARS:
    return repr(cell)
  return f"{cell[:_SHOWN_CHARS - 4]!r}... ({len(cell)} characters)"


def column_list(header) -> str:
  """The header's names for a message (the first 20), with a hint when they look like data."""
  names = [str(c) for c in header]
  shown = ", ".join(map(repr, names[:20])) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
  if any(_DECIMAL.fullmatch(n.strip()) for n in names):  # numbers for column names: the first line may be data
    return shown + "; the first line holds numbers: does the file lack a header line?"
  return shown


def _text(path: str) -> str:
  """The file's text, read with bounded memory (/dev/zero or a huge file stops at MAX_CSV_BYTES)."""
  try:
    with metrics_lib.open_regular(path, follow_links=True) as f:  # a FIFO must not block the command
      data = f.read(MAX_CSV_BYTES + 1)
  except FileNotFoundError:
    raise UsageError(f"{path}: no such file (--csv)") from None
  except metrics_lib.UnusableFile as err:
    if str(err).endswith(": a directory"):
      raise UsageError(f"{path}: is a directory, not a CSV file (--csv)") from None
    raise UsageError(f"{path}: not a regular file (a FIFO or a device), not a CSV file (--csv)") from None
  except OSError as err:
    raise UsageError(f"{path}: cannot read it (--csv): {err.strerror or type(err).__name__}") from None
  if len(data) > MAX_CSV_BYTES:
    raise UsageError(f"{path}: larger than {MAX_CSV_BYTES // 2 ** 20} MiB, too big for a scaling-law CSV (--csv)")
  if b"\0" in data:
    raise UsageError(f"{path}: a binary file (NUL bytes), not a CSV (--csv)")
  try:
    return data.decode("utf-8-sig")
  except UnicodeDecodeError as err:
    line = data.count(b"\n", 0, err.start) + 1
    raise UsageError(f"{path}:{line}: not UTF-8 text (--csv): byte 0x{data[err.start]:02x} "
                     f"at offset {err.start}") from None


def _header(rows, path):
  """(the header's names, its line): the first line that is not blank."""
  try:
    for header in rows:
      if header:
        return header, rows.line_num
  except csv.Error as err:
    raise UsageError(f"{path}:{rows.line_num}: not a readable CSV (--csv): {err}") from None
  raise UsageError(f"{path}: empty: no header line and no rows (--csv)")


def _refuse_duplicates(header, line, path):
  """A name given twice (spaces aside) leaves no way to say which column a flag means."""
  first = {}
  for number, name in enumerate(header, 1):
    key = name.strip()
    if key and key in first:
      raise UsageError(f"{path}:{line}: the header names column {name!r} twice (columns {first[key]} and {number}); "
                       "rename one")
    first.setdefault(key, number)
