"""Where a trial's wall time goes, attempt by attempt: `run_dir/timeline.json`, and goodput from it.

Each attempt (one launch of the trial, until it ends, crashes or is killed) is one record,
rewritten atomically as the attempt goes: after the compile, at every checkpoint save, at most
every few seconds while training, and at the end. A killed attempt therefore leaves a record
that is at most a few seconds stale. The categories of wall time:

  startup     process start (or the previous trial's end) to the compile: imports, data, model
  compile     the ahead-of-time compile of the train step
  restore     reading the checkpoint and dropping the metrics rows past it
  productive  executing steps whose result survived
  redone      executing steps that a later attempt had to execute again (lost to a failure)
  eval        the held-out evaluation and the evaluators
  checkpoint  the blocking part of checkpoint saves (orbax writes asynchronously)
  between     from an attempt's last record to the next attempt's start: work since that
              record, the failure, the relaunch until the new process existed
  other       the rest of an attempt's recorded time (logging, the summary)

goodput = productive / total, total = the first attempt's start to the last record.
Which executions survived follows from the step each later attempt restored: an attempt's
steps past the lowest step any later attempt started from were redone.
"""
import os
import time

from scaling import metrics as metrics_lib

CATEGORIES = ("startup", "compile", "restore", "productive", "redone", "eval", "checkpoint", "between", "other")
_RECORDED = ("startup", "compile", "restore", "steps", "eval", "checkpoint")  # timed within an attempt
_WRITE_EVERY_SECONDS = 2.0
_process_clock = None  # The first trial a process trains starts its clock at the process's start.


def process_start_time() -> float | None:
  """When this process started (Linux /proc: its start in clock ticks after boot, against the uptime), or None."""
  try:
    with open("/proc/self/stat") as f:
      ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, after the command name
    with open("/proc/uptime") as f:
      uptime = float(f.read().split()[0])
    return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
  except (OSError, ValueError, IndexError):
    return None


def attempt_origin(entered: float) -> float:
  """The start of this attempt: the process's start for its first trial, else `entered`."""
  global _process_clock
  if _process_clock is None:
    _process_clock = entered
    started = process_start_time()
    if started is not None and started <= entered:
      return started
  return entered


class Timeline:
  """This attempt's record, appended to the trial's earlier ones; only the writer process writes."""

  def __init__(self, run_dir: str, start: float, enabled: bool = True):
    self.path = os.path.join(run_dir, "timeline.json")
    self.enabled = enabled
    self.attempts, self.damaged = read(self.path)
    # The steps are unknown (None) until the checkpoint is restored: a kill before that redid nothing.
    self.record = {"start": start, "updated": start, "start_step": None, "furthest_step": None,
                   "outcome": "running", "saves": 0, "seconds": {k: 0.0 for k in _RECORDED}}
    self.attempts.append(self.record)
    self._written = 0.0
    self.write(force=True)  # From here on a kill leaves this attempt's record.

  def add(self, category: str, seconds: float) -> None:
    self.record["seconds"][category] += seconds

  def saved(self) -> None:
    self.record["saves"] += 1

  def started_at(self, step: int) -> None:
    """The step this attempt starts from (its restored checkpoint)."""
    self.record["start_step"] = self.record["furthest_step"] = step

  def reached(self, step: int) -> None:
    self.record["furthest_step"] = max(step, self.record["furthest_step"] or 0)

  def write(self, outcome: str | None = None, force: bool = False) -> None:
    now = time.time()
    self.record["updated"] = now
    if outcome:
      self.record["outcome"] = outcome
    if self.enabled and (force or outcome or now - self._written >= _WRITE_EVERY_SECONDS):
      metrics_lib.write_json_atomic(self.path, {"attempts": self.attempts})
      self._written = now

  def breakdown(self) -> dict:
    return breakdown(self.attempts)


def read(path: str, keep_damaged: bool = False) -> tuple:
  """(attempt records, whether the file was damaged). A damaged file is moved aside (left in place
  with keep_damaged, for readers such as `sweeps status`), never trusted."""
  if not os.path.exists(path):
    return [], False
  try:
    attempts = metrics_lib.read_json(path)["attempts"]
    if all(_valid(a) for a in attempts):
      return list(attempts), False
  except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
    pass
  if not keep_damaged:
    try:
      os.replace(path, f"{path}.damaged-{int(time.time())}")
    except OSError:
      pass
  return [], True


def _valid(a) -> bool:
  number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
  if not (isinstance(a, dict) and isinstance(a.get("seconds"), dict)):
    return False
  steps = [a.get("start_step"), a.get("furthest_step")]
  return (all(number(a.get(k)) for k in ("start", "updated")) and isinstance(a.get("saves", 0), int)
          and (steps == [None, None] or all(number(v) for v in steps))
          and all(number(a["seconds"].get(k)) for k in _RECORDED))


def breakdown(attempts: list) -> dict:
  """Seconds per category over all attempts, total, goodput, and the counts of attempts and checkpoint saves."""
  out = {k: 0.0 for k in CATEGORIES}
  if not attempts:
    return {"seconds": out, "total_seconds": 0.0, "goodput": None, "attempts": 0, "saves": 0}
  for i, a in enumerate(attempts):
    seconds = a["seconds"]
    for k in ("startup", "compile", "restore", "eval", "checkpoint"):
      out[k] += seconds[k]
    # The lowest step a later attempt restarted from: this attempt's steps past it were redone.
    later = min((b["start_step"] for b in attempts[i + 1:] if b["start_step"] is not None), default=None)
    done = (a["furthest_step"] or 0) - (a["start_step"] or 0)
    survived = 1.0 if later is None or done <= 0 else min(max(later - a["start_step"], 0), done) / done
    out["productive"] += seconds["steps"] * survived
    out["redone"] += seconds["steps"] * (1 - survived)
    out["other"] += max(a["updated"] - a["start"] - sum(seconds.values()), 0.0)
    if i + 1 < len(attempts):
      out["between"] += max(attempts[i + 1]["start"] - a["updated"], 0.0)
  total = attempts[-1]["updated"] - attempts[0]["start"]
  return {"seconds": out, "total_seconds": total, "goodput": out["productive"] / total if total > 0 else None,
          "attempts": len(attempts), "saves": sum(int(a.get("saves", 0)) for a in attempts)}
