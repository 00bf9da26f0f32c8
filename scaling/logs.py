"""Warnings and notices from the runtime, tagged with the process on multi-host runs (absl logging).

On one process a warning is a plain line on stderr: what a user at a terminal reads. With
several processes (a pod slice, a cluster: one log per host, often merged by the scheduler)
the platform's lines go through a logger with absl's line format (severity, time, thread,
file:line), each prefixed with `[process i/n host]`, so a merged log says which host said
what. Other libraries' log levels are left as they are.
"""
import logging
import os
import socket
import sys

from absl import logging as absl_logging

_logger = None  # set by configure() when there are several processes


class _Tagged(absl_logging.PythonFormatter):
  def __init__(self, tag: str):
    super().__init__()
    self.tag = tag

  def format(self, record):
    return self.tag + super().format(record)


def configure() -> None:
  """Call after the processes are joined (scaling/distributed.initialize)."""
  global _logger
  import jax
  if jax.process_count() == 1 or _logger is not None:
    return
  handler = logging.StreamHandler(sys.stderr)
  handler.setFormatter(_Tagged(f"[process {jax.process_index()}/{jax.process_count()} {socket.gethostname()}] "))
  _logger = logging.getLogger("scaling")
  _logger.addHandler(handler)
  _logger.setLevel(logging.INFO)
  _logger.propagate = False


def warning(message: str) -> None:
  if _logger is None:
    print(message, file=sys.stderr, flush=True)
  else:
    _logger.warning(message)


def info(message: str) -> None:
  """A line for multi-host logs only; on one process the progress output says as much."""
  if _logger is not None:
    _logger.info(message)


def exit_code(main) -> int:
  """main()'s exit code; output cut short by a closed pipe (`... | head`) ends quietly, not in a traceback."""
  try:
    code = main()
    sys.stdout.flush()
    return code
  except BrokenPipeError:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # Python flushes stdout again at exit; that write must not fail too.
    return 1
