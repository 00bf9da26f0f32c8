"""Run-directory files: per-step metrics (JSON lines), TensorBoard events, atomic JSON.

metrics.jsonl is append-only and each row is written whole then flushed, so a
crash can at worst tear the last line; `read_metrics` drops a torn line, skips any
other damaged line (keeping the rows after it), and `truncate_metrics` cuts rows past
a checkpoint so a resumed run logs each step once, keeping a copy of the original
file whenever it drops a damaged line.

Every reader here is bounded: it reads regular files only (never blocks on a FIFO or
reads a device), JSON files up to MAX_JSON_BYTES, metrics lines up to MAX_LINE_BYTES.
`metrics_problem` says in one line what a finished trial's metrics file lost and what to do.
"""
import errno
import json
import math
import os
import shutil
import stat
import sys

from scaling import containment

MAX_JSON_BYTES = 64 * 2**20  # summary.json, config.json and sweep.json are kilobytes; a manifest of 10k trials ~1 MB
MAX_LINE_BYTES = 2**20  # a metrics row is under a kilobyte


def write_json_atomic(path: str, obj) -> None:
  """Writes via a temporary file and rename: readers never see half a file, and a failed write leaves none."""
  def write(f):
    json.dump(obj, f, indent=2, sort_keys=True, default=_jsonable)
    f.write("\n")
  _replace_atomically(path, write)


def write_bytes_atomic(path: str, data: bytes) -> None:
  """`path` replaced by `data` as write_json_atomic replaces it."""
  _replace_atomically(path, lambda f: f.buffer.write(data))


def _replace_atomically(path: str, write) -> None:
  """Replaces `path` with what write(text file) writes: a synced temporary file renamed over it, or nothing."""
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    with containment.open_new(tmp) as f:  # a link planted at the temporary name is refused, not written through
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    _remove_quietly(tmp)
    raise


def _remove_quietly(path: str) -> None:
  try:
    os.remove(path)
  except OSError:
    pass


def open_regular(path: str, follow_links: bool = False):
  """A binary file object for `path` if it is a regular file, else UnusableFile; never blocks (FIFOs). Inside a
  run directory no link is followed; a file the user names (a sweep file, a CSV) may be one (`follow_links`)."""
  try:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | (0 if follow_links else os.O_NOFOLLOW))
  except OSError as e:
    if e.errno == errno.ELOOP:
      raise UnusableFile(f"{path}: a symbolic link, never followed inside a run directory") from None
    raise
  try:
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
      kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
      raise UnusableFile(f"{path}: {kind}")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")
  except BaseException:
    os.close(fd)
    raise


class UnusableFile(ValueError):
  """A file that is not read: not a regular file (a directory, a FIFO, a device) or too large.

  Its message is `PATH: reason`."""


def read_json(path: str):
  """The JSON value in `path`. OSError if it cannot be opened; ValueError (UnicodeDecodeError,
  json.JSONDecodeError, UnusableFile) if it is not a regular file of at most MAX_JSON_BYTES of
  UTF-8 JSON nested at most a few hundred levels deep."""
  with open_regular(path) as f:
    data = f.read(MAX_JSON_BYTES + 1)
  if len(data) > MAX_JSON_BYTES:
    raise UnusableFile(f"{path}: larger than {MAX_JSON_BYTES // 2**20} MiB")
  try:
    return json.loads(data.decode("utf-8"))
  except RecursionError:
    raise UnusableFile(f"{path}: nested too deeply") from None


def reason_of(error: Exception) -> str:
  """An exception in a few words: the OS's reason, or the parser's first line without the path."""
  if isinstance(error, OSError) and error.strerror:
    return error.strerror
  text = str(error).splitlines()[0] if str(error) else type(error).__name__
  return text.split(": ", 1)[1] if isinstance(error, UnusableFile) else f"{type(error).__name__}: {text}"[:200]


def _jsonable(value):
  if hasattr(value, "item"):  # numpy / jax scalars
    return value.item()
  raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean(value):
  """JSON has no NaN/inf: write them as strings so a diverged step stays visible."""
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


def _lines(f):
  """The lines of a binary file; one longer than MAX_LINE_BYTES is skipped (never held) and stands as a
  line that is not JSON, with its newline if it has one."""
  while True:
    line = f.readline(MAX_LINE_BYTES + 1)
    if not line:
      return
    if len(line) > MAX_LINE_BYTES:  # Skip to the end of an overlong line without holding it.
      while line and not line.endswith(b"\n"):
        line = f.readline(MAX_LINE_BYTES)
      yield b"overlong\n" if line.endswith(b"\n") else b"overlong"
      continue
    yield line


def _parse_metrics(path: str) -> tuple:
  """(rows, damaged, torn) of a metrics file.

  rows: every line that parses as a JSON object with an integer "step", in file order.
  damaged: how many other whole lines there are (not JSON, not an object, no integer step, not
  UTF-8, longer than MAX_LINE_BYTES); each is skipped and never hides the rows after it.
  torn: whether the last line lacks its newline (a crash mid-write); it is not a row even if it parses.
  OSError if the file cannot be opened, UnusableFile if it is not a file.
  """
  if not os.path.lexists(path):
    return [], 0, False
  rows, damaged, torn = [], 0, False
  with open_regular(path) as f:  # Bytes: a line that is not UTF-8 is one damaged line, not an exception.
    for line in _lines(f):
      if not line.endswith(b"\n"):  # Only the last line can lack its newline.
        torn = True
        break
      try:
        row = json.loads(line.decode("utf-8"))
      except (UnicodeDecodeError, ValueError, RecursionError):  # JSONDecodeError is a ValueError; a blank line too
        damaged += 1
        continue
      if not isinstance(row, dict) or type(row.get("step")) is not int:
        damaged += 1
        continue
      rows.append(row)
  return rows, damaged, torn


def read_metrics(path: str) -> list:
  """All whole rows of a metrics file, in order ([] if it is missing or not a readable file).

  A torn final line (crash mid-write: no trailing newline) is dropped; a damaged line anywhere else
  (not JSON, not UTF-8, not an object with an integer "step") is skipped, and the rows after it are kept.
  `metrics_problem` says what was skipped.
  """
  try:
    return _parse_metrics(path)[0]
  except (OSError, ValueError):
    return []


def metrics_problem(path: str, steps=None):
  """What a finished trial's metrics file lost, in one line with what to do, or None if it is whole.

  Whole: a readable file without damaged or torn lines whose train rows (rows with "loss") are
  steps 1..steps, each once, in order (`steps` from the summary; not checked when it is not a count).
  """
  retrain = f"delete {os.path.dirname(path) or '.'} and run the sweep again to retrain the trial"
  counted = isinstance(steps, int) and not isinstance(steps, bool) and steps > 0
  if not os.path.lexists(path):
    return f"{path}: missing; the curves lack this trial; {retrain}" if counted else None
  try:
    rows, damaged, torn = _parse_metrics(path)
  except (OSError, ValueError) as e:
    return f"{path}: unreadable ({reason_of(e)}); the curves lack this trial; {retrain}"
  lost = [f"{damaged + torn} damaged line(s) skipped"] if damaged or torn else []
  logged = [r["step"] for r in rows if "loss" in r]
  if counted and logged != list(range(1, steps + 1)):
    present = len(set(logged) & set(range(1, steps + 1)))
    lost.append(f"train rows for {present} of its {steps} steps" if present < steps
                else "steps logged twice or out of order")
  return f"{path}: {'; '.join(lost)}; the curves skip what is lost; {retrain}" if lost else None


def truncate_metrics(path: str, last_step: int) -> int:
  """Keeps every whole row with step <= last_step (atomically); returns how many damaged lines it dropped.

  Rows past last_step are dropped (the resumed run redoes those steps), and so is a torn final
  line: the ordinary trace of a crash mid-write, whose step is past any checkpoint. Damaged lines
  elsewhere (see `_parse_metrics`) are dropped too, but never silently: the original file is first
  copied to `<path>.damaged-<UTC timestamp>` beside it, so nothing is lost, and their count (0 if
  none) is returned for the caller to report. Something at `path` that cannot be read as a file (a
  directory, a FIFO) holds no rows: it is moved to that name and counts as one damaged line.
  """
  if not os.path.lexists(path):
    return 0
  try:
    rows, damaged, _torn = _parse_metrics(path)
  except (OSError, UnusableFile):  # A directory, a FIFO, a dangling link: kept aside, and said.
    os.replace(path, containment.damaged_name(path))
    return 1
  if damaged:
    shutil.copy2(path, containment.damaged_name(path))
  rows = [r for r in rows if r["step"] <= last_step]
  _replace_atomically(path, lambda f: f.writelines(json.dumps(row) + "\n" for row in rows))
  return damaged


class MetricsWriter:
  """Appends rows to metrics.jsonl and mirrors scalars into TensorBoard event files."""

  def __init__(self, run_dir: str, tensorboard: bool = True, enabled: bool = True):
    """enabled=False (processes other than 0 of a multi-host job) makes every call a no-op.

    A `tensorboard` path that is not a directory turns the mirror off for this run, said in one
    line on stderr: metrics.jsonl holds every row anyway.
    """
    self._enabled = enabled
    self._file = containment.open_append(os.path.join(run_dir, "metrics.jsonl")) if enabled else None
    self._tb = None
    events = os.path.join(run_dir, "tensorboard")
    if tensorboard and enabled and os.path.lexists(events) and not os.path.isdir(events):
      print(f"{events}: not a directory; TensorBoard events are not written this run (metrics.jsonl has every "
            f"row); move it away to get them back", file=sys.stderr)
    elif tensorboard and enabled:
      from tensorboardX import SummaryWriter  # Writes event files without TensorFlow.
      self._tb = SummaryWriter(events, flush_secs=30)

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
