"""Nothing outside the root a user named is written, deleted or followed (scaling/containment.py).

A victim directory sits beside the staging root and the bucket; after every command it must be byte for
byte what it was. Planted links inside trial directories are the damaged-run corpus's (tests/damaged_runs).
"""
import json
import os

import pytest

from analysis import __main__ as analysis_cli
from scaling import containment
from scaling import metrics as metrics_lib
from sweeps import __main__ as sweeps_cli
from scaling import storage
from tests.conftest import tree_digest


@pytest.fixture
def victim(tmp_path):
  """tmp/victim with files a climbing URL or a link could reach; yields its path, then checks it is untouched."""
  root = tmp_path / "victim"
  (root / "sub").mkdir(parents=True)
  (root / "precious.txt").write_bytes(b"a user's file\n")
  (root / "sub" / "sweep.json").write_text(json.dumps({"name": "x", "trials": []}))
  (root / "claim.json").write_text("{}")
  before = tree_digest(root)
  yield root
  assert tree_digest(root) == before


def run(capfd, main, argv):
  capfd.readouterr()
  try:
    code = main(argv)
  except SystemExit as e:
    code = e.code
  return code, *capfd.readouterr()


def climbing_urls(tmp_path, victim) -> list:
  """URLs whose path, joined naively under the staging root's mirror, reaches the victim: every scheme, every
  spelling of a climb."""
  staging = tmp_path / "a" / "b" / "stage"
  depth = len(os.path.relpath(staging / "mirror" / "memory", tmp_path).split(os.sep))
  up = "/".join([".."] * depth)
  return [f"memory://{up}/victim", f"file:///{up}/victim", f"file://{up}/victim", f"memory://x/{up}/../victim",
          f"memory://{up}/victim/", f"memory://./{up}/victim", f"gs://bucket/{up}/victim", "memory://a//../victim",
          f"s3://b/{up}/victim"]


@pytest.mark.parametrize("command", ["status", "plot"])
def test_a_url_that_climbs_is_one_line_and_touches_nothing(command, tmp_path, victim, capfd, monkeypatch):
  monkeypatch.setenv("SCALING_STAGING", str(tmp_path / "a" / "b" / "stage"))
  main = sweeps_cli.main if command == "status" else analysis_cli.main
  for url in climbing_urls(tmp_path, victim):
    code, out, err = run(capfd, main, [command, url])
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (url, out, err)
    assert url in err and "in the path" in err, err


def test_run_refuses_a_climbing_bucket_before_writing(tmp_path, victim, capfd, monkeypatch):
  from tests.test_cli_contract import SWEEP
  from tests.conftest import write
  monkeypatch.setenv("SCALING_STAGING", str(tmp_path / "a" / "b" / "stage"))
  path = write(tmp_path, "s.yaml", SWEEP)
  for backend in ("ray", "slurm"):
    code, out, err = run(capfd, sweeps_cli.main, ["run", path, "--backend", backend, "--out",
                                                 "memory://../../../../../../victim", "--no-progress"])
    assert code == 2 and err.count("\n") == 1 and "'..' in the path" in err, err


def test_url_parts_and_within(tmp_path):
  assert containment.url_parts("file:///a/b/") == ("file", ["a", "b"])
  assert containment.url_parts("gs://bucket/runs") == ("gs", ["bucket", "runs"])
  for bad in ("file:///../x", "memory://a/./b", "memory://a//b", "gs://", "memory://a\\..\\b"):
    with pytest.raises(containment.Escape):
      containment.url_parts(bad)
  (tmp_path / "root").mkdir()
  os.symlink(tmp_path, tmp_path / "root" / "out")
  assert containment.within(tmp_path / "root", tmp_path / "root" / "x" / "y")
  for outside in (tmp_path / "root" / "out" / "z", tmp_path / "root" / ".." / "z", tmp_path / "rootless"):
    with pytest.raises(containment.Escape, match="outside"):
      containment.within(tmp_path / "root", outside)


def memory_sweep(name: str) -> str:
  """A memory:// sweep directory with a manifest and one trial's files, as a driver leaves it."""
  import fsspec
  fs = fsspec.filesystem("memory")
  root = f"/{name}"
  fs.pipe_file(f"{root}/sweep.json", json.dumps({"name": name, "trials": [{"id": "0123456789ab", "axes": {}}]})
               .encode())
  fs.pipe_file(f"{root}/0123456789ab/claim.json", b'{"pid": 1, "host": "elsewhere", "since": 0}')
  fs.pipe_file(f"{root}/0123456789ab/metrics.jsonl", b'{"step": 1, "loss": 2.0}\n')
  return f"memory://{name}"


def test_the_mirror_deletes_only_what_it_wrote(tmp_path, monkeypatch):
  import fsspec
  monkeypatch.setenv("SCALING_STAGING", str(tmp_path / "stage"))
  url = memory_sweep("deletes_only_its_own")
  place = storage.opened(url)
  trial = os.path.join(place.local, "0123456789ab")
  assert os.path.isfile(os.path.join(trial, "claim.json"))
  with open(os.path.join(trial, "notes.txt"), "w") as f:  # a file the mirror did not write
    f.write("mine")
  fsspec.filesystem("memory").rm_file("/deletes_only_its_own/0123456789ab/claim.json")  # released on the bucket
  storage.opened(url)  # a later command: a new process's mirror, from the ledger
  assert not os.path.exists(os.path.join(trial, "claim.json"))  # pulled earlier, gone from the bucket: removed
  assert open(os.path.join(trial, "notes.txt")).read() == "mine"  # never the mirror's: kept
  ledger = metrics_lib.read_json(os.path.join(place.local, storage.LEDGER))
  assert "0123456789ab/metrics.jsonl" in ledger and "0123456789ab/notes.txt" not in ledger


def test_a_link_planted_in_the_mirror_is_not_followed(tmp_path, victim, monkeypatch):
  monkeypatch.setenv("SCALING_STAGING", str(tmp_path / "stage"))
  url = memory_sweep("planted_in_the_mirror")
  local = storage.mirror_dir(url)
  os.makedirs(local)
  os.symlink(victim, os.path.join(local, "0123456789ab"))  # the trial's folder in the mirror, a link to the victim
  with pytest.raises(storage.StorageError, match="outside"):
    storage.opened(url)
  import shutil
  shutil.rmtree(os.path.join(tmp_path, "stage", "mirror", "memory"))
  os.symlink(victim, os.path.join(tmp_path, "stage", "mirror", "memory"))  # higher up, inside the staging root
  with pytest.raises(storage.StorageError, match="outside"):
    storage.opened(url)


def test_files_the_run_writes_are_never_written_through_a_link(tmp_path, victim):
  target = victim / "precious.txt"
  os.symlink(target, tmp_path / "metrics.jsonl")
  with pytest.raises(OSError, match="a symbolic link"):
    containment.open_append(str(tmp_path / "metrics.jsonl"))
  os.symlink(target, tmp_path / f"summary.json.tmp{os.getpid()}")  # the atomic write's temporary name
  with pytest.raises(OSError, match="a symbolic link"):
    metrics_lib.write_json_atomic(str(tmp_path / "summary.json"), {"status": "done"})
  os.symlink(target, tmp_path / "config.json")
  with pytest.raises(metrics_lib.UnusableFile, match="a symbolic link"):
    metrics_lib.read_json(str(tmp_path / "config.json"))
  metrics_lib.write_json_atomic(str(tmp_path / "config.json"), {"a": 1})  # replaces the link itself
  assert not os.path.islink(tmp_path / "config.json")


def test_special_files_and_hard_links_are_never_written_through(tmp_path, victim):
  run = tmp_path / "run"
  run.mkdir()
  """A FIFO would block a writer (bounded time), a hard link would carry the bytes to the victim's file."""
  os.mkfifo(run / "metrics.jsonl")
  with pytest.raises(OSError, match="a special file"):  # at once: nothing reads the FIFO
    containment.open_append(str(run / "metrics.jsonl"))
  os.link(victim / "precious.txt", run / "attempts.jsonl")
  with pytest.raises(OSError, match="a hard link"):
    containment.open_append(str(run / "attempts.jsonl"), binary=True)
  os.symlink(victim, run / "tensorboard")
  (run / "checkpoints").mkdir()
  os.symlink(victim / "sub", run / "checkpoints" / "10")
  moved = {os.path.basename(path): what for path, _, what in containment.move_aside(str(run))}
  assert moved == {"metrics.jsonl": "a special file (not a regular file or directory)",
                   "attempts.jsonl": "a hard link (one of 2 names of one file)", "tensorboard": "a symbolic link",
                   "10": "a symbolic link"}
  assert containment.move_aside(str(run)) == []  # what was moved aside stays aside
  os.link(victim / "precious.txt", run / "summary.json")
  metrics_lib.write_json_atomic(str(run / "summary.json"), {"status": "done"})  # replaces the name only
  os.link(victim / "precious.txt", run / f"config.json.tmp{os.getpid()}")  # at the atomic write's temporary name
  with pytest.raises(OSError, match="a hard link"):  # refused before a byte of the victim changes
    metrics_lib.write_json_atomic(str(run / "config.json"), {"a": 1})


def test_a_manifest_whose_name_climbs_is_refused(tmp_path):
  """sweep.json's name names files beside the sweep (`sweeps extend`, `analysis compare`): a plain name only."""
  from scaling import rundir
  (tmp_path / "sweep.json").write_text(json.dumps({"name": "../../x", "trials": []}))
  with pytest.raises(ValueError, match="not a sweep manifest"):
    rundir.read_manifest(str(tmp_path))


def test_a_linked_trial_directory_is_damaged_even_with_a_fresh_claim_behind_it(tmp_path):
  import socket
  import time
  from scaling import rundir
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  (elsewhere / "claim.json").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                     "since": time.time()}))  # a live holder's, behind the link
  os.symlink(elsewhere, tmp_path / "0123456789ab")
  assert rundir.state_of(str(tmp_path / "0123456789ab")) == "damaged"


def test_a_link_planted_in_the_mirror_never_deletes_the_buckets_file(tmp_path, victim, monkeypatch):
  import fsspec
  monkeypatch.setenv("SCALING_STAGING", str(tmp_path / "stage"))
  url = memory_sweep("planted_then_pushed")
  place = storage.opened(url)
  metrics = os.path.join(place.local, "0123456789ab", "metrics.jsonl")
  os.remove(metrics)
  os.symlink(victim / "precious.txt", metrics)  # a synced file replaced by a link
  place.push()
  assert fsspec.filesystem("memory").cat_file("/planted_then_pushed/0123456789ab/metrics.jsonl") == \
      b'{"step": 1, "loss": 2.0}\n'  # neither deleted nor overwritten with the victim's bytes
