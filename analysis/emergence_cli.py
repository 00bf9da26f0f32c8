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

Bad input exits 2 with one line: a missing file or column, a non-numeric value, x <= 0 with
--log-x, fewer than 2 usable rows, --bootstrap out of range.
"""
import sys

import numpy as np
import pandas as pd

from analysis import emergence, fit_cli
from analysis.fit_cli import UsageError


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


def _numbers(df, name, flag, path, blank_ok):
  """A numeric column; blanks allowed (NaN) where blank_ok, any other non-number refused."""
  if name not in df.columns:
    raise UsageError(f"{path}: no column {name!r} (pass {flag} COL; columns: {fit_cli._column_list(df)})")
  raw = df[name]
  values = pd.to_numeric(raw, errors="coerce").to_numpy(float)
  blank = raw.isna().to_numpy() | raw.astype(str).str.strip().eq("").to_numpy()
  bad = (~np.isfinite(values)) & ~(blank if blank_ok else np.zeros_like(blank))
  if bad.any():
    row = int(np.argmax(bad))
    what = "non-numeric or infinite" if blank_ok else "missing, non-numeric or infinite"
    raise UsageError(f"{path}: column {name!r} ({flag}) has {int(bad.sum())} {what} values "
                     f"(first on line {row + 2}: {raw.iloc[row]!r})")
  return values


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


def run(argv) -> dict:
  args = _parser().parse_args(argv)
  if not 0 <= args.bootstrap <= fit_cli.MAX_BOOTSTRAP:
    raise UsageError(f"--bootstrap {args.bootstrap}: must be 0 to {fit_cli.MAX_BOOTSTRAP}")
  if args.seed < 0:
    raise UsageError("--seed: must be 0 or more")
  df = fit_cli._read_csv(args.csv)
  x = _numbers(df, args.x, "--x", args.csv, blank_ok=False)
  metric = _numbers(df, args.metric, "--metric", args.csv, blank_ok=True)
  continuous = None if args.continuous is None else _numbers(df, args.continuous, "--continuous", args.csv, True)
  if args.group is not None and args.group not in df.columns:
    raise UsageError(f"{args.csv}: no column {args.group!r} (pass --group COL; columns: {fit_cli._column_list(df)})")
  if args.log_x and (x <= 0).any():
    row = int(np.argmax(x <= 0))
    raise UsageError(f"{args.csv}: column {args.x!r} (--x) must be positive with --log-x (line {row + 2}: {x[row]:g})")
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
    labels = df[args.group].astype(str).to_numpy()
    out["groups"] = {}
    for label in sorted(set(labels[keep])):
      at = keep & (labels == label)
      out["groups"][label] = _entry(*pick(at), args) | {"skipped_rows": int(((labels == label) & ~keep).sum())}
  out["pooled"] = _entry(*pick(keep), args)
  return out


def main(argv=None) -> int:
  return fit_cli.json_command(run, argv)


if __name__ == "__main__":
  sys.exit(main())
