"""`python -m analysis fit`: fit a scaling law to a CSV and print one JSON object.

  python -m analysis fit --csv FILE
      --law {power,chinchilla,data_constrained,saturating,bnsl,sigmoid,pure_power,routed}
      [--x COL] [--y COL] [--n COL] [--d COL] [--u COL] [--e COL] [--tokens-per-param R]
      [--breaks K]
      [--drop-highest K] [--bootstrap R] [--predict-at X[,X...]] [--seed S]

Columns default to params (--x and --n), tokens (--d), experts (--e) and loss
(--y). Chinchilla reads --n and --d; data_constrained reads --n, --d and --u
(unique tokens, no default: a tokens column says nothing about repetition);
routed reads --n (active parameters) and --e (experts; 1 for a dense model);
the other laws read --x. --predict-at takes x values, N:D pairs for chinchilla
(e.g. 7e10:1.4e12), N:E pairs for routed or N:D:U triples for data_constrained. --drop-highest K
drops the K rows with the highest y first (Besiroglu et al. drop the 5
highest-loss Chinchilla runs). Laws and parameter names:

  power       L = E + A x^-alpha                                E, A, alpha
  chinchilla  L = E + A / N^alpha + B / D^beta                  E, A, B, alpha, beta
  data_constrained (Muennighoff et al. 2023; analysis/laws.py)
              L = E + A / N^alpha + B / D'^beta,                E, A, B, alpha, beta,
              D' = U + U R* (1 - exp(-(D/U - 1) / R*))          R_D_star
    with --tokens-per-param R, the paper's full law (data_constrained_full):
              N' = U_N + U_N R_N* (1 - exp(-(N/U_N - 1) / R_N*)),  ... R_N_star
              U_N = min(N, U / R): the compute-optimal size for the unique
              tokens (Chinchilla: R ~ 20); models larger than U_N get less
              from their excess parameters
  saturating  L = c + a (x + d)^-b                              a, b, c, d
  bnsl        y = a + b x^-c0 prod_i (1 + (x/d_i)^(1/f_i))^(-c_i f_i)
                                                                a, b, c0, c1, d1, f1, ...
  sigmoid     y = floor + (ceiling - floor) / (1 + (x / x_mid)^-slope)
                                                                floor, ceiling, slope, x_mid
  pure_power  L = A x^-alpha                                    A, alpha
  routed      log L = a log N + b log E + c log N log E + d     a, b, c, d
              (Clark et al. 2022: N active parameters, E experts)

Fitting (analysis/fit.py): chinchilla minimises the Huber loss (delta 1e-3) of
log residuals, summed, with L-BFGS from the paper's 4500-start grid
(data_constrained: the same, times 3 starts for R_D_star; with
--tokens-per-param a coarser 972-point grid times 3 x 2 starts for R_D_star
and R_N_star); the other
laws minimise squared log residuals (sigmoid: squared residuals of y, which
may be 0) with Levenberg-Marquardt from a data-scaled grid. --bootstrap
defaults to 200 resamples.

Output: {"law", "params": {name: value}, "ci": {name: [lo, hi]}, "objective",
"n_points", "predictions": [y at each --predict-at], "prediction_ci":
[[lo, hi], ...], "predict_at": [...]}; data_constrained adds "derived":
{"half_worth_epochs": epochs} and "derived_ci": {"half_worth_epochs": [lo, hi]},
the epochs 1 + R_D_star ln 2 after which a repeated token is worth half a new
one (its interval maps R_D_star's). Intervals are 95% bootstrap
percentiles (null without --bootstrap). Bad input exits 2 with one line on
stderr naming the file and the column or flag: among it, everything the CSV
reader refuses (analysis/csv_input.py: not UTF-8 text, over 64 MiB or 100,000
rows, a header naming a column twice, a cell of a column the law uses that is
not a finite float64, each with its line and data row), fewer distinct x values than
the law has parameters, --breaks over 10, --bootstrap over 10,000, and for
data_constrained a missing --u or no row with D > U (no repeated data: R_D_star
is not identifiable), and with --tokens-per-param no row with N > U_N.
"""
import argparse
import json
import math
import sys

import numpy as np

from analysis import csv_input, fit, laws
from analysis.csv_input import UsageError  # noqa: F401 (every analysis CLI's one-line error)

CHOICES = ("power", "chinchilla", "data_constrained", "saturating", "bnsl",
           "sigmoid", "pure_power", "routed")


# Input bounds: a scaling-law fit has tens to thousands of points, and every
# resample and start costs memory and time in proportion to the rows.
MAX_CSV_BYTES = csv_input.MAX_CSV_BYTES
MAX_ROWS = csv_input.MAX_ROWS
MAX_BOOTSTRAP = 10_000
MAX_BOOTSTRAP_CELLS = 20_000_000  # bootstrap * rows: the resample weights' size.


class _Parser(argparse.ArgumentParser):
  """argparse for the analysis CLIs: an error is a UsageError naming the command (`plan: argument ...`),
  and a value that starts with '-' (`--budget -1e12`, `--seed -inf`) is the value of the flag before it,
  so that the flag's own check says what is wrong with it; argparse alone reads -1e12 as a flag and says
  "expected one argument"."""

  def __init__(self, *args, **kwargs):
    self._flags, self._valued_flags = set(), set()  # before argparse adds -h through add_argument
    super().__init__(*args, **kwargs)

  def add_argument(self, *args, **kwargs):
    action = super().add_argument(*args, **kwargs)
    self._flags.update(action.option_strings)
    if action.nargs != 0:
      self._valued_flags.update(action.option_strings)
    return action

  def parse_args(self, args=None, namespace=None):
    return super().parse_args(self._attach_dash_values(args), namespace)

  def error(self, message):  # argparse would print usage and exit itself.
    raise UsageError(f"{self.prog.split()[-1]}: {message}")

  def _attach_dash_values(self, args):
    args = list(sys.argv[1:] if args is None else args)
    out = []
    for token in args:
      previous = out[-1] if out else ""
      if (token.startswith("-") and not token.startswith("--") and token not in self._flags
          and self._takes_value(previous)):
        out[-1] = f"{previous}={token}"
      else:
        out.append(token)
    return out

  def _takes_value(self, token: str) -> bool:
    """Whether `token` is a flag (or an abbreviation of flags) that reads the next argument as its value."""
    if not token.startswith("--") or "=" in token:
      return False
    if token in self._flags:
      return token in self._valued_flags
    matches = [f for f in self._flags if f.startswith(token)]
    return bool(matches) and all(f in self._valued_flags for f in matches)


def _parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="python -m analysis fit",
                   description="Fit a scaling law to a CSV; print JSON.")
  parser.add_argument("--csv", required=True, help="input CSV file")
  parser.add_argument("--law", required=True, choices=CHOICES)
  parser.add_argument("--x", default="params", help="x column (one-input laws)")
  parser.add_argument("--y", default="loss", help="y column")
  parser.add_argument("--n", default="params",
                      help="parameters column (chinchilla, data_constrained)")
  parser.add_argument("--d", default="tokens",
                      help="tokens column (chinchilla, data_constrained)")
  parser.add_argument("--e", default="experts",
                      help="experts column (routed; 1 for a dense model)")
  parser.add_argument("--u", default=None,
                      help="unique tokens column (data_constrained; required)")
  parser.add_argument("--tokens-per-param", type=float, default=None,
                      help="data_constrained: also discount parameters beyond "
                           "U_N = min(N, U / R) (the paper's R*_N term)")
  parser.add_argument("--breaks", type=int, default=1, help="breaks (bnsl)")
  parser.add_argument("--drop-highest", type=int, default=0,
                      help="drop the K rows with the highest y")
  parser.add_argument("--bootstrap", type=int, default=200,
                      help="bootstrap resamples for intervals (0: none)")
  parser.add_argument("--predict-at", default="",
                      help="comma-separated x values (N:D pairs for chinchilla)")
  parser.add_argument("--seed", type=int, default=0)
  return parser


def _predict_points(text: str, law: laws.Law, n_given=None):
  """--predict-at as an input array [n_given, m] and a JSON-able echo; n_given:
  the values each point gives (default: the law's inputs)."""
  n_given = n_given or law.n_inputs
  if not text.strip():
    return None, []
  points = []
  for item in text.split(","):
    parts = item.strip().split(":")
    try:
      values = [float(p) for p in parts]
    except ValueError:
      raise UsageError(f"--predict-at: {item.strip()!r} is not a number") from None
    if len(values) != n_given:
      form = {1: "single x values", 2: "N:E pairs" if law is laws.ROUTED else "N:D pairs",
              3: "N:D:U triples"}[n_given]
      raise UsageError(f"--predict-at: the {law.name} law takes {form}, got {item.strip()!r}")
    if not all(math.isfinite(v) and v > 0 for v in values):
      raise UsageError(f"--predict-at: {item.strip()!r} must be positive and finite")
    points.append(values)
  points = np.array(points).T
  echo = points[0].tolist() if n_given == 1 else points.T.tolist()
  return points, echo


def _fewer_breaks(law, args) -> str:
  """A hint for the bnsl law, whose parameters grow with --breaks."""
  return (f" (--breaks {args.breaks}: pass fewer)"
          if law.name == "bnsl" and args.breaks > 1 else "")


def _input_columns(law, args) -> list:
  """(column, flag) of each of the law's inputs, in the law's order."""
  if law.n_inputs == 1:
    return [(args.x, "--x")]
  if law is laws.ROUTED:
    return [(args.n, "--n"), (args.e, "--e")]
  columns = [(args.n, "--n"), (args.d, "--d")]
  if law.n_inputs >= 3:
    if args.u is None:
      raise UsageError(f"--u: the {law.name} law needs the unique-tokens column (pass --u COL)")
    columns.append((args.u, "--u"))
  return columns


def _check_repetition(inputs, names, path):
  """UsageError unless some row repeats data (D > U): without one, every D'
  is D and R_D_star, the worth of a repeated token, is not identifiable."""
  tokens, unique_tokens = inputs[1], inputs[2]
  if not (tokens > unique_tokens).any():
    raise UsageError(f"{path}: no row repeats data ({names[1]} <= {names[2]} in "
                     f"every row): R_D_star is not identifiable without runs "
                     "trained for more than one epoch")


def _half_worth(result) -> dict:
  """half_worth_epochs and its interval, from R_D_star's bootstrap fits."""
  value, lo, hi = result.interval(lambda p: laws.half_worth_epochs(p["R_D_star"]))
  return {"derived": {"half_worth_epochs": json_number(value)},
          "derived_ci": {"half_worth_epochs": [json_number(lo), json_number(hi)]}}


def json_number(value):
  value = float(value)
  return value if math.isfinite(value) else None


def one_line(err) -> str:
  """An error's message as one line: a column name or cell may hold a line break."""
  return str(err).replace("\r", "\\r").replace("\n", "\\n")


def json_command(run_command, argv=None) -> int:
  """main() of a CLI whose run(argv) returns one JSON object: printed (indented), or its UsageError as one line, exit 2."""
  try:
    out = run_command(sys.argv[1:] if argv is None else argv)
  except UsageError as err:
    print(f"error: {one_line(err)}", file=sys.stderr)
    return 2
  print(json.dumps(out, indent=1, allow_nan=False))
  return 0


def run(argv) -> dict:
  args = _parser().parse_args(argv)
  if args.breaks < 1:
    raise UsageError("--breaks: must be at least 1")
  if args.breaks > laws.MAX_BREAKS:
    raise UsageError(f"--breaks {args.breaks}: at most {laws.MAX_BREAKS} breaks "
                     f"(each adds 3 parameters)")
  if args.drop_highest < 0:
    raise UsageError("--drop-highest: must be 0 or more")
  if args.bootstrap < 0:
    raise UsageError("--bootstrap: must be 0 or more")
  if args.bootstrap > MAX_BOOTSTRAP:
    raise UsageError(f"--bootstrap {args.bootstrap}: at most {MAX_BOOTSTRAP} resamples")
  if args.seed < 0:
    raise UsageError("--seed: must be 0 or more")
  law = laws.get(args.law, breaks=args.breaks)
  ratio = args.tokens_per_param
  if ratio is not None:
    if law is not laws.DATA_CONSTRAINED:
      raise UsageError(f"--tokens-per-param: only the data_constrained law takes it, not {args.law}")
    if not (math.isfinite(ratio) and ratio > 0):
      raise UsageError(f"--tokens-per-param {ratio:g}: must be a positive number")
    law = laws.DATA_CONSTRAINED_FULL
  path = args.csv
  columns = _input_columns(law, args)
  table = csv_input.read(path, {"--y": args.y} | {flag: name for name, flag in columns})
  y = table.numbers("--y")
  inputs = np.stack([table.numbers(flag) for _, flag in columns])
  if ratio is not None:  # U_N, the fourth input, from N and U
    inputs = np.vstack([inputs, laws.unique_params(inputs[0], inputs[2], ratio)])
  for (name, flag), values in zip(columns, inputs):
    if (values <= 0).any():
      raise UsageError(f"{path}: column {name!r} ({flag}) must be positive, "
                       f"the {law.name} law uses its log (min {values.min():g})")
  if law.target == "log" and (y <= 0).any():
    raise UsageError(f"{path}: column {args.y!r} (--y) must be positive for the "
                     f"{law.name} law, fitted in log space (min {y.min():g})")
  if args.drop_highest:
    if args.drop_highest >= y.size:
      raise UsageError(f"--drop-highest {args.drop_highest}: {path} has only {y.size} rows")
    keep = np.sort(np.argsort(y, kind="stable")[:y.size - args.drop_highest])
    inputs, y = inputs[:, keep], y[keep]
  if y.size < law.n_params:
    after = f" after --drop-highest {args.drop_highest}" if args.drop_highest else ""
    raise UsageError(f"{path}: {y.size} rows{after} but the {law.name} law "
                     f"has {law.n_params} parameters ({', '.join(law.param_names)})"
                     f"{_fewer_breaks(law, args)}")
  if np.ptp(y) <= 1e-12 * np.max(np.abs(y)):
    raise UsageError(f"{path}: column {args.y!r} (--y) is constant ({y[0]:g}); "
                     f"a {law.name} law cannot be fitted to it")
  names = [f"{name!r} ({flag})" for name, flag in columns]
  if ratio is not None:
    names.append(f"U_N = min({args.n}, {args.u} / {ratio:g})")
  if law in (laws.DATA_CONSTRAINED, laws.DATA_CONSTRAINED_FULL):
    _check_repetition(inputs, names, path)
  if ratio is not None and not (inputs[0] > inputs[3] * (1 + 1e-9)).any():
    raise UsageError(f"{path}: no row has more parameters than U_N = {args.u} / {ratio:g} "
                     f"(--tokens-per-param): R_N_star is not identifiable without excess parameters")
  problem = fit.distinct_inputs_problem(law, inputs, names)
  if problem:
    raise UsageError(f"{path}: {problem}{_fewer_breaks(law, args)}")
  if args.bootstrap * y.size > MAX_BOOTSTRAP_CELLS:
    raise UsageError(f"--bootstrap {args.bootstrap}: too many resamples for {y.size} "
                     f"rows (at most {MAX_BOOTSTRAP_CELLS // y.size}) in {path}")
  points, echo = _predict_points(args.predict_at, law, n_given=3 if ratio is not None else None)
  if points is not None and ratio is not None:
    points = np.vstack([points, laws.unique_params(points[0], points[2], ratio)])

  try:
    result = fit.fit_law(law, inputs, y, bootstrap=args.bootstrap, seed=args.seed)
  except fit.FitError as err:
    raise UsageError(f"{path}: {err}") from None

  out = fit_json(result)
  out["predict_at"] = echo
  out["predictions"] = []
  out["prediction_ci"] = []
  if points is not None:
    points = points.T  # [points, inputs]: a [k, k] array would be read that way round (laws.as_inputs)
    out["predictions"] = [json_number(v) for v in result.predict(points)]
    if args.bootstrap:
      lo, hi = result.predict_interval(points)
      out["prediction_ci"] = [[json_number(a), json_number(b)] for a, b in zip(lo, hi)]
    else:
      out["prediction_ci"] = [[None, None] for _ in echo]
  if law in (laws.DATA_CONSTRAINED, laws.DATA_CONSTRAINED_FULL):
    out.update(_half_worth(result))
  if ratio is not None:
    out["tokens_per_param"] = ratio
  return out


def fit_json(result) -> dict:
  """A FitResult as JSON-able numbers: law, params, ci ([lo, hi]), objective, n_points; NaN as null."""
  out = result.to_dict()
  out["params"] = {k: json_number(v) for k, v in out["params"].items()}
  out["ci"] = {k: [json_number(lo), json_number(hi)] for k, (lo, hi) in result.ci.items()}
  out["objective"] = json_number(out["objective"])
  return out


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    out = run(argv)
  except UsageError as err:
    print(f"error: {one_line(err)}", file=sys.stderr)
    return 2
  json.dump(out, sys.stdout)
  sys.stdout.write("\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
