"""Shared test setup: a persistent JAX compile cache and tiny trial configs."""
import copy
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
os.environ.setdefault("SCALING_JAX_CACHE", os.path.join(ROOT, ".jax_cache"))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from scaling import runtime  # noqa: E402

runtime.configure_jax()

from sweeps.spec import TrialSpec  # noqa: E402

# Resolved through the schema, so every default the trainer reads is present.
TINY_TRIAL = TrialSpec.model_validate({
    "model": {"family": "gpt", "size": 1, "options": {"aspect_ratio": 16, "head_dim": 8}},
    "data": {"kind": "markov", "vocab_size": 8, "order": 2, "mix": [0.2, 0.3, 0.5], "support": 2,
             "concentration": 0.5, "zipf": 1.0, "seed": 0},
    "train": {"seq_len": 16, "batch_size": 8, "horizon": {"tokens": 8 * 16 * 40}, "eval_every": 20,
              "eval_batches": 2},
    "optimizer": {"lr": 1e-2, "weight_decay": 0.0, "warmup_steps": 5},
}).model_dump(mode="json")


# Two tiers. `make test` runs the fast one (`-m "not slow"`: at most about 5 minutes on 2 cores); `make test-all`
# (CI) runs it, then the slow one: real kills and relaunches, Ray and submitit, several processes, whole sweeps
# through the real commands, coverage studies, the damaged-run corpus. A fast-tier test that takes longer than
# FAST_BUDGET_SECONDS is named at the end of the run, and with --strict-budget fails the run: a timing is no
# assertion of what a test checks (a loaded machine is slower), so only a developer asks for that.
FAST_BUDGET_SECONDS = 10.0
_over_budget = []


def pytest_addoption(parser):
  parser.addoption("--strict-budget", action="store_true",
                   help=f"fail the run if a test not marked slow takes over {FAST_BUDGET_SECONDS:g} s")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: the slow tier (`make test-all`, CI): kills, clusters, processes, corpora")


def pytest_runtest_logreport(report):
  if report.when == "call" and "slow" not in report.keywords and report.duration > FAST_BUDGET_SECONDS:
    _over_budget.append((report.duration, report.nodeid))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
  if not _over_budget:
    return
  terminalreporter.section(f"fast-tier tests over {FAST_BUDGET_SECONDS:g} s (mark them slow or make them faster)")
  for seconds, nodeid in sorted(_over_budget, reverse=True):
    terminalreporter.write_line(f"{seconds:6.1f} s  {nodeid}")


def pytest_sessionfinish(session, exitstatus):
  controller = not hasattr(session.config, "workerinput")  # pytest-xdist: the process that reports
  if controller and _over_budget and session.config.getoption("--strict-budget") and exitstatus == 0:
    session.exitstatus = 1


# How the tiny trial runs (runtime: not part of its id): flush and checkpoint often enough to test resume.
TINY_RUNTIME = {"flush_every": 5, "checkpoint_every": 20}
QUIET_RUNTIME = {"flush_every": 1, "checkpoint_every": 0, "tensorboard": False}


@pytest.fixture
def tiny_trial():
  """A resolved trial config that trains in a second or two."""
  return copy.deepcopy(TINY_TRIAL)


def write(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def tree_digest(root) -> dict:
  """Every entry below `root` (links not followed) -> its bytes' sha256, its link's target, or "dir"; {} if none:
  what a containment test compares before and after a command."""
  import hashlib
  out = {}
  for folder, dirs, files in os.walk(root):
    for name in dirs + files:
      path = os.path.join(folder, name)
      rel = os.path.relpath(path, root)
      if os.path.islink(path):
        out[rel] = "link:" + os.readlink(path)
      elif os.path.isdir(path):
        out[rel] = "dir"
      else:
        with open(path, "rb") as f:
          out[rel] = hashlib.sha256(f.read()).hexdigest()
  return out
