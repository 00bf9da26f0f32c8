"""`python -m analysis plot SWEEP_DIR`: fits, plots and report.md for one sweep.

Writes SWEEP_DIR/analysis/: trials.csv and steps.csv (the DataFrames behind
every number), fits.json, loss_vs_compute.png, loss_vs_params.png, report.md.
A sweep of several objectives gets these per objective (`loss_vs_params_<objective>.png`)
and objectives_vs_params.png / objectives_vs_compute.png (analysis/objectives.py). A sweep
that repeats data (`data.unique_tokens`) gets the data-constrained law and loss_vs_epochs.png
(analysis/data_constrained.py); one declared by FLOP budget (`train.horizon.flops`) gets
approaches 2 and 3 and isoflop.png (analysis/isoflop_report.py); one with mixture-of-experts
trials (`model.options.experts`) the routed law, the compute multiplier of each expert count over
dense and moe_vs_dense.png (analysis/moe_report.py); one that sweeps the learning rate at several
widths (or depths) the best lr per width under each parametrization and loss_vs_lr.png
(analysis/lr_transfer.py).
"""
import argparse
import os
import re
import sys

import numpy as np
import pandas as pd

from analysis import backtest as backtest_lib
from analysis import data_constrained, emergence_report
from analysis import fit as fit_lib
from analysis import fit_plots, isoflop_report, laws, lr_transfer, moe_report, plots
from analysis import forecast as forecast_lib
from analysis import objectives as objectives_lib
from analysis import prediction_check
from analysis import time_spent
from analysis.load import LoadError, load_sweep
from scaling import containment
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


def _slug(name) -> str:
  """A file-name-safe form of an objective's name."""
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name))


def fit_group(rows, steps, params_column, compute_column, bootstrap, out_dir, suffix="", title=None) -> dict:
  """Fits, backtest and loss plots of trials that share one objective (one loss, one unit).

  suffix names the plots (`loss_vs_params{suffix}.png`); title, if given, heads them.
  """
  floor, eval_set_floor = _shared_value(rows, "entropy_floor"), _shared_value(rows, "eval_set_floor")
  unit = objectives_lib.unit_of(rows)
  fits, fit_errors = {}, {}
  if len(rows):
    for column in (params_column, compute_column):
      fits[column], fit_errors[column] = _fit(rows[column].to_numpy(float), rows.final_eval_loss.to_numpy(float),
                                              bootstrap)
  backtest = backtest_largest(rows, params_column, floor, bootstrap) if len(rows) >= 2 else {
      "skipped": "needs at least 2 finished trials"}
  if fits.get(params_column) is not None:
    fit_plots.residuals(fits[params_column], os.path.join(out_dir, f"residuals{suffix}.png"))
  plots.loss_vs_compute(os.path.join(out_dir, f"loss_vs_compute{suffix}.png"), rows, steps, fits.get(compute_column),
                        compute_column, floor, loss_unit=unit,
                        title=title and f"Loss vs compute: {title}")
  plots.loss_vs_params(os.path.join(out_dir, f"loss_vs_params{suffix}.png"), rows, fits.get(params_column),
                       params_column, floor, backtest if "predicted" in backtest else None, loss_unit=unit,
                       title=title and f"Loss vs parameters: {title}")
  return {"rows": rows, "fits": fits, "fit_errors": fit_errors, "backtest": backtest, "entropy_floor": floor,
          "eval_set_floor": eval_set_floor, "loss_unit": unit}


def _fits_json(group) -> dict:
  return {c: (f.to_dict() if f is not None else {"error": group["fit_errors"][c]}) for c, f in group["fits"].items()}


def analyze(directory, params_column="params_non_embedding", compute_column="flops", bootstrap=200,
            tokens_per_param=None) -> dict:
  """Writes SWEEP_DIR/analysis/ and returns what fits.json holds (plus the report's path).

  One objective (or sweeps that predate the `objective` column): fits, backtest and plots of
  the final eval loss. Several: the same per objective (fits.json's "fits", "backtest",
  "entropy_floor", "eval_set_floor" keyed by objective; "group_by": "objective"), never
  mixing losses of different units. Several objectives, or one that logs a downstream error,
  add "objectives" (analysis/objectives.py) and objectives_vs_{params,compute}.png. Trials that
  repeated data add "data_constrained" and loss_vs_epochs.png; tokens_per_param, if given, fits
  the full law with its excess-parameter term (U_N = U / tokens_per_param).
  """
  results = load_sweep(directory)
  out_dir = analysis_dir(directory)
  trials, steps = results.trials, results.steps
  trials.to_csv(os.path.join(out_dir, "trials.csv"), index=False)
  steps.to_csv(os.path.join(out_dir, "steps.csv"), index=False)

  done = trials[trials.status == "done"] if "status" in trials else trials.iloc[:0]
  final_loss = pd.to_numeric(done.get("final_eval_loss", pd.Series(np.nan, index=done.index)), errors="coerce")
  done = done[np.isfinite(final_loss.to_numpy(float))]
  excluded = trials[~trials.trial_id.isin(done.trial_id)]
  if done.empty:  # Nothing to fit; the tables above are still written.
    states = excluded.status.value_counts() if "status" in excluded else {}
    raise LoadError(f"{directory}: no trial has finished ({', '.join(f'{n} {s}' for s, n in states.items())}); "
                    f"nothing to fit yet: `python -m sweeps status {directory}` shows each trial")

  by_objective, group_by = objectives_lib.groups(done), "objective"
  if len(by_objective) == 1 and moe_report.applies(done):  # dense and each expert count: ladders of their own
    by_objective, group_by = moe_report.groups(done), "experts"
  if len(by_objective) > 1:
    labelled = {(name if name is not None else objectives_lib.UNNAMED): rows for name, rows in by_objective.items()}
    fitted = {label: fit_group(rows, steps, params_column, compute_column, bootstrap, out_dir,
                               suffix=f"_{_slug(label)}", title=label) for label, rows in labelled.items()}
  else:
    fitted = {None: fit_group(done, steps, params_column, compute_column, bootstrap, out_dir)}
  forecasts = curve_forecasts(steps, list(done.trial_id), out_dir)
  if forecasts is not None:
    forecasts.to_csv(os.path.join(out_dir, "curve_forecasts.csv"), index=False)

  summary = {
      "sweep": results.name,
      "n_trials": int(len(trials)), "n_done": int(len(done)),
      "excluded": {r.trial_id: r.status for r in excluded.itertuples()},
      "warnings": results.warnings,  # damaged trials and metrics files, one line each (also on stderr)
  }
  if None in fitted:
    one = fitted[None]
    summary |= {"entropy_floor": one["entropy_floor"], "eval_set_floor": one["eval_set_floor"],
                "fits": _fits_json(one), "backtest": one["backtest"]}
  else:
    summary |= {
        "group_by": group_by,
        "groups": {n: {"n_done": int(len(g["rows"])), "kind": objectives_lib.kind_of(g["rows"]),
                       "loss_unit": g["loss_unit"]} for n, g in fitted.items()},
        "entropy_floor": {n: g["entropy_floor"] for n, g in fitted.items()},
        "eval_set_floor": {n: g["eval_set_floor"] for n, g in fitted.items()},
        "fits": {n: _fits_json(g) for n, g in fitted.items()},
        "backtest": {n: g["backtest"] for n, g in fitted.items()},
    }
  spent = time_spent.table(trials)
  spent.to_csv(os.path.join(out_dir, "goodput.csv"), index=False)
  summary["goodput"] = time_spent.sweep_totals(spent)
  summary["curve_flags"] = ({r.trial_id: {"status": r.status, "message": r.message} for r in forecasts.itertuples()}
                            if forecasts is not None else {})
  if objectives_lib.applies(done):
    summary["objectives"], curves = objectives_lib.analyze(done, params_column, compute_column, bootstrap)
    for column, name in ((params_column, "objectives_vs_params.png"), (compute_column, "objectives_vs_compute.png")):
      plots.objectives_vs(os.path.join(out_dir, name), curves, summary["objectives"], column)
  prediction = prediction_check.load(directory)
  if prediction is not None:
    summary["prediction_check"] = prediction_check.check(prediction, done)
  if isoflop_report.applies(done):
    summary["isoflop"], drawn = isoflop_report.analyze(done, bootstrap)
    plots.isoflop(os.path.join(out_dir, "isoflop.png"), drawn["non_embedding"])
  if data_constrained.applies(done):
    summary["data_constrained"], drawn = data_constrained.analyze(done, params_column, bootstrap, tokens_per_param)
    plots.loss_vs_epochs(os.path.join(out_dir, "loss_vs_epochs.png"), drawn["rows"], drawn["groups"], drawn["predict"],
                         _shared_value(done, "entropy_floor"), objectives_lib.unit_of(done))
  if moe_report.applies(done):
    summary["moe"], drawn = moe_report.analyze(done, steps, bootstrap)
    plots.moe_vs_dense(os.path.join(out_dir, "moe_vs_dense.png"), drawn["rows"], drawn["fit"],
                       objectives_lib.unit_of(done))
  if lr_transfer.applies(done):
    summary["lr_transfer"], drawn = lr_transfer.analyze(done)
    plots.loss_vs_lr(os.path.join(out_dir, "loss_vs_lr.png"), drawn, summary["lr_transfer"],
                     objectives_lib.unit_of(done))
  if emergence_report.applies(done):
    summary["emergence"], drawn = emergence_report.analyze(done, params_column, bootstrap)
    if drawn:
      plots.emergence(os.path.join(out_dir, "emergence.png"), drawn)
  metrics_lib.write_json_atomic(os.path.join(out_dir, "fits.json"), summary)
  with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write(_markdown(summary, done, excluded, fitted, params_column, spent))
  summary["report"] = os.path.join(out_dir, "report.md")
  return summary


def _interval(fit, name, digits=4):
  lo, hi = fit.ci[name]
  ci = f" [{lo:.{digits}g}, {hi:.{digits}g}]" if np.isfinite(lo) else ""
  return f"{fit.params[name]:.{digits}g}{ci}"


def _cell(row, column, spec) -> str:
  """A number of the trials table as `spec` says, or '-' where the trial has none."""
  try:
    value = float(row.get(column))
  except (TypeError, ValueError):
    return "-"
  return format(value, spec) if np.isfinite(value) else "-"


def _percent(row, column) -> str:
  """A fraction of the trials table as a percentage (MFU), or '-' (a CPU has no known peak)."""
  cell = _cell(row, column, ".4f")
  return cell if cell == "-" else f"{100 * float(cell):.1f}%"


def _group_lines(group, params_column, level="##") -> list:
  """Trials table, fitted laws, floors and backtest of one objective's trials."""
  rows, fits, fit_errors, bt = group["rows"], group["fits"], group["fit_errors"], group["backtest"]
  downstream = [(c, label) for c, label in (("final_eval_error", "test error"), ("final_probe_error", "probe error"))
                if objectives_lib.has_values(rows, c)]
  lines = [f"{level} Trials", "",
           "| trial | size | non-embedding params | total params | tokens | FLOPs | final eval loss | "
           + "".join(f"{label} | " for _, label in downstream) + "tokens/s | FLOP/s | MFU | wall s |",
           "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(downstream) + "---:|---:|---:|---:|"]
  for _, r in rows.sort_values(params_column).iterrows():
    lines.append(f"| `{r.trial_id}` | {r.get('config.model.size', '')} | {_cell(r, 'params_non_embedding', ',.0f')} | "
                 f"{_cell(r, 'params_total', ',.0f')} | {_cell(r, 'tokens', ',.0f')} | {_cell(r, 'flops', '.3g')} | "
                 f"{_cell(r, 'final_eval_loss', '.4f')} | " + "".join(f"{_cell(r, c, '.4f')} | " for c, _ in downstream)
                 + f"{_cell(r, 'tokens_per_second', ',.0f')} | {_cell(r, 'flops_per_second', '.3g')} | "
                 f"{_percent(r, 'mfu')} | {_cell(r, 'wall_seconds', '.1f')} |")
  lines += ["", f"{level} Fitted laws: L = E + A * X^-alpha (final eval loss, 95% bootstrap intervals)", ""]
  for column, fit in fits.items():
    if fit is None:
      lines.append(f"- X = {column}: not fitted: {fit_errors[column]}")
      continue
    lines.append(f"- X = `{column}`: E = {_interval(fit, 'E')}, A = {_interval(fit, 'A')}, "
                 f"alpha = {_interval(fit, 'alpha')} ({fit.n_points} points)")
  if group["entropy_floor"] is not None:
    lines += ["", f"True entropy floor of the synthetic data (Bayes-optimal loss at this context length): "
              f"**{group['entropy_floor']:.4f}** nats/token. A fitted E above it means the ladder has not yet "
              f"reached the regime where capacity, not the data, limits the loss."]
    if group["eval_set_floor"] is not None:
      lines += ["", f"The true model's loss on the finite eval set itself is {group['eval_set_floor']:.4f}: "
                f"the eval losses above carry this much sampling offset from the population floor."]
  lines += ["", f"{level} Backtest: fit without the largest rung, predict it", ""]
  if "skipped" in bt:
    lines.append(f"Skipped: {bt['skipped']}.")
  else:
    lines.append(f"Held out `{bt['held_out_trial']}` ({bt['x_column']} = {bt['x']:,.0f}); fitted on {bt['n_fit_points']} rungs.")
    lines.append(f"Observed {bt['observed']:.4f}, predicted {bt['predicted']:.4f} "
                 f"[{bt['predicted_lo']:.4f}, {bt['predicted_hi']:.4f}]: error {bt['error_loss_pct']:.2f}% on the loss"
                 + (f", **{bt['error_reducible_pct']:.1f}%** on its reducible part (loss minus the true floor)"
                    if bt["error_reducible_pct"] is not None else "") + f"; held-out RMSLE {bt['rmsle']:.4f}.")
  return lines


def _markdown(summary, done, excluded, fitted, params_column, spent) -> str:
  lines = [f"# Sweep `{summary['sweep']}`", "",
           f"{summary['n_done']} of {summary['n_trials']} trials finished and are fitted.", ""]
  if len(excluded):
    lines += ["Excluded from the fits (not finished): " +
              ", ".join(f"`{r.trial_id}` ({r.status})" for r in excluded.itertuples()), ""]
  if summary["warnings"]:
    lines += ["Damaged files (what was lost, and what to do):", ""] + [f"- {w}" for w in summary["warnings"]] + [""]
  files = ["`loss_vs_compute.png`, `loss_vs_params.png`, `residuals.png`"]
  if None in fitted:
    lines += _group_lines(fitted[None], params_column)
  else:
    word = "Objective" if summary["group_by"] == "objective" else "Ladder"
    lines += [f"{word}s: " + ", ".join(
        f"`{n}` ({g['n_done']} trials, {g['kind'] or 'kind unknown'}, loss in {g['loss_unit']})"
        for n, g in summary["groups"].items())
        + (". Fits, backtests and loss plots are per objective: losses of different objectives are never fitted "
           "together." if word == "Objective" else ". Fits, backtests and loss plots are per ladder (dense, and "
           "each expert count); the routed law below fits them together."), ""]
    for name, group in fitted.items():
      lines += [f"## {word} `{name}`", ""] + _group_lines(group, params_column, level="###") + [""]
    lines.pop()
    files = [", ".join(f"`{stem}_{_slug(n)}.png`" for n in fitted for stem in ("loss_vs_compute", "loss_vs_params",
                                                                              "residuals"))]
  if "objectives" in summary:
    lines += [""] + objectives_lib.markdown(summary["objectives"])
    lines.pop()
    files.append("`objectives_vs_params.png`, `objectives_vs_compute.png`")
  if "prediction_check" in summary:
    lines += [""] + prediction_check.markdown(summary["prediction_check"])
    lines.pop()
  if "isoflop" in summary:
    lines += [""] + isoflop_report.markdown(summary["isoflop"])
    lines.pop()
    files.append("`isoflop.png`")
  if "data_constrained" in summary:
    lines += [""] + data_constrained.markdown(summary["data_constrained"])
    lines.pop()
    files.append("`loss_vs_epochs.png`")
  if "moe" in summary:
    lines += [""] + moe_report.markdown(summary["moe"])
    lines.pop()
    files.append("`moe_vs_dense.png`")
  if "lr_transfer" in summary:
    lines += [""] + lr_transfer.markdown(summary["lr_transfer"])
    files.append("`loss_vs_lr.png`")
  if summary.get("emergence"):
    lines += [""] + emergence_report.markdown(summary["emergence"])
    files.append("`emergence.png`")
  if summary["curve_flags"]:
    lines += ["", "## Learning curves: forecast from the first half, checked against the second", "",
              "| trial | flag | why |", "|---|---|---|"]
    lines += [f"| `{t}` | {f['status']} | {f['message']} |" for t, f in summary["curve_flags"].items()]
  if summary["goodput"]:
    lines += [""] + time_spent.markdown(spent, summary["goodput"])
  lines += ["", "## Files", "", "- `trials.csv`, `steps.csv`: every plotted number, one row per trial / per step",
            "- `fits.json`: the fits, backtest, curve flags and goodput above; `curve_forecasts.csv`, `goodput.csv`",
            "- " + ", ".join(files) + ", `curve_forecasts.png`", ""]
  return "\n".join(lines)


def _backtest_line(bt, floor) -> str:
  if "skipped" in bt:
    return f"backtest skipped: {bt['skipped']}"
  line = (f"backtest (largest rung held out): observed {bt['observed']:.4f}, predicted {bt['predicted']:.4f}; "
          f"error {bt['error_loss_pct']:.2f}% on the loss")
  if bt["error_reducible_pct"] is not None:
    line += f", {bt['error_reducible_pct']:.1f}% on the reducible part (true floor {floor:.4f})"
  return line


def backtest_line(summary) -> str:
  """The backtest in one line (one objective; per objective see main)."""
  return _backtest_line(summary["backtest"], summary["entropy_floor"])


def analysis_dir(directory: str) -> str:
  """DIRECTORY/analysis, made; nothing in it is written through (scaling/containment.py): a planted link, special
  file or hard link, or an `analysis` that is not a real directory, is moved aside and said."""
  out_dir = os.path.join(directory, "analysis")
  in_the_way = os.path.lexists(out_dir) and (os.path.islink(out_dir) or not os.path.isdir(out_dir))
  moved = [(out_dir, containment.damaged_name(out_dir), containment.unsafe(out_dir) or "not a directory")] \
      if in_the_way else []
  for path, aside, _ in moved:
    os.rename(path, aside)
  os.makedirs(out_dir, exist_ok=True)
  for path, aside, what in moved + containment.move_aside(out_dir):
    print(f"warning: {path}: {what}, never written through; moved aside as {os.path.basename(aside)}", file=sys.stderr)
  return out_dir


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m analysis plot")
  parser.error = lambda message: (print(f"error: {message}", file=sys.stderr), sys.exit(2))
  parser.add_argument("sweep_dir")
  parser.add_argument("--params", default="params_non_embedding", choices=["params_non_embedding", "params_total"],
                      help="parameter-count convention for the N law (Kaplan: non-embedding; Chinchilla: total)")
  parser.add_argument("--compute", default="flops", choices=["flops", "flops_6n"],
                      help="compute convention: exact per-layer count with attention, or 6N")
  parser.add_argument("--bootstrap", type=int, default=200)
  parser.add_argument("--tokens-per-param", type=float, default=None,
                      help="data-constrained sweeps: also fit the excess-parameter term, with U_N = U / R")
  args = parser.parse_args(argv)
  if args.tokens_per_param is not None and not (np.isfinite(args.tokens_per_param) and args.tokens_per_param > 0):
    parser.error(f"--tokens-per-param {args.tokens_per_param:g}: must be a positive number")
  from scaling import storage
  try:
    place = storage.opened(args.sweep_dir)  # a bucket URL: analysed in this machine's mirror, then pushed
    summary = analyze(place.local, args.params, args.compute, args.bootstrap, args.tokens_per_param)
    place.push()
  except (LoadError, storage.StorageError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except OSError as e:  # the sweep directory's analysis/ cannot be written
    print(f"error: {e.filename or args.sweep_dir}: {e.strerror or e}; fix it or move it away", file=sys.stderr)
    return 2
  for warning in summary["warnings"]:
    print(f"warning: {warning}", file=sys.stderr)
  grouped = "group_by" in summary
  for label in (summary["fits"] if grouped else [None]):
    pick = (lambda key: summary[key][label]) if grouped else (lambda key: summary[key])
    prefix = f"[{label}] " if grouped else ""
    for column, fit in pick("fits").items():
      if "params" in fit:
        p, ci = fit["params"], fit["ci"]
        print(f"{prefix}fit vs {column}: E={p['E']:.4f} [{ci['E'][0]:.4f}, {ci['E'][1]:.4f}] "
              f"alpha={p['alpha']:.4f} [{ci['alpha'][0]:.4f}, {ci['alpha'][1]:.4f}]")
    print(prefix + _backtest_line(pick("backtest"), pick("entropy_floor")))
  if "data_constrained" in summary:
    print(data_constrained.console_line(summary["data_constrained"]))
  if summary.get("emergence"):
    print(emergence_report.console_line(summary["emergence"]))
  if "isoflop" in summary:
    print(isoflop_report.console_line(summary["isoflop"]))
  if "moe" in summary:
    for line in moe_report.console_lines(summary["moe"]):
      print(line)
  for line in lr_transfer.console_lines(summary["lr_transfer"]) if "lr_transfer" in summary else ():
    print(line)
  for line in prediction_check.console_lines(summary["prediction_check"]) if "prediction_check" in summary else ():
    print(line)
  for c in summary.get("objectives", {}).get("comparisons", []):
    print(f"objectives vs {c['x_column']}: {c['discriminative']} vs {c['generative']}: {c['answer']}")
  print(f"report: {summary['report']}")
  return 0
