"""Model FLOPs utilisation: achieved training FLOP/s over the hardware peak.

  MFU = flops_per_step / step_seconds / peak_flops_per_second

flops_per_step is *model* FLOPs (e.g. 6 * n_params * tokens + attention), not
what the hardware executes: recomputation (rematerialisation, flash-attention
backward) does not count, so MFU compares implementations fairly.

Library use:
  from benchmarks import mfu
  peak = mfu.peak_flops_per_second()            # from jax.devices()[0]
  util = mfu.mfu(flops_per_token * tokens_per_step, step_seconds, peak)

CLI (peak looked up from the local device unless --peak_tflops is given):
  python -m benchmarks.mfu --step_seconds 0.42 --flops_per_token 1.1e9 \
      --tokens_per_step 524288 [--device_kind "NVIDIA H100 80GB HBM3"] \
      [--num_devices 8] [--peak_tflops 989]
"""

import argparse

# Dense (no 2:4 sparsity) bf16 peak FLOP/s per device, from vendor spec sheets.
# Keys are lower-case substrings of `jax.Device.device_kind`, most specific
# first ("h100 pcie" before "h100").
PEAK_BF16_FLOPS_PER_SECOND = (
    ("h200", 989e12),
    ("h100 pcie", 756e12),
    ("h100 nvl", 835e12),
    ("h100", 989e12),  # SXM, e.g. "NVIDIA H100 80GB HBM3"
    ("a100", 312e12),
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
  """Dense bf16 peak FLOP/s of one device, or None if unknown (e.g. CPU).

  Args:
    device_kind: a `jax.Device.device_kind`; defaults to jax.devices()[0]'s.
  """
  if device_kind is None:
    import jax  # Deferred: the table is usable without initialising JAX.
    device_kind = jax.devices()[0].device_kind
  kind = device_kind.lower()
  for key, peak in PEAK_BF16_FLOPS_PER_SECOND:
    if key in kind:
      return peak
  return None


def mfu(flops_per_step: float, step_seconds: float, peak: float) -> float:
  """Model FLOPs utilisation in [0, 1].

  Args:
    flops_per_step: model FLOPs of one optimizer step (all devices).
    step_seconds: wall time of one step, in seconds.
    peak: peak FLOP/s of all devices the step ran on (per-device peak times
      the device count).
  """
  if step_seconds <= 0 or peak <= 0:
    raise ValueError(f"step_seconds={step_seconds} and peak={peak} must be "
                     "positive.")
  return flops_per_step / step_seconds / peak


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--step_seconds", type=float, required=True)
  parser.add_argument("--flops_per_token", type=float, required=True,
                      help="model FLOPs per token (forward + backward)")
  parser.add_argument("--tokens_per_step", type=float, required=True)
  parser.add_argument("--num_devices", type=int, default=1)
  parser.add_argument("--device_kind", default=None,
                      help="look up this device instead of the local one")
  parser.add_argument("--peak_tflops", type=float, default=None,
                      help="per-device peak, overrides the lookup table")
  args = parser.parse_args(argv)

  if args.peak_tflops is not None:
    per_device_peak, source = args.peak_tflops * 1e12, "--peak_tflops"
  else:
    per_device_peak = peak_flops_per_second(args.device_kind)
    source = args.device_kind or "local device"
    if per_device_peak is None:
      parser.error(f"No peak FLOP/s known for {source}; pass --peak_tflops.")
  flops_per_step = args.flops_per_token * args.tokens_per_step
  achieved = flops_per_step / args.step_seconds
  utilisation = mfu(flops_per_step, args.step_seconds,
                    per_device_peak * args.num_devices)
  print(f"peak        {per_device_peak / 1e12:9.1f} TFLOP/s per device "
        f"({source}) x {args.num_devices}")
  print(f"achieved    {achieved / 1e12:9.1f} TFLOP/s "
        f"({achieved / args.num_devices / 1e12:.1f} per device)")
  print(f"tokens/s    {args.tokens_per_step / args.step_seconds:11.0f}")
  print(f"MFU         {100 * utilisation:9.1f} %")
  return utilisation


if __name__ == "__main__":
  main()
