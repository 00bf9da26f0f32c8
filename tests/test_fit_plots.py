"""Fit plots: each writes a PNG from the result objects, without pyplot."""

import numpy as np
import pandas as pd
import pytest

from analysis import fit, fit_plots, forecast, isoflop, laws

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fits():
  runs = isoflop.synthetic_runs(budgets=np.logspace(18, 21, 4), sizes_per_budget=6,
                                noise=0.005, seed=0)
  iso = isoflop.fit_isoflop(runs["params"], runs["tokens"], runs["loss"], bootstrap=20)
  power = fit.fit_law(laws.POWER, runs["flops"], runs["loss"], bootstrap=20)
  return iso, power


def is_png(path):
  return path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG


def test_isoflop_allocation_and_residual_plots(fits, tmp_path):
  iso, power = fits
  assert is_png(fit_plots.isoflop_parabolas(iso, tmp_path / "parabolas.png"))
  assert is_png(fit_plots.optimal_allocation(tmp_path / "alloc.png", iso=iso))
  assert is_png(fit_plots.residuals(power, tmp_path / "residuals.png"))
  assert is_png(fit_plots.law_fit(power, tmp_path / "sub" / "power.png", x_label="FLOPs"))


def test_curve_forecast_panels(tmp_path):
  steps = np.arange(10, 1001, 10.0)
  loss = 2.0 + 10.0 * (steps + 50) ** -0.5
  df = pd.DataFrame({"trial": "a", "step": steps, "loss": loss})
  table = forecast.forecast_trials(df, bootstrap=10)
  path = fit_plots.curve_forecasts(df, dict(zip(table["trial"], table["forecast"])),
                                   tmp_path / "curves.png",
                                   flags=dict(zip(table["trial"], table["flag"])))
  assert is_png(path)
