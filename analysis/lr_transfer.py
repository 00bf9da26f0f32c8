"""Learning-rate transfer across width (or depth), in a sweep's report: muP against the standard parametrization.

A sweep whose finished trials cover at least three learning rates (`optimizer.lr`) at each of at least
two widths (or, at one width, two depths) gets, per parametrization (`model.options.parametrization`,
sp where unset; muP with a `depth_alpha` other than 1 apart, as "mup alpha=0.5") and width:

- the final eval loss against lr (seeds averaged), drawn in loss_vs_lr.png (one panel per
  parametrization, one line per width; every point is a row of the table);
- the best lr: the vertex of the parabola in (ln lr, loss) through the best grid point and its two
  neighbours, with the interval between those neighbours (the grid's resolution, the bound the data
  give); at an edge of the grid the edge itself, flagged, and the interval open on that side;
- how far the best lr moves: the ratio of the largest to the smallest best lr across the widths, and
  the exponent s of best lr ~ width^s (least squares in logs; Adam under sp drifts towards s = -1,
  muP's promise is s = 0).
"""
import numpy as np
import pandas as pd

LR, PARAMETRIZATION, DEPTH_ALPHA = "config.optimizer.lr", "arch.parametrization", "arch.depth_alpha"


def _scale_axis(done: pd.DataFrame):
  """"width" or "depth": what varies between the lr curves, or None."""
  for axis in ("width", "depth"):
    column = f"arch.{axis}"
    if column in done and pd.to_numeric(done[column], errors="coerce").nunique() >= 2:
      return axis
  return None


def _parametrization(done: pd.DataFrame) -> pd.Series:
  """Each trial's parametrization, "mup alpha=0.5" where muP's depth exponent is not CompleteP's 1."""
  names = done.get(PARAMETRIZATION, pd.Series("sp", index=done.index)).fillna("sp").astype(str)
  alpha = pd.to_numeric(done.get(DEPTH_ALPHA, pd.Series(1.0, index=done.index)), errors="coerce").fillna(1.0)
  other = (names == "mup") & (alpha != 1.0)
  return names.where(~other, names + " alpha=" + alpha.map("{:g}".format))


def table(done: pd.DataFrame) -> pd.DataFrame:
  """(parametrization, scale, lr) -> mean final eval loss over seeds, its seed count."""
  axis = _scale_axis(done)
  rows = pd.DataFrame({
      "parametrization": _parametrization(done),
      "scale": pd.to_numeric(done[f"arch.{axis}"], errors="coerce"),
      "lr": pd.to_numeric(done[LR], errors="coerce"),
      "loss": pd.to_numeric(done["final_eval_loss"], errors="coerce")}).dropna()
  return rows.groupby(["parametrization", "scale", "lr"]).loss.agg(["mean", "count"]).reset_index().rename(
      columns={"mean": "final_eval_loss", "count": "seeds"})


def applies(done: pd.DataFrame) -> bool:
  if LR not in done or _scale_axis(done) is None or "final_eval_loss" not in done:
    return False
  rows = table(done)
  curves = rows.groupby(["parametrization", "scale"]).lr.nunique()
  return bool((curves >= 3).groupby(level=0).sum().max() >= 2)


def best_lr(lrs, losses) -> dict:
  """The best learning rate of one curve: parabola vertex in ln lr through the best point and its neighbours."""
  order = np.argsort(lrs)
  lrs, losses = np.asarray(lrs, float)[order], np.asarray(losses, float)[order]
  i = int(np.argmin(losses))
  if i == 0 or i == len(lrs) - 1:
    lo = lrs[i - 1] if i > 0 else None
    hi = lrs[i + 1] if i < len(lrs) - 1 else None
    return {"lr": float(lrs[i]), "interval": [lo, hi], "at_edge": True, "loss": float(losses[i])}
  x, y = np.log(lrs[i - 1:i + 2]), losses[i - 1:i + 2]
  a, b, _ = np.polyfit(x, y, 2)
  vertex = float(np.exp(-b / (2 * a))) if a > 0 else float(lrs[i])
  vertex = min(max(vertex, lrs[i - 1]), lrs[i + 1])
  return {"lr": vertex, "interval": [float(lrs[i - 1]), float(lrs[i + 1])], "at_edge": False,
          "loss": float(losses[i])}


def analyze(done: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
  """(what fits.json holds under "lr_transfer", the table the figure draws)."""
  rows, axis = table(done), _scale_axis(done)
  out = {"axis": axis, "parametrizations": {}, "points": rows.to_dict("records")}
  for parametrization, part in rows.groupby("parametrization"):
    best = {}
    for scale, curve in part.groupby("scale"):
      if curve.lr.nunique() >= 3:
        best[int(scale)] = best_lr(curve.lr, curve.final_eval_loss)
    entry = {"best": {str(k): v for k, v in best.items()}}
    if len(best) >= 2:
      scales, lrs = np.array(sorted(best), float), np.array([best[k]["lr"] for k in sorted(best)])
      entry["drift"] = float(lrs.max() / lrs.min())
      entry["exponent"] = float(np.polyfit(np.log(scales), np.log(lrs), 1)[0])
      entry["range"] = [int(scales.min()), int(scales.max())]
    out["parametrizations"][parametrization] = entry
  return out, rows


def _fmt(value) -> str:
  return "open" if value is None else f"{value:.3g}"


def markdown(summary: dict) -> list:
  axis = summary["axis"]
  lines = [f"## Learning-rate transfer across {axis} (muP vs standard parametrization)", "",
           f"Final eval loss (seeds averaged) per {axis} and learning rate; the best lr is the vertex of the "
           "parabola in ln lr through the best grid point and its neighbours, its interval those neighbours "
           "(loss_vs_lr.png).", "",
           f"| parametrization | {axis} | best lr | interval | loss at the best grid lr | lrs tried |",
           "|---|---:|---:|---|---:|---:|"]
  for parametrization, entry in summary["parametrizations"].items():
    for scale, best in entry["best"].items():
      tried = sum(1 for r in summary["points"] if r["parametrization"] == parametrization and r["scale"] == int(scale))
      edge = " (grid edge)" if best["at_edge"] else ""
      lines.append(f"| {parametrization} | {scale} | {best['lr']:.3g}{edge} | [{_fmt(best['interval'][0])}, "
                   f"{_fmt(best['interval'][1])}] | {best['loss']:.4f} | {tried} |")
  lines.append("")
  for parametrization, entry in summary["parametrizations"].items():
    if "drift" in entry:
      lines.append(f"- {parametrization}: over {axis} {entry['range'][0]}-{entry['range'][1]} "
                   f"({entry['range'][1] / entry['range'][0]:.0f}x) the best lr moves {entry['drift']:.2f}x; "
                   f"best lr ~ {axis}^{entry['exponent']:+.2f}")
  return lines


def console_lines(summary: dict) -> list:
  return [f"lr transfer ({p}): best lr moves {e['drift']:.2f}x over {summary['axis']} {e['range'][0]}-{e['range'][1]}"
          f" (~ {summary['axis']}^{e['exponent']:+.2f})"
          for p, e in summary["parametrizations"].items() if "drift" in e]
