"""python -m sweeps {run,validate} FILE: validate a sweep YAML, or run it and analyse the results."""
import argparse
import sys

from sweeps import expand
from sweeps.spec import SpecError


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # One line and exit 2, like every other input error.
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv=None) -> int:
  parser = _Parser(prog="python -m sweeps")
  commands = parser.add_subparsers(dest="command", required=True)
  run_parser = commands.add_parser("run", help="train every trial of the sweep, then analyse it")
  run_parser.add_argument("file")
  run_parser.add_argument("--out", default="runs", help="output root; the sweep goes in OUT/<name>/")
  run_parser.add_argument("--no-progress", action="store_true")
  run_parser.add_argument("--no-analysis", action="store_true")
  validate_parser = commands.add_parser("validate", help="check the sweep file and list its trials")
  validate_parser.add_argument("file")
  args = parser.parse_args(argv)

  try:
    sweep = expand.load(args.file)
  except SpecError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2

  if args.command == "validate":
    print(f"{args.file}: sweep {sweep.name!r} is valid: {len(sweep.trials)} trial(s)")
    for trial in sweep.trials:
      axes = " ".join(f"{k}={v}" for k, v in trial.axes.items())
      print(f"  {trial.id}  {axes}")
    return 0

  from scaling import runtime
  from sweeps import local
  runtime.configure_jax()
  statuses = local.run(sweep, args.out, progress=not args.no_progress)
  directory = local.sweep_dir(args.out, sweep)
  print(f"sweep {sweep.name}: {sum(s == 'done' for s in statuses.values())}/{len(statuses)} trials done in {directory}")
  if args.no_analysis:
    return 0
  from analysis import report
  return report.main([directory])


if __name__ == "__main__":
  sys.exit(main())
