"""This host's memory, and the share of it that one trial's data on the host may take.

The trainer checks a dispatch's batches and the eval set against it before drawing them (scaling/train.py); the
sweep schema checks a data-constrained trial's fixed set of unique tokens against it before anything runs
(sweeps/spec.py).
"""
import os

SHARE = 0.5  # of this host's memory: what is left is the program's, the compiler's and everything else's


def total_bytes() -> int:
  """This host's physical memory in bytes."""
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
