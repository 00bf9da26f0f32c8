"""Sweep plots (PNG). Each point drawn is a row of the trials or steps DataFrame."""
import matplotlib

matplotlib.use("Agg")  # Files only; no display on servers and CI.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import fit as fit_lib  # noqa: E402

LABELS = {
    "params_non_embedding": "non-embedding parameters",
    "params_total": "total parameters",
    "params_active": "active parameters (per token)",
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


def _save(fig, path, axes=()):
  """Grids `axes`, lays the figure out and writes it as a PNG."""
  for ax in axes:
    ax.grid(alpha=0.3, which="both")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _finish(fig, ax, path, x_label, y_label, title):
  ax.set_xscale("log")
  ax.set_xlabel(x_label)
  ax.set_ylabel(y_label)
  ax.set_title(title)
  ax.legend(fontsize=7, loc="upper right")
  _save(fig, path, [ax])


def loss_vs_compute(path, trials, steps, fit, compute_column, entropy_floor=None, loss_unit="nats/token", title=None):
  """Every trial's eval-loss curve against compute so far, final points, and the fitted frontier."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
  colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(trials), 1)))
  per_token = "flops_per_token" if compute_column == "flops" else "flops_per_token_6n"
  for color, (_, trial) in zip(colors, trials.sort_values("params_non_embedding").iterrows()):
    curve = steps[(steps.trial_id == trial.trial_id) & steps.eval_loss.notna()] if "eval_loss" in steps else []
    if len(curve) and per_token in trial and pd.notna(trial[per_token]):
      ax.plot(curve.tokens * trial[per_token], curve.eval_loss, color=color, lw=1, alpha=0.8)
    ax.scatter([trial[compute_column]], [trial.final_eval_loss], color=color, zorder=3,
               label=f"{trial.params_non_embedding:,.0f} params")
  if fit is not None:
    _fit_curve(ax, fit, trials[compute_column].min() / 3, trials[compute_column].max() * 3, _law_label(fit, "C"))
  _floor(ax, entropy_floor)
  curves = steps.eval_loss[steps.trial_id.isin(trials.trial_id)] if "eval_loss" in steps else []
  _limit_y(ax, list(curves) + list(trials.final_eval_loss), entropy_floor)
  _finish(fig, ax, path, LABELS.get(compute_column, compute_column), f"eval loss ({loss_unit})",
          title or "Loss vs compute: learning curves and fitted frontier")


def loss_vs_params(path, trials, fit, params_column, entropy_floor=None, backtest=None, loss_unit="nats/token",
                   title=None):
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
  _finish(fig, ax, path, LABELS.get(params_column, params_column), f"final eval loss ({loss_unit})",
          title or "Loss vs parameters")


def _colored_fit(ax, result, x_lo, x_hi, color, ls="-", label=None, band=True):
  grid = np.geomspace(x_lo, x_hi, 200)
  ax.plot(grid, result.predict(grid), color=color, lw=1.3, ls=ls, label=label)
  if band and len(result.bootstrap_theta):
    lo, hi = result.predict_interval(grid)
    ax.fill_between(grid, lo, hi, color=color, alpha=0.1, lw=0)


def _power_label(name, result):
  lo, hi = result.ci["alpha"]
  interval = f" [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else ""
  return f"{name}: alpha = {result.params['alpha']:.2f}{interval}, E = {result.params['E']:.3g}"


def objectives_vs(path, curves, summary, x_column):
  """Downstream error of every objective vs x (one panel), and each objective's own loss (one panel each).

  curves, summary: objectives.analyze's outputs. Each point is a trials row (`curves[...]['trial_ids']`);
  hollow markers: an error of 0 drawn at 1/n_eval. Solid: power law with its 95% band; dashed: saturating law.
  """
  names = list(summary["per_objective"])
  fig, axes = plt.subplots(1, 1 + len(names), figsize=(4.6 * (1 + len(names)), 4.2), squeeze=False)
  ax = axes[0, 0]
  colors = {name: f"C{i}" for i, name in enumerate(names)}
  drawn = []
  for name in names:
    entry = summary["per_objective"][name]
    curve = curves[name].get(entry["downstream"], {}).get(x_column) if entry["downstream"] else None
    if curve is None or not len(curve["x"]):
      continue
    drawn.extend(curve["y"])
    raised = curve["raised"]
    ax.scatter(curve["x"][~raised], curve["y"][~raised], color=colors[name], zorder=3,
               label=f"{name}: {entry['downstream_meaning']}")
    if raised.any():
      ax.scatter(curve["x"][raised], curve["y"][raised], facecolors="none", edgecolors=colors[name], zorder=3,
                 label=f"{name}: error 0, drawn at 1/n_eval")
    x_lo, x_hi = curve["x"].min() / 2, curve["x"].max() * 4
    power, saturating = curve["results"]["power"], curve["results"]["saturating"]
    if power is not None:
      _colored_fit(ax, power, x_lo, x_hi, colors[name],
                   label=_power_label(f"{name} ({entry['downstream_meaning']})", power))
    if saturating is not None:
      _colored_fit(ax, saturating, x_lo, x_hi, colors[name], ls="--", band=False)
  ax.set_yscale("log")
  ax.set_xscale("log")
  ax.set_xlabel(LABELS.get(x_column, x_column))
  ax.set_ylabel("downstream test error (fraction)")
  ax.set_title("Downstream error (solid: power, 95% band; dashed: saturating)", fontsize=9)
  if drawn:  # Frame the observed errors; a wild bootstrap band must not set the scale.
    ax.set_ylim(min(drawn) / 1.6, max(drawn) * 1.6)
  ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16))
  ax.grid(alpha=0.3, which="both")
  for ax, name in zip(axes[0, 1:], names):
    entry = summary["per_objective"][name]
    curve = curves[name]["final_eval_loss"][x_column]
    ax.scatter(curve["x"], curve["y"], color=colors[name], zorder=3, label=f"{name} (final eval loss)")
    if len(curve["x"]) and curve["results"]["power"] is not None:
      power = curve["results"]["power"]
      _colored_fit(ax, power, curve["x"].min() / 2, curve["x"].max() * 4, colors[name],
                   label=_power_label("power", power))
    _limit_y(ax, curve["y"], None)
    ax.set_xscale("log")
    ax.set_xlabel(LABELS.get(x_column, x_column))
    ax.set_ylabel(f"final eval loss ({entry['loss_unit']})")
    ax.set_title(f"Own loss: {name}", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
  _save(fig, path, axes[0, 1:])


def loss_vs_epochs(path, rows, groups, predict, entropy_floor=None, loss_unit="nats/token"):
  """Data-constrained trials (analysis/data_constrained.py's tables; every point is one of their rows).

  Left: loss against epochs at fixed compute, one line per (size, D), with the fitted law (dashed) along
  U = D / epochs. Right: loss against D for each (size, U), the law (solid) and, dotted, what the law
  says the same D would give as fresh data (D' = D). predict(N, D, U): the fitted law, or None.
  """
  fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
  sizes = sorted(rows.params.unique())
  colors = dict(zip(sizes, plt.cm.viridis(np.linspace(0, 0.9, max(len(sizes), 1)))))
  drawn = list(rows.final_eval_loss)
  labelled = set()
  for _, g in groups.groupby("group", sort=True) if len(groups) else ():
    n, d = g.params.iloc[0], g.tokens.iloc[0]
    left.plot(g.epochs, g.final_eval_loss, "o-", color=colors[n], lw=1, ms=4,
              label=None if n in labelled else f"{n:,.0f} params")
    labelled.add(n)
    left.annotate(f"D={d:.3g}", (g.epochs.iloc[-1], g.final_eval_loss.iloc[-1]), fontsize=6, color=colors[n],
                  xytext=(3, 0), textcoords="offset points", va="center")
    if predict is not None:
      epochs = np.geomspace(g.epochs.min(), g.epochs.max(), 60)
      left.plot(epochs, predict(np.full_like(epochs, n), np.full_like(epochs, d), d / epochs),
                ls="--", color=colors[n], lw=1)
  left.set_xscale("log", base=2)
  left.set_xlabel("epochs (D / U) at fixed compute")
  left.set_ylabel(f"final eval loss ({loss_unit})")
  left.set_title("Loss vs epochs at fixed compute (dashed: fitted law)", fontsize=9)
  rows = rows.assign(u=[float(f"{v:.6g}") for v in rows.unique])  # One U per budget, float noise aside.
  uniques = sorted(rows.u.unique())
  styles = dict(zip(uniques, ["o", "s", "^", "D", "v", "P", "X", "*"] * 8))
  for (n, u), g in rows.groupby(["params", "u"], sort=True):
    g = g.sort_values("tokens")
    right.scatter(g.tokens, g.final_eval_loss, color=colors[n], marker=styles[u], zorder=3, s=18)
    if predict is not None and len(g) > 1:
      d = np.geomspace(g.tokens.min(), g.tokens.max(), 60)
      right.plot(d, predict(np.full_like(d, n), d, np.full_like(d, u)), color=colors[n], lw=1)
  if predict is not None:
    for n in sizes:
      d = np.geomspace(rows.tokens.min(), rows.tokens.max(), 60)
      right.plot(d, predict(np.full_like(d, n), d, d), color=colors[n], lw=1, ls=":")
  for u in uniques:
    right.scatter([], [], color="gray", marker=styles[u], label=f"U = {u:,.0f}")
  for n in sizes:
    right.plot([], [], color=colors[n], label=f"{n:,.0f} params")
  right.set_xscale("log")
  right.set_xlabel("tokens trained D")
  right.set_ylabel(f"final eval loss ({loss_unit})")
  right.set_title("Loss vs D per unique budget (solid: law; dotted: same D, all fresh)", fontsize=9)
  for ax in (left, right):
    _floor(ax, entropy_floor)
    _limit_y(ax, drawn, entropy_floor)
    ax.legend(fontsize=7, loc="upper right")
  _save(fig, path, (left, right))


def moe_vs_dense(path, rows, fit, loss_unit="nats/token"):
  """Mixture-of-experts trials (analysis/moe_report.py's table; every point is one of its rows).

  Left: loss against active non-embedding parameters, one colour per expert count (dense: E = 1),
  with the fitted routed law. Right: loss against training FLOPs (the active path), the trials of
  each expert count joined.
  """
  fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
  counts = sorted(rows.experts.unique())
  colors = dict(zip(counts, plt.cm.plasma(np.linspace(0, 0.8, max(len(counts), 1)))))
  for experts, g in rows.groupby("experts", sort=True):
    g = g.sort_values("params_active_non_embedding")
    label = "dense" if experts == 1 else f"{experts} experts"
    left.scatter(g.params_active_non_embedding, g.final_eval_loss, color=colors[experts], s=20, zorder=3, label=label)
    if fit is not None:
      n = np.geomspace(rows.params_active_non_embedding.min(), rows.params_active_non_embedding.max(), 60)
      left.plot(n, fit.predict(np.stack([n, np.full_like(n, experts)])), color=colors[experts], lw=1)
    g = g.sort_values("flops")
    right.plot(g.flops, g.final_eval_loss, "o-", color=colors[experts], lw=1, ms=4, label=label)
  for ax, x_label in ((left, "active non-embedding parameters"), (right, "training FLOPs (active path)")):
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(f"final eval loss ({loss_unit})")
    ax.legend(fontsize=8)
  left.set_title("Loss vs active parameters (lines: routed law, Clark et al. 2022)", fontsize=9)
  right.set_title("Loss vs compute", fontsize=9)
  _save(fig, path, (left, right))


def loss_vs_lr(path, rows, summary, loss_unit="nats/token"):
  """Learning-rate transfer (analysis/lr_transfer.py; every point a row of its table: one (parametrization,
  width, lr), seeds averaged): one panel per parametrization, loss against lr, one line per width, the best
  lr of each marked."""
  names = sorted(rows.parametrization.unique())
  fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.5), sharey=True, squeeze=False)
  scales = sorted(rows.scale.unique())
  colors = dict(zip(scales, plt.cm.viridis(np.linspace(0, 0.85, max(len(scales), 1)))))
  for ax, name in zip(axes[0], names):
    best = summary["parametrizations"].get(name, {}).get("best", {})
    for scale, curve in rows[rows.parametrization == name].groupby("scale"):
      curve = curve.sort_values("lr")
      ax.plot(curve.lr, curve.final_eval_loss, "o-", color=colors[scale], ms=4, lw=1, label=f"{summary['axis']} {scale:g}")
      if str(int(scale)) in best:
        ax.axvline(best[str(int(scale))]["lr"], color=colors[scale], lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_title(f"{name}: loss vs lr (dotted: best lr)", fontsize=9)
    ax.legend(fontsize=8)
  axes[0][0].set_ylabel(f"final eval loss ({loss_unit})")
  _save(fig, path, axes[0])


def isoflop(path, drawn, convention="non-embedding"):
  """IsoFLOP sweep (analysis/isoflop_report.py; every point a finished trial). Left: final loss against N per
  budget, each budget's parabola in ln N and its vertex. Right: N* against C = 6ND from the vertices (approach 2)
  and from the parametric frontier with its 95% band (approach 3)."""
  from analysis import isoflop as isoflop_lib
  rows, iso, parametric = drawn["rows"], drawn["isoflop"], drawn["parametric"]
  fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
  budgets = sorted(rows.budget.unique())
  colors = dict(zip(budgets, plt.cm.plasma(np.linspace(0, 0.85, max(len(budgets), 1)))))
  profiles = iso.profiles if iso is not None else None
  for i, budget in enumerate(budgets):
    g = rows[rows.budget == budget].sort_values("params")
    left.scatter(g.params, g.loss, color=colors[budget], zorder=3, s=20, label=f"budget {budget:.3g}")
    if profiles is not None and i < len(profiles) and np.isfinite(profiles.c2.iloc[i]):
      p = profiles.iloc[i]
      grid = np.geomspace(g.params.min() / 1.3, g.params.max() * 1.3, 100)
      left.plot(grid, p.c2 * np.log(grid) ** 2 + p.c1 * np.log(grid) + p.c0, color=colors[budget], lw=1)
      if p.c2 > 0:
        left.scatter([p.n_opt], [p.loss_opt], marker="*", s=120, color=colors[budget], edgecolors="black", zorder=4)
  _limit_y(left, list(rows.loss), None)
  left.set_xscale("log")
  left.set_xlabel(f"{convention} parameters N")
  left.set_ylabel("final eval loss")
  left.set_title("IsoFLOP profiles: parabola in ln N per budget (star: vertex)", fontsize=9)
  left.legend(fontsize=7)
  c_all = 6 * rows.params * rows.tokens
  grid = np.geomspace(c_all.min() / 2, c_all.max() * 4, 100)
  if iso is not None:
    used = iso.profiles[iso.profiles.used]
    right.scatter(used.flops, used.n_opt, color="tab:purple", zorder=3, label="approach 2: vertices")
    lo, hi = iso.ci["exponent_n"]
    right.plot(grid, iso.n_opt(grid), color="tab:purple", lw=1.3,
               label=f"approach 2: N* ~ C^{iso.exponent_n:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else ""))
  if parametric is not None:
    n_opt = isoflop_lib.frontier(parametric.params, grid)[0]
    a = isoflop_lib.allocation_exponents(parametric.params)[0]
    right.plot(grid, n_opt, color="tab:green", lw=1.3, ls="--", label=f"approach 3: N* ~ C^{a:.3f}")
    if len(parametric.bootstrap_theta):
      boot = {k: np.asarray(v)[:, None] for k, v in parametric.bootstrap_params.items()}
      samples = isoflop_lib.frontier(boot, grid[None, :])[0]  # [R, grid]
      band_lo, band_hi = np.nanpercentile(np.where(np.isfinite(samples), samples, np.nan), [2.5, 97.5], axis=0)
      right.fill_between(grid, band_lo, band_hi, color="tab:green", alpha=0.12, lw=0, label="approach 3: 95% band")
  right.set_ylim(rows.params.min() / 3, rows.params.max() * 3)
  right.set_xscale("log")
  right.set_yscale("log")
  right.set_xlabel("compute C = 6 N D (FLOPs)")
  right.set_ylabel("compute-optimal N*")
  right.set_title("N* against compute: approach 2 vs approach 3", fontsize=9)
  right.legend(fontsize=7)
  _save(fig, path, (left, right))


def recipe_comparison(path, a, b, drawn, x_label):
  """Left: both sweeps' final losses (each point a finished trial) and fitted curves with 95% bands.
  Right: the multiplier k of B over A at the shared budgets, with its band. a, b, drawn: analysis/compare.py's
  sweep points and what its compare() returns for the plot."""
  fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
  for sweep, result, color in ((a, drawn["fits"]["a"], "tab:blue"), (b, drawn["fits"]["b"], "tab:orange")):
    left.scatter(sweep["x"], sweep["loss"], color=color, zorder=3, s=18, label=f"{sweep['name']} (A)"
                 if sweep is a else f"{sweep['name']} (B)")
    grid = np.geomspace(min(a["x"].min(), b["x"].min()) / 2, max(a["x"].max(), b["x"].max()) * 2, 200)
    p = result.params
    left.plot(grid, result.predict(grid), color=color, lw=1.3,
              label=f"E = {p['E']:.3g}, alpha = {p['alpha']:.3f}")
    if len(result.bootstrap_theta):
      lo, hi = result.predict_interval(grid)
      left.fill_between(grid, lo, hi, color=color, alpha=0.12, lw=0)
  losses = np.concatenate([a["loss"], b["loss"]])
  pad = 0.1 * max(np.ptp(losses), 1e-3)
  left.set_ylim(losses.min() - pad, losses.max() + pad)
  left.set_xscale("log")
  left.set_xlabel(x_label)
  left.set_ylabel(f"final eval loss ({a['loss_unit']})")
  left.set_title("Both recipes: final losses and fitted L = E + A x^-alpha (95% bands)", fontsize=9)
  left.legend(fontsize=7)
  budgets, best = drawn["budgets"], drawn["best"]
  right.plot(budgets, best, "o-", color="black", label="k: L_B(x) = L_A(k x)")
  if drawn["samples"] is not None:
    lo, hi = fit_lib.percentile_interval(np.where(np.isfinite(drawn["samples"]), drawn["samples"], np.nan), 0.95)
    right.fill_between(budgets, lo, hi, color="black", alpha=0.12, lw=0, label="95% interval")
  right.axhline(1.0, color="gray", ls="--", lw=1)
  right.set_xscale("log")
  right.set_yscale("log")
  right.set_xlabel(x_label)
  right.set_ylabel("multiplier of B over A")
  right.set_title("Effective multiplier at the budgets both sweeps cover", fontsize=9)
  right.legend(fontsize=7)
  _save(fig, path, (left, right))


def _sigmoid_curve(ax, described, x_lo, x_hi, color):
  """The fitted sigmoid, its bootstrap band and the emergence point with its interval (analysis/emergence.py)."""
  sig = described.get("_fit")
  if sig is None:
    return
  grid = np.geomspace(x_lo, x_hi, 200)
  result, scale = sig["result"], sig["scale"]
  ax.plot(grid, result.predict(scale.law_input(grid)), color=color, lw=1.5,
          label=f"sigmoid (10-90% rise: {sig['rise_width'] / np.log(10):.2f} decades)")
  if len(result.bootstrap_theta):
    lo, hi = result.predict_interval(scale.law_input(grid))
    ax.fill_between(grid, lo, hi, color=color, alpha=0.12, lw=0)
  if described.get("emergence_point") is not None:
    lo, hi = described["emergence_point_ci"]
    ax.axvline(described["emergence_point"], color=color, ls="--", lw=1,
               label=f"emergence N = {described['emergence_point']:.3g}")
    if np.isfinite(lo) and np.isfinite(hi):  # clipped to the data: an open interval must not set the axis
      ax.axvspan(max(lo, x_lo), min(hi, x_hi), color=color, alpha=0.08, lw=0)


def emergence(path, drawn: dict):
  """Per task, facing panels: exact match (left) and the answer's log-probability (right) against N.

  Every point is one finished trial (a row of analysis/emergence_report.task_rows; seeds as markers),
  with the rung means, the sigmoid fits, their bands and emergence points."""
  fig, axes = plt.subplots(len(drawn), 2, figsize=(11, 3.6 * len(drawn)), squeeze=False)
  markers = ["o", "s", "^", "D", "v", "P"]
  for (task, d), (left, right) in zip(drawn.items(), axes):
    rows = d["rows"]
    x_lo, x_hi = rows.params.min() / 1.3, rows.params.max() * 1.3
    for ax, metric, described, color, label in (
        (left, "exact_match", d["exact_match"], "tab:blue", "exact match"),
        (right, "logprob", d["logprob"], "tab:red", "log-probability of the answer (nats)")):
      for i, (seed, g) in enumerate(rows.groupby("seed", sort=True)):
        ax.scatter(g.params, g[metric], marker=markers[i % len(markers)], color=color, alpha=0.6, s=22,
                   label=f"seed {seed:g}", zorder=3)
      means = rows.groupby("params")[metric].mean()
      ax.plot(means.index, means.values, color="gray", lw=0.8, zorder=2, label="mean over seeds")
      _sigmoid_curve(ax, described, x_lo, x_hi, color)
      ax.set_xscale("log")
      ax.set_xlim(x_lo, x_hi)
      ax.set_xlabel(LABELS["params_non_embedding"])
      ax.set_ylabel(label)
      ax.set_title(f"{task}: {label}", fontsize=9)
      ax.legend(fontsize=6, loc="upper left")
    left.set_ylim(-0.03, 1.03)
  _save(fig, path, axes.ravel())
