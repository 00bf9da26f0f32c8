"""`python -m analysis plot SWEEP_DIR`: fits, plots and report.md for one sweep.

Writes SWEEP_DIR/analysis/: trials.csv and steps.csv (the DataFrames behind
every number), fits.json, loss_vs_compute.png, loss_vs_params.png, report.md.
"""
import argparse
import json
import os
import sys

import numpy as np

from analysis import backtest as backtest_lib
from analysis import fit as fit_lib
from analysis import fit_plots, laws, plots
from analysis import forecast as forecast_lib
from analysis.load import LoadError, load_sweep
from scaling import metrics as metrics_lib


def _fit(x, y, bootstrap):
  try:
    return fit_lib.fit_law(laws.POWER, x, y, bootstrap=bootstrap, seed=0), None
  except fit_lib.FitError as e:
    return None, str(e)


def _shared_value(trials, column):
  """The column's value if every trial that has one agrees (one data set), else None."""
  values = trials[column].dropna().unique() if column in trials else []
  return float(values[0]) if len(values) == 1 else None


def backtest_largest(trials, x_column, floor, bootstrap):
  """Fits without the largest rung and predicts it; errors in % of the loss and of its reducible part."""
  ordered = trials.sort_values(x_column)
  x, y = ordered[x_column].to_numpy(float), ordered.final_eval_loss.to_numpy(float)
  try:
    bt = backtest_lib.backtest(laws.POWER, x, y, threshold=float(x[-2]), bootstrap=bootstrap)
  except fit_lib.FitError as e:
    return {"skipped": str(e)}
  predicted, observed = float(bt.predicted[-1]), float(bt.observed[-1])
  lo, hi = (bt.fit.predict_interval(x[-1:]) if bootstrap else (np.array([np.nan]),) * 2)
  result = {
      "held_out_trial": ordered.trial_id.iloc[-1], "x_column": x_column, "x": float(x[-1]),
      "observed": observed, "predicted": predicted, "predicted_lo": float(lo[0]), "predicted_hi": float(hi[0]),
      "error_loss_pct": 100 * abs(predicted - observed) / observed,
      "error_reducible_pct": None,
      "rmsle": bt.rmsle,
      "n_fit_points": bt.n_fit,
  }
  if floor is not None and observed > floor:
    result["error_reducible_pct"] = 100 * abs(predicted - observed) / (observed - floor)
  return result


def curve_forecasts(steps, trial_ids, out_dir):
  """Forecasts each trial's final train loss from the first half of its curve; flags spikes, plateaus, divergence."""
  rows = steps[steps.trial_id.isin(trial_ids) & steps["loss"].notna()] if "loss" in steps else steps.iloc[:0]
  if rows.empty:
    return None
  table = forecast_lib.forecast_trials(rows, trial="trial_id", step="step", loss="loss")
  fitted = table[table.forecast.notna()]
  if len(fitted):
    fit_plots.curve_forecasts(rows, dict(zip(fitted.trial_id, fitted.forecast)),
                              os.path.join(out_dir, "curve_forecasts.png"), trial="trial_id",
                              flags=dict(zip(fitted.trial_id, fitted.flag)))
  return table.drop(columns=["forecast", "flag"])


def analyze(directory, params_column="params_non_embedding", compute_column="flops", bootstrap=200) -> dict:
  results = load_sweep(directory)
  out_dir = os.path.join(directory, "analysis")
  os.makedirs(out_dir, exist_ok=True)
  trials, steps = results.trials, results.steps
  trials.to_csv(os.path.join(out_dir, "trials.csv"), index=False)
  steps.to_csv(os.path.join(out_dir, "steps.csv"), index=False)

  done = trials[trials.status == "done"] if "status" in trials else trials.iloc[:0]
  done = done[np.isfinite(done.get("final_eval_loss", np.nan).astype(float))]
  excluded = trials[~trials.trial_id.isin(done.trial_id)]
  floor, eval_set_floor = _shared_value(done, "entropy_floor"), _shared_value(done, "eval_set_floor")

  fits, fit_errors = {}, {}
  if len(done):
    for column in (params_column, compute_column):
      fits[column], fit_errors[column] = _fit(done[column].to_numpy(float), done.final_eval_loss.to_numpy(float),
                                              bootstrap)
  backtest = backtest_largest(done, params_column, floor, bootstrap) if len(done) >= 2 else {
      "skipped": "needs at least 2 finished trials"}

  if fits.get(params_column) is not None:
    fit_plots.residuals(fits[params_column], os.path.join(out_dir, "residuals.png"))
  forecasts = curve_forecasts(steps, list(done.trial_id), out_dir)
  if forecasts is not None:
    forecasts.to_csv(os.path.join(out_dir, "curve_forecasts.csv"), index=False)

  plots.loss_vs_compute(os.path.join(out_dir, "loss_vs_compute.png"), done, steps, fits.get(compute_column),
                        compute_column, floor)
  plots.loss_vs_params(os.path.join(out_dir, "loss_vs_params.png"), done, fits.get(params_column), params_column,
                       floor, backtest if "predicted" in backtest else None)

  summary = {
      "sweep": results.name,
      "n_trials": int(len(trials)), "n_done": int(len(done)),
      "excluded": {r.trial_id: r.status for r in excluded.itertuples()},
      "entropy_floor": floor,
      "eval_set_floor": eval_set_floor,
      "fits": {c: (f.to_dict() if f is not None else {"error": fit_errors[c]}) for c, f in fits.items()},
      "backtest": backtest,
      "curve_flags": ({r.trial_id: {"status": r.status, "message": r.message} for r in forecasts.itertuples()}
                      if forecasts is not None else {}),
  }
  metrics_lib.write_json_atomic(os.path.join(out_dir, "fits.json"), summary)
  with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write(_markdown(summary, done, excluded, fits, params_column, compute_column))
  summary["report"] = os.path.join(out_dir, "report.md")
  return summary


def _interval(fit, name, digits=4):
  lo, hi = fit.ci[name]
  ci = f" [{lo:.{digits}g}, {hi:.{digits}g}]" if np.isfinite(lo) else ""
  return f"{fit.params[name]:.{digits}g}{ci}"


def _markdown(summary, done, excluded, fits, params_column, compute_column) -> str:
  lines = [f"# Sweep `{summary['sweep']}`", "",
           f"{summary['n_done']} of {summary['n_trials']} trials finished and are fitted.", ""]
  if len(excluded):
    lines += ["Excluded from the fits (not finished): " +
              ", ".join(f"`{r.trial_id}` ({r.status})" for r in excluded.itertuples()), ""]
  lines += ["## Trials", "", "| trial | size | non-embedding params | total params | tokens | FLOPs | final eval loss | tokens/s | wall s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for _, r in done.sort_values(params_column).iterrows():
    lines.append(f"| `{r.trial_id}` | {r.get('config.model.size', '')} | {r.params_non_embedding:,.0f} | "
                 f"{r.params_total:,.0f} | {r.tokens:,.0f} | {r.flops:.3g} | {r.final_eval_loss:.4f} | "
                 f"{r.get('tokens_per_second', np.nan):,.0f} | {r.wall_seconds:.1f} |")
  lines += ["", "## Fitted laws: L = E + A * X^-alpha (final eval loss, 95% bootstrap intervals)", ""]
  for column, fit in fits.items():
    if fit is None:
      lines.append(f"- X = {column}: not fitted: {summary['fits'][column]['error']}")
      continue
    lines.append(f"- X = `{column}`: E = {_interval(fit, 'E')}, A = {_interval(fit, 'A')}, "
                 f"alpha = {_interval(fit, 'alpha')} ({fit.n_points} points)")
  if summary["entropy_floor"] is not None:
    lines += ["", f"True entropy floor of the synthetic data (Bayes-optimal loss at this context length): "
              f"**{summary['entropy_floor']:.4f}** nats/token. A fitted E above it means the ladder has not yet "
              f"reached the regime where capacity, not the data, limits the loss."]
    if summary["eval_set_floor"] is not None:
      lines += ["", f"The true model's loss on the finite eval set itself is {summary['eval_set_floor']:.4f}: "
                f"the eval losses above carry this much sampling offset from the population floor."]
  bt = summary["backtest"]
  lines += ["", "## Backtest: fit without the largest rung, predict it", ""]
  if "skipped" in bt:
    lines.append(f"Skipped: {bt['skipped']}.")
  else:
    lines.append(f"Held out `{bt['held_out_trial']}` ({bt['x_column']} = {bt['x']:,.0f}); fitted on {bt['n_fit_points']} rungs.")
    lines.append(f"Observed {bt['observed']:.4f}, predicted {bt['predicted']:.4f} "
                 f"[{bt['predicted_lo']:.4f}, {bt['predicted_hi']:.4f}]: error {bt['error_loss_pct']:.2f}% on the loss"
                 + (f", **{bt['error_reducible_pct']:.1f}%** on its reducible part (loss minus the true floor)"
                    if bt["error_reducible_pct"] is not None else "") + f"; held-out RMSLE {bt['rmsle']:.4f}.")
  if summary["curve_flags"]:
    lines += ["", "## Learning curves: forecast from the first half, checked against the second", "",
              "| trial | flag | why |", "|---|---|---|"]
    lines += [f"| `{t}` | {f['status']} | {f['message']} |" for t, f in summary["curve_flags"].items()]
  lines += ["", "## Files", "", "- `trials.csv`, `steps.csv`: every plotted number, one row per trial / per step",
            "- `fits.json`: the fits, backtest and curve flags above; `curve_forecasts.csv`",
            "- `loss_vs_compute.png`, `loss_vs_params.png`, `residuals.png`, `curve_forecasts.png`", ""]
  return "\n".join(lines)


def backtest_line(summary) -> str:
  bt = summary["backtest"]
  if "skipped" in bt:
    return f"backtest skipped: {bt['skipped']}"
  line = (f"backtest (largest rung held out): observed {bt['observed']:.4f}, predicted {bt['predicted']:.4f}; "
          f"error {bt['error_loss_pct']:.2f}% on the loss")
  if bt["error_reducible_pct"] is not None:
    line += f", {bt['error_reducible_pct']:.1f}% on the reducible part (true floor {summary['entropy_floor']:.4f})"
  return line


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m analysis plot")
  parser.error = lambda message: (print(f"error: {message}", file=sys.stderr), sys.exit(2))
  parser.add_argument("sweep_dir")
  parser.add_argument("--params", default="params_non_embedding", choices=["params_non_embedding", "params_total"],
                      help="parameter-count convention for the N law (Kaplan: non-embedding; Chinchilla: total)")
  parser.add_argument("--compute", default="flops", choices=["flops", "flops_6n"],
                      help="compute convention: exact per-layer count with attention, or 6N")
  parser.add_argument("--bootstrap", type=int, default=200)
  args = parser.parse_args(argv)
  try:
    summary = analyze(args.sweep_dir, args.params, args.compute, args.bootstrap)
  except LoadError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  for column, fit in summary["fits"].items():
    if "params" in fit:
      p, ci = fit["params"], fit["ci"]
      print(f"fit vs {column}: E={p['E']:.4f} [{ci['E'][0]:.4f}, {ci['E'][1]:.4f}] "
            f"alpha={p['alpha']:.4f} [{ci['alpha'][0]:.4f}, {ci['alpha'][1]:.4f}]")
  print(backtest_line(summary))
  print(f"report: {summary['report']}")
  return 0
