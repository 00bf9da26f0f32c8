"""`python -m analysis compare DIR_A DIR_B [--x flops|params]`: is recipe B a constant factor better, or
does it scale better?

Fits L = E + A x^-alpha to each sweep's frontier (x: training FLOPs, exact count, or non-embedding
parameters; the finished trials that no trial with less or equal x beats, so an IsoFLOP grid counts by
its best size per budget) and prints one JSON object with

- the effective compute (or parameter) multiplier of B over A, the k with L_B(x) = L_A(k x), at
  every x where both sweeps have trials inside the range both cover, and at the largest of them,
  each with a 95% interval from pairing the two sweeps' bootstrap fits (independent resamples);
  k > 1: B reaches at x the loss A needs k x for. Where L_B(x) is at or below A's fitted floor E_A,
  A never reaches it and k is unbounded (null, with the share of bootstrap pairs where it is);
- the difference of exponents alpha_B - alpha_A with its interval, and a bootstrap test of "same
  exponent": inside the interval, B's gain is a constant factor; above it, B scales better;
- a plot (analysis/plots.py) with both sweeps' points, their fitted curves and bands, and k against x.

Works for any two sweeps (different families, objectives, data); it says when their loss units
differ, since a multiplier between losses of different units means nothing. Bad input exits 2
with one line: a directory that is not a sweep, too few finished trials to fit, a sweep of
several objectives, x ranges that do not overlap.
"""
import json
import os
import sys

import numpy as np

from analysis import fit as fit_lib
from analysis import laws, objectives, plots
from analysis.fit_cli import MAX_BOOTSTRAP, UsageError, _Parser, fit_json, json_number, one_line

COLUMNS = {"flops": "flops", "params": "params_non_embedding"}
SAME_X = 0.01  # x values within 1% are one budget


def sweep_points(directory: str, x: str) -> dict:
  """A sweep's frontier of finished trials as x and final eval loss, with its name and loss unit."""
  from analysis.load import LoadError, finished, load_sweep
  try:
    results = load_sweep(directory)
  except LoadError as e:
    raise UsageError(str(e)) from None
  column = COLUMNS[x]
  done = finished(results.trials, [column, "final_eval_loss"], positive=[column, "final_eval_loss"])
  by_objective = objectives.groups(done) if len(done) else {}
  if len(by_objective) > 1:
    raise UsageError(f"{directory}: trials of several objectives ({', '.join(map(str, by_objective))}); "
                     "compare sweeps of one objective each")
  xs, ys = frontier(done[column].to_numpy(float), done.final_eval_loss.to_numpy(float))
  if np.unique(xs).size < laws.POWER.n_params:
    raise UsageError(f"{directory}: {np.unique(xs).size} distinct {column} values among its finished trials; "
                     f"fitting L = E + A x^-alpha needs at least {laws.POWER.n_params}")
  return {"directory": directory, "name": results.name, "x": xs, "loss": ys, "loss_unit": objectives.unit_of(done)}


def frontier(x, loss):
  """The trials no other trial beats with no more x: the lower envelope L(x) (Kaplan et al.'s compute
  frontier). A ladder keeps every rung; an IsoFLOP grid keeps the best size of each budget."""
  order = np.lexsort((loss, x))
  x, loss = x[order], loss[order]
  keep = loss < np.minimum.accumulate(np.concatenate([[np.inf], loss[:-1]]))
  return x[keep], loss[keep]


def compute_from_loss(params: dict, loss):
  """x at which the power law `params` reaches `loss` (inf at or below its floor E)."""
  with np.errstate(all="ignore"):
    gap = np.asarray(loss, float) - params["E"]
    return np.where(gap > 0, (params["A"] / np.where(gap > 0, gap, 1.0)) ** (1.0 / params["alpha"]), np.inf)


def multipliers(params_a: dict, params_b: dict, x) -> np.ndarray:
  """k(x) with L_B(x) = L_A(k x); params may hold arrays (bootstrap fits), which broadcast as [R, 1]."""
  x = np.asarray(x, float)
  column = lambda v: np.asarray(v, float)[..., None] if np.ndim(v) else v
  a = {k: column(v) for k, v in params_a.items()}
  b = {k: column(v) for k, v in params_b.items()}
  with np.errstate(all="ignore"):
    loss_b = b["E"] + b["A"] * x ** -b["alpha"]
  return compute_from_loss(a, loss_b) / x


def shared_budgets(x_a, x_b) -> np.ndarray:
  """The x values of either sweep inside the range both cover (within SAME_X of each other: one)."""
  lo, hi = max(x_a.min(), x_b.min()), min(x_a.max(), x_b.max())
  if lo > hi * (1 + SAME_X):
    return np.zeros(0)
  values = np.sort(np.unique(np.concatenate([x_a, x_b])))
  values = values[(values >= lo / (1 + SAME_X)) & (values <= hi * (1 + SAME_X))]
  kept = []
  for v in values:
    if not kept or v > kept[-1] * (1 + SAME_X):
      kept.append(v)
  return np.asarray(kept)


def _interval(samples, level=0.95):
  lo, hi = fit_lib.percentile_interval(np.asarray(samples, float), level)
  return [json_number(lo), json_number(hi)]


def compare(a: dict, b: dict, bootstrap: int = 200, seed: int = 0) -> tuple[dict, dict]:
  """(the JSON object, what the plot needs) for two sweeps' points (sweep_points)."""
  budgets = shared_budgets(a["x"], b["x"])
  if not len(budgets):
    raise UsageError(f"the sweeps cover no x in common: {a['directory']} spans [{a['x'].min():.3g}, "
                     f"{a['x'].max():.3g}], {b['directory']} [{b['x'].min():.3g}, {b['x'].max():.3g}]; "
                     "a multiplier needs budgets both have data at")
  fits = {}
  for key, sweep, offset in (("a", a, 0), ("b", b, 1)):
    try:
      fits[key] = fit_lib.fit_law(laws.POWER, sweep["x"], sweep["loss"], bootstrap=bootstrap, seed=seed + offset)
    except fit_lib.FitError as e:
      raise UsageError(f"{sweep['directory']}: {e}") from None
  best = multipliers(fits["a"].params, fits["b"].params, budgets)
  paired = bootstrap > 0
  if paired:
    samples = multipliers(fits["a"].bootstrap_params, fits["b"].bootstrap_params, budgets)
    alpha_diff = fits["b"].bootstrap_params["alpha"] - fits["a"].bootstrap_params["alpha"]
  rows = []
  for i, x in enumerate(budgets):
    row = {"x": float(x), "multiplier": json_number(best[i])}
    if paired:
      column = samples[:, i]
      row["multiplier_ci"] = _interval(column)
      row["unbounded_share"] = float(np.mean(~np.isfinite(column)))
    rows.append(row)
  diff = fits["b"].params["alpha"] - fits["a"].params["alpha"]
  out = {"a": _side(a, fits["a"]), "b": _side(b, fits["b"]), "budgets": rows, "largest": rows[-1],
         "exponent_difference": float(diff)}
  if a["loss_unit"] != b["loss_unit"]:
    out["warning"] = (f"loss units differ ({a['loss_unit']} vs {b['loss_unit']}): a multiplier between "
                      "them compares different quantities")
  if paired:
    finite = alpha_diff[np.isfinite(alpha_diff)]
    lo, hi = _interval(finite)
    p_same = float(min(1.0, 2 * min(np.mean(finite <= 0), np.mean(finite >= 0)))) if len(finite) else None
    out |= {"exponent_difference_ci": [lo, hi], "same_exponent_p": p_same,
            "verdict": ("same exponent within the intervals: B's gain is a constant factor"
                        if lo is not None and lo <= 0 <= hi else
                        "B scales better (larger exponent)" if lo is not None and lo > 0 else
                        "B scales worse (smaller exponent)" if hi is not None and hi < 0 else "undetermined")}
  return out, {"fits": fits, "budgets": budgets, "best": best, "samples": samples if paired else None}


def _side(sweep, result) -> dict:
  return {"directory": sweep["directory"], "sweep": sweep["name"], "n_points": int(len(sweep["x"])),
          "loss_unit": sweep["loss_unit"], "x_range": [float(sweep["x"].min()), float(sweep["x"].max())],
          **{key: fit_json(result)[key] for key in ("params", "ci")}}


def _parser():
  parser = _Parser(prog="python -m analysis compare")
  parser.add_argument("dir_a", help="sweep A (the reference recipe)")
  parser.add_argument("dir_b", help="sweep B")
  parser.add_argument("--x", default="flops", choices=sorted(COLUMNS))
  parser.add_argument("--bootstrap", type=int, default=200)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--plot", default=None, help="where to write the plot (default: DIR_B/analysis/compare_<A>.png)")
  return parser


def main(argv=None) -> int:
  try:
    args = _parser().parse_args(argv)
    if not 0 <= args.bootstrap <= MAX_BOOTSTRAP:
      raise UsageError(f"--bootstrap {args.bootstrap}: must be 0 to {MAX_BOOTSTRAP}")
    if args.seed < 0:
      raise UsageError(f"--seed {args.seed}: must be 0 or more")
    a, b = sweep_points(args.dir_a, args.x), sweep_points(args.dir_b, args.x)
    out, drawn = compare(a, b, args.bootstrap, args.seed)
  except UsageError as e:
    print(f"error: {one_line(e)}", file=sys.stderr)
    return 2
  if args.plot:
    path = args.plot
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  else:  # DIR_B/analysis/, kept as `analysis plot` keeps it (analysis/report.analysis_dir)
    from analysis import report
    path = os.path.join(report.analysis_dir(args.dir_b), f"compare_{a['name']}.png")
  plots.recipe_comparison(path, a, b, drawn, plots.LABELS[COLUMNS[args.x]])
  print(json.dumps({"x": args.x, **out, "plot": path}, indent=1, allow_nan=False))
  return 0


if __name__ == "__main__":
  sys.exit(main())
