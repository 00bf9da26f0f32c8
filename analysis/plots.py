"""Sweep plots (PNG). Each point drawn is a row of the trials or steps DataFrame."""
import matplotlib

matplotlib.use("Agg")  # Files only; no display on servers and CI.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LABELS = {
    "params_non_embedding": "non-embedding parameters",
    "params_total": "total parameters",
    "flops": "training compute (FLOPs, exact count)",
    "flops_6n": "training compute (FLOPs, 6N)",
}


def _fit_curve(ax, fit, x_lo, x_hi, label):
  grid = np.geomspace(x_lo, x_hi, 200)
  ax.plot(grid, fit.predict(grid), color="black", lw=1.5, label=label)
  if len(fit.bootstrap_theta):
    lo, hi = fit.predict_interval(grid)
    ax.fill_between(grid, lo, hi, color="black", alpha=0.12, lw=0, label="95% bootstrap band")


def _law_label(fit, x_symbol):
  p = fit.params
  return f"fit: L = {p['E']:.3f} + {p['A']:.3g}·{x_symbol}^-{p['alpha']:.3f}"


def _limit_y(ax, observed, entropy_floor):
  """Frames the observed losses (and the floor); a wild bootstrap band must not set the scale."""
  values = np.asarray([v for v in observed if np.isfinite(v)], dtype=float)
  if not len(values):
    return
  lo, hi = values.min(), np.quantile(values, 0.98)
  if entropy_floor is not None and np.isfinite(entropy_floor):
    lo = min(lo, entropy_floor)
  pad = 0.08 * max(hi - lo, 1e-3)
  ax.set_ylim(lo - pad, hi + pad)


def _floor(ax, entropy_floor):
  if entropy_floor is not None and np.isfinite(entropy_floor):
    ax.axhline(entropy_floor, color="tab:green", ls="--", lw=1, label=f"true entropy floor {entropy_floor:.3f}")


def _finish(fig, ax, path, x_label, y_label, title):
  ax.set_xscale("log")
  ax.set_xlabel(x_label)
  ax.set_ylabel(y_label)
  ax.set_title(title)
  ax.legend(fontsize=7, loc="upper right")
  ax.grid(alpha=0.3, which="both")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def loss_vs_compute(path, trials, steps, fit, compute_column, entropy_floor=None):
  """Every trial's eval-loss curve against compute so far, final points, and the fitted frontier."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
  colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(trials), 1)))
  per_token = "flops_per_token" if compute_column == "flops" else "flops_per_token_6n"
  for color, (_, trial) in zip(colors, trials.sort_values("params_non_embedding").iterrows()):
    curve = steps[(steps.trial_id == trial.trial_id) & steps.eval_loss.notna()] if "eval_loss" in steps else []
    if len(curve):
      ax.plot(curve.tokens * trial[per_token], curve.eval_loss, color=color, lw=1, alpha=0.8)
    ax.scatter([trial[compute_column]], [trial.final_eval_loss], color=color, zorder=3,
               label=f"{trial.params_non_embedding:,.0f} params")
  if fit is not None:
    _fit_curve(ax, fit, trials[compute_column].min() / 3, trials[compute_column].max() * 3, _law_label(fit, "C"))
  _floor(ax, entropy_floor)
  curves = steps.eval_loss[steps.trial_id.isin(trials.trial_id)] if "eval_loss" in steps else []
  _limit_y(ax, list(curves) + list(trials.final_eval_loss), entropy_floor)
  _finish(fig, ax, path, LABELS.get(compute_column, compute_column), "eval loss (nats/token)",
          "Loss vs compute: learning curves and fitted frontier")


def loss_vs_params(path, trials, fit, params_column, entropy_floor=None, backtest=None):
  """Final eval loss per trial against parameters, with the fit and the held-out prediction."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
  ax.scatter(trials[params_column], trials.final_eval_loss, color="tab:blue", zorder=3, label="trials (final eval loss)")
  if fit is not None:
    _fit_curve(ax, fit, trials[params_column].min() / 2, trials[params_column].max() * 4, _law_label(fit, "N"))
  if backtest is not None:
    ax.errorbar([backtest["x"]], [backtest["predicted"]],
                yerr=[[backtest["predicted"] - backtest["predicted_lo"]], [backtest["predicted_hi"] - backtest["predicted"]]],
                fmt="x", color="tab:red", capsize=3, zorder=4,
                label=f"backtest: predicted largest rung ({backtest['error_reducible_pct']:.1f}% reducible error)"
                if backtest.get("error_reducible_pct") is not None else "backtest: predicted largest rung")
  _floor(ax, entropy_floor)
  extra = [backtest["predicted"]] if backtest is not None else []
  _limit_y(ax, list(trials.final_eval_loss) + extra, entropy_floor)
  _finish(fig, ax, path, LABELS.get(params_column, params_column), "final eval loss (nats/token)",
          "Loss vs parameters")
