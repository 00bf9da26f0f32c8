"""Learning-curve extrapolation on the Alabdulmohsin et al. 2022 benchmark.

  .venv/bin/python benchmarks/forecast_benchmark.py [--data DIR] [--bootstrap R]

Data: ../shared/data/scaling_benchmarks/benchmark.{vision,lang}.csv (README
there). One curve = one (Domain, Task, Model); fit on Training=1 rows, predict
the Training=0 rows, RMSLE = sqrt(mean((log y_hat - log y)^2)) per curve, and
the median over curves, as in the paper's repository. Also reports how often
the held-out points fall inside the 95% forecast band (analysis/forecast.py).
Expected (2-core CPU, 2026-11-23): saturating median RMSLE 0.037 on vision
(power 0.063, pure power 0.091), band coverage 0.90; ~45 s in all.
"""
import argparse
import pathlib
import time

import numpy as np
import pandas as pd

from analysis import fit, forecast, laws

DEFAULT_DATA = (pathlib.Path(__file__).resolve().parents[2]
                / "shared/data/scaling_benchmarks")
LAWS = (laws.SATURATING, laws.POWER, laws.PURE_POWER)


def load_curves(path: pathlib.Path):
  """Yields (name, x_fit, y_fit, x_test, y_test) per curve, duplicates dropped."""
  df = pd.read_csv(path).drop_duplicates()
  for name, curve in df.groupby(["Domain", "Task", "Model"], sort=True):
    curve = curve.sort_values("Seen Examples")
    train = curve["Training"] == 1
    yield (name, curve.loc[train, "Seen Examples"].to_numpy(float),
           curve.loc[train, "Loss"].to_numpy(float),
           curve.loc[~train, "Seen Examples"].to_numpy(float),
           curve.loc[~train, "Loss"].to_numpy(float))


def rmsle(predicted, observed) -> float:
  return float(np.sqrt(np.mean((np.log(predicted) - np.log(observed)) ** 2)))


def evaluate(path: pathlib.Path, bootstrap: int = 0) -> pd.DataFrame:
  """One row per (curve, law): held-out RMSLE, and band coverage if bootstrap."""
  rows = []
  for name, x_fit, y_fit, x_test, y_test in load_curves(path):
    for law in LAWS:
      row = {"curve": "/".join(map(str, name)), "law": law.name}
      try:
        if bootstrap:
          fc = forecast.forecast_curve(
              np.concatenate([x_fit, x_test]), np.concatenate([y_fit, y_test]),
              fit_until_step=x_fit.max(), law=law, bootstrap=bootstrap)
          lo, hi = fc.band(x_test)
          row["coverage"] = float(np.mean((y_test >= lo) & (y_test <= hi)))
          result = fc.fit
        else:
          result = fit.fit_law(law, x_fit, y_fit)
        row["rmsle"] = rmsle(result.predict(x_test), y_test)
      except fit.FitError as err:
        row["error"] = str(err)
      rows.append(row)
  return pd.DataFrame(rows)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA)
  parser.add_argument("--bootstrap", type=int, default=100)
  args = parser.parse_args()
  for domain in ("vision", "lang"):
    start = time.perf_counter()
    table = evaluate(args.data / f"benchmark.{domain}.csv", args.bootstrap)
    seconds = time.perf_counter() - start
    n_curves = table["curve"].nunique()
    print(f"\n{domain}: {n_curves} curves, {seconds:.1f} s "
          f"(fit + {args.bootstrap} bootstraps, {len(LAWS)} laws)")
    summary = table.groupby("law").agg(
        median_rmsle=("rmsle", "median"), mean_rmsle=("rmsle", "mean"),
        band_coverage=("coverage", "mean") if "coverage" in table else ("rmsle", "size"))
    print(summary.sort_values("median_rmsle").to_string(float_format="%.4f"))
    wins = table.pivot(index="curve", columns="law", values="rmsle")
    print(f"saturating beats pure_power on "
          f"{(wins['saturating'] < wins['pure_power']).mean():.0%} of curves, "
          f"power on {(wins['saturating'] < wins['power']).mean():.0%}")


if __name__ == "__main__":
  main()
