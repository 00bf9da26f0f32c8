"""The damaged-run corpus (tests/damaged_runs/cases.py) through `sweeps status`, `analysis plot` and a re-run,
and no command leaving a traceback on any corpus case (tests/malformed/ too).

Two base sweeps are trained once for the module and copied per case. The commands run in-process
(`main(argv)`, output captured at the file descriptors), so the file imports JAX once; the last test
runs the worst cases through the real command lines, where orbax's and asyncio's stray output would show.
"""
import dataclasses
import glob
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from analysis import __main__ as analysis_cli
from scaling import metrics as metrics_lib
from sweeps import __main__ as sweeps_cli
from scaling import rundir
from sweeps import expand
from tests.conftest import ROOT, tree_digest, write
from tests.damaged_runs import cases as corpus
from tests.test_cli_contract import SWEEP

FINISHED_SWEEP = SWEEP.replace("name: contract", "name: finished").replace("size: 1,", "size: [1, 2],")
INTERRUPTED_STEPS = 150  # long enough that SIGTERM lands before the end
INTERRUPTED_SWEEP = (FINISHED_SWEEP.replace("name: finished", "name: interrupted")
                     .replace("tokens: 1280", f"tokens: {INTERRUPTED_STEPS * 8 * 16}")
                     .replace("runtime: {tensorboard: false}",
                              "runtime: {flush_every: 1, checkpoint_every: 10, tensorboard: true}"))
MALFORMED = sorted(glob.glob(os.path.join(ROOT, "tests", "malformed", "*.yaml")))


@dataclasses.dataclass
class Base:
  """A trained sweep to copy: its file, directory, trials and what an undamaged run of each ends with."""
  yaml: str
  directory: str
  damaged: str  # the trial each case damages (size 1)
  other: str  # the trial that must always finish (size 2)
  steps: int
  params_sha256: dict  # trial id -> the parameters an undamaged run ends with
  latest: int  # the newest checkpoint of the damaged trial


@dataclasses.dataclass
class Result:
  code: int
  out: str
  err: str


def run_cli(capfd, argv) -> Result:
  """`python -m sweeps|analysis ARGV...` in this process; its exit code and everything it printed."""
  main = {"sweeps": sweeps_cli.main, "analysis": analysis_cli.main}[argv[0]]
  capfd.readouterr()
  try:
    code = main([str(a) for a in argv[1:]])
  except SystemExit as e:
    code = e.code
  out, err = capfd.readouterr()
  return Result(code, out, err)


def assert_outcome(result: Result, code: int, says: str) -> None:
  assert "Traceback" not in result.out + result.err, result.out[-3000:] + result.err[-3000:]
  assert result.code in (0, 1, 2) and result.code == code, (result.code, result.out[-2000:], result.err[-2000:])
  if code == 2:
    assert result.err.count("\n") == 1 and says in result.err, result.err
  else:
    assert says in result.out + result.err, (says, result.out[-3000:], result.err[-3000:])


def ids_by_size(yaml_path) -> tuple:
  trials = expand.load(yaml_path).trials
  return tuple(next(t.id for t in trials if t.axes["model.size"] == size) for size in (1, 2))


def summary_of(run_dir) -> dict:
  return metrics_lib.read_json(os.path.join(run_dir, "summary.json"))


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict:
  root = tmp_path_factory.mktemp("bases")
  return {corpus.FINISHED: finished_base(root), corpus.INTERRUPTED: interrupted_base(root)}


def finished_base(root) -> Base:
  yaml_path = write(root, "finished.yaml", FINISHED_SWEEP)
  assert sweeps_cli.main(["run", yaml_path, "--out", str(root / "runs"), "--no-progress", "--no-analysis"]) == 0
  directory = str(root / "runs" / "finished")
  damaged, other = ids_by_size(yaml_path)
  shas = {t: summary_of(os.path.join(directory, t))["params_sha256"] for t in (damaged, other)}
  return Base(yaml_path, directory, damaged, other, 10, shas, latest_step(os.path.join(directory, damaged)))


def interrupted_base(root) -> Base:
  """The size-1 trial stopped by SIGTERM past its step-10 checkpoint (tests/test_faults.py's way)."""
  yaml_path = write(root, "interrupted.yaml", INTERRUPTED_SWEEP)
  damaged, other = ids_by_size(yaml_path)
  directory = root / "runs" / "interrupted"
  process = subprocess.Popen([sys.executable, "-m", "sweeps", "run", yaml_path, "--out", str(root / "runs"),
                              "--no-progress", "--no-analysis"], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  metrics = str(directory / damaged / "metrics.jsonl")
  deadline = time.time() + 240
  while max((r["step"] for r in metrics_lib.read_metrics(metrics) if "loss" in r), default=0) < 12:
    assert process.poll() is None and time.time() < deadline, "the trial ended before it could be interrupted"
    time.sleep(0.02)
  process.send_signal(signal.SIGTERM)
  stdout, stderr = process.communicate(timeout=120)
  assert process.returncode == 130, (stdout[-2000:], stderr[-2000:])
  assert summary_of(directory / damaged)["status"] == "running" and not (directory / other).exists()
  reference = root / "reference"  # the same sweep resumed undamaged: what every case must end with
  shutil.copytree(directory, reference / "interrupted")
  assert sweeps_cli.main(["run", yaml_path, "--out", str(reference), "--no-progress", "--no-analysis"]) == 0
  shas = {t: summary_of(reference / "interrupted" / t)["params_sha256"] for t in (damaged, other)}
  return Base(yaml_path, str(directory), damaged, other, INTERRUPTED_STEPS, shas, latest_step(directory / damaged))


def latest_step(run_dir) -> int:
  return int(corpus.latest_checkpoint(pathlib.Path(run_dir)).name)


def assert_whole(run_dir: str, base: Base, trial: str) -> None:
  """Done with the parameters of an undamaged run; its files restored: each step logged once, the
  config matching the trial id, the last attempt recorded, no claim left."""
  summary = summary_of(run_dir)
  assert summary["status"] == "done" and summary["params_sha256"] == base.params_sha256[trial], summary
  assert rundir.read_summary(run_dir)["status"] == "done"  # well-typed, config.json hashes to the id
  assert metrics_lib.metrics_problem(os.path.join(run_dir, "metrics.jsonl"), base.steps) is None
  with open(os.path.join(run_dir, "attempts.jsonl"), "rb") as f:
    assert json.loads(f.read().splitlines()[-1])["outcome"] == "done"
  assert not os.path.lexists(os.path.join(run_dir, "claim.json"))


def assert_moved_aside(case, rerun: Result, trial_dir: str, fill) -> None:
  """The damaged checkpoints are kept beside checkpoints/ (out of orbax's reach), each said with the step resumed
  from, and recorded in the summary. (A planted link moved aside stays a link: not a checkpoint moved aside.)"""
  aside = sorted(p for p in glob.glob(os.path.join(trial_dir, "checkpoint*.damaged-*")) if not os.path.islink(p))
  assert len(aside) == case.moved_aside, aside
  for path in aside:
    assert f"; the trial resumes from step {fill(case.resumes_from)}; moved aside to {path}\n" in rerun.err, rerun.err
  if aside:
    assert sorted(summary_of(trial_dir)["checkpoints_moved_aside"]) == aside


def follow_the_advice(base: Base, sweep_dir: str, trial_dir: str, capfd) -> Result:
  """Does what the trial's one line says (delete or move away the path it names), then re-runs."""
  reason = rundir.read_summary(trial_dir)["reason"]
  named = reason.split(": ", 1)[0]
  assert os.path.lexists(named) and named.startswith(sweep_dir + os.sep), reason
  os.rename(named, os.path.join(os.path.dirname(sweep_dir), "moved-away"))
  return run_cli(capfd, ["sweeps", "run", base.yaml, "--out", os.path.dirname(sweep_dir), "--no-progress",
                         "--no-analysis", "--retry-failed"])


@pytest.mark.slow  # each case re-runs the sweep
@pytest.mark.parametrize("case", corpus.CASES, ids=[c.name for c in corpus.CASES])
def test_damaged_run_directory(case, bases, tmp_path, capfd):
  if case.root_skips and os.geteuid() == 0:
    pytest.skip("root writes into a read-only directory")
  base = bases[case.base]
  out = tmp_path / "runs"
  sweep_dir = str(out / os.path.basename(base.directory))
  shutil.copytree(base.directory, sweep_dir, symlinks=True)
  trial_dir, other_dir = (os.path.join(sweep_dir, t) for t in (base.damaged, base.other))
  case.damage(pathlib.Path(trial_dir), pathlib.Path(sweep_dir))
  fill = lambda text: text.format(trial=base.damaged, dir=sweep_dir, latest=base.latest)
  victim = corpus.victim_of(pathlib.Path(sweep_dir))
  untouched = lambda before=tree_digest(victim): tree_digest(victim) == before  # nothing outside --out changes

  assert_outcome(run_cli(capfd, ["sweeps", "status", sweep_dir]), case.status.code, fill(case.status.says))
  assert untouched()
  assert_outcome(run_cli(capfd, ["analysis", "plot", sweep_dir]), case.plot.code, fill(case.plot.says))
  assert untouched()
  rerun = run_cli(capfd, ["sweeps", "run", base.yaml, "--out", out, "--no-progress", "--no-analysis"])
  assert_outcome(rerun, case.rerun.code, fill(case.rerun.says))
  assert untouched()
  assert_moved_aside(case, rerun, trial_dir, fill)

  assert_whole(other_dir, base, base.other)  # a damaged trial never blocks the others
  status = run_cli(capfd, ["sweeps", "status", sweep_dir])
  assert_outcome(status, case.still_code, fill(case.still_says))
  if case.achieves == corpus.WHOLE:
    assert_whole(trial_dir, base, base.damaged)
  elif case.achieves == corpus.LOSSY:  # the right parameters; the lost rows are said, not hidden
    summary = summary_of(trial_dir)
    assert summary["status"] == "done" and summary["params_sha256"] == base.params_sha256[base.damaged]
  elif case.achieves == corpus.REPORTED:
    assert rundir.state_of(trial_dir) not in ("done", "running")
  else:
    assert case.achieves == corpus.SKIPPED and f"{base.damaged}  running" in status.out
  if case.advice:
    assert_outcome(follow_the_advice(base, sweep_dir, trial_dir, capfd), 0, "2/2 trials done")
    assert_whole(trial_dir, base, base.damaged)
  assert untouched()


@pytest.mark.parametrize("path", MALFORMED, ids=[os.path.basename(p)[:-5] for p in MALFORMED])
def test_no_command_leaves_a_traceback_on_a_malformed_sweep_file(path, tmp_path, capfd):
  for argv in (["validate", path], ["run", path, "--out", tmp_path / "out", "--no-progress", "--no-analysis"]):
    result = run_cli(capfd, ["sweeps", *argv])
    assert_outcome(result, 2, path)
  assert not (tmp_path / "out").exists()


@pytest.mark.slow  # real processes
def test_the_real_commands_print_no_traceback_on_the_worst_cases(bases, tmp_path):
  """orbax's abandoned reads and asyncio print their tracebacks from other threads, after the error
  that counts; only a real process shows whether any reach the terminal."""
  cli = lambda *argv: subprocess.run([sys.executable, "-m", *map(str, argv)], cwd=ROOT, capture_output=True,
                                     text=True, timeout=300)
  interrupted, finished = bases[corpus.INTERRUPTED], bases[corpus.FINISHED]
  checkpoint = shutil.copytree(interrupted.directory, tmp_path / "a" / "interrupted")
  corpus.truncate_checkpoint_files("default/ocdbt.process_0/d/*")(checkpoint / interrupted.damaged, checkpoint)
  several = shutil.copytree(finished.directory, tmp_path / "b" / "finished")
  corpus.several_at_once(several / finished.damaged, several)
  corpus.fifo("summary.json")(several / finished.other, several)
  results = [cli("sweeps", "run", interrupted.yaml, "--out", tmp_path / "a", "--no-progress", "--no-analysis"),
             cli("sweeps", "status", several), cli("analysis", "plot", several)]
  for result, says in zip(results, ["damaged checkpoint (cannot be read back", "summary.json: unreadable",
                                    "no trial has finished (2 damaged)"]):
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    assert says in result.stdout + result.stderr, (result.stdout[-2000:], result.stderr[-2000:])
  assert [r.returncode for r in results] == [0, 0, 2]
