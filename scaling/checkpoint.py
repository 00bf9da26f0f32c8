"""Orbax checkpoints of the whole train state: parameters, optimizer state and step.

Data order is a pure function of (seed, step) and the model has no dropout, so
(params, opt_state, step) is everything needed to continue bit-exactly.
Saves are atomic (orbax writes to a temporary directory, then renames), so a
crash mid-save leaves the previous checkpoint as the latest.
"""
import os

import jax
import orbax.checkpoint as ocp


class Checkpoints:

  def __init__(self, run_dir: str, keep: int = 2):
    self.directory = os.path.join(os.path.abspath(run_dir), "checkpoints")
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def latest_step(self):
    return self._manager.latest_step()

  def save(self, step: int, state: dict, wait: bool = False) -> None:
    self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
    if wait:
      self._manager.wait_until_finished()

  def restore(self, step: int, like: dict) -> dict:
    """Restores `step` into the structure, shapes, dtypes and shardings of `like`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
