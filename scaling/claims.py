"""Per-trial claims with a heartbeat lease, so concurrent launches never train one trial twice.

A claim is `run_dir/claim.json`, created with O_EXCL (atomic on POSIX file
systems). Its holder touches it every HEARTBEAT seconds from a background
thread; a claim untouched for LEASE seconds, or whose process is gone from this
host, belongs to a dead process and may be taken over, under a takeover lock so
that two contenders cannot both win it.
"""
import errno
import json
import os
import socket
import threading
import time

from scaling import metrics as metrics_lib

HEARTBEAT_SECONDS = 5.0
LEASE_SECONDS = 30.0


class Claim:
  """Held claim on one run directory, kept alive by a heartbeat thread until release()."""

  def __init__(self, path: str):
    self.path = path
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._beat, daemon=True)
    self._thread.start()

  def _beat(self):
    while not self._stop.wait(HEARTBEAT_SECONDS):
      try:
        os.utime(self.path)
      except FileNotFoundError:
        return

  def release(self):
    self._stop.set()
    self._thread.join()
    try:
      _remove(self.path)
    except OSError:  # Left behind, it goes stale after LEASE_SECONDS and is taken over.
      pass


def _create(path: str) -> bool:
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(fd, "w") as f:
    json.dump({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}, f)
  return True


def _dead(info: dict) -> bool:
  """True when the claim's process is known to be gone: same host, no such pid."""
  if info.get("host") != socket.gethostname():
    return False  # Another machine's process: only its heartbeat can tell.
  try:
    os.kill(int(info["pid"]), 0)
  except ProcessLookupError:
    return True
  except (PermissionError, KeyError, ValueError, TypeError, OverflowError):
    return False
  return False


def _read(path: str):
  """The claim's contents: None if there is no claim, {} if it is not a JSON object (damaged, or being written)."""
  try:
    info = metrics_lib.read_json(path)  # A regular file, bounded: never blocks on a FIFO.
  except (FileNotFoundError, NotADirectoryError):  # (NotADirectory: the run directory is a file)
    return None
  except (OSError, ValueError):
    return {}
  return info if isinstance(info, dict) else {}


def _stale(path: str, info=None) -> bool:
  """Untouched for LEASE_SECONDS; or its process is gone; or unreadable and untouched for two heartbeats
  (a holder writes its claim whole at once, then touches it every HEARTBEAT_SECONDS)."""
  if os.path.islink(path):  # planted: never a holder's (claims are created with O_EXCL, never as links)
    return True
  info = _read(path) if info is None else info
  if _age(path) >= LEASE_SECONDS:
    return True
  if not info:
    return _age(path) >= 2 * HEARTBEAT_SECONDS
  return _dead(info)


def holder(run_dir: str):
  """The live claim's contents ({"unreadable": True} for a fresh damaged one), or None if the trial is
  unclaimed or its claim is stale."""
  path = os.path.join(run_dir, "claim.json")
  info = _read(path)
  if info is None or _stale(path, info):
    return None
  return info or {"unreadable": True}


def try_claim(run_dir: str):
  """A Claim if this process now holds the trial, else None (someone alive holds it); OSError if the run directory
  is a symbolic link (never followed: scaling/containment.py) or cannot be made."""
  if os.path.islink(run_dir):
    raise NotADirectoryError(errno.ENOTDIR, "a symbolic link, never followed", run_dir)
  os.makedirs(run_dir, exist_ok=True)
  path = os.path.join(run_dir, "claim.json")
  if _create(path):
    return Claim(path)
  # Taking over a stale claim happens under a short-lived lock, so only one contender
  # can judge it stale and replace it.
  lock = f"{path}.takeover"
  if not _create(lock):
    if _age(lock) > LEASE_SECONDS:  # A contender died mid-takeover.
      _remove(lock)
    return None
  try:
    if not _stale(path):
      return None
    _remove(path)
    return Claim(path) if _create(path) else None
  finally:
    _remove(lock)


def _age(path: str) -> float:
  try:
    return time.time() - os.lstat(path).st_mtime
  except (FileNotFoundError, NotADirectoryError):
    return float("inf")


def _remove(path: str) -> None:
  try:
    os.remove(path)
  except FileNotFoundError:
    pass
