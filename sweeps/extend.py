"""`python -m sweeps extend SWEEP_DIR --budget C`: predict, then verify.

Fits L(N, D) = E + A / N^alpha + B / D^beta to the sweep's finished trials (N non-embedding
parameters, D tokens), plans the compute-optimal size for a FLOP budget C beyond the fitted ones
(C = 6 N D), and writes a follow-up sweep at C with the ladder sizes nearest the predicted N*
and about 0.5x and 2x it (`train.horizon: {flops: C, flop_count: 6n}`, so each trial spends C as
the plan counts it). Before anything trains it records the prediction in the follow-up sweep's
directory (`prediction.json`: N*, D*, the loss on the frontier, and the law's loss for each of
the three trials, each with its 95% interval for one new observation); then it runs the follow-up sweep, whose report
sets the observed losses against the predicted ones and says whether the predicted size won
(analysis/prediction_check.py).

The follow-up sweep copies everything else from the sweep's largest finished trial (family,
options, data, optimizer, seed) and its `runtime:`; it is written to SWEEP_DIR/../<name>.yaml's
place: `<parent of SWEEP_DIR>/<sweep>_extend_<C>.yaml`, output beside SWEEP_DIR.
"""
import math
import os

import numpy as np
import yaml

from analysis import fit as fit_lib
from analysis import isoflop, laws
from scaling import metrics as metrics_lib

MAX_DIAL = 64  # ladder sizes searched for the nearest parameter counts
PREDICTION = "prediction.json"


class ExtendError(ValueError):
  """Bad input to `sweeps extend`: its message is the one line printed."""


def _finished(sweep_dir: str):
  from analysis.load import LoadError, finished, load_sweep
  try:
    results = load_sweep(sweep_dir)
  except LoadError as e:
    raise ExtendError(str(e)) from None
  columns = ["params_non_embedding", "tokens", "final_eval_loss"]
  return results, finished(results.trials, columns, positive=columns[:2])


def _ladder(config: dict, up_to: float):
  """[(size, non-embedding params)] of the family's ladder on the trial's data: sizes from 1 that build, up to
  the first one past `up_to` parameters (the ladder grows with its dial) or MAX_DIAL."""
  from models import counting, registry
  from scaling.data import registry as data_registry
  family = registry.get(config["model"]["family"])
  data_inputs = data_registry.parse(config["data"]).model_inputs(config["train"]["seq_len"])
  inputs = family.ladder_inputs(data_inputs, config["train"]["objective"]["name"])
  out = []
  for size in range(1, MAX_DIAL + 1):
    try:
      arch = family.ladder(size, **inputs, **config["model"]["options"])
    except ValueError:
      continue
    out.append((size, counting.abstract_counts(family, arch)["params_non_embedding"]))
    if out[-1][1] > up_to:
      break
  return out


def _nearest(ladder, target, taken=()):
  """The ladder size whose parameter count is nearest `target` in log, skipping `taken`."""
  choices = [(abs(math.log(n / target)), size, n) for size, n in ladder if size not in taken]
  _, size, n = min(choices)
  return size, n


def plan(sweep_dir: str, budget: float, bootstrap: int = 200) -> dict:
  """The follow-up sweep (a YAML-able dict) and the prediction; ExtendError for bad input."""
  if not (math.isfinite(budget) and budget > 0):
    raise ExtendError(f"--budget {budget:g}: must be a positive number of FLOPs")
  results, done = _finished(sweep_dir)
  n = done.params_non_embedding.to_numpy(float)
  d = done.tokens.to_numpy(float)
  y = done.final_eval_loss.to_numpy(float)
  problem = fit_lib.distinct_inputs_problem(laws.CHINCHILLA, np.stack([n, d]), ["N", "D"]) if len(y) else "none"
  if len(y) < laws.CHINCHILLA.n_params or problem:
    raise ExtendError(f"{sweep_dir}: {len(y)} finished trials with parameters, tokens and a final loss; "
                      f"L(N, D) needs at least {laws.CHINCHILLA.n_params} distinct (N, D) points")
  largest = float((6 * n * d).max())
  if budget <= largest:
    raise ExtendError(f"--budget {budget:.3g}: not beyond the fitted trials (the largest spent 6ND = {largest:.3g} "
                      "FLOPs); predict-then-verify needs a budget past them")
  try:
    result = fit_lib.fit_law(laws.CHINCHILLA, np.stack([n, d]), y, bootstrap=bootstrap, seed=0)
  except fit_lib.FitError as e:
    raise ExtendError(f"{sweep_dir}: {e}") from None
  frontier = isoflop.plan(budget, result)

  template_id = done.sort_values("params_non_embedding").trial_id.iloc[-1]
  config = metrics_lib.read_json(os.path.join(sweep_dir, template_id, "config.json"))
  ladder = _ladder(config, up_to=4.0 * frontier["n_params"])
  optimal, n_opt = _nearest(ladder, frontier["n_params"])
  smaller, n_small = _nearest(ladder, 0.5 * frontier["n_params"], taken=(optimal,))
  larger, n_large = _nearest(ladder, 2.0 * frontier["n_params"], taken=(optimal, smaller))
  sizes = sorted({optimal, smaller, larger})

  trials = []
  for size, n_s in sorted(((smaller, n_small), (optimal, n_opt), (larger, n_large))):
    tokens = budget / (6.0 * n_s)
    point = np.array([[n_s], [tokens]])
    # A band for one new observation (the fit's residual noise added), since one trial is what is checked.
    lo, hi = result.predict_interval(point, noise=True) if bootstrap else (np.array([np.nan]), np.array([np.nan]))
    trials.append({"size": size, "params_non_embedding": int(n_s), "tokens": tokens,
                   "predicted_loss": float(result.predict(point)[0]),
                   "predicted_loss_ci": [float(lo[0]), float(hi[0])], "predicted_optimal": size == optimal})
  name = f"{results.name}_extend_{budget:.3g}".replace("+", "")  # e.g. isoflop_extend_4.8e11
  runtime = {}
  archived = os.path.join(sweep_dir, "sweep.yaml")
  if os.path.isfile(archived):
    from sweeps.spec import SpecError, read_yaml
    try:
      runtime = read_yaml(archived)[0].get("runtime") or {}
    except (SpecError, AttributeError):
      runtime = {}
  spec = {"name": name, "model": {**config["model"], "size": sizes}, "data": config["data"],
          "train": {**config["train"], "horizon": {"flops": float(budget), "flop_count": "6n"}},
          "optimizer": config["optimizer"], "seed": config["seed"], **({"runtime": runtime} if runtime else {})}
  prediction = {"from_sweep": os.path.abspath(sweep_dir), "budget": float(budget), "compute": "C = 6 N D",
                "fit": {"law": "chinchilla", "n_points": int(len(y)),
                        "params": {k: float(v) for k, v in result.params.items()},
                        "ci": {k: [float(lo), float(hi)] for k, (lo, hi) in result.ci.items()}},
                "largest_fitted_budget": largest, "budget_ratio": float(budget / largest),
                "frontier": {k: (list(v) if isinstance(v, tuple) else v) for k, v in frontier.items()},
                "trials": trials}
  return {"spec": spec, "prediction": prediction}


def write(sweep_dir: str, planned: dict) -> str:
  """Writes the follow-up YAML beside SWEEP_DIR; returns its path."""
  parent = os.path.dirname(os.path.abspath(sweep_dir))
  path = os.path.join(parent, f"{planned['spec']['name']}.yaml")
  header = (f"# Written by `python -m sweeps extend {sweep_dir} --budget {planned['prediction']['budget']:.3g}`: "
            "the predicted-optimal size and about 0.5x and 2x it,\n# at a budget beyond the fitted ones. "
            f"The prediction is in {planned['spec']['name']}/{PREDICTION}.\n")
  text = header + yaml.safe_dump(planned["spec"], sort_keys=False)
  metrics_lib.write_bytes_atomic(path, text.encode())  # replaces a planted link, never writes through it
  return path
