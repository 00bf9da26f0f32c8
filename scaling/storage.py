"""Sweep directories on a bucket (`--out gs://bucket/runs`, `s3://...`, any fsspec URL).

Object stores cannot append to an object or rename one atomically, so a run directory on a
bucket is kept in two ways:

- checkpoints go straight to the bucket: orbax writes `RUN_DIR/checkpoints` through etils.epath
  with its own commit protocol (gs:// and s3:// need gcsfs or s3fs, and tensorstore's drivers);
- everything else (metrics.jsonl, summary.json, config.json, timeline.json, attempts.jsonl, the
  claim, TensorBoard files) is written by the attempt into a local staging copy, pulled fresh
  from the bucket when the attempt starts, and pushed back every SYNC_SECONDS and when it ends
  (a JSON-lines file only up to its last whole line; the claim's heartbeat travels with it, so a
  claim on the bucket is honoured by other hosts for the lease, as on a shared file system).

The driver, `sweeps status` and `analysis plot` work on a local mirror of the sweep directory
without the checkpoints (SCALING_STAGING/mirror/, default ~/.cache/scaling; attempts stage in
SCALING_STAGING/stage/ and remove their copy when they end), pulled when they read
and pushed after they write (sweep.json, a failed trial's summary, analysis/). Plain paths are
used as they are, and none of this runs for them.

A mirror lies inside the staging root whatever its URL says (scaling/containment.py: a URL path is
plain names) and deletes only files it wrote itself, as its ledger (LEDGER) lists them.
"""
import contextlib
import os
import re
import shutil
import tempfile
import threading

from scaling import containment
from scaling import metrics as metrics_lib

SYNC_SECONDS = 10.0  # below claims.LEASE_SECONDS: a running attempt's claim stays fresh on the bucket
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Never copied: checkpoints live only on the bucket; submitit's job files and logs only where the driver runs.
NOT_MIRRORED = ("checkpoints", "slurm")
LEDGER = ".mirrored.json"  # in a mirror: the files it wrote (pulled or pushed), the only ones it ever deletes


def is_url(path) -> bool:
  return bool(_URL.match(str(path)))


def join(base: str, *parts: str) -> str:
  return "/".join([base.rstrip("/"), *parts]) if is_url(base) else os.path.join(base, *parts)


def for_orbax(url: str) -> str:
  """The checkpoint location orbax (etils.epath) takes: file:// URLs as plain paths, others as they are."""
  return url[len("file://"):] if url.startswith("file://") else url


class StorageError(ValueError):
  """A bucket URL that cannot be read or written: one line, which and why."""


def opened(directory: str) -> "Place":
  """The Place of a sweep directory that a command reads (and may write into), pulled; StorageError if its
  bucket cannot be read."""
  with _one_line(directory, "read"):
    place = Place(directory)
  place.pull()
  return place


def problem(url: str):
  """Why `url` cannot hold a sweep (a path that climbs, no fsspec filesystem for its protocol, cannot be written),
  or None."""
  try:
    mirror_dir(url)
    fs, root = _filesystem(url)
    fs.makedirs(root, exist_ok=True)
    probe = f"{root.rstrip('/')}/.write-check-{os.getpid()}"
    fs.pipe_file(probe, b"")
    fs.rm_file(probe)
  except ImportError as e:  # fsspec: "Install gcsfs to access Google Storage"
    return str(e).splitlines()[0]
  except containment.Escape as e:
    return str(e)
  except (OSError, ValueError) as e:
    return f"{type(e).__name__}: {e}".splitlines()[0][:300]
  return None


def _filesystem(url: str):
  import fsspec
  return fsspec.core.url_to_fs(url)


def _staging_root() -> str:
  return os.environ.get("SCALING_STAGING") or os.path.join(os.path.expanduser("~"), ".cache", "scaling")


def mirror_dir(url: str) -> str:
  """Where this machine keeps its mirror of the sweep directory at `url`: inside the staging root, whatever the URL
  says (containment.Escape if it would climb out: `..`, `.` or an empty segment)."""
  scheme, names = containment.url_parts(url)
  root = os.path.join(_staging_root(), "mirror")
  local = os.path.join(root, scheme, *names)
  containment.within(root, local)  # also through links planted in the staging root
  return local


class Mirror:
  """A local copy of the directory at `url` without what NOT_MIRRORED names; pull() and push() keep it in step."""

  def __init__(self, url: str, local: str):
    self.url, self.local = url, local
    containment.url_parts(url)  # a URL that climbs is refused before anything is read or written
    self.fs, self.root = _filesystem(url)
    self.root = self.root.rstrip("/")
    self._known = {}  # relative path -> (size, mtime_ns) of the local file when last pulled or pushed
    self._wrote = set()  # relative paths this mirror wrote here or there, this process or an earlier one (LEDGER)
    self._lock = threading.Lock()

  def _mirrored(self, rel: str) -> bool:
    parts = rel.split("/")
    return (not (set(parts) & set(NOT_MIRRORED)) and not parts[-1].endswith(".part") and rel != LEDGER
            and not any(_checkpoint_aside(part) for part in parts))

  def _local(self, rel: str) -> str:
    """The local path of the bucket's `rel`; containment.Escape if it would lie outside this copy."""
    if any(part in ("", ".", "..") for part in rel.split("/")):
      raise containment.Escape(f"{self.url}/{rel}: not a plain relative name; not mirrored")
    target = os.path.join(self.local, *rel.split("/"))
    containment.within(self.local, os.path.dirname(target))  # no link in the copy leads out of it
    return target

  def _load_ledger(self) -> None:
    try:
      wrote = metrics_lib.read_json(os.path.join(self.local, LEDGER))
    except (OSError, ValueError):  # none yet (a new copy), or damaged: nothing here is known to be the mirror's
      wrote = []
    self._wrote = {rel for rel in wrote if isinstance(rel, str)} if isinstance(wrote, list) else set()

  def _save_ledger(self) -> None:
    metrics_lib.write_json_atomic(os.path.join(self.local, LEDGER), sorted(self._wrote))

  def pull(self, under: str = "", fresh: bool = False) -> None:
    """Brings this copy (below `under`) in step with the bucket; `fresh`: it is emptied first."""
    with self._lock:
      containment.within(_staging_root(), self.local)
      if fresh:
        shutil.rmtree(self.local, ignore_errors=True)
        self._known.clear()
      os.makedirs(self.local, exist_ok=True)
      self._load_ledger()
      top = f"{self.root}/{under}".rstrip("/")
      listed = self.fs.find(top, detail=True) if self.fs.exists(top) else {}
      there = set()
      for path, info in listed.items():
        rel = path[len(self.root):].lstrip("/")
        if not self._mirrored(rel):
          continue
        there.add(rel)
        target = self._local(rel)
        if self._unchanged(path, info, target, rel):
          continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        self._wrote.add(rel)
        containment.refuse_link(target + ".part", "a mirror's file")
        self.fs.get_file(path, target + ".part")
        os.replace(target + ".part", target)
        modified = self.fs.modified(path).timestamp()  # a claim's age is its heartbeat's on the bucket
        os.utime(target, (modified, modified))
        self._known[rel] = _stamp(target)
      for rel in self._local_files(under):
        # Gone from the bucket (a released claim), or left here by an earlier run: removed only if this mirror
        # wrote it; whatever else is here is not the mirror's to delete.
        if rel not in there and rel in self._wrote:
          os.remove(self._local(rel))
          self._known.pop(rel, None)
          self._wrote.discard(rel)
      self._save_ledger()

  def _local_files(self, under: str = "") -> list:
    """The mirrored files of this copy (below `under`), as relative paths with /."""
    out = []
    for folder, dirs, files in os.walk(os.path.join(self.local, *[p for p in under.split("/") if p])):
      dirs[:] = [d for d in dirs if d not in NOT_MIRRORED and not _checkpoint_aside(d)]
      for name in files:
        rel = os.path.relpath(os.path.join(folder, name), self.local).replace(os.sep, "/")
        if self._mirrored(rel) and not name.startswith(".write-check-"):
          out.append(rel)
    return out

  def _unchanged(self, path: str, info: dict, target: str, rel: str) -> bool:
    """This copy is the bucket's: untouched here since pulled, same size there, not modified there since."""
    try:
      stamp = _stamp(target)
    except FileNotFoundError:
      return False
    return (self._known.get(rel) == stamp and info.get("size") == stamp[0]
            and self.fs.modified(path).timestamp() * 1e9 <= stamp[1] + 1e6)

  def push(self) -> None:
    """Uploads the files changed here since they were last pulled or pushed; removes those deleted here."""
    with self._lock:
      here = set()
      for rel in self._local_files():
        path = os.path.join(self.local, *rel.split("/"))
        if containment.unsafe(path):  # planted here (a link, a FIFO): never read and pushed, nor deleted there
          here.add(rel)
          continue
        try:
          stamp = _stamp(path)
          if self._known.get(rel) == stamp:
            here.add(rel)
            continue
          with open(path, "rb") as f:
            data = f.read()
        except FileNotFoundError:  # replaced or removed since listed: the next push has it
          continue
        here.add(rel)
        if rel.endswith(".jsonl"):  # a line being written stays here until it is whole
          data = data[:data.rfind(b"\n") + 1]
        self.fs.pipe_file(f"{self.root}/{rel}", data)
        self._known[rel] = stamp
        self._wrote.add(rel)
      for rel in [r for r in self._known if r not in here]:  # pulled or pushed by this process, deleted here since
        try:
          self.fs.rm_file(f"{self.root}/{rel}")
        except FileNotFoundError:
          pass
        del self._known[rel]
        self._wrote.discard(rel)
      if os.path.isdir(self.local):
        self._save_ledger()


def _checkpoint_aside(name: str) -> bool:
  """A damaged checkpoint moved aside (scaling/checkpoint.py): on the bucket with the checkpoints, never mirrored."""
  return name.startswith(("checkpoint-", "checkpoints.")) and ".damaged-" in name


def _stamp(path: str) -> tuple:
  st = os.stat(path)
  return st.st_size, st.st_mtime_ns


class Staged:
  """A run directory on a bucket, staged for one attempt: `local` is where the trial writes.

  with Staged(url, push=writer) as local: ... pulls a fresh copy into a new temporary directory
  named like the trial's, pushes it every SYNC_SECONDS from a thread (if `push`) and once more on
  the way out, then removes the copy.
  """

  def __init__(self, url: str, push: bool = True):
    self.url, self.push = url, push
    os.makedirs(os.path.join(_staging_root(), "stage"), exist_ok=True)
    base = tempfile.mkdtemp(dir=os.path.join(_staging_root(), "stage"))
    self.local = os.path.join(base, url.rstrip("/").rsplit("/", 1)[-1])
    self.mirror = Mirror(url, self.local)
    self.checkpoint_dir = for_orbax(join(url, "checkpoints"))
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._sync, daemon=True)

  def sync(self) -> None:
    """Pushes now (train calls it before each checkpoint save)."""
    if self.push:
      self.mirror.push()

  def _sync(self):
    while not self._stop.wait(SYNC_SECONDS):
      try:
        self.mirror.push()
      except Exception:  # a failed push is retried at the next one, and at the end
        pass

  def __enter__(self) -> str:
    self.mirror.pull(fresh=True)
    if self.push:
      self._thread.start()
    return self.local

  def __exit__(self, *exc):
    self._stop.set()
    try:
      if self.push:
        if self._thread.is_alive():
          self._thread.join()
        self.mirror.push()
    finally:
      shutil.rmtree(os.path.dirname(self.local), ignore_errors=True)
    return False


class Place:
  """A sweep directory as the one process that reads and writes it whole sees it (a driver, `sweeps status`,
  `analysis plot`): `local` is the directory itself, or for a bucket URL this machine's mirror of it, which
  pull() refreshes and push() publishes. Workers get `run_dir(trial id)`: on the bucket, their own staging."""

  def __init__(self, directory: str):
    self.directory = directory
    self.remote = is_url(directory)
    self.local = mirror_dir(directory) if self.remote else directory
    self._mirror = Mirror(directory, self.local) if self.remote else None

  def run_dir(self, trial_id: str) -> str:
    return join(self.directory, trial_id) if self.remote else os.path.abspath(os.path.join(self.local, trial_id))

  def pull(self, under: str = "") -> None:
    if self.remote:
      with _one_line(self.directory, "read"):
        self._mirror.pull(under)

  def push(self) -> None:
    if self.remote:
      with _one_line(self.directory, "written"):
        self._mirror.push()


@contextlib.contextmanager
def _one_line(url: str, verb: str):
  """A bucket's failure as a StorageError naming the URL."""
  try:
    yield
  except containment.Escape as e:
    raise StorageError(str(e)) from None
  except ImportError as e:  # fsspec: "Install gcsfs to access Google Storage"
    raise StorageError(f"{url}: {str(e).splitlines()[0]}") from None
  except (OSError, ValueError) as e:
    raise StorageError(f"{url}: cannot be {verb} ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
