"""One trial on meshes (8,1,1), (2,4,1), (1,2,4) and a single device: same losses, parameters sharded by the rules.
A mixture of experts on expert-parallel meshes (data 2 x expert 4, expert 4 x tensor 2) against one device."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from scaling import mesh as mesh_lib
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # 8-device meshes in subprocesses


@pytest.fixture(scope="module")
def scripts(tmp_path_factory):
  """Both scripts started at once, the mesh runs split in two processes (gpt and vit, moe) beside the resume:
  each is mostly compiles that leave a core idle, so together they use both; output goes to files (a full
  pipe would stall a process nobody is reading yet)."""
  logs = tmp_path_factory.mktemp("mesh_scripts")
  commands = {"gpt_vit": ["mesh_equivalence.py", "gpt", "vit"], "moe": ["mesh_equivalence.py", "moe"],
              "resume": ["mesh_resume.py"]}
  processes = {}
  for name, (script, *args) in commands.items():
    out, err = (open(logs / f"{name}.{kind}", "w+") for kind in ("out", "err"))
    processes[name] = (subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", script), *args], cwd=ROOT,
                                        stdout=out, stderr=err, text=True), out, err)
  yield processes
  for process, out, err in processes.values():
    if process.poll() is None:
      process.kill()
    process.wait()
    out.close()
    err.close()


def _result(processes, name):
  """The one JSON line a script printed, once it has exited 0."""
  process, out, err = processes[name]
  process.wait(timeout=600)
  err.seek(0)
  assert process.returncode == 0, err.read()[-3000:]
  out.seek(0)
  return json.loads(out.read().strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(scripts):
  return {k: v for name in ("gpt_vit", "moe") for k, v in _result(scripts, name).items()}


def test_every_mesh_gives_the_single_device_loss_curve(runs):
  reference = np.array(runs["single"]["losses"])
  assert len(reference) == 20
  for name in ("data8", "data2_fsdp4", "fsdp2_tensor4"):
    np.testing.assert_allclose(runs[name]["losses"], reference, rtol=2e-5, atol=2e-5, err_msg=name)
    assert runs[name]["eval"] == pytest.approx(runs["single"]["eval"], abs=1e-4)


def test_a_vit_on_image_batches_gives_the_single_device_loss_curve(runs):
  reference = np.array(runs["vit_single"]["losses"])
  assert len(reference) == 20
  np.testing.assert_allclose(runs["vit_fsdp2_tensor4"]["losses"], reference, rtol=2e-5, atol=2e-5)
  shardings = runs["vit_fsdp2_tensor4"]["shardings"]
  assert shardings["['patch_embedding']['kernel'].value"] == "P(None, 'fsdp')"  # pixels replicated, embed -> fsdp
  assert shardings["['blocks'][0]['mlp']['up']['kernel'].value"] == "P('fsdp', 'tensor')"


def test_an_expert_parallel_mixture_of_experts_gives_the_single_device_loss_curve(runs):
  reference = runs["moe_single"]
  assert len(reference["losses"]) == 20 and max(reference["dropped"]) > 0  # the capacity drops tokens
  for name in ("moe_data2_expert4", "moe_expert4_tensor2"):
    np.testing.assert_allclose(runs[name]["losses"], reference["losses"], rtol=2e-5, atol=2e-5, err_msg=name)
    np.testing.assert_allclose(runs[name]["dropped"], reference["dropped"], atol=1e-6, err_msg=name)
    assert runs[name]["eval"] == pytest.approx(reference["eval"], abs=1e-4)
  shardings = runs["moe_expert4_tensor2"]["shardings"]
  assert shardings["['blocks'][0]['mlp']['up'].value"] == "P('expert', 'fsdp', 'tensor')"  # [expert, embed, mlp]
  assert shardings["['blocks'][0]['mlp']['down'].value"] == "P('expert', 'tensor', 'fsdp')"
  assert runs["moe_data2_expert4"]["mesh"] == {"data": 2, "fsdp": 1, "expert": 4, "tensor": 1}


def test_parameters_are_sharded_as_the_rules_say(runs):
  assert runs["data2_fsdp4"]["mesh"] == {"data": 2, "fsdp": 4, "expert": 1, "tensor": 1}
  up = "['blocks'][0]['mlp']['up']['kernel'].value"
  down = "['blocks'][0]['mlp']['down']['kernel'].value"
  embedding = "['token_embedding']['embedding'].value"
  tp = runs["fsdp2_tensor4"]["shardings"]
  assert tp[up] == "P('fsdp', 'tensor')"  # embed -> fsdp, mlp -> tensor
  assert tp[down] == "P('tensor', 'fsdp')"
  assert tp[embedding] == "P('tensor', 'fsdp')"  # vocab -> tensor
  assert tp["['blocks'][0]['mlp_norm']['scale'].value"] == "P(None,)"  # norms replicated
  # Pure data parallel: the same names, but fsdp and tensor have size 1, so every device holds it all.
  assert runs["data8"]["mesh"] == {"data": 8, "fsdp": 1, "expert": 1, "tensor": 1}
  assert runs["single"]["mesh"] == {"data": 1, "fsdp": 1, "expert": 1, "tensor": 1}


def test_mesh_shapes():
  assert mesh_lib.mesh_shape({"data": -1, "fsdp": 2, "tensor": 1}, 8) == (4, 2, 1, 1)
  assert mesh_lib.mesh_shape({"data": 1, "fsdp": 1, "tensor": 1}, 8) == (1, 1, 1, 1)
  with pytest.raises(mesh_lib.MeshError, match="needs 16 devices; 8 are available"):
    mesh_lib.mesh_shape({"data": 4, "fsdp": 4, "tensor": 1}, 8)
  with pytest.raises(mesh_lib.MeshError, match="not divisible"):
    mesh_lib.mesh_shape({"data": -1, "fsdp": 3, "tensor": 1}, 8)


def test_a_trial_checkpointed_on_8_devices_resumes_on_4_and_on_1(scripts):
  runs = _result(scripts, "resume")
  full = np.array(runs["full"])
  assert len(full) == 20
  for name, devices in (("to4", 4), ("to1", 1)):
    resumed = runs[name]
    assert resumed["status"] == "done" and resumed["resumed_from_step"] == 10
    assert resumed["from"] == {"data": 4, "fsdp": 2, "expert": 1, "tensor": 1}
    assert resumed["mesh"] == {"data": devices, "fsdp": 1, "expert": 1, "tensor": 1}
    assert len(resumed["losses"]) == 20  # each step logged once
    np.testing.assert_allclose(resumed["losses"], full, rtol=2e-5, atol=2e-5, err_msg=name)
