"""analysis/lr_transfer.py: the best learning rate per width, how far it moves, on curves with known optima."""
import numpy as np
import pandas as pd

from analysis import lr_transfer, plots

LRS = [1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1]
WIDTHS = [16, 32, 64, 128]


def trials(optimum, seeds=(0, 1)):
  """Finished-trial rows whose loss is a parabola in ln lr with its vertex at optimum(parametrization, width)."""
  rows = []
  for parametrization in ("sp", "mup"):
    for width in WIDTHS:
      for lr in LRS:
        for seed in seeds:
          loss = 2.0 + 0.05 * np.log(lr / optimum(parametrization, width)) ** 2 + 1e-4 * seed - 0.01 * np.log(width)
          rows.append({"arch.width": width, "arch.depth": 2, "arch.parametrization": parametrization,
                       "config.optimizer.lr": lr, "final_eval_loss": loss, "seed": seed})
  return pd.DataFrame(rows)


def test_best_lr_per_width_and_its_drift(tmp_path):
  # sp's optimum falls as 1/width from 2e-2 at width 16; muP's stays at 1.5e-2.
  done = trials(lambda p, w: 2e-2 * 16 / w if p == "sp" else 1.5e-2)
  assert lr_transfer.applies(done)
  summary, rows = lr_transfer.analyze(done)
  assert summary["axis"] == "width" and set(rows.seeds) == {2}
  sp, mup = summary["parametrizations"]["sp"], summary["parametrizations"]["mup"]
  for width in WIDTHS:  # a parabola in ln lr: the three-point vertex is exact
    assert np.isclose(mup["best"][str(width)]["lr"], 1.5e-2, rtol=1e-6)
    expected = 2e-2 * 16 / width
    best = sp["best"][str(width)]
    assert np.isclose(best["lr"], expected, rtol=1e-6) and best["interval"][0] < expected < best["interval"][1]
  assert np.isclose(mup["drift"], 1.0) and abs(mup["exponent"]) < 1e-6
  assert np.isclose(sp["drift"], 8.0) and np.isclose(sp["exponent"], -1.0) and sp["range"] == [16, 128]
  text = "\n".join(lr_transfer.markdown(summary))
  assert "moves 8.00x" in text and "width^-1.00" in text and "moves 1.00x" in text
  plots.loss_vs_lr(str(tmp_path / "loss_vs_lr.png"), rows, summary)
  assert (tmp_path / "loss_vs_lr.png").stat().st_size > 10_000


def test_an_optimum_beyond_the_grid_is_flagged_and_too_few_lrs_do_not_apply():
  done = trials(lambda p, w: 0.5)  # above every lr tried
  best = lr_transfer.analyze(done)[0]["parametrizations"]["sp"]["best"]["16"]
  assert best["at_edge"] and best["lr"] == 1e-1 and best["interval"] == [5e-2, None]
  assert "(grid edge)" in "\n".join(lr_transfer.markdown(lr_transfer.analyze(done)[0]))
  assert not lr_transfer.applies(done[done["config.optimizer.lr"].isin(LRS[:2])])  # two lrs per width
  assert not lr_transfer.applies(done[done["arch.width"] == 16].drop(columns="arch.depth"))  # one width


def test_depth_transfer_keeps_each_depth_exponent_apart():
  """Across depth at one width, mup with depth_alpha 0.5 is its own curve family beside CompleteP's alpha 1."""
  rows = []
  for label, alpha in (("sp", 1.0), ("mup", 1.0), ("mup", 0.5)):
    for depth in (1, 2, 4, 8):
      for lr in LRS:
        optimum = 1e-2 / depth if label == "sp" else 1e-2 * (1 if alpha == 1.0 else depth ** -0.5)
        rows.append({"arch.width": 32, "arch.depth": depth, "arch.parametrization": label, "arch.depth_alpha": alpha,
                     "config.optimizer.lr": lr, "final_eval_loss": 2 + 0.05 * np.log(lr / optimum) ** 2, "seed": 0})
  summary, _ = lr_transfer.analyze(pd.DataFrame(rows))
  assert summary["axis"] == "depth"
  exponents = {p: e["exponent"] for p, e in summary["parametrizations"].items()}
  assert set(exponents) == {"sp", "mup", "mup alpha=0.5"}
  assert np.isclose(exponents["mup"], 0, atol=1e-6) and np.isclose(exponents["mup alpha=0.5"], -0.5, atol=0.05)
