"""Run-directory files: per-step metrics (JSON lines), TensorBoard events, atomic JSON.

metrics.jsonl is append-only and each row is written whole then flushed, so a
crash can at worst tear the last line; `read_metrics` drops a torn line, skips any
other damaged line (keeping the rows after it), and `truncate_metrics` cuts rows past
a checkpoint so a resumed run logs each step once, keeping a copy of the original
file whenever it drops a damaged line.
"""
import json
import math
import os
import shutil
import time


def write_json_atomic(path: str, obj) -> None:
  """Writes via a temporary file and rename: readers never see half a file."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=_jsonable)
    f.write("\n")
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_json(path: str):
  with open(path) as f:
    return json.load(f)


def _jsonable(value):
  if hasattr(value, "item"):  # numpy / jax scalars
    return value.item()
  raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean(value):
  """JSON has no NaN/inf: write them as strings so a diverged step stays visible."""
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


def _parse_metrics(path: str) -> tuple:
  """(rows, damaged, torn) of a metrics file.

  rows: every line that parses as a JSON object with an integer "step", in file order.
  damaged: how many other whole lines there are (not JSON, not an object, no integer step, not
  UTF-8); each is skipped and never hides the rows after it.
  torn: whether the last line lacks its newline (a crash mid-write); it is not a row even if it parses.
  """
  if not os.path.exists(path):
    return [], 0, False
  rows, damaged, torn = [], 0, False
  with open(path, "rb") as f:  # Bytes: a line that is not UTF-8 is one damaged line, not an exception.
    for line in f:
      if not line.endswith(b"\n"):  # Only the last line can lack its newline.
        torn = True
        break
      try:
        row = json.loads(line.decode("utf-8"))
      except (UnicodeDecodeError, ValueError):  # JSONDecodeError is a ValueError; a blank line is one too
        damaged += 1
        continue
      if not isinstance(row, dict) or type(row.get("step")) is not int:
        damaged += 1
        continue
      rows.append(row)
  return rows, damaged, torn


def read_metrics(path: str) -> list:
  """All whole rows of a metrics file, in order.

  A torn final line (crash mid-write: no trailing newline) is dropped; a damaged line anywhere else
  (not JSON, not UTF-8, not an object with an integer "step") is skipped, and the rows after it are kept.
  """
  return _parse_metrics(path)[0]


def truncate_metrics(path: str, last_step: int) -> int:
  """Keeps every whole row with step <= last_step (atomically); returns how many damaged lines it dropped.

  Rows past last_step are dropped (the resumed run redoes those steps), and so is a torn final
  line: the ordinary trace of a crash mid-write, whose step is past any checkpoint. Damaged lines
  elsewhere (see `_parse_metrics`) are dropped too, but never silently: the original file is first
  copied to `<path>.damaged-<UTC timestamp>` beside it, so nothing is lost, and their count (0 if
  none) is returned for the caller to report.
  """
  if not os.path.exists(path):
    return 0
  rows, damaged, _torn = _parse_metrics(path)
  if damaged:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    copy = f"{path}.damaged-{stamp}"
    n = 1
    while os.path.exists(copy):
      copy, n = f"{path}.damaged-{stamp}-{n}", n + 1
    shutil.copy2(path, copy)
  rows = [r for r in rows if r["step"] <= last_step]
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  return damaged


class MetricsWriter:
  """Appends rows to metrics.jsonl and mirrors scalars into TensorBoard event files."""

  def __init__(self, run_dir: str, tensorboard: bool = True, enabled: bool = True):
    """enabled=False (processes other than 0 of a multi-host job) makes every call a no-op."""
    self._enabled = enabled
    self._file = open(os.path.join(run_dir, "metrics.jsonl"), "a") if enabled else None
    self._tb = None
    if tensorboard and enabled:
      from tensorboardX import SummaryWriter  # Writes event files without TensorFlow.
      self._tb = SummaryWriter(os.path.join(run_dir, "tensorboard"), flush_secs=30)

  def write(self, rows: list) -> None:
    if not self._enabled:
      return
    for row in rows:
      self._file.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
      if self._tb is not None:
        for key, value in row.items():
          if key != "step" and isinstance(value, (int, float)):
            self._tb.add_scalar(key, value, global_step=row["step"])
    self._file.flush()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
    if self._tb is not None:
      self._tb.close()
