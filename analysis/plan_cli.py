"""`python -m analysis plan`: the compute-optimal model size, tokens and loss for FLOP budgets.

  python -m analysis plan (SWEEP_DIR | --csv FILE [--n COL] [--d COL] [--y COL] [--drop-highest K])
      --budget C[,C...] [--method parametric|isoflop] [--bootstrap R] [--seed S]

Fits the runs (a sweep directory's finished trials: N = non-embedding parameters, D = tokens
trained, y = final eval loss; or a CSV's columns, defaults params, tokens, loss) and prints one
JSON object with, per budget, `n_params`, `tokens`, `tokens_per_param` and (parametric) `loss`,
each with its 95% bootstrap interval under the key + `_ci`, and the allocation exponents
N* ~ C^a, D* ~ C^b. Compute is C = 6 N D, the convention both methods share.

- parametric (default; Chinchilla approach 3): L(N, D) = E + A / N^alpha + B / D^beta fitted
  as `analysis fit --law chinchilla` does, then the closed-form frontier (analysis/isoflop.py).
- isoflop (approach 2): runs grouped by budget, a parabola of loss in ln N per budget, and a
  power law through the vertices; it gives no loss.

Bad input exits 2 with one line: no or both of SWEEP_DIR and --csv, a budget that is not a
positive number, too few finished trials or distinct runs for the method, --bootstrap out of
range, and everything `analysis fit` refuses in a CSV.
"""
import argparse
import json
import math
import sys

import numpy as np

from analysis import csv_input, fit, fit_cli, isoflop, laws
from analysis.fit_cli import UsageError

MAX_BUDGETS = 1000


def _parser() -> argparse.ArgumentParser:
  parser = fit_cli._Parser(prog="python -m analysis plan",
                           description="Compute-optimal N, D and loss for FLOP budgets; print JSON.")
  parser.add_argument("sweep_dir", nargs="?", help="a sweep output directory (or give --csv)")
  parser.add_argument("--csv", help="runs as a CSV file (or give SWEEP_DIR)")
  parser.add_argument("--n", default="params", help="parameters column (--csv)")
  parser.add_argument("--d", default="tokens", help="tokens column (--csv)")
  parser.add_argument("--y", default="loss", help="loss column (--csv)")
  parser.add_argument("--drop-highest", type=int, default=0, help="drop the K rows with the highest loss (--csv)")
  parser.add_argument("--budget", required=True, help="FLOP budgets, comma-separated (C = 6 N D)")
  parser.add_argument("--method", default="parametric", choices=["parametric", "isoflop"])
  parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for intervals (0: none)")
  parser.add_argument("--seed", type=int, default=0)
  return parser


def _budgets(text: str) -> list:
  items = [t.strip() for t in text.split(",")]
  if len(items) > MAX_BUDGETS:
    raise UsageError(f"--budget: at most {MAX_BUDGETS} budgets")
  budgets = []
  for item in items:
    try:
      value = float(item)
    except ValueError:
      raise UsageError(f"--budget: {item!r} is not a number of FLOPs") from None
    if not (math.isfinite(value) and value > 0):
      raise UsageError(f"--budget: {item!r} must be a positive, finite number of FLOPs")
    budgets.append(value)
  return budgets


def _runs_from_sweep(directory: str):
  """(N, D, loss, where) of a sweep directory's finished trials."""
  from analysis.load import LoadError, finished, load_sweep
  try:
    trials = load_sweep(directory).trials
  except LoadError as e:
    raise UsageError(str(e)) from None
  columns = ["params_non_embedding", "tokens", "final_eval_loss"]
  done = finished(trials, columns, positive=columns[:2])
  n, d, y = (done[c].to_numpy(float) for c in columns)
  return n, d, y, f"{directory}: {len(y)} finished trials"


def _runs_from_csv(args):
  table = csv_input.read(args.csv, {"--n": args.n, "--d": args.d, "--y": args.y})
  n, d, y = (table.numbers(flag) for flag in ("--n", "--d", "--y"))
  for name, flag, values in ((args.n, "--n", n), (args.d, "--d", d), (args.y, "--y", y)):
    if (values <= 0).any():
      raise UsageError(f"{args.csv}: column {name!r} ({flag}) must be positive (min {values.min():g})")
  if args.drop_highest:
    if args.drop_highest >= y.size:
      raise UsageError(f"--drop-highest {args.drop_highest}: {args.csv} has only {y.size} rows")
    keep = np.sort(np.argsort(y, kind="stable")[:y.size - args.drop_highest])
    n, d, y = n[keep], d[keep], y[keep]
  return n, d, y, f"{args.csv}: {y.size} rows"


def _jsonable(plan: dict) -> dict:
  number = fit_cli.json_number
  return {k: ([number(v[0]), number(v[1])] if isinstance(v, tuple) else
              number(v) if isinstance(v, (float, int, np.floating)) and not isinstance(v, bool) else v)
          for k, v in plan.items()}


def _fit(method, n, d, y, args, where):
  if method == "parametric":
    problem = fit.distinct_inputs_problem(laws.CHINCHILLA, np.stack([n, d]), ["N", "D"])
    if problem:
      raise UsageError(f"{where}: {problem}")
    if args.bootstrap * y.size > fit_cli.MAX_BOOTSTRAP_CELLS:
      raise UsageError(f"--bootstrap {args.bootstrap}: too many resamples for {y.size} rows")
    result = fit.fit_law(laws.CHINCHILLA, np.stack([n, d]), y, bootstrap=args.bootstrap, seed=args.seed)
    _refuse_no_frontier(result.params, where)
    return result, fit_cli.fit_json(result)
  result = isoflop.fit_isoflop(n, d, y, bootstrap=args.bootstrap, seed=args.seed)
  profiles = result.profiles[["flops", "n_opt", "tokens_opt", "loss_opt", "n_points", "in_range", "used"]]
  return result, {"profiles": json.loads(profiles.to_json(orient="records"))}


def _refuse_no_frontier(params: dict, where: str):
  """The closed-form frontier needs loss to fall in both N and D (A, B, alpha, beta > 0): a fit that says
  otherwise (runs with a wild N or D) has no compute-optimal size to plan, only a complex number."""
  wrong = [f"{k} = {params[k]:.3g}" for k in ("A", "B", "alpha", "beta") if not params[k] > 0]
  if wrong:
    raise UsageError(f"{where}: the fitted L(N, D) has {', '.join(wrong)}: loss does not fall with both N and D, "
                     "so it has no compute-optimal frontier (check the runs' N, D and loss)")


def run(argv) -> dict:
  args = _parser().parse_args(argv)
  if (args.sweep_dir is None) == (args.csv is None):
    raise UsageError("give a sweep directory or --csv FILE (one of them)")
  if args.sweep_dir is not None and (args.drop_highest or any(
      f in argv for f in ("--n", "--d", "--y"))):
    raise UsageError("--n, --d, --y and --drop-highest read a --csv; a sweep directory's columns are fixed")
  if not 0 <= args.bootstrap <= fit_cli.MAX_BOOTSTRAP:
    raise UsageError(f"--bootstrap {args.bootstrap}: must be 0 to {fit_cli.MAX_BOOTSTRAP}")
  if args.drop_highest < 0 or args.seed < 0:
    raise UsageError("--drop-highest and --seed: must be 0 or more")
  budgets = _budgets(args.budget)
  n, d, y, where = _runs_from_sweep(args.sweep_dir) if args.sweep_dir is not None else _runs_from_csv(args)
  needed = 5 if args.method == "parametric" else 6
  if y.size < needed:
    raise UsageError(f"{where}: too few for the {args.method} method (needs at least {needed}: "
                     + ("one per parameter of L(N, D)" if args.method == "parametric"
                        else "two budgets of at least 3 sizes") + ")")
  try:
    result, fitted = _fit(args.method, n, d, y, args, where)
  except fit.FitError as e:
    raise UsageError(f"{where}: {e}") from None
  plans = [_jsonable(isoflop.plan(c, result)) for c in budgets]
  return {"method": args.method, "compute": "C = 6 N D", "source": where, "n_points": int(y.size),
          "bootstrap": args.bootstrap, "fit": fitted, "budgets": plans}


def main(argv=None) -> int:
  return fit_cli.json_command(run, argv)


if __name__ == "__main__":
  sys.exit(main())
