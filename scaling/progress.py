"""Progress output: a tqdm bar on a terminal; off a terminal (CI, SLURM, pod logs) a plain line now and then.

A bar redrawn at every update fills a log file with carriage returns, so when stderr is not
a TTY progress is one line every `every_percent` of the total or every `every_seconds`,
whichever comes first, plus the last one.
"""
import sys
import time


def bar(total: int, initial: int, desc: str, unit: str, leave: bool = True, position=None, stream=None):
  """A tqdm bar if `stream` (default stderr) is a terminal, else a `LineProgress` with the same calls."""
  stream = stream or sys.stderr
  if stream.isatty():
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave, position=position,
                dynamic_ncols=True, file=stream)
  return LineProgress(total, initial, desc, unit, stream=stream)


class LineProgress:
  """update / set_postfix / write / close, as tqdm's, printing a line every few percent or seconds."""

  def __init__(self, total, initial, desc, unit, stream, every_percent=10.0, every_seconds=30.0):
    self.total, self.n, self.desc, self.unit, self.stream = total, initial, desc, unit, stream
    self.every_percent, self.every_seconds = every_percent, every_seconds
    self.postfix, self.start = "", time.time()
    self._last_time, self._last_n = self.start, initial

  def update(self, n: int = 1) -> None:
    self.n += n
    due_percent = self.total and 100 * (self.n - self._last_n) / self.total >= self.every_percent
    if due_percent or time.time() - self._last_time >= self.every_seconds or self.n >= self.total:
      self._print()

  def set_postfix(self, refresh=False, **values) -> None:
    self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

  def write(self, message: str) -> None:
    print(message, file=self.stream, flush=True)

  def close(self) -> None:
    if self.n != self._last_n:
      self._print()

  def _print(self) -> None:
    elapsed = time.time() - self.start
    percent = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
    print(f"{self.desc}: {self.n}/{self.total} {self.unit}s{percent}, {elapsed:.0f} s" +
          (f", {self.postfix}" if self.postfix else ""), file=self.stream, flush=True)
    self._last_time, self._last_n = time.time(), self.n
