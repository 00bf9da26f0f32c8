"""Run-directory files: per-step metrics (JSON lines), TensorBoard events, atomic JSON.

metrics.jsonl is append-only and each row is written whole then flushed, so a
crash can at worst tear the last line; `read_metrics` drops a torn line and
`truncate_metrics` cuts rows past a checkpoint so a resumed run logs each step once.
"""
import json
import math
import os


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


def read_metrics(path: str) -> list:
  """All whole rows of a metrics file; a torn final line (crash mid-write) is dropped."""
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      if not line.endswith("\n"):
        break
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        break
  return rows


def truncate_metrics(path: str, last_step: int) -> None:
  """Keeps only whole rows with step <= last_step (atomically)."""
  rows = [r for r in read_metrics(path) if r["step"] <= last_step]
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
  os.replace(tmp, path)


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
