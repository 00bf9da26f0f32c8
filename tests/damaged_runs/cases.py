"""The corpus of damaged run directories: how each is damaged, and what each command must then do.

Each case damages a copy of one of two base sweeps (both 2 trials of the tiny GPT, sizes 1 and 2):
  FINISHED     both trials done;
  INTERRUPTED  the size-1 trial stopped by SIGTERM mid-run (checkpoints at step 10 and at the
               signal, summary `running`), the size-2 trial not started.
The damage is done to the size-1 trial (`trial`); the size-2 one is "the other", which must
always end done and whole. For `sweeps status`, `analysis plot` and the re-run (`sweeps run`
on the sweep file) a case gives the exit code and a fragment of their output ({trial}: the
damaged trial's id, {dir}: the sweep directory); `achieves` says what the re-run must leave:

  WHOLE     the damaged trial is done with config.json, summary and every metrics row restored
            (each step once) and the parameters of an undamaged run (params_sha256); a damaged
            checkpoint costs steps, never the trial: it is moved aside (`moved_aside`: how many
            `checkpoint*.damaged-*` entries the trial directory then holds) and the trial resumes
            from the one before, or from step 0;
  LOSSY     it is done with the right parameters, but a metrics file lost rows that cannot be
            recovered: `sweeps status` still says so (`still_says`), never silently;
  REPORTED  it is not done: `sweeps status` still shows why and what to do (`still_says`).
  SKIPPED   it was not run (another live process holds it), and `sweeps status` says `running`.

`resumes_from` and `moved_aside` (checkpoint cases): the step the re-run's warning says the trial resumes
from, and how many damaged checkpoints end up beside `checkpoints/` as `checkpoint*.damaged-*`.

`advice` (REPORTED cases): follow what the line says (delete or move away the named path) and
re-run with --retry-failed; the trial must then end WHOLE. A re-run exits 0, 1 (a trial ended
`failed`: scripts and schedulers notice) or 2 (bad input: one line).
"""
import dataclasses
import glob
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from typing import Callable

FINISHED, INTERRUPTED = "finished", "interrupted"
WHOLE, LOSSY, REPORTED, SKIPPED = "whole", "lossy", "reported", "skipped"


@dataclasses.dataclass(frozen=True)
class Outcome:
  code: int
  says: str  # a fragment of the command's output (stderr when it exits 2: its one line)


@dataclasses.dataclass(frozen=True)
class Case:
  name: str
  base: str
  damage: Callable  # damage(trial_dir, sweep_dir), both pathlib.Path
  status: Outcome
  plot: Outcome
  rerun: Outcome
  achieves: str
  still_says: str = ""
  advice: bool = False  # REPORTED: following the line's advice then ends the trial WHOLE
  still_code: int = 0  # the exit code of `sweeps status` after the re-run
  root_skips: bool = False  # permissions mean nothing to root
  moved_aside: int = 0  # checkpoint cases: the damaged checkpoints the re-run moves aside, beside checkpoints/
  resumes_from: str = ""  # ... and the step it then resumes from ({latest}: the newest checkpoint's)


# ---- damage: summary.json, config.json ----

def truncate_summary(trial, sweep):
  path = trial / "summary.json"
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def summary_not_an_object(trial, sweep):
  (trial / "summary.json").write_text("[1, 2]\n")


def edit_summary(**fields):
  def damage(trial, sweep):
    summary = json.loads((trial / "summary.json").read_text())
    (trial / "summary.json").write_text(json.dumps({**summary, **fields}))
  return damage


def remove(name):
  def damage(trial, sweep):
    path = trial / name
    shutil.rmtree(path) if path.is_dir() else path.unlink()
  return damage


def write(name, content: bytes):
  def damage(trial, sweep):
    path = trial / name
    if path.is_dir():
      shutil.rmtree(path)
    path.write_bytes(content)
  return damage


def fifo(name):
  def damage(trial, sweep):
    (trial / name).unlink()
    os.mkfifo(trial / name)
  return damage


def edit_config(trial, sweep):
  config = json.loads((trial / "config.json").read_text())
  config["optimizer"]["lr"] *= 2  # as if by hand: it no longer describes what the directory holds
  (trial / "config.json").write_text(json.dumps(config, indent=2))


# ---- damage: metrics.jsonl, attempts.jsonl ----

def damage_metrics_line(number: int, garbage: bytes = b'{"step": 5, "lo\xff\n'):
  def damage(trial, sweep):
    lines = (trial / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    lines[number - 1] = garbage
    (trial / "metrics.jsonl").write_bytes(b"".join(lines))
  return damage


def tear_last_line(name):
  def damage(trial, sweep):
    data = (trial / name).read_bytes()
    last = data[:-1].rfind(b"\n") + 1
    (trial / name).write_bytes(data[: last + (len(data) - last) // 2])
  return damage


def replace_by_directory(name):
  def damage(trial, sweep):
    (trial / name).unlink()
    (trial / name).mkdir()
    (trial / name / "stray").write_text("x")
  return damage


def append_torn(name, partial: bytes):
  """A crash mid-write after the last checkpoint: a partial line, no newline."""
  def damage(trial, sweep):
    with open(trial / name, "ab") as f:
      f.write(partial)
  return damage


# ---- damage: claim.json ----

def claim_of_a_dead_process(trial, sweep):
  gone = subprocess.Popen(["/bin/true"])
  gone.wait()  # its pid is free once it has exited
  (trial / "claim.json").write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname(), "since": time.time()}))


def garbage_claim(age_seconds):
  """A claim.json of garbage, last touched `age_seconds` ago; 0: a live holder's, touched every second (as its
  heartbeat does) for as long as the case runs, so that it stays fresh however slow the machine."""
  def damage(trial, sweep):
    path = trial / "claim.json"
    path.write_bytes(b"\x00garbage{")
    then = time.time() - age_seconds
    os.utime(path, (then, then))
    if age_seconds == 0:
      threading.Thread(target=_heartbeat, args=(path,), daemon=True).start()
  return damage


def _heartbeat(path, seconds=600):
  for _ in range(seconds):
    try:
      os.utime(path)
    except FileNotFoundError:  # the case's directory is gone: it has ended
      return
    time.sleep(1.0)


# ---- damage: checkpoints/ ----

def checkpoint_steps(trial):
  """The step directories, newest first."""
  return sorted((p for p in (trial / "checkpoints").iterdir() if p.name.isdigit()), key=lambda p: -int(p.name))


def latest_checkpoint(trial):
  return checkpoint_steps(trial)[0]


def half_written_orbax_tmp(trial, sweep):
  latest = latest_checkpoint(trial)
  tmp = latest.parent / f"{int(latest.name) + 5}.orbax-checkpoint-tmp-1796162645909323734"
  shutil.copytree(latest, tmp)
  for path in glob.glob(str(tmp / "default" / "ocdbt.process_0" / "d" / "*"))[1:]:
    os.remove(path)  # the save died part way through writing the arrays
  os.remove(tmp / "commit_success.txt")


def empty_step_directory(trial, sweep):
  latest = latest_checkpoint(trial)
  (latest.parent / str(int(latest.name) + 3)).mkdir()


def delete_checkpoint_files(trial, sweep):
  for path in glob.glob(str(latest_checkpoint(trial) / "**"), recursive=True):
    if os.path.isfile(path):
      os.remove(path)


def truncate_checkpoint_files(pattern, steps=1):
  """Halves the files matching `pattern` in the `steps` newest checkpoints."""
  def damage(trial, sweep):
    for step in checkpoint_steps(trial)[:steps]:
      for path in glob.glob(str(step / pattern), recursive=True):
        if os.path.isfile(path):
          os.truncate(path, os.path.getsize(path) // 2)
  return damage


def empty_latest_checkpoint(trial, sweep):
  latest = latest_checkpoint(trial)
  shutil.rmtree(latest)
  latest.mkdir()


def delete_checkpoint_file(name):
  def damage(trial, sweep):
    os.remove(latest_checkpoint(trial) / name)
  return damage


def metadata_then_arrays(trial, sweep):
  """Both checkpoints damaged, each its own way: the newest's metadata (seen before any read), the one
  before's arrays (seen only by the restore)."""
  newest, before = checkpoint_steps(trial)[:2]
  os.truncate(newest / "_CHECKPOINT_METADATA", 3)
  for path in glob.glob(str(before / "default" / "ocdbt.process_0" / "d" / "*")):
    os.truncate(path, os.path.getsize(path) // 2)


# ---- damage: the run directory and the sweep directory ----

def trial_is_a_file(trial, sweep):
  shutil.rmtree(trial)
  trial.write_text("not a run directory\n")


def read_only_without_summary(trial, sweep):
  (trial / "summary.json").unlink()
  os.chmod(trial, 0o555)


def manifest_lists_an_unknown_trial(trial, sweep):
  manifest = json.loads((sweep / "sweep.json").read_text())
  manifest["trials"].append({"id": "0123456789ab", "axes": {"model.size": 9}})
  (sweep / "sweep.json").write_text(json.dumps(manifest))


def sweep_file_is_a_directory(name):
  def damage(trial, sweep):
    (sweep / name).unlink()
    (sweep / name).mkdir()
  return damage


# ---- damage: planted links, each into a victim directory beside the run root (which must stay byte for byte) ----

def victim_of(sweep):
  """tmp/victim beside tmp/runs (the --out root): what a link planted in a shared sweep directory reaches."""
  return sweep.parent.parent / "victim"


def link_to_victim(*names, move=True):
  """Each of `names` (relative to the trial; `../X` for the sweep directory's X) replaced by a link into the victim
  directory, which holds what was there (`move`) or a file of its own."""
  def damage(trial, sweep):
    victim = victim_of(sweep)
    victim.mkdir(exist_ok=True)
    (victim / "precious.txt").write_bytes(b"a user's file\n")
    for name in names:
      path = trial / name  # "." is the trial directory itself
      there = victim / ("trial" if name == "." else name.replace("/", "_").replace("..", "sweep"))
      if move and os.path.lexists(path):
        shutil.move(str(path), str(there))
      elif not os.path.lexists(there):
        there.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
      if os.path.lexists(path):
        os.remove(path) if not os.path.isdir(path) else shutil.rmtree(path)
      os.symlink(there, path)
  return damage


def link_latest_step(trial, sweep):
  latest = latest_checkpoint(trial)
  link_to_victim(f"checkpoints/{latest.name}")(trial, sweep)


def several_at_once(trial, sweep):
  """The worst directory: a damaged summary, a torn and damaged metrics file, a garbage claim."""
  truncate_summary(trial, sweep)
  damage_metrics_line(3)(trial, sweep)
  garbage_claim(60)(trial, sweep)


DONE = Outcome(0, "{trial}  done")
PENDING = Outcome(0, "{trial}  pending")
DAMAGED = lambda why: Outcome(0, why)
PLOTTED = Outcome(0, "report:")
WARNS = lambda why: Outcome(0, "warning: {dir}/{trial}/" + why)
NOTHING_FINISHED = Outcome(2, "no trial has finished")
BOTH_DONE = Outcome(0, "2/2 trials done")
ONE_FAILED = lambda why: Outcome(1, why)
RESUMED = lambda why: Outcome(0, why)  # the re-run's warning line, which also names `resumes_from` and the new place

CASES = [
    # FINISHED base: both trials done.
    Case("intact", FINISHED, lambda trial, sweep: None, DONE, PLOTTED, BOTH_DONE, WHOLE),
    Case("summary_truncated", FINISHED, truncate_summary, DAMAGED("{trial}  damaged"),
         WARNS("summary.json: unreadable (JSONDecodeError"), BOTH_DONE, WHOLE),
    Case("summary_not_an_object", FINISHED, summary_not_an_object, DAMAGED("summary.json: not a JSON object"),
         WARNS("summary.json: not a JSON object"), BOTH_DONE, WHOLE),
    Case("summary_status_is_a_number", FINISHED, edit_summary(status=5), DAMAGED("status: expected one of"),
         WARNS("summary.json: status: expected one of"), BOTH_DONE, WHOLE),
    Case("summary_loss_is_text", FINISHED, edit_summary(final_eval_loss="x"),
         DAMAGED("final_eval_loss: expected a number, got \"x\""), WARNS("summary.json: final_eval_loss"),
         BOTH_DONE, WHOLE),
    Case("summary_is_a_fifo", FINISHED, fifo("summary.json"), DAMAGED("summary.json: unreadable (not a regular file)"),
         WARNS("summary.json: unreadable (not a regular file)"), BOTH_DONE, WHOLE),
    Case("summary_missing_checkpoints_kept", FINISHED, remove("summary.json"), PENDING, PLOTTED, BOTH_DONE, WHOLE),
    Case("config_missing", FINISHED, remove("config.json"), DAMAGED("config.json: missing"),
         WARNS("config.json: missing"), BOTH_DONE, WHOLE),
    Case("config_garbage", FINISHED, write("config.json", b'{"model": {"fam'), DAMAGED("config.json: unreadable"),
         WARNS("config.json: unreadable"), BOTH_DONE, WHOLE),
    Case("config_edited", FINISHED, edit_config, DAMAGED("does not match the trial id {trial}"),
         WARNS("config.json: does not match the trial id {trial}"), BOTH_DONE, WHOLE),
    Case("metrics_line_damaged_in_the_middle", FINISHED, damage_metrics_line(5),
         DAMAGED("metrics.jsonl: 1 damaged line(s) skipped; train rows for 9 of its 10 steps"),
         WARNS("metrics.jsonl: 1 damaged line(s)"), BOTH_DONE, LOSSY, still_says="metrics.jsonl: 1 damaged line"),
    Case("metrics_last_line_torn", FINISHED, tear_last_line("metrics.jsonl"),
         DAMAGED("metrics.jsonl: 1 damaged line(s) skipped"), WARNS("metrics.jsonl: 1 damaged line(s)"), BOTH_DONE,
         LOSSY, still_says="metrics.jsonl: 1 damaged line"),
    Case("metrics_empty", FINISHED, write("metrics.jsonl", b""), DAMAGED("train rows for 0 of its 10 steps"),
         WARNS("metrics.jsonl: train rows for 0 of its 10 steps"), BOTH_DONE, LOSSY,
         still_says="train rows for 0 of its 10 steps"),
    Case("metrics_is_a_directory", FINISHED, replace_by_directory("metrics.jsonl"),
         DAMAGED("metrics.jsonl: unreadable (a directory)"), WARNS("metrics.jsonl: unreadable (a directory)"),
         BOTH_DONE, LOSSY, still_says="metrics.jsonl: unreadable (a directory)"),
    Case("metrics_not_utf8", FINISHED, write("metrics.jsonl", b"\xff\xfe\x00\x81garbage\n" * 12),
         DAMAGED("metrics.jsonl: 12 damaged line(s) skipped"), WARNS("metrics.jsonl: 12 damaged line(s)"), BOTH_DONE,
         LOSSY, still_says="12 damaged line(s)"),
    Case("trial_directory_is_a_file", FINISHED, trial_is_a_file, DAMAGED("{trial}: not a directory; move it away"),
         Outcome(0, "warning: {dir}/{trial}: not a directory"), Outcome(0, "1/2 trials done (1 damaged)"), REPORTED,
         still_says="{trial}: not a directory; move it away", advice=True),
    Case("trial_directory_missing", FINISHED, lambda trial, sweep: shutil.rmtree(trial), PENDING, PLOTTED, BOTH_DONE,
         WHOLE),
    Case("manifest_lists_an_unknown_trial", FINISHED, manifest_lists_an_unknown_trial,
         Outcome(0, "0123456789ab  pending"), PLOTTED, BOTH_DONE, WHOLE),
    Case("sweep_yaml_is_a_directory", FINISHED, sweep_file_is_a_directory("sweep.yaml"), DONE, PLOTTED,
         Outcome(2, "sweep.yaml: Is a directory; fix it or move it away"), WHOLE, still_says="{trial}  done"),
    Case("sweep_json_is_a_directory", FINISHED, sweep_file_is_a_directory("sweep.json"),
         Outcome(2, "sweep.json: not a readable sweep manifest (a directory)"),
         Outcome(2, "sweep.json: not a readable"), Outcome(2, "sweep.json: Is a directory; fix it or move it away"),
         WHOLE, still_says="sweep.json", still_code=2),
    Case("run_directory_read_only", FINISHED, read_only_without_summary, PENDING, PLOTTED,
         Outcome(0, "Permission denied"), REPORTED, still_says="{trial}  pending", root_skips=True),
    Case("several_damages_at_once", FINISHED, several_at_once, DAMAGED("summary.json: unreadable"),
         WARNS("summary.json: unreadable"),
         Outcome(0, "metrics.jsonl: 1 damaged line(s) skipped; the original is kept"), LOSSY,
         still_says="metrics.jsonl: train rows for 9 of its 10 steps"),
    Case("trial_directory_is_a_link", FINISHED, link_to_victim("."), DAMAGED("{trial}: a symbolic link (to"),
         Outcome(0, "warning: {dir}/{trial}: a symbolic link"), Outcome(0, "1/2 trials done (1 damaged)"), REPORTED,
         still_says="{trial}: a symbolic link", advice=True),
    Case("summary_is_a_link", FINISHED, link_to_victim("summary.json"),
         DAMAGED("summary.json: unreadable (a symbolic link, never followed"),
         WARNS("summary.json: unreadable (a symbolic link"), BOTH_DONE, WHOLE),
    Case("config_is_a_link", FINISHED, link_to_victim("config.json"),
         DAMAGED("config.json: unreadable (a symbolic link, never followed"),
         WARNS("config.json: unreadable (a symbolic link"), BOTH_DONE, WHOLE),
    Case("sweep_files_are_links", FINISHED, link_to_victim("../sweep.yaml", "../analysis"), DONE,
         Outcome(0, "analysis: a symbolic link, never written through; moved aside"), BOTH_DONE, WHOLE),
    Case("trial_failed_earlier", FINISHED, edit_summary(status="failed", reason="RuntimeError: boom (after 1 attempt)"),
         Outcome(0, "{trial}  failed"), PLOTTED, ONE_FAILED("1/2 trials done (1 failed)"), REPORTED,
         still_says="{trial}  failed"),

    # INTERRUPTED base: the damaged trial stopped mid-run, the other not started.
    Case("interrupted_intact", INTERRUPTED, lambda trial, sweep: None, PENDING, NOTHING_FINISHED, BOTH_DONE, WHOLE),
    Case("summary_wrong_type_while_running", INTERRUPTED, edit_summary(steps_planned="60"),
         DAMAGED("steps_planned: expected a number"), NOTHING_FINISHED, BOTH_DONE, WHOLE),
    Case("metrics_last_line_torn_by_the_crash", INTERRUPTED, append_torn("metrics.jsonl", b'{"step": 99, "lo'),
         PENDING, NOTHING_FINISHED, BOTH_DONE, WHOLE),
    Case("metrics_is_a_directory_mid_run", INTERRUPTED, replace_by_directory("metrics.jsonl"), PENDING,
         NOTHING_FINISHED, Outcome(0, "metrics.jsonl: 1 damaged line(s) skipped; the original is kept"), LOSSY,
         still_says="metrics.jsonl: train rows for"),
    Case("attempts_last_line_torn", INTERRUPTED, append_torn("attempts.jsonl", b'{"pid": 1, "attempt": 9, "outc'),
         PENDING, NOTHING_FINISHED, BOTH_DONE, WHOLE),
    Case("claim_of_a_dead_process", INTERRUPTED, claim_of_a_dead_process, PENDING, NOTHING_FINISHED, BOTH_DONE, WHOLE),
    Case("claim_garbage_left_by_a_crash", INTERRUPTED, garbage_claim(60), PENDING, NOTHING_FINISHED, BOTH_DONE, WHOLE),
    Case("claim_garbage_fresh", INTERRUPTED, garbage_claim(0), Outcome(0, "{trial}  running"), NOTHING_FINISHED,
         Outcome(0, "claimed by another process, skipped"), SKIPPED),
    Case("tensorboard_is_a_file", INTERRUPTED, write("tensorboard", b"x"), PENDING, NOTHING_FINISHED,
         Outcome(0, "tensorboard: not a directory; TensorBoard events are not written"), WHOLE),
    Case("checkpoints_is_a_link", INTERRUPTED, link_to_victim("checkpoints"), PENDING, NOTHING_FINISHED,
         Outcome(0, "checkpoints: a symbolic link, never followed in a run directory; moved aside as checkpoints.damaged-"),
         WHOLE),
    Case("checkpoint_step_is_a_link", INTERRUPTED, link_latest_step, PENDING, NOTHING_FINISHED,
         Outcome(0, "a symbolic link, never followed in a run directory; moved aside"), WHOLE),
    Case("metrics_is_a_link", INTERRUPTED, link_to_victim("metrics.jsonl"), PENDING, NOTHING_FINISHED,
         Outcome(0, "metrics.jsonl: a symbolic link, never followed in a run directory; moved aside"), LOSSY,
         still_says="metrics.jsonl: train rows for"),
    Case("run_files_are_links", INTERRUPTED,
         link_to_victim("attempts.jsonl", "timeline.json", "tensorboard", "claim.json"), PENDING, NOTHING_FINISHED,
         Outcome(0, "attempts.jsonl: a symbolic link, never followed in a run directory; moved aside"), WHOLE),
    Case("checkpoint_half_written_tmp_dir", INTERRUPTED, half_written_orbax_tmp, PENDING, NOTHING_FINISHED, BOTH_DONE,
         WHOLE),
    Case("checkpoint_empty_step_directory", INTERRUPTED, empty_step_directory, PENDING, NOTHING_FINISHED,
         RESUMED("damaged checkpoint (no _CHECKPOINT_METADATA; the directory is empty)"), WHOLE, moved_aside=1,
         resumes_from="{latest}"),
    Case("checkpoint_step_directory_emptied", INTERRUPTED, empty_latest_checkpoint, PENDING, NOTHING_FINISHED,
         RESUMED("damaged checkpoint (no _CHECKPOINT_METADATA; the directory is empty)"), WHOLE, moved_aside=1,
         resumes_from="10"),
    Case("checkpoint_files_deleted", INTERRUPTED, delete_checkpoint_files, PENDING, NOTHING_FINISHED,
         RESUMED("damaged checkpoint (no _CHECKPOINT_METADATA)"), WHOLE, moved_aside=1, resumes_from="10"),
    Case("checkpoint_files_truncated", INTERRUPTED, truncate_checkpoint_files("**"), PENDING, NOTHING_FINISHED,
         RESUMED("damaged checkpoint (_CHECKPOINT_METADATA: JSONDecodeError"), WHOLE, moved_aside=1, resumes_from="10"),
    Case("checkpoint_item_metadata_deleted", INTERRUPTED, delete_checkpoint_file("default/_METADATA"), PENDING,
         NOTHING_FINISHED, RESUMED("damaged checkpoint (default/_METADATA: No such file"), WHOLE, moved_aside=1,
         resumes_from="10"),
    Case("checkpoint_arrays_truncated", INTERRUPTED, truncate_checkpoint_files("default/ocdbt.process_0/d/*"),
         PENDING, NOTHING_FINISHED, RESUMED("damaged checkpoint (cannot be read back: "), WHOLE, moved_aside=1,
         resumes_from="10"),
    Case("checkpoints_is_a_file", INTERRUPTED, write("checkpoints", b"x"), PENDING, NOTHING_FINISHED,
         RESUMED("checkpoints: not a directory"), WHOLE, moved_aside=1, resumes_from="0"),
    Case("checkpoint_every_metadata_truncated", INTERRUPTED, truncate_checkpoint_files("_CHECKPOINT_METADATA", steps=2),
         PENDING, NOTHING_FINISHED, RESUMED("damaged checkpoint (_CHECKPOINT_METADATA: JSONDecodeError"), WHOLE,
         moved_aside=2, resumes_from="0"),
    Case("checkpoint_every_array_truncated", INTERRUPTED,
         truncate_checkpoint_files("default/ocdbt.process_0/d/*", steps=2), PENDING, NOTHING_FINISHED,
         RESUMED("damaged checkpoint (cannot be read back: "), WHOLE, moved_aside=2, resumes_from="0"),
    Case("checkpoint_metadata_then_arrays_damaged", INTERRUPTED, metadata_then_arrays, PENDING, NOTHING_FINISHED,
         RESUMED("damaged checkpoint (cannot be read back: "), WHOLE, moved_aside=2, resumes_from="0"),
]
