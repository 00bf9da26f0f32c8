"""`python -m analysis goodput`: how often to checkpoint a job that fails, and what goodput to expect.

  python -m analysis goodput --devices N --device-mtbf-hours H --checkpoint-seconds S
      --restart-seconds R [--step-seconds T] [--interval-seconds I | --checkpoint-every-steps K]
      [--work-hours W] [--samples N] [--seed X]

Model. Every device fails independently after an exponential time of mean H hours, so the
job as a whole fails as a Poisson process with system MTBF M = H * 3600 / N seconds.
Training alternates a segment of tau seconds of work with a blocking checkpoint of S
seconds. A failure anywhere in a segment (work or save) loses it back to the last completed
checkpoint; then a restart of R seconds (process start, restore, recompile) follows, and
failures strike restarts too, each one starting the restart over (Daly 2006). The expected
wall time of one segment and the goodput (useful work / wall time) are

  E(tau) = M exp(R/M) (exp((tau + S)/M) - 1)        G(tau) = tau / E(tau)

Intervals reported:
  young    sqrt(2 S M)                                    (first order, Young 1974)
  daly     sqrt(2 S M) (1 + sqrt(S/2M)/3 + (S/2M)/9) - S  if S < 2M, else M  (Daly 2006)
  optimum  the exact maximiser of G: d/dtau (E/tau) = 0 gives exp((tau+S)/M) (1 - tau/M) = 1,
           tau* = M (1 + W0(-exp(-1 - S/M))), W0 the principal Lambert W. R scales E by
           exp(R/M) and so changes the goodput, not the interval.
With --step-seconds T the optimum is also given in whole steps (the better of floor and
ceil of tau*/T, at least 1); --interval-seconds I or --checkpoint-every-steps K (which needs
T) adds the goodput at your own interval.

Monte-Carlo: --samples jobs of --work-hours of work each, simulated event by event at tau*
(and at your interval): the goodput of all of them (total work / total wall time), a 95%
percentile interval of the goodput of one job, and the mean number of failures per job
(restart failures included). Seeded, so the same flags print the same numbers.

Output: one JSON object (indent 2): inputs (with system_mtbf_seconds), young, daly,
optimum, yours (only with I or K), monte_carlo, summary. A number that is undefined is
null: an interval that overflows a float, steps past 2^53, and the Monte-Carlo fields (with
a `note`) when one save or restart alone is struck so often that goodput is ~0 at any
interval (the analytic goodput then reads 0.0 or close). Bad input exits 2 with one line
`error: --flag: reason`: non-numbers, values that are zero, negative, inf or nan, missing
flags, --devices not a whole number (1 to 1e9), --samples over 100,000, --work-hours over
1e5, both I and K, K without T, or a Monte-Carlo of more than 2e7 events.
"""
import argparse
import json
import math
import re
import sys

import numpy as np
import scipy.special

# Input bounds: a planning question about real jobs, answered in seconds of CPU.
MAX_DEVICES = 1e9
MAX_SAMPLES = 100_000
MAX_WORK_HOURS = 1e5
MAX_EVENTS = 2e7  # Samples x events per job: the simulation's loop iterations x lanes.
MAX_RESTART_ATTEMPTS = 1e5  # exp(R/M): one struck restart draws about this many failures at once.
MAX_STEPS = 2 ** 53  # Steps beyond this are not whole numbers in a float.
# Below this S/M the Lambert W argument sits within rounding of its branch point -1/e, so
# the optimum comes from W0's series there instead (relative error ~ (2 S/M)^2 / 20, < 1e-12).
SERIES_SAVE_RATIO = 1e-6


# ----------------------------------------------------------------------------- the model

def _log_expm1(x):
  """log(exp(x) - 1) for x >= 0 without overflow: x + log1p(-exp(-x)) once exp(x) is large."""
  x = np.asarray(x, dtype=float)
  with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
    small = np.log(np.expm1(np.minimum(x, 30.0)))
    large = x + np.log1p(-np.exp(-x))
  return np.where(x > 30.0, large, small)


def _log_segment_seconds(tau, mtbf, save, restart):
  return np.log(mtbf) + restart / mtbf + _log_expm1((np.asarray(tau, dtype=float) + save) / mtbf)


def _scalar_or_array(values):
  return float(values) if np.ndim(values) == 0 else values


def segment_seconds(tau, mtbf, save, restart):
  """Expected wall seconds to get one segment of `tau` seconds of work and its save done.

  inf where it overflows a float (S, R or tau hundreds of MTBFs long). Takes arrays of tau.
  """
  with np.errstate(over="ignore"):
    return _scalar_or_array(np.exp(_log_segment_seconds(tau, mtbf, save, restart)))


def goodput(tau, mtbf, save, restart):
  """Expected fraction of wall time spent on work that is kept, checkpointing every `tau` s.

  Computed in log space, so it underflows cleanly to 0.0 rather than to inf/inf.
  """
  tau = np.asarray(tau, dtype=float)
  with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
    log_goodput = np.log(tau) - _log_segment_seconds(tau, mtbf, save, restart)
    value = np.where(np.isfinite(tau) & (tau > 0), np.exp(log_goodput), 0.0)
  return _scalar_or_array(value)


def young_interval(mtbf, save):
  """Young's first-order interval sqrt(2 S M): good while S << M."""
  return math.sqrt(2.0 * save * mtbf)


def daly_interval(mtbf, save):
  """Daly's higher-order interval; M itself once the save takes 2 MTBFs or more."""
  if save >= 2.0 * mtbf:
    return float(mtbf)
  ratio = save / (2.0 * mtbf)
  return math.sqrt(2.0 * save * mtbf) * (1.0 + math.sqrt(ratio) / 3.0 + ratio / 9.0) - save


def optimal_interval(mtbf, save):
  """The tau maximising goodput(tau): M (1 + W0(-exp(-1 - S/M))), always in [0, M].

  Independent of the restart time. For tiny S/M, W0's branch-point series in
  p = sqrt(2 (1 - exp(-S/M))) keeps the digits that 1 + W0 would cancel away.
  """
  ratio = save / mtbf
  if ratio < SERIES_SAVE_RATIO:
    p = math.sqrt(-2.0 * math.expm1(-ratio))
    return mtbf * (p - p ** 2 / 3.0 + 11.0 * p ** 3 / 72.0 - 43.0 * p ** 4 / 540.0)
  branch = scipy.special.lambertw(-math.exp(-1.0 - ratio), k=0).real
  return mtbf * (1.0 + branch)


def best_whole_steps(tau, step, mtbf, save, restart):
  """The whole number of steps (>= 1) next to tau/step with the higher goodput; None past 2^53."""
  steps = tau / step
  if not steps <= MAX_STEPS:
    return None
  candidates = sorted({max(1, math.floor(steps)), max(1, math.ceil(steps))})
  return max(candidates, key=lambda k: goodput(k * step, mtbf, save, restart))


def expected_events(tau, mtbf, save, restart, work_seconds):
  """Expected events when simulating one job: segment ends plus failures, restarts' included.

  Segments x (1 + failures per segment), failures per segment = expm1((tau+S)/M) exp(R/M).
  The simulation's cost is samples times this; it may be inf, which the cost bound reads.
  """
  segments = np.ceil(work_seconds / tau)
  longest = min(tau, work_seconds) + save
  with np.errstate(over="ignore", invalid="ignore"):
    failures_per_segment = np.expm1(longest / mtbf) * np.exp(restart / mtbf)
    return float(segments * (1.0 + failures_per_segment))


# ------------------------------------------------------------------------ the simulation

def _restart_seconds(rng, count, mtbf, restart):
  """Wall seconds and failures of `count` restarts, each struck until one attempt survives R.

  Failed attempts before the good one are geometric (each survives with exp(-R/M)); each
  lasts an exponential truncated to [0, R), drawn by its inverse CDF. One shot, no loop.
  """
  strike = -math.expm1(-restart / mtbf)
  failed = rng.geometric(1.0 - strike, size=count) - 1
  lost = -mtbf * np.log1p(-strike * rng.random(int(failed.sum())))
  owner = np.repeat(np.arange(count), failed)
  return restart + np.bincount(owner, weights=lost, minlength=count), failed


def simulate(tau, mtbf, save, restart, work_seconds, samples, seed):
  """Monte-Carlo of `samples` independent jobs of `work_seconds` of work, checkpointing every tau.

  Vectorised over jobs: each loop iteration gives every unfinished job one event, its
  current segment completing or a failure striking it (then a restart, struck maybe
  again). The last segment is what work remains, plus its save. Cost grows with
  samples * expected_events(...); callers bound it.

  Returns goodput_mean (total work / total wall time, all jobs: the estimate of G),
  goodput_interval ([2.5, 97.5] percentiles of one job's goodput), failures_mean and
  goodputs (one per job).
  """
  if not (tau > 0 and mtbf > 0 and save >= 0 and restart >= 0 and work_seconds > 0 and samples >= 1):
    raise ValueError("simulate: tau, mtbf and work_seconds must be > 0, save and restart >= 0, samples >= 1")
  rng = np.random.default_rng(seed)
  full_segments = int(work_seconds // tau)
  last_work = work_seconds - full_segments * tau
  if last_work <= 1e-9 * tau:  # Rounding of a whole multiple, not a real short segment.
    last_work = 0.0
  segments = full_segments + (last_work > 0)

  wall = np.zeros(samples)
  failures = np.zeros(samples, dtype=np.int64)
  segments_done = np.zeros(samples, dtype=np.int64)
  active = np.arange(samples)
  while active.size:
    length = np.where(segments_done[active] < full_segments, tau, last_work) + save
    time_to_failure = rng.exponential(mtbf, size=active.size)
    survived = time_to_failure >= length
    wall[active] += np.where(survived, length, time_to_failure)
    struck = active[~survived]
    if struck.size:
      restart_wall, restart_failures = _restart_seconds(rng, struck.size, mtbf, restart)
      wall[struck] += restart_wall
      failures[struck] += 1 + restart_failures
    segments_done[active[survived]] += 1
    active = active[segments_done[active] < segments]

  goodputs = work_seconds / wall
  low, high = np.percentile(goodputs, [2.5, 97.5])
  return {"goodput_mean": float(samples * work_seconds / wall.sum()),
          "goodput_interval": [float(low), float(high)],
          "failures_mean": float(failures.mean()),
          "goodputs": goodputs}


# ------------------------------------------------------------------------------ the CLI

class UsageError(Exception):
  """A bad flag; its message is the one line printed to stderr."""


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # argparse would print usage and exit itself; name the flag instead.
    flag = re.match(r"argument (-[^/:\s]+)[^:]*: (.*)", message)
    if flag:
      raise UsageError(f"{flag[1]}: {flag[2]}")
    unknown = re.match(r"unrecognized arguments: (\S+)", message)
    if unknown:
      raise UsageError(f"{unknown[1]}: not a flag of `python -m analysis goodput` (see --help)")
    raise UsageError(f"goodput: {message}")


def _positive(maximum=math.inf, unit=""):
  def parse(text):
    try:
      value = float(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected a positive number{unit}, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
      raise argparse.ArgumentTypeError(f"expected a positive, finite number{unit}, got {text!r}")
    if value > maximum:
      raise argparse.ArgumentTypeError(f"at most {maximum:g}{unit}, got {text}")
    return value
  return parse


def _whole(minimum, maximum):
  def parse(text):
    try:
      value = float(text)
    except ValueError:
      value = math.nan
    if not (math.isfinite(value) and value.is_integer() and value >= minimum):
      raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
    if value > maximum:
      raise argparse.ArgumentTypeError(f"at most {maximum:g}, got {text}")
    return int(value)
  return parse


REQUIRED = {"devices": "the number of devices in the job",
            "device_mtbf_hours": "one device's mean time between failures, in hours",
            "checkpoint_seconds": "seconds one blocking checkpoint save takes",
            "restart_seconds": "seconds from a failure to training again: start, restore, recompile"}


def _parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="python -m analysis goodput", allow_abbrev=False,
                   description="Checkpoint interval and goodput of a job that fails; prints JSON.")
  parser.add_argument("--devices", type=_whole(1, MAX_DEVICES), help=REQUIRED["devices"])
  parser.add_argument("--device-mtbf-hours", type=_positive(unit=" of hours"),
                      help=REQUIRED["device_mtbf_hours"])
  parser.add_argument("--checkpoint-seconds", type=_positive(unit=" of seconds"),
                      help=REQUIRED["checkpoint_seconds"])
  parser.add_argument("--restart-seconds", type=_positive(unit=" of seconds"),
                      help=REQUIRED["restart_seconds"])
  parser.add_argument("--step-seconds", type=_positive(unit=" of seconds"),
                      help="seconds per training step: intervals in whole steps")
  parser.add_argument("--interval-seconds", type=_positive(unit=" of seconds"),
                      help="your checkpoint interval, to compare")
  parser.add_argument("--checkpoint-every-steps", type=_whole(1, MAX_STEPS),
                      help="your checkpoint interval in steps (needs --step-seconds)")
  parser.add_argument("--work-hours", type=_positive(MAX_WORK_HOURS, " of hours"), default=24.0,
                      help="hours of work per simulated job (default 24)")
  parser.add_argument("--samples", type=_whole(1, MAX_SAMPLES), default=2000,
                      help="simulated jobs (default 2000)")
  parser.add_argument("--seed", type=_whole(0, 2 ** 63 - 1), default=0,
                      help="seed of the Monte-Carlo (default 0)")
  return parser


def _check(args):
  for name, meaning in REQUIRED.items():
    if getattr(args, name) is None:
      raise UsageError(f"--{name.replace('_', '-')}: required ({meaning})")
  if args.interval_seconds is not None and args.checkpoint_every_steps is not None:
    raise UsageError("--checkpoint-every-steps: give it or --interval-seconds, not both")
  if args.checkpoint_every_steps is not None and args.step_seconds is None:
    raise UsageError("--checkpoint-every-steps: needs --step-seconds to turn steps into seconds")
  if not math.isfinite(args.device_mtbf_hours * 3600.0 / args.devices):
    raise UsageError(f"--device-mtbf-hours: {args.device_mtbf_hours:g} hours overflows in seconds")


def _number(value):
  """A JSON number, or null for inf/nan (JSON has neither)."""
  value = float(value)
  return value if math.isfinite(value) else None


def _interval(tau, mtbf, save, restart):
  return {"interval_seconds": _number(tau), "goodput": _number(goodput(tau, mtbf, save, restart))}


def _count(events):
  return f"{events:.2g}" if math.isfinite(events) else "unboundedly many"


def _not_simulated(why):
  return {"goodput_mean": None, "goodput_interval": [None, None], "failures_mean": None,
          "note": f"not simulated: {why}"}


def _monte_carlo(intervals, mtbf, save, restart, work_seconds, samples, seed):
  """Simulated goodput at each named interval; null fields when no simulation could finish."""
  with np.errstate(over="ignore", invalid="ignore"):
    failures_per_save = np.expm1(save / mtbf) * np.exp(restart / mtbf)
  restart_attempts = math.exp(min(restart / mtbf, 700.0))
  if not (failures_per_save <= MAX_EVENTS and restart_attempts <= MAX_RESTART_ATTEMPTS):
    # Goodput ~0 whatever the interval or job length: nothing to simulate in bounded time.
    why = "a single checkpoint or restart rarely survives, goodput ~0 at any interval"
    return {name: _not_simulated(why) for name in intervals}
  per_job = sum(expected_events(tau, mtbf, save, restart, work_seconds) for tau in intervals.values())
  if not per_job <= MAX_EVENTS:  # Fewer samples cannot help; shorter jobs can.
    raise UsageError(f"--work-hours: one simulated job would take {_count(per_job)} events "
                     f"(at most {MAX_EVENTS:.0e} in all); lower --work-hours")
  if samples * per_job > MAX_EVENTS:
    raise UsageError(f"--samples: the Monte-Carlo would take {_count(samples * per_job)} events "
                     f"(at most {MAX_EVENTS:.0e}); lower --samples or --work-hours")
  out = {}
  for name, tau in intervals.items():
    result = simulate(tau, mtbf, save, restart, work_seconds, samples, seed)
    result.pop("goodputs")
    out[name] = result
  return out


def _duration(seconds):
  if seconds is None:
    return "never"
  if seconds < 60:
    return f"{seconds:.3g} s"
  for unit, size, below in (("min", 60, 3600), ("h", 3600, 48 * 3600)):
    if seconds < below:
      return f"{seconds / size:.1f} {unit}"
  return f"{seconds / 86400:.1f} days"


def _percent(fraction):
  if fraction is None:
    return "n/a"
  return f"{100 * fraction:.{3 if 0.999 <= fraction < 1 else 1}f}%"  # 99.999%, not 100.0%.


def _simulated(result):
  if result["goodput_mean"] is None:
    return "MC not run"
  low, high = result["goodput_interval"]
  return f"MC {_percent(result['goodput_mean'])} [{_percent(low)}, {_percent(high)}]"


def _summary(report):
  """One plain sentence: failure rate, best interval and its goodput, then yours."""
  optimum = report["optimum"]
  text = (f"a failure every {_duration(report['inputs']['system_mtbf_seconds'])}; checkpoint "
          f"every {_duration(optimum['interval_seconds'])}")
  expected = optimum["goodput"]
  if optimum.get("checkpoint_every_steps") is not None:
    steps = optimum["checkpoint_every_steps"]
    text += f" ({steps} step{'s' if steps > 1 else ''})"
    expected = optimum["goodput_at_steps"]
  text += f" for {_percent(expected)} goodput ({_simulated(report['monte_carlo']['optimum'])})"
  if "yours" in report:
    yours = report["yours"]
    text += (f"; yours, every {_duration(yours['interval_seconds'])}: {_percent(yours['goodput'])} "
             f"({_simulated(report['monte_carlo']['yours'])})")
  return text


def plan(args) -> dict:
  """The whole report for parsed, checked flags."""
  mtbf = args.device_mtbf_hours * 3600.0 / args.devices
  save, restart, step = args.checkpoint_seconds, args.restart_seconds, args.step_seconds
  report = {"inputs": {**vars(args), "system_mtbf_seconds": mtbf}}
  report["young"] = _interval(young_interval(mtbf, save), mtbf, save, restart)
  report["daly"] = _interval(daly_interval(mtbf, save), mtbf, save, restart)
  tau = optimal_interval(mtbf, save)
  report["optimum"] = _interval(tau, mtbf, save, restart)
  if step is not None:
    steps = best_whole_steps(tau, step, mtbf, save, restart)
    report["optimum"]["checkpoint_every_steps"] = steps
    report["optimum"]["goodput_at_steps"] = (
        None if steps is None else _number(goodput(steps * step, mtbf, save, restart)))

  intervals = {"optimum": tau}
  yours = args.interval_seconds
  if args.checkpoint_every_steps is not None:
    yours = args.checkpoint_every_steps * step
  if yours is not None:
    report["yours"] = _interval(yours, mtbf, save, restart)
    if args.checkpoint_every_steps is not None:
      report["yours"]["checkpoint_every_steps"] = args.checkpoint_every_steps
    if math.isfinite(yours):
      intervals["yours"] = yours
  work_seconds = args.work_hours * 3600.0
  report["monte_carlo"] = {"work_hours": args.work_hours, "samples": args.samples,
                           **_monte_carlo(intervals, mtbf, save, restart, work_seconds,
                                          args.samples, args.seed)}
  if "yours" in report and "yours" not in report["monte_carlo"]:
    report["monte_carlo"]["yours"] = _not_simulated("your interval overflows a float")
  report["summary"] = _summary(report)
  return report


def _attach_negative_values(argv):
  """`--flag -5` as `--flag=-5`: argparse takes `-1e5` or `-inf` for a flag and says nothing useful."""
  out = []
  for token in argv:
    if out and out[-1].startswith("--") and "=" not in out[-1] and token.startswith("-"):
      try:
        float(token)
      except ValueError:
        pass
      else:
        out[-1] = f"{out[-1]}={token}"
        continue
    out.append(token)
  return out


def main(argv=None) -> int:
  argv = _attach_negative_values(list(sys.argv[1:] if argv is None else argv))
  try:
    args = _parser().parse_args(argv)
    _check(args)
    report = plan(args)
  except UsageError as err:
    message = str(err).replace("\r", "\\r").replace("\n", "\\n")  # Always one line.
    print(f"error: {message}", file=sys.stderr)
    return 2
  json.dump(report, sys.stdout, indent=2, allow_nan=False)
  sys.stdout.write("\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
