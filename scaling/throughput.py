"""Achieved FLOP/s and model FLOPs utilisation (MFU) of a trial's steady-state steps.

  MFU = model FLOPs per second / (peak FLOP/s per device x devices)

Model FLOPs are the trial's exact count (models/counting.py): what the model needs, not what the
hardware executes, so rematerialisation or a flash-attention backward does not raise MFU and
implementations compare fairly. Peaks are dense (no 2:4 sparsity) bf16 figures from the vendors'
spec sheets; a CPU has none, so there MFU is left out and only the achieved FLOP/s is recorded.
"""

# Lower-case substrings of `jax.Device.device_kind`, most specific first ("h100 pcie" before "h100").
PEAK_BF16_FLOPS_PER_SECOND = (
    ("h200", 989e12),
    ("h100 pcie", 756e12),
    ("h100 nvl", 835e12),
    ("h100", 989e12),  # SXM, e.g. "NVIDIA H100 80GB HBM3"
    ("gh200", 989e12),
    ("b200", 2250e12),
    ("a100", 312e12),
    ("l40s", 362e12),
    ("a10g", 125e12),
    ("l4", 121e12),
    ("v100", 125e12),  # fp16 tensor cores (no bf16)
    ("tpu v6 lite", 918e12),  # v6e (Trillium)
    ("tpu v6e", 918e12),
    ("tpu v5 lite", 197e12),  # v5e
    ("tpu v5e", 197e12),
    ("tpu v5p", 459e12),
    ("tpu v5", 459e12),  # v5p reports "TPU v5"
    ("tpu v4", 275e12),
    ("tpu v3", 123e12),
    ("tpu v2", 46e12),
)


def peak_flops_per_second(device_kind: str | None = None) -> float | None:
  """Dense bf16 peak FLOP/s of one device of this kind (default: jax.devices()[0]'s), or None if unknown."""
  if device_kind is None:
    import jax  # Deferred: the table is usable without initialising JAX.
    device_kind = jax.devices()[0].device_kind
  kind = device_kind.lower()
  return next((peak for key, peak in PEAK_BF16_FLOPS_PER_SECOND if key in kind), None)


def mfu(flops_per_step: float, step_seconds: float, peak: float) -> float:
  """Model FLOPs utilisation in [0, 1]: flops_per_step (all devices) over step_seconds, over peak (all devices)."""
  if step_seconds <= 0 or peak <= 0:
    raise ValueError(f"step_seconds={step_seconds} and peak={peak} must be positive.")
  return flops_per_step / step_seconds / peak


def summary_fields(flops_per_second, device_kind: str, devices: int) -> dict:
  """What summary.json records: achieved FLOP/s, the peak of the devices the trial ran on, and MFU (None if unknown)."""
  peak = peak_flops_per_second(device_kind)
  total_peak = peak * devices if peak else None
  return {"flops_per_second": flops_per_second, "peak_flops_per_second": total_peak,
          "mfu": flops_per_second / total_peak if flops_per_second and total_peak else None}
