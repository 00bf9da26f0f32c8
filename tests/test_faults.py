"""Runs that survive SIGKILL, SIGTERM, divergence, damaged checkpoints and concurrent launches, through the real
CLI (or the local backend)."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from scaling import metrics as metrics_lib
from scaling import train as train_lib
from sweeps import expand
from tests.conftest import ROOT, write

pytestmark = pytest.mark.slow  # real kills and relaunches of sweeps in subprocesses

TRIAL = """\
name: {name}
model: {{family: gpt, size: {size}, options: {{aspect_ratio: 16, head_dim: 8}}}}
data: {{kind: markov, vocab_size: 8, order: 2, mix: [0.2, 0.3, 0.5]}}
train:
  seq_len: 16
  batch_size: 8
  horizon: {{tokens: {tokens}}}
  eval_every: 20
  eval_batches: 2
  inject_nan_at_step: {nan}
optimizer: {{lr: 1e-2, warmup_steps: 5}}
seed: {seed}
runtime: {{flush_every: 1, checkpoint_every: {checkpoint_every}, tensorboard: false}}
"""
# A mixture-of-experts GPT (4 experts, top-2, tokens dropped at capacity) on a task mixed into the
# language, scored by the `tasks` evaluator at every eval (greedy decoding).
TASKS_TRIAL = TRIAL.replace("options: {{aspect_ratio: 16, head_dim: 8}}",
                            "options: {{aspect_ratio: 16, head_dim: 8, experts: 4, top_k: 2, capacity_factor: 1.0}}"
                            ).replace("data: {{kind: markov, vocab_size: 8, order: 2, mix: [0.2, 0.3, 0.5]}}", """\
data:
  kind: tasks
  tasks: [{{task: addition, digits: 2}}]
  share: 0.5
  loss_on: answers
  eval_instances: 32
  language: {{kind: markov, vocab_size: 8, order: 2, mix: [0.2, 0.3, 0.5]}}""")
# A masked-patch ViT trial: its masks are random, drawn from (seed, step), so resume must replay them.
MASKED_PATCHES_TRIAL = """\
name: {name}
model: {{family: vit, size: {size}, options: {{aspect_ratio: 16, head_dim: 8, patch_size: 4}}}}
data: {{kind: shapes}}
train:
  objective: {{name: masked_patches, mask_ratio: 0.5}}
  batch_size: 8
  horizon: {{examples: {examples}}}
  eval_every: 20
  eval_batches: 2
  probe_examples: 64
  inject_nan_at_step: {nan}
optimizer: {{lr: 1e-2, warmup_steps: 5}}
runtime: {{flush_every: 1, checkpoint_every: {checkpoint_every}, tensorboard: false}}
"""
STEPS = 60


def sweep_file(tmp_path, name="t", size="1", steps=STEPS, checkpoint_every=5, nan="null", seed="0", template=TRIAL):
  return write(tmp_path, f"{name}.yaml", template.format(name=name, size=size, tokens=steps * 8 * 16,
                                                         examples=steps * 8, checkpoint_every=checkpoint_every,
                                                         nan=nan, seed=seed))


def launch(path, out):
  return subprocess.Popen([sys.executable, "-m", "sweeps", "run", path, "--out", str(out), "--no-progress",
                           "--no-analysis"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def last_step(run_dir):
  rows = metrics_lib.read_metrics(os.path.join(run_dir, "metrics.jsonl"))
  return max((r["step"] for r in rows if "loss" in r), default=0)


def wait_for(predicate, process, timeout=240):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate() or process.poll() is not None:
      return
    time.sleep(0.02)
  process.kill()
  raise AssertionError("timed out waiting for the trial to progress")


def assert_each_step_once(run_dir, steps=STEPS):
  rows = metrics_lib.read_metrics(os.path.join(run_dir, "metrics.jsonl"))
  assert [r["step"] for r in rows if "loss" in r] == list(range(1, steps + 1))


@pytest.mark.parametrize("template", [TASKS_TRIAL, MASKED_PATCHES_TRIAL], ids=["gpt_moe_tasks", "vit_masked_patches"])
def test_sigkill_at_random_points_then_resume_is_bit_exact(tmp_path, template):
  path = sweep_file(tmp_path, template=template)
  trial = expand.load(path).trials[0]
  reference = train_lib.train(trial.config(), str(tmp_path / "reference"), progress=False)

  out = tmp_path / "runs"
  run_dir = str(out / "t" / trial.id)
  seed = int.from_bytes(os.urandom(4), "little")
  kill_steps = sorted(random.Random(seed).sample(range(2, STEPS), 3))
  print(f"kill seed {seed}: SIGKILL at steps {kill_steps}")
  for kill_step in kill_steps:
    process = launch(path, out)
    wait_for(lambda: last_step(run_dir) >= kill_step, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
  final = launch(path, out)
  _, stderr = final.communicate(timeout=300)
  assert final.returncode == 0, stderr[-2000:]

  summary = metrics_lib.read_json(os.path.join(run_dir, "summary.json"))
  assert summary["status"] == "done"
  assert summary["resumed_from_step"] is not None
  assert summary["params_sha256"] == reference["params_sha256"], f"kill seed {seed}"
  finals = sorted(k for k in reference if k.startswith("final_"))
  assert finals == sorted(k for k in summary if k.startswith("final_"))
  assert any(k.endswith(("_exact_match", "_probe_error")) for k in finals)  # evaluators ran
  assert {k: summary[k] for k in finals} == {k: reference[k] for k in finals}
  assert_each_step_once(run_dir)
  if template is TASKS_TRIAL:  # the routers' statistics are logged with every step
    rows = metrics_lib.read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    assert all("moe_dropped" in r and "moe_load_balance" in r for r in rows if "loss" in r)


@pytest.mark.parametrize("checkpoint_every", [0, 4])
def test_sigterm_saves_a_checkpoint_before_exit(tmp_path, checkpoint_every):
  """With no periodic checkpoints; and with one at the end of every dispatch (each ends at a multiple of 4), so
  the signal lands right after a save: the checkpoint already there is the one to exit with."""
  path = sweep_file(tmp_path, steps=400, checkpoint_every=checkpoint_every)
  trial = expand.load(path).trials[0]
  out = tmp_path / "runs"
  run_dir = str(out / "t" / trial.id)
  process = launch(path, out)
  wait_for(lambda: last_step(run_dir) >= 10, process)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 130 and "resume" in stderr, stderr[-2000:]
  from scaling.checkpoint import Checkpoints
  checkpoints = Checkpoints(run_dir)
  saved = checkpoints.latest_step()
  checkpoints.close()
  assert saved is not None and saved >= 10
  assert saved == last_step(run_dir)  # the checkpoint holds every logged step
  assert metrics_lib.read_json(os.path.join(run_dir, "summary.json"))["status"] == "running"


def test_killed_sweep_relaunched_runs_every_trial_exactly_once(tmp_path):
  # Three trials that differ by seed only: one compiled step serves them all.
  path = sweep_file(tmp_path, name="ladder", seed="[0, 1, 2]", steps=40, checkpoint_every=10)
  trials = expand.load(path).trials
  out = tmp_path / "runs"
  dirs = [str(out / "ladder" / t.id) for t in trials]
  process = launch(path, out)
  wait_for(lambda: os.path.exists(os.path.join(dirs[0], "summary.json")) and
           metrics_lib.read_json(os.path.join(dirs[0], "summary.json"))["status"] == "done" and
           last_step(dirs[1]) >= 15, process)
  process.send_signal(signal.SIGKILL)
  process.wait()
  first_done = os.stat(os.path.join(dirs[0], "summary.json")).st_mtime_ns

  again = launch(path, out)
  stdout, stderr = again.communicate(timeout=300)
  assert again.returncode == 0, stderr[-2000:]
  assert "3/3 trials done" in stdout
  assert os.stat(os.path.join(dirs[0], "summary.json")).st_mtime_ns == first_done  # not re-run
  for run_dir in dirs:
    outcomes = [json.loads(line)["outcome"] for line in open(os.path.join(run_dir, "attempts.jsonl"))]
    assert outcomes == ["done"], outcomes
    assert_each_step_once(run_dir, steps=40)
  status = subprocess.run([sys.executable, "-m", "sweeps", "status", str(out / "ladder")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
  assert status.returncode == 0 and status.stdout.count(" done ") == 3 and "40/40" in status.stdout


def test_injected_nan_marks_the_trial_diverged_and_the_sweep_finishes(tmp_path):
  path = sweep_file(tmp_path, name="nan", steps=20, checkpoint_every=5, nan="[null, 8]")
  out = tmp_path / "runs"
  result = subprocess.run([sys.executable, "-m", "sweeps", "run", path, "--out", str(out), "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "1/2 trials done (1 diverged)" in result.stdout
  trials = {t.axes["train.inject_nan_at_step"]: t.id for t in expand.load(path).trials}
  diverged = metrics_lib.read_json(str(out / "nan" / trials[8] / "summary.json"))
  assert diverged["status"] == "diverged" and "step 8" in diverged["reason"]
  from scaling.checkpoint import Checkpoints
  checkpoints = Checkpoints(str(out / "nan" / trials[8]))
  assert checkpoints.latest_step() == 5  # the last good checkpoint, nothing after the NaN
  checkpoints.close()
  report = (out / "nan" / "analysis" / "report.md").read_text()
  assert f"`{trials[8]}` (diverged)" in report
  status = subprocess.run([sys.executable, "-m", "sweeps", "status", str(out / "nan")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
  assert "diverged" in status.stdout and "non-finite" in status.stdout


def test_two_concurrent_launches_never_run_a_trial_twice(tmp_path):
  path = sweep_file(tmp_path, name="both", seed="[0, 1, 2]", steps=30, checkpoint_every=10)  # one compiled step
  out = tmp_path / "runs"
  processes = [launch(path, out), launch(path, out)]
  for process in processes:
    _, stderr = process.communicate(timeout=400)
    assert process.returncode == 0, stderr[-2000:]
  for trial in expand.load(path).trials:
    run_dir = str(out / "both" / trial.id)
    attempts = [json.loads(line) for line in open(os.path.join(run_dir, "attempts.jsonl"))]
    assert len(attempts) == 1 and attempts[0]["outcome"] == "done"
    assert_each_step_once(run_dir, steps=30)
    assert not os.path.exists(os.path.join(run_dir, "claim.json"))


def test_stale_claim_of_a_dead_process_is_taken_over(tmp_path):
  from scaling import claims
  run_dir = str(tmp_path / "trial")
  held = claims.try_claim(run_dir)
  assert held is not None and claims.try_claim(run_dir) is None  # a live holder keeps it
  held._stop.set()
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
  with open(held.path, "w") as f:  # as if written by a process that has exited
    json.dump({"pid": int(dead.stdout), "host": __import__("socket").gethostname(), "since": 0}, f)
  assert claims.holder(run_dir) is None
  taken = claims.try_claim(run_dir)
  assert taken is not None
  taken.release()


def test_a_crashing_trial_is_retried_then_marked_failed_and_the_sweep_goes_on(tmp_path):
  from scaling import rundir
  from sweeps import local
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("abcdefgh" * 200)
  text_trial = TRIAL.format(name="crash", size=1, tokens=10 * 8 * 16, checkpoint_every=0, nan="null", seed=0).replace(
      "data: {kind: markov, vocab_size: 8, order: 2, mix: [0.2, 0.3, 0.5]}",
      f"data: [{{kind: text, path: {corpus}}}, {{kind: markov, vocab_size: 8, order: 2, mix: [0.2, 0.3, 0.5]}}]")
  sweep = expand.load(write(tmp_path, "crash.yaml", text_trial))
  corpus.unlink()  # validated, then gone: the text trial crashes at start on every attempt
  states = local.run(sweep, str(tmp_path / "runs"), progress=False, retries=2, log=lambda *_: None)
  text_id, markov_id = (t.id for t in sweep.trials)
  assert states == {text_id: "failed", markov_id: "done"}
  run_dir = tmp_path / "runs" / "crash" / text_id
  attempts = [json.loads(line) for line in open(run_dir / "attempts.jsonl")]
  assert [a["outcome"] for a in attempts] == ["crashed"] * 3
  assert "no such file" in attempts[0]["error"] and "Traceback" in attempts[0]["traceback"]
  summary = metrics_lib.read_json(str(run_dir / "summary.json"))
  assert summary["status"] == "failed" and "after 3 attempts" in summary["reason"]
  assert rundir.state_of(str(run_dir)) == "failed"  # finished: a re-run skips it...
  assert local.run(sweep, str(tmp_path / "runs"), progress=False, log=lambda *_: None)[text_id] == "failed"
  assert len(open(run_dir / "attempts.jsonl").readlines()) == 3
  corpus.write_text("abcdefgh" * 200)  # ...unless asked to retry failed trials, once the cause is fixed
  again = local.run(sweep, str(tmp_path / "runs"), progress=False, retry_failed=True, log=lambda *_: None)
  assert again == {text_id: "done", markov_id: "done"}


def test_hosts_agree_on_the_step_to_resume_from_when_checkpoints_are_damaged(tmp_path):
  """Two processes (tests/test_distributed.py's launch): process 0 finds the newest checkpoint's metadata damaged
  and moves it aside; every host then fails to read the arrays of the one before, and all go back together, to
  step 0. The trial ends done with the parameters of the undamaged run, each step logged once."""
  from tests import test_distributed as two_hosts
  sweep, out = two_hosts._sweep_file(tmp_path), str(tmp_path / "runs")

  def run_on_two_hosts(tag):
    port = two_hosts._free_port()
    processes = [two_hosts._launch(sweep, out, str(tmp_path / f"{tag}{i}"), 2, i, port) for i in (0, 1)]
    try:
      for process in processes:
        process.wait(timeout=two_hosts.TIMEOUT_SECONDS)
    finally:
      for process in processes:  # only the process groups this test started
        if process.poll() is None:
          os.killpg(process.pid, signal.SIGKILL)
          process.wait()
    errors = [open(tmp_path / f"{tag}{i}.err").read() for i in (0, 1)]
    assert [p.returncode for p in processes] == [0, 0], [e[-3000:] for e in errors]
    return errors

  run_on_two_hosts("undamaged")
  (run_dir,) = [p for p in (tmp_path / "runs" / "two_hosts").iterdir() if p.is_dir()]
  undamaged = metrics_lib.read_json(str(run_dir / "summary.json"))["params_sha256"]
  (run_dir / "summary.json").unlink()  # unfinished again: the re-run resumes it
  steps = two_hosts.STEPS
  os.truncate(run_dir / "checkpoints" / str(steps) / "_CHECKPOINT_METADATA", 3)
  for path in (run_dir / "checkpoints" / str(steps // 2) / "default" / "d").iterdir():
    os.truncate(path, path.stat().st_size // 2)

  errors = run_on_two_hosts("damaged")
  said = [line for line in errors[0].splitlines() if "moved aside to" in line]
  assert len(said) == 2 and all("the trial resumes from step 0" in line for line in said), errors[0][-3000:]
  assert "moved aside" not in errors[1]  # process 0 alone moves and says
  summary = metrics_lib.read_json(str(run_dir / "summary.json"))
  assert summary["status"] == "done" and summary["resumed_from_step"] is None
  assert summary["params_sha256"] == undamaged
  assert sorted(p.name.split(".")[0] for p in run_dir.glob("checkpoint-*.damaged-*")) == [
      f"checkpoint-{steps // 2}", f"checkpoint-{steps}"]
  assert_each_step_once(str(run_dir), steps=steps)


def test_a_pack_resumes_from_the_newest_step_every_trial_can_be_restored_at(tmp_path):
  """Two packed trials, each with a damaged checkpoint of its own: trial A's newest (metadata), trial B's one
  before (arrays, found only by the restore). The pack tries the newest step both have metadata for, B's read
  fails there, and it goes back to step 0; both end with the parameters of the undamaged run."""
  from sweeps import local
  from tests import test_pack as packed
  spec = expand.load(packed.sweep(tmp_path, "pair", True, seed="[0, 1]", lr="1e-2", steps=20))
  out = str(tmp_path / "runs")
  assert set(local.run(spec, out, progress=False, log=lambda *_: None).values()) == {"done"}
  a, b = (tmp_path / "runs" / "pair" / t.id for t in spec.trials)
  undamaged = {d: metrics_lib.read_json(str(d / "summary.json"))["params_sha256"] for d in (a, b)}
  for run_dir in (a, b):  # unfinished again, packed as before (its summary names its partner)
    summary = metrics_lib.read_json(str(run_dir / "summary.json"))
    metrics_lib.write_json_atomic(str(run_dir / "summary.json"), {**summary, "status": "running"})
  os.truncate(a / "checkpoints" / "20" / "_CHECKPOINT_METADATA", 3)
  for path in (b / "checkpoints" / "15" / "default" / "ocdbt.process_0" / "d").iterdir():
    os.truncate(path, path.stat().st_size // 2)

  said = []
  assert set(local.run(spec, out, progress=False, log=said.append).values()) == {"done"}
  for run_dir, damaged in ((a, 20), (b, 15)):
    summary = metrics_lib.read_json(str(run_dir / "summary.json"))
    assert summary["status"] == "done" and summary["resumed_from_step"] is None  # both started over
    assert summary["params_sha256"] == undamaged[run_dir]
    (aside,) = run_dir.glob("checkpoint-*.damaged-*")
    assert aside.name.startswith(f"checkpoint-{damaged}.") and summary["checkpoints_moved_aside"] == [str(aside)]
    assert_each_step_once(str(run_dir), steps=20)
