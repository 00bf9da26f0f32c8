"""Bootstrap intervals cover the truth: 100 noisy draws from a known L(N, D).

All draws share one IsoFLOP design (64 runs) and differ in their noise, so
`fit.fit_many` fits them and their 100 x 100 bootstrap resamples in one batch,
through the same code path as `fit_law`. Each draw starts from a coarse
32-point grid that does not know the truth (the paper's 4500-point grid per
draw would cost minutes and finds the same optimum on this well-posed data).
"""
import numpy as np

from analysis import fit, isoflop, laws

N_DRAWS = 100


def coarse_starts(log_scale):
  """A 2^5 grid in the paper's raw (e, a, b, alpha, beta), mapped to fit space."""
  raw = np.array(np.meshgrid([0.0, 0.5], [5.0, 10.0], [5.0, 10.0], [0.25, 0.75],
                             [0.25, 0.75])).reshape(5, -1).T
  e, a, b, alpha, beta = raw.T
  return np.stack([e, a - alpha * log_scale[0], b - beta * log_scale[1], alpha, beta], 1)


def test_95_percent_intervals_cover_true_parameters():
  truth = isoflop.EPOCH_PARAMS
  design = isoflop.synthetic_runs(truth, budgets=np.logspace(18, 22, 8),
                                  sizes_per_budget=8, noise=0.0, seed=0)
  x = design[["params", "tokens"]]
  rng = np.random.default_rng(1)
  losses = design["loss"].to_numpy() * np.exp(0.02 * rng.standard_normal((N_DRAWS, len(design))))
  starts = coarse_starts(np.log(x.to_numpy()).mean(0))

  results = fit.fit_many(laws.CHINCHILLA, x, losses, bootstrap=100, seed=0, starts=starts)

  assert len(results) == N_DRAWS
  for name in laws.CHINCHILLA.param_names:
    covered = np.mean([r.ci[name][0] <= truth[name] <= r.ci[name][1] for r in results])
    assert covered >= 0.90, f"{name}: 95% intervals covered the truth in {covered:.0%} of draws"
  exponent_covered = np.mean([
      lo <= isoflop.allocation_exponents(truth)[0] <= hi
      for _, lo, hi in (r.interval(lambda p: p["beta"] / (p["alpha"] + p["beta"]))
                        for r in results)])
  assert exponent_covered >= 0.90
  # The planner (`analysis plan`): the compute-optimal N and D at a budget 10x beyond the data.
  n_true, d_true, _ = isoflop.frontier(truth, 1e23)
  plans = [isoflop.plan(1e23, r) for r in results]
  for key, true in (("n_params", n_true), ("tokens", d_true)):
    covered = np.mean([p[key + "_ci"][0] <= true <= p[key + "_ci"][1] for p in plans])
    assert covered >= 0.90, f"planned {key}: 95% intervals covered the truth in {covered:.0%} of draws"


def test_fit_many_matches_fit_law_one_dataset_at_a_time():
  design = isoflop.synthetic_runs(budgets=np.logspace(18, 21, 4), sizes_per_budget=5,
                                  noise=0.0, seed=2)
  rng = np.random.default_rng(3)
  losses = design["loss"].to_numpy() * np.exp(0.01 * rng.standard_normal((2, len(design))))
  x = design["flops"].to_numpy()
  together = fit.fit_many(laws.POWER, x, losses, bootstrap=0)
  for y, batched in zip(losses, together):
    alone = fit.fit_law(laws.POWER, x, y)
    for name in laws.POWER.param_names:
      assert np.isclose(batched.params[name], alone.params[name], rtol=1e-6), name
