"""`python -m benchmarks.device_check`: on a CPU it says there is no accelerator and exits 0; `--small` runs every
section's plumbing (the trainer in bf16 and fp32, the Pallas kernels interpreted) on any backend."""
import jax
import pytest

from benchmarks import device_check

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="on an accelerator this runs the real checks")


def test_on_a_cpu_it_says_there_is_no_accelerator_and_exits_0(capsys):
  assert device_check.main([]) == 0
  assert "no accelerator here (JAX backend 'cpu')" in capsys.readouterr().out


@pytest.mark.slow  # every section at tiny shapes: about 20 s
def test_small_runs_every_section(capsys):
  assert device_check.main(["--small"]) == 0
  out = capsys.readouterr().out
  assert "4/4 sections ran, 0 failed, 0 skipped" in out, out
  for says in ("MFU", "krn f+b", "mean loss: xla", "largest |gap|"):
    assert says in out, out


def test_a_section_past_the_budget_is_skipped_and_said(capsys):
  assert device_check.main(["--small", "--budget_seconds", "-1"]) == 0
  out = capsys.readouterr().out
  assert out.count("skipped: ") == 4 and "0/4 sections ran, 0 failed, 4 skipped" in out, out
