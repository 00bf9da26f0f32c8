"""PNG plots of fits: IsoFLOP parabolas, N_opt / D_opt vs C, residuals,
learning-curve forecasts with bands, and one-input law fits.

Figures are built with matplotlib's object API (Figure + Agg canvas), never
pyplot, so importing this module changes no global backend or state. Each
function writes one PNG and returns its path; every plotted number comes from
the DataFrame or the result object passed in.
"""
import pathlib

import numpy as np
from matplotlib import cm
from matplotlib import colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis import fit, isoflop

_DPI = 120


def _figure(n_cols: int = 1, n_rows: int = 1, size=(5.0, 3.8)):
  fig = Figure(figsize=(size[0] * n_cols, size[1] * n_rows), layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(n_rows, n_cols, squeeze=False)
  return fig, axes


def _save(fig, path) -> pathlib.Path:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=_DPI)
  return path


def _budget_colors(flops):
  norm = colors.LogNorm(vmin=np.min(flops), vmax=np.max(flops))
  return lambda c: cm.viridis(norm(c))


def isoflop_parabolas(result: isoflop.IsoFlopResult, path) -> pathlib.Path:
  """Loss vs N per compute budget, each budget's parabola in ln N and vertex."""
  fig, axes = _figure(size=(6.0, 4.2))
  ax = axes[0, 0]
  color = _budget_colors(result.profiles["flops"])
  runs = result.runs
  for label, profile in result.profiles.iterrows():
    mine = runs[runs["budget"] == label]
    c = color(profile["flops"])
    ax.scatter(mine["params"], mine["loss"], s=12, color=c)
    if profile["curvature"] > 0:
      ln = np.linspace(np.log(mine["params"].min()), np.log(mine["params"].max()), 100)
      ax.plot(np.exp(ln), np.polyval([profile["c2"], profile["c1"], profile["c0"]], ln),
              color=c, lw=1, label=f"{profile['flops']:.1e} FLOPs")
      ax.scatter([profile["n_opt"]], [profile["loss_opt"]], marker="*", s=80,
                 color=c, edgecolor="k", zorder=3,
                 alpha=1.0 if profile["used"] else 0.35)
  ax.set_xscale("log")
  ax.set_xlabel("parameters N")
  ax.set_ylabel("loss (nats)")
  ax.set_title("IsoFLOP profiles (stars: vertices; faded: not used)")
  ax.legend(fontsize=7, ncols=2)
  return _save(fig, path)


def optimal_allocation(path, *, iso: isoflop.IsoFlopResult | None = None,
                       chinchilla: fit.FitResult | None = None,
                       flops=None) -> pathlib.Path:
  """N_opt and D_opt vs C: IsoFLOP vertices and power law (approach 2) and/or
  the parametric frontier (approach 3), each with its bootstrap band."""
  if iso is None and chinchilla is None:
    raise ValueError("optimal_allocation needs iso and/or chinchilla")
  if flops is None:
    lo, hi = (iso.profiles["flops"].min(), iso.profiles["flops"].max()) if iso else (1e18, 1e24)
    flops = np.logspace(np.log10(lo) - 0.5, np.log10(hi) + 1.0, 60)
  flops = np.asarray(flops, dtype=float)
  fig, axes = _figure(n_cols=2)
  for ax, key, label in ((axes[0, 0], "params", "N_opt (parameters)"),
                         (axes[0, 1], "tokens", "D_opt (tokens)")):
    if iso is not None:
      used = iso.profiles[iso.profiles["used"]]
      column = "n_opt" if key == "params" else "tokens_opt"
      ax.scatter(used["flops"], used[column], color="C0", zorder=3,
                 label="IsoFLOP vertices")
      best = iso.n_opt(flops) if key == "params" else iso.tokens_opt(flops)
      ax.plot(flops, best, color="C0",
              label=f"approach 2: exponent {iso.exponent_n if key == 'params' else iso.exponent_d:.3f}")
      if len(iso.bootstrap):
        samples = (iso.n_opt(flops, samples=True) if key == "params"
                   else iso.tokens_opt(flops, samples=True))
        band = fit.percentile_interval(samples, iso.level)
        ax.fill_between(flops, *band, color="C0", alpha=0.2)
    if chinchilla is not None:
      n_opt, d_opt, _ = isoflop.frontier(chinchilla.params, flops)
      a, b = isoflop.allocation_exponents(chinchilla.params)
      ax.plot(flops, n_opt if key == "params" else d_opt, color="C1",
              label=f"approach 3: exponent {a if key == 'params' else b:.3f}")
      if len(chinchilla.bootstrap_theta):
        n_s, d_s, _ = isoflop.frontier(
            {k: v[:, None] for k, v in chinchilla.bootstrap_params.items()}, flops)
        band = fit.percentile_interval(n_s if key == "params" else d_s, chinchilla.level)
        ax.fill_between(flops, *band, color="C1", alpha=0.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute C (FLOPs)")
    ax.set_ylabel(label)
    ax.legend(fontsize=8)
  return _save(fig, path)


def residuals(result: fit.FitResult, path) -> pathlib.Path:
  """Residuals (fitted - observed, log space for losses) vs x and as a histogram."""
  resid = result.residuals()
  fig, axes = _figure(n_cols=2)
  x = result.inputs[0] if result.law.n_inputs == 1 else 6.0 * result.inputs[0] * result.inputs[1]
  x_label = result.law.input_names[0] if result.law.n_inputs == 1 else "6 N D (FLOPs)"
  ax = axes[0, 0]
  ax.scatter(x, resid, s=10)
  ax.axhline(0.0, color="k", lw=0.8)
  ax.set_xscale("log")
  ax.set_xlabel(x_label)
  space = "log y_hat - log y" if result.law.target == "log" else "y_hat - y"
  ax.set_ylabel(f"residual ({space})")
  ax.set_title(f"{result.law.name}: rms {np.sqrt(np.mean(resid ** 2)):.3g}, n = {result.n_points}")
  ax = axes[0, 1]
  ax.hist(resid, bins=max(5, min(40, result.n_points // 4)))
  ax.set_xlabel(f"residual ({space})")
  ax.set_ylabel("points")
  return _save(fig, path)


def law_fit(result: fit.FitResult, path, *, x_label: str = "x",
            y_label: str = "loss", extend: float = 1.0) -> pathlib.Path:
  """Data, fitted curve and its band for a one-input law; `extend` decades
  past the largest x."""
  if result.law.n_inputs != 1:
    raise ValueError("law_fit plots one-input laws; use residuals() or "
                     "optimal_allocation() for chinchilla")
  x, y = result.inputs[0], result.y
  grid = np.logspace(np.log10(x.min()), np.log10(x.max()) + extend, 200)
  fig, axes = _figure(size=(6.0, 4.2))
  ax = axes[0, 0]
  ax.scatter(x, y, s=12, color="k", label="data", zorder=3)
  ax.plot(grid, result.predict(grid), color="C0", label=result.law.formula)
  if len(result.bootstrap_theta):
    ax.fill_between(grid, *result.predict_interval(grid), color="C0", alpha=0.2,
                    label=f"{result.level:.0%} band")
  ax.set_xscale("log")
  if result.law.target == "log":
    ax.set_yscale("log")
  ax.set_xlabel(x_label)
  ax.set_ylabel(y_label)
  ax.legend(fontsize=8)
  return _save(fig, path)


def curve_forecasts(df, forecasts: dict, path, *, trial: str = "trial",
                    step: str = "step", loss: str = "loss", flags: dict | None = None,
                    n_cols: int = 3) -> pathlib.Path:
  """One panel per trial: observed loss, forecast from the early part with its
  predictive band, the end of the fit window, and the flag if given.

  forecasts: trial id -> forecast.CurveForecast; flags: trial id -> CurveFlag
  (forecast_trials' `forecast` and `flag` columns give both).
  """
  ids = list(forecasts)
  n_rows = max(1, -(-len(ids) // n_cols))
  fig, axes = _figure(n_cols=min(n_cols, max(1, len(ids))), n_rows=n_rows,
                      size=(4.2, 3.2))
  for ax in axes.flat[len(ids):]:
    ax.set_visible(False)
  for ax, trial_id in zip(axes.flat, ids):
    fc = forecasts[trial_id]
    rows = df[df[trial] == trial_id].sort_values(step)
    steps, losses = rows[step].to_numpy(float), rows[loss].to_numpy(float)
    early = steps <= fc.fit_until_step
    ax.scatter(steps[early], losses[early], s=6, color="k", label="fitted")
    ax.scatter(steps[~early], losses[~early], s=6, color="C3", label="later")
    grid = np.linspace(max(steps[steps > 0].min(), 1e-12), steps.max(), 200)
    ax.plot(grid, fc.predict(grid), color="C0", label="forecast")
    ax.fill_between(grid, *fc.band(grid), color="C0", alpha=0.2)
    ax.axvline(fc.fit_until_step, color="gray", lw=0.8, ls="--")
    title = str(trial_id)
    if flags and trial_id in flags:
      title += f": {flags[trial_id].status}"
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(step)
    ax.set_ylabel(loss)
    finite = losses[np.isfinite(losses)]
    if finite.size:  # Keep a diverged tail from squashing the rest.
      band_lo = np.nanmin(fc.band(grid)[0])
      ax.set_ylim(min(finite.min(), band_lo) * 0.97,
                  min(finite.max(), 3 * np.median(finite)) * 1.03)
  axes.flat[0].legend(fontsize=7)
  return _save(fig, path)
