"""Model FLOPs utilisation: achieved training FLOP/s over the hardware peak.

  MFU = flops_per_step / step_seconds / peak_flops_per_second

flops_per_step is *model* FLOPs (e.g. 6 * n_params * tokens + attention), not
what the hardware executes: recomputation (rematerialisation, flash-attention
backward) does not count, so MFU compares implementations fairly.

Library use (the table and these functions live in scaling/throughput.py; every trial's
summary.json records flops_per_second, peak_flops_per_second and mfu):
  from scaling import throughput
  peak = throughput.peak_flops_per_second()     # from jax.devices()[0]
  util = throughput.mfu(flops_per_token * tokens_per_step, step_seconds, peak)

CLI (peak looked up from the local device unless --peak_tflops is given):
  python -m benchmarks.mfu --step_seconds 0.42 --flops_per_token 1.1e9 \
      --tokens_per_step 524288 [--device_kind "NVIDIA H100 80GB HBM3"] \
      [--num_devices 8] [--peak_tflops 989]
"""

import argparse

from scaling.throughput import PEAK_BF16_FLOPS_PER_SECOND, mfu, peak_flops_per_second  # noqa: F401


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
