"""Peak FLOP/s by device kind and the MFU fields every trial's summary carries (scaling/throughput.py)."""
import pytest

from scaling import throughput


@pytest.mark.parametrize("kind,peak", [("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12),
                                       ("NVIDIA A100-SXM4-40GB", 312e12), ("TPU v5 lite", 197e12),
                                       ("TPU v5", 459e12), ("TPU v4", 275e12), ("NVIDIA H200", 989e12)])
def test_peaks_match_the_most_specific_kind(kind, peak):
  assert throughput.peak_flops_per_second(kind) == peak


def test_mfu_on_a_known_device_and_none_on_a_cpu():
  fields = throughput.summary_fields(4.0e14, "NVIDIA H100 80GB HBM3", devices=2)
  assert fields == {"flops_per_second": 4.0e14, "peak_flops_per_second": 2 * 989e12,
                    "mfu": pytest.approx(4.0e14 / (2 * 989e12))}
  assert throughput.summary_fields(3.0e9, "cpu", devices=1) == {
      "flops_per_second": 3.0e9, "peak_flops_per_second": None, "mfu": None}
  assert throughput.summary_fields(None, "TPU v4", devices=4)["mfu"] is None  # no steady steps timed
  assert throughput.mfu(1e12, 2.0, 1e12) == 0.5
  with pytest.raises(ValueError):
    throughput.mfu(1e12, 0.0, 1e12)
