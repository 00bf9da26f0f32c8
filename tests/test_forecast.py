"""Learning-curve forecasts and the flags that catch bad trials."""
import pathlib

import numpy as np
import pandas as pd
import pytest

from analysis import fit, forecast, laws

STEPS = np.arange(50, 4001, 50.0)
BENCHMARK = (pathlib.Path(__file__).resolve().parents[2]
             / "shared/data/scaling_benchmarks/benchmark.vision.csv")


def curve(kind: str, seed: int = 0) -> np.ndarray:
  """A saturating loss curve with 0.5% noise, then broken in one of four ways."""
  rng = np.random.default_rng(seed)
  loss = (2.0 + 30.0 * (STEPS + 100) ** -0.5) * np.exp(0.005 * rng.standard_normal(STEPS.size))
  if kind == "spike":
    loss[50:53] *= 1.3
  elif kind == "plateau":
    loss[34:] = loss[34] * np.exp(0.003 * rng.standard_normal(STEPS.size - 34))
  elif kind == "divergence":
    loss[45:] *= np.exp(np.linspace(0, 0.8, STEPS.size - 45))
  elif kind == "nan":
    loss[60:] = np.nan
  return loss


@pytest.mark.parametrize("kind, status", [
    ("healthy", "ok"), ("spike", "spike"), ("plateau", "plateau"),
    ("divergence", "divergence"), ("nan", "divergence")])
def test_flags(kind, status):
  loss = curve(kind)
  result = forecast.forecast_curve(STEPS, loss, fit_fraction=0.4, bootstrap=50)
  flag = forecast.flag_curve(result, STEPS, loss)
  assert flag.status == status, flag.message
  if status != "ok":
    assert result.fit_until_step < flag.first_step <= STEPS[-1]


def test_healthy_forecasts_cover_their_final_loss():
  covered = 0
  for seed in range(10):
    loss = curve("healthy", seed)
    result = forecast.forecast_curve(STEPS, loss, fit_fraction=0.4, bootstrap=30, seed=seed)
    lo, hi = result.band(STEPS[-1:])
    covered += lo[0] <= loss[-1] <= hi[0]
    assert forecast.flag_curve(result, STEPS, loss).status == "ok"
  assert covered >= 8  # 95% band: 8 or more of 10 with probability 0.99.


def test_forecast_trials_table():
  frames = [pd.DataFrame({"trial": kind, "step": STEPS, "loss": curve(kind)})
            for kind in ("healthy", "divergence")]
  frames.append(pd.DataFrame({"trial": "short", "step": [10.0, 20.0, 30.0], "loss": [3.0, 2.9, 2.8]}))
  table = forecast.forecast_trials(pd.concat(frames), fit_fraction=0.4, bootstrap=20)
  status = dict(zip(table["trial"], table["status"]))
  assert status == {"healthy": "ok", "divergence": "divergence", "short": "not_fitted"}
  healthy = table.set_index("trial").loc["healthy"]
  assert healthy["predicted_final_lo"] < healthy["predicted_final"] < healthy["predicted_final_hi"]
  assert isinstance(healthy["forecast"], forecast.CurveForecast)


@pytest.mark.skipif(not BENCHMARK.exists(), reason="benchmark data not present")
def test_saturating_law_extrapolates_the_vision_benchmark():
  """Alabdulmohsin et al. 2022: median held-out RMSLE over the 72 vision
  curves <= 0.04 for the saturating law, better than a pure power law."""
  df = pd.read_csv(BENCHMARK).drop_duplicates()
  errors = {"saturating": [], "pure_power": []}
  for _, group in df.groupby(["Domain", "Task", "Model"]):
    group = group.sort_values("Seen Examples")
    train = group["Training"] == 1
    x, y = group["Seen Examples"].to_numpy(float), group["Loss"].to_numpy(float)
    for law in (laws.SATURATING, laws.PURE_POWER):
      result = fit.fit_law(law, x[train], y[train])
      log_error = np.log(result.predict(x[~train])) - np.log(y[~train])
      errors[law.name].append(np.sqrt(np.mean(log_error ** 2)))
  assert len(errors["saturating"]) == 72
  saturating, pure = np.median(errors["saturating"]), np.median(errors["pure_power"])
  assert saturating <= 0.04
  assert saturating < pure
