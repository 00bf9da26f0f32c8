"""`python -m analysis emergence`: emergence points of anyone's evaluations, from a CSV.

  python -m analysis emergence --csv FILE --x COL --metric COL [--group COL] [--continuous COL]
      [--log-x] [--bootstrap R] [--seed S]

One row per evaluated model (replicates welcome): scale `--x` (parameters, FLOPs, ...), the
metric `--metric` (e.g. exact-match accuracy), optionally a model family `--group` and a
continuous metric of the same outputs `--continuous` (e.g. the answer's log-probability).
Prints one JSON object {"groups": {GROUP: {...}}, "pooled": {...}} (without --group, only
"pooled"); each entry as analysis/emergence.py describes it: n_points, monotone and warning,
sigmoid (parameters and 95% intervals), emergence_point and emergence_point_ci (units of
--x), and with --continuous the continuous metric's own entry and a verdict. --log-x fits the
sigmoid in ln x (x must then be positive). Rows with a blank metric (or blank continuous
metric) are skipped and counted in `skipped_rows`.

Bad input exits 2 with one line: everything the CSV reader refuses (analysis/csv_input.py: a
missing file or column, a header naming a column twice, a cell that is not a finite number, each
with its line and data row), x <= 0 with --log-x, an empty --group cell, more than MAX_GROUPS
(1,000) groups (each is a sigmoid fit with its bootstrap), fewer than 2 usable rows, --bootstrap
out of range. More than 20 groups show their progress on stderr.
"""
import sys

import numpy as np
import pandas as pd

from analysis import csv_input, emergence, fit_cli
from analysis.fit_cli import UsageError

MAX_GROUPS = 1000  # each is a sigmoid fit with its bootstrap: 1,000 six-rung groups took 136 s with 200 resamples
PROGRESS_GROUPS = 20  # more groups than this show progress on stderr


def _parser():
  parser = fit_cli._Parser(prog="python -m analysis emergence",
                           description="Emergence points (sigmoid fits with intervals) from a CSV; print JSON.")
  parser.add_argument("--csv", required=True, help="evaluations, one row per model")
  parser.add_argument("--x", required=True, help="scale column (parameters, FLOPs, ...)")
  parser.add_argument("--metric", required=True, help="metric column (e.g. exact-match accuracy)")
  parser.add_argument("--group", help="column naming each model's family: one entry per family, plus pooled")
  parser.add_argument("--continuous", help="a continuous metric of the same outputs (e.g. log-probability)")
  parser.add_argument("--log-x", action="store_true", help="fit in ln x (x must be positive)")
  parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for intervals (0: none)")
  parser.add_argument("--seed", type=int, default=0)
  return parser


def _read(args) -> csv_input.Table:
  columns = {"--x": args.x, "--metric": args.metric, "--continuous": args.continuous, "--group": args.group}
  return csv_input.read(args.csv, {flag: name for flag, name in columns.items() if name is not None})


def _groups(table: csv_input.Table, keep: np.ndarray) -> list:
  """(label, rows with a metric, rows skipped) of each --group label that has a metric, in label order, found
  in one pass over the rows rather than one scan of them per label; refused beyond MAX_GROUPS."""
  labels = table.text("--group")
  blank = [i for i, label in enumerate(labels) if not label.strip()]
  if blank:
    raise UsageError(f"{table.at(blank[0])}: column {table.columns['--group']!r} (--group) has {len(blank)} empty "
                     f"cells; the first, in data row {blank[0] + 1}: every row needs a group")
  codes, names = pd.factorize(labels, sort=True)
  kept = np.flatnonzero(keep)
  sizes = np.bincount(codes[kept], minlength=len(names))
  rows = np.split(kept[np.argsort(codes[kept], kind="stable")], np.cumsum(sizes)[:-1])
  skipped = np.bincount(codes[~keep], minlength=len(names))
  groups = [(str(names[g]), at, int(skipped[g])) for g, at in enumerate(rows) if len(at)]
  if len(groups) > MAX_GROUPS:
    raise UsageError(f"{table.path}: column {table.columns['--group']!r} (--group) has {len(groups)} groups, at most "
                     f"{MAX_GROUPS} (each is fitted on its own, with --bootstrap resamples): group by a coarser "
                     "column, or keep fewer groups in the CSV")
  return groups


def _entry(x, metric, continuous, args) -> dict:
  entry = emergence.analyze(x, metric, continuous, log_x=args.log_x, bootstrap=args.bootstrap, seed=args.seed)
  return _finite(emergence.jsonable(entry))


def _finite(value):
  """JSON has no NaN or infinity: those become null."""
  if isinstance(value, dict):
    return {k: _finite(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_finite(v) for v in value]
  if isinstance(value, (float, np.floating)):
    return fit_cli.json_number(value)
  if isinstance(value, np.integer):
    return int(value)
  return value


def _progress(groups: int):
  """A bar of groups fitted, on stderr, when there are enough of them to take a while (else None)."""
  if groups <= PROGRESS_GROUPS:
    return None
  from scaling import progress
  return progress.bar(total=groups, initial=0, desc="emergence", unit="group", leave=False)


def run(argv) -> dict:
  args = _parser().parse_args(argv)
  if not 0 <= args.bootstrap <= fit_cli.MAX_BOOTSTRAP:
    raise UsageError(f"--bootstrap {args.bootstrap}: must be 0 to {fit_cli.MAX_BOOTSTRAP}")
  if args.seed < 0:
    raise UsageError("--seed: must be 0 or more")
  table = _read(args)
  x = table.numbers("--x")
  metric = table.numbers("--metric", blank_ok=True)
  continuous = None if args.continuous is None else table.numbers("--continuous", blank_ok=True)
  if args.log_x and (x <= 0).any():
    row = int(np.argmax(x <= 0))
    raise UsageError(f"{table.at(row)}: column {args.x!r} (--x) must be positive with --log-x "
                     f"(data row {row + 1}: {x[row]:g})")
  keep = np.isfinite(metric) & (np.isfinite(continuous) if continuous is not None else True)
  skipped = int((~keep).sum())
  if keep.sum() < 2:
    raise UsageError(f"{args.csv}: {int(keep.sum())} rows with a metric ({skipped} blank); need at least 2")
  if args.bootstrap * int(keep.sum()) > fit_cli.MAX_BOOTSTRAP_CELLS:
    raise UsageError(f"--bootstrap {args.bootstrap}: too many resamples for {int(keep.sum())} rows")
  out = {"csv": args.csv, "x": args.x, "metric": args.metric, "log_x": args.log_x, "bootstrap": args.bootstrap,
         "skipped_rows": skipped}
  pick = lambda at: (x[at], metric[at], None if continuous is None else continuous[at])
  if args.group is not None:
    groups = _groups(table, keep)
    out["groups"] = {}
    bar = _progress(len(groups))
    for label, at, skipped_in_group in groups:
      out["groups"][label] = _entry(*pick(at), args) | {"skipped_rows": skipped_in_group}
      if bar is not None:
        bar.update()
    if bar is not None:
      bar.close()
  out["pooled"] = _entry(*pick(keep), args)
  return out


def main(argv=None) -> int:
  return fit_cli.json_command(run, argv)


if __name__ == "__main__":
  sys.exit(main())
