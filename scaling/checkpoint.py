"""Orbax checkpoints of the whole train state: parameters, optimizer state and step.

Data order is a pure function of (seed, step) and the model has no dropout, so
(params, opt_state, step) is everything needed to continue bit-exactly.
Saves are atomic (orbax writes to a temporary directory, then renames), so a
crash mid-save leaves the previous checkpoint as the latest.

A checkpoint damaged after it was written (files deleted or truncated, an empty step
directory) is never resumed from: `latest_step` checks the latest one's metadata and
`restore` its arrays, and either raises CheckpointError, one line naming the step
directory and saying to delete it (the trial then resumes from the one before).
"""
import json
import logging
import os
import re
import sys

import jax
import orbax.checkpoint as ocp
from etils import epath

from scaling import metrics as metrics_lib


class CheckpointError(Exception):
  """A checkpoint that cannot be used; the message (one line) names its directory and what to do."""


class Checkpoints:
  """RUN_DIR/checkpoints, or `directory` (a local path or a bucket URL that etils.epath knows: gs://, s3://)."""

  def __init__(self, run_dir: str, keep: int = 2, directory: str | None = None):
    self.directory = directory or os.path.join(os.path.abspath(run_dir), "checkpoints")
    where = epath.Path(self.directory)
    if where.exists() and not where.is_dir():
      raise CheckpointError(f"{self.directory}: not a directory; move it away and run again with --retry-failed "
                            f"(the trial restarts from step 0)")
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
    self._saved = set()  # Steps this process saved: their saves may still be in flight, so they are not checked.

  def latest_step(self):
    """The latest step saved, or None; CheckpointError if that checkpoint's metadata is damaged."""
    step = self._manager.latest_step()
    if step is not None and step not in self._saved:
      problem = _step_problem(epath.Path(self.directory) / str(step))
      if problem:
        raise CheckpointError(self._unusable(step, problem))
    return step

  def saved_steps(self) -> frozenset:
    """The steps this trial could resume from: every checkpoint's, and 0 (starting over, which redoes the same
    steps exactly); CheckpointError if the latest is damaged."""
    latest = self.latest_step()
    return frozenset(self._manager.all_steps()) | {0} if latest is not None else frozenset({0})

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
    """Restores `step` into the structure, shapes, dtypes and shardings of `like`.

    CheckpointError if its files cannot be read back (orbax reports a damaged array as a bare Exception).
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    _drop_echoes_of_failed_reads()
    try:
      return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:
      if not isinstance(e, (OSError, ValueError)) and type(e) is not Exception:
        raise
      raise CheckpointError(self._unusable(step, f"cannot be read back: {_first_line(e.__cause__ or e)}")) from e

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def _unusable(self, step: int, problem: str) -> str:
    earlier = [s for s in self._manager.all_steps() if s < step]
    resume = f"step {max(earlier)}" if earlier else "step 0"
    return (f"{os.path.join(self.directory, str(step))}: damaged checkpoint ({problem}); delete that directory and "
            f"run again with --retry-failed: the trial resumes from {resume}")


def saved_steps(run_dir: str) -> frozenset:
  """The steps a trial could resume from: those of its checkpoints, {0} without one; CheckpointError if the
  latest is damaged."""
  if not os.path.isdir(os.path.join(run_dir, "checkpoints")):
    return frozenset({0})
  checkpoints = Checkpoints(run_dir)
  try:
    return checkpoints.saved_steps()
  finally:
    checkpoints.close()


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


def _drop_echoes_of_failed_reads() -> None:
  """Keeps a failed restore to one error.

  orbax reads a checkpoint's arrays concurrently; when one read fails, restore raises at once and
  the other reads, finishing later, each print the same failure with a traceback on stderr (through
  sys.unraisablehook and the asyncio logger). Those echoes are dropped; everything else passes.
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


def _is_echo(error) -> bool:
  text = str(error)
  return text.startswith("Encountered error while reading array") or (
      isinstance(error, RuntimeError) and text == "Event loop is closed")
