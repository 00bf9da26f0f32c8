"""Orbax checkpoints of the whole train state: parameters, optimizer state and step.

Data order is a pure function of (seed, step) and the model has no dropout, so
(params, opt_state, step) is everything needed to continue bit-exactly.
Saves are atomic (orbax writes to a temporary directory, then renames), so a
crash mid-save leaves the previous checkpoint as the latest.

Checkpoints are a cache of progress, so a damaged one costs the steps since the one before, never the
trial. `resume` finds the newest step every trial of a pack can be restored from. A step directory
damaged after it was written is moved aside as RUN_DIR/checkpoint-<step>.damaged-<UTC time>, beside
`checkpoints/` where orbax neither lists nor deletes it, and the step before is tried, down to step 0
(starting over, which redoes the same steps exactly). Metadata missing or unreadable and empty step
directories are found before any array is read; arrays that cannot be read back, by the restore. A
`checkpoints` that is not a directory is moved aside as checkpoints.damaged-<UTC time> and the trial starts
from step 0. Each move is one warning line naming the step the trial resumes from and where the files went.

On several hosts process 0 alone checks and moves the files; every host restores the step it chose
(a broadcast), and a read that fails on every host sends them all back to the step before. One that fails
on some hosts only is not recovered: orbax's restore ends in a barrier, which the others wait out.
CheckpointError: what cannot be moved aside, in one line naming it.
"""
import json
import logging
import os
import re
import sys

import jax
import orbax.checkpoint as ocp
from etils import epath

from scaling import containment
from scaling import distributed
from scaling import logs
from scaling import metrics as metrics_lib


class CheckpointError(Exception):
  """A checkpoint that cannot be used; the message (one line) names its directory and what to do."""


class Checkpoints:
  """RUN_DIR/checkpoints, or `directory` (a local path or a bucket URL that etils.epath knows: gs://, s3://).

  A `checkpoints` that is not a directory is moved aside here (process 0), before orbax makes a new one.
  """

  def __init__(self, run_dir: str, keep: int = 2, directory: str | None = None):
    self.directory = directory or os.path.join(os.path.abspath(run_dir), "checkpoints")
    self.moved_aside = []  # (path, problem, where it went): what `resume` says, once it knows the step
    where = epath.Path(self.directory)
    if distributed.is_writer() and _lexists(where) and not _real_directory(where):
      problem = "a symbolic link, never followed" if os.path.islink(where) else "not a directory"
      self._move_aside(where, problem, _aside_name(where))
    _drop_echoes_of_damage()
    # Other hosts create nothing: orbax makes the directory on process 0 and waits for it on every host.
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
    self._saved = set()  # Steps this process saved: their saves may still be in flight, so they are not checked.

  def latest_step(self):
    """The latest step saved, or None (as orbax lists them: `resume` checks them)."""
    return self._manager.latest_step()

  def whole_steps(self) -> frozenset:
    """The steps whose metadata is whole, and 0 (starting over); reads only. Arrays are checked by `restore`."""
    return frozenset(s for s in self._manager.all_steps() if s in self._saved or not self._problem(s)) | {0}

  def usable_steps(self) -> frozenset:
    """The steps this trial could resume from: every step whose metadata is whole, and 0; those damaged are
    moved aside (call it on process 0 only)."""
    for step in sorted(self._manager.all_steps(), reverse=True):
      problem = None if step in self._saved else self._problem(step)
      if problem:
        self.move_step_aside(step, problem)
    return frozenset(self._manager.all_steps()) | {0}

  def move_step_aside(self, step: int, problem: str) -> None:
    """Moves step `step` out of orbax's sight, beside `checkpoints/`, named after the step."""
    where = epath.Path(self.directory)
    self._move_aside(where / str(step), f"damaged checkpoint ({problem})",
                     _aside_name(where.parent / f"checkpoint-{step}"))
    self._manager.reload()

  def reload(self) -> None:
    """Lists the steps again: another process may have moved some aside."""
    self._manager.reload()

  def drop_after(self, step: int) -> None:
    """Deletes the checkpoints past `step`: a trial resumed from `step` redoes those steps and saves them again."""
    for later in self._manager.all_steps():
      if later > step:
        self._manager.delete(later)

  def save(self, step: int, state: dict, wait: bool = False) -> None:
    self._saved.add(step)
    self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
    if wait:
      self._manager.wait_until_finished()

  def wait(self) -> None:
    """Until the asynchronous writes in flight are on disk."""
    self._manager.wait_until_finished()

  def restore(self, step: int, like: dict) -> dict:
    """Restores `step` into the structure, shapes, dtypes and shardings of `like`; CheckpointError if its files
    cannot be read back."""
    state, problem = self._read(step, like)
    if problem:
      raise CheckpointError(f"{epath.Path(self.directory) / str(step)}: damaged checkpoint ({problem})")
    return state

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def _read(self, step: int, like: dict) -> tuple:
    """(state, None), or (None, why it cannot be read back): orbax reports a damaged array as a bare Exception."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
      return self._manager.restore(step, args=ocp.args.StandardRestore(abstract)), None
    except Exception as e:
      if not isinstance(e, (OSError, ValueError)) and type(e) is not Exception:
        raise
      return None, f"cannot be read back: {_first_line(e.__cause__ or e)}"

  def _problem(self, step: int):
    return _step_problem(epath.Path(self.directory) / str(step))

  def _move_aside(self, path, problem: str, aside) -> None:
    try:
      path.rename(aside)
    except OSError as e:
      raise CheckpointError(f"{path}: {problem}; it cannot be moved aside ({metrics_lib.reason_of(e)}): move it "
                            f"away and run again with --retry-failed") from e
    self.moved_aside.append((str(path), problem, str(aside)))


def resume(trials: list, like: dict) -> tuple:
  """(step, states): the newest step every trial of a pack (its Checkpoints) can be restored from, and each
  trial's state restored at it (in trials' order; [] at step 0: the trials start over).

  Damaged checkpoints found on the way are moved aside and said, one line each; the checkpoints of trials
  ahead of that step are deleted (their steps are redone exactly, in the same program).
  """
  writer = distributed.is_writer()
  while True:
    step = max(frozenset.intersection(*[t.usable_steps() for t in trials])) if writer else 0
    step = distributed.agree_number(step)  # a collective: process 0 has moved what it moves before any host goes on
    for t in trials:
      t.reload()
    if not step:
      states = []
      break
    reads = [t._read(step, like) for t in trials]
    unreadable = distributed.on_any_host([problem is not None for _, problem in reads])
    if not any(unreadable):
      states = [state for state, _ in reads]
      break
    for t, (_, problem), bad in zip(trials, reads, unreadable):
      if bad and writer:
        t.move_step_aside(step, problem or "cannot be read back on another host")
  for t in trials:
    t.drop_after(step)
    for path, problem, aside in t.moved_aside if writer else ():
      logs.warning(f"{path}: {problem}; the trial resumes from step {step}; moved aside to {aside}")
  return step, states


def saved_steps(run_dir: str) -> frozenset:
  """The steps a trial could resume from as far as its metadata shows (sweeps/local.py groups packs by it): {0}
  without checkpoints. Reads only; `resume` moves what is damaged."""
  directory = os.path.join(run_dir, "checkpoints")
  if os.path.islink(directory) or not os.path.isdir(directory):  # moved aside by the trial's own run, and said
    return frozenset({0})
  checkpoints = Checkpoints(run_dir)
  try:
    return checkpoints.whole_steps()
  finally:
    checkpoints.close()


def _lexists(path) -> bool:
  """`path` is there, even as a dangling link (a bucket has no links)."""
  return os.path.lexists(path) if "://" not in str(path) else path.exists()


def _real_directory(path) -> bool:
  """A directory, not a link to one: nothing in a run directory is followed through a link."""
  return path.is_dir() and ("://" in str(path) or not os.path.islink(path))


def _aside_name(path):
  """containment.damaged_name for an epath.Path (a bucket's too)."""
  return epath.Path(containment.damaged_name(str(path), exists=lambda name: _lexists(epath.Path(name))))


def _step_problem(step_dir):
  """What makes a step directory (an epath.Path) unusable, found from its metadata without reading arrays; None
  if nothing."""
  if not step_dir.is_dir():
    return None  # Not orbax's default layout: restore will say.
  try:
    metadata = _read_json(step_dir / "_CHECKPOINT_METADATA")
  except FileNotFoundError:
    return "no _CHECKPOINT_METADATA" + ("; the directory is empty" if not any(step_dir.iterdir()) else "")
  except (OSError, ValueError) as e:
    return f"_CHECKPOINT_METADATA: {metrics_lib.reason_of(e)}"
  items = metadata.get("item_handlers") if isinstance(metadata, dict) else None
  for item in items if isinstance(items, dict) else ():
    try:
      _read_json(step_dir / item / "_METADATA")
    except (OSError, ValueError) as e:
      return f"{item}/_METADATA: {metrics_lib.reason_of(e)}"
  return None


def _read_json(path):
  """metrics.read_json for a local file; a bucket object read through epath, as big as orbax wrote it."""
  if "://" not in str(path):
    return metrics_lib.read_json(str(path))
  return json.loads(path.read_text())


def _first_line(error: BaseException) -> str:
  """The error in one short line: without TensorStore's spec dump or the database path it repeats."""
  text = str(error).split(". See full TensorStore details")[0].splitlines()
  text = re.sub(r' in OCDBT database at [^"]*"[^"]*"', "", text[0] if text else type(error).__name__)
  return text[:200]


_ECHO_FILTER_ON = False
# What orbax logs (absl) as it lists steps whose metadata is damaged: `resume` says it in its own line.
_ORBAX_METADATA_REPORTS = ("Metadata file does not exist", "Failed to read Metadata file",
                           "Failed to json parse Metadata file")


def _drop_echoes_of_damage() -> None:
  """Keeps a damaged checkpoint to the one line `resume` says.

  orbax reads a checkpoint's arrays concurrently; when one read fails, restore raises at once and
  the other reads, finishing later, each print the same failure with a traceback on stderr (through
  sys.unraisablehook and the asyncio logger). Listing the steps, it logs each damaged metadata file
  it meets. Those echoes are dropped; everything else passes.
  """
  global _ECHO_FILTER_ON
  if _ECHO_FILTER_ON:
    return
  _ECHO_FILTER_ON = True
  previous = sys.unraisablehook

  def hook(unraisable):
    if not _is_echo(unraisable.exc_value):
      previous(unraisable)

  sys.unraisablehook = hook
  logging.getLogger("asyncio").addFilter(lambda record: not (record.exc_info and _is_echo(record.exc_info[1])))
  logging.getLogger("absl").addFilter(lambda record: not str(record.msg).startswith(_ORBAX_METADATA_REPORTS))


def _is_echo(error) -> bool:
  text = str(error)
  return text.startswith("Encountered error while reading array") or (
      isinstance(error, RuntimeError) and text == "Event loop is closed")
