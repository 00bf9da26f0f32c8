"""Law objects: formulas, hand-written derivatives, parameter maps, inputs."""
import numpy as np
import pandas as pd
import pytest

from analysis import laws

ALL_LAWS = [laws.POWER, laws.PURE_POWER, laws.CHINCHILLA, laws.SATURATING,
            laws.bnsl(1), laws.bnsl(2), laws.SIGMOID, laws.DATA_CONSTRAINED,
            laws.DATA_CONSTRAINED_FULL, laws.ROUTED]


@pytest.mark.parametrize("law", ALL_LAWS, ids=lambda law: f"{law.name}{law.n_params}")
def test_partials_match_finite_differences(law):
  rng = np.random.default_rng(0)
  log_x = rng.normal(size=(law.n_inputs, 25)) * 2.0
  theta = rng.normal(size=(3, law.n_params)) * 0.5
  f, partials = law.model(theta, log_x)
  assert f.shape == (3, 25) and len(partials) == law.n_params
  for p in range(law.n_params):
    step = np.zeros(law.n_params)
    step[p] = 1e-6
    numeric = (law.model(theta + step, log_x)[0] - law.model(theta - step, log_x)[0]) / 2e-6
    np.testing.assert_allclose(np.broadcast_to(partials[p], f.shape), numeric,
                               rtol=1e-5, atol=1e-7, err_msg=law.param_names[p])


@pytest.mark.parametrize("law", ALL_LAWS, ids=lambda law: f"{law.name}{law.n_params}")
def test_parameter_maps_round_trip_and_rescale_exactly(law):
  """to_params/from_params invert each other, and the centred model in
  x / x_scale equals the raw formula in x (an exact change of variables)."""
  rng = np.random.default_rng(1)
  log_scale = np.full(law.n_inputs, 3.7)
  theta = rng.normal(size=(4, law.n_params)) * 0.5
  params = law.to_params(theta, log_scale)
  np.testing.assert_allclose(law.from_params(params, log_scale), theta, atol=1e-12)
  log_x = rng.normal(size=(law.n_inputs, 10))
  f_centred, _ = law.model(theta, log_x)
  raw_x = np.exp(log_x + log_scale[:, None])
  for row in range(4):
    y = law.predict(dict(zip(law.param_names, params[row])),
                    raw_x if law.n_inputs > 1 else raw_x[0])
    np.testing.assert_allclose(y, laws.from_target(law, f_centred[row]), rtol=1e-12)


def test_predict_matches_the_written_formulas():
  x = np.array([1e6, 3e7, 1e9])
  np.testing.assert_allclose(
      laws.POWER.predict({"E": 1.7, "A": 400.0, "alpha": 0.3}, x),
      1.7 + 400.0 * x ** -0.3)
  np.testing.assert_allclose(
      laws.SATURATING.predict({"a": 5.0, "b": 0.4, "c": 0.2, "d": 1e5}, x),
      0.2 + 5.0 * (x + 1e5) ** -0.4)
  np.testing.assert_allclose(
      laws.SIGMOID.predict({"floor": 0.25, "ceiling": 0.9, "slope": 1.5, "x_mid": 1e7}, x),
      0.25 + 0.65 / (1 + (x / 1e7) ** -1.5))
  bnsl = {"a": 0.1, "b": 20.0, "c0": 0.2, "c1": 0.5, "d1": 1e7, "f1": 0.3}
  np.testing.assert_allclose(
      laws.BNSL.predict(bnsl, x),
      0.1 + 20.0 * x ** -0.2 * (1 + (x / 1e7) ** (1 / 0.3)) ** (-0.5 * 0.3))
  n, e = np.array([1e7, 1e9]), np.array([1.0, 64.0])  # Clark et al.'s form; dense is E = 1
  routed = {"a": -0.08, "b": -0.05, "c": 0.002, "d": 2.1}
  np.testing.assert_allclose(
      laws.ROUTED.predict(routed, {"params": n, "experts": e}),
      np.exp(-0.08 * np.log(n) - 0.05 * np.log(e) + 0.002 * np.log(n) * np.log(e) + 2.1))
  n, d = np.array([4e8, 7e10]), np.array([8e9, 1.4e12])
  params = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
  np.testing.assert_allclose(
      laws.CHINCHILLA.predict(params, {"params": n, "tokens": d}),
      1.69 + 406.4 / n ** 0.34 + 410.7 / d ** 0.28)


def test_two_input_laws_accept_dicts_frames_and_arrays():
  n, d = np.array([1e8, 2e8, 4e8]), np.array([2e9, 3e9, 5e9])
  expected = np.stack([n, d])
  for x in ({"N": n, "D": d}, {"tokens_seen": d, "n_params_non_embedding": n},
            pd.DataFrame({"params": n, "tokens": d}), np.stack([n, d], axis=1),
            np.stack([n, d]), {"size": n, "data_seen": d}):
    np.testing.assert_array_equal(laws.as_inputs(laws.CHINCHILLA, x), expected)
  with pytest.raises(ValueError, match="which of"):
    laws.as_inputs(laws.CHINCHILLA, {"a": n, "b": d, "c": d})


def test_chinchilla_start_grid_is_the_papers():
  grid = laws.CHINCHILLA.starts(None, None, np.zeros(2))  # raw space at scale 0
  assert grid.shape == (4500, 5)
  e, a, b, alpha, beta = grid.T
  assert sorted(set(e)) == [-1.0, -0.5, 0.0, 0.5, 1.0]
  assert sorted(set(a)) == sorted(set(b)) == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
  assert sorted(set(alpha)) == sorted(set(beta)) == [0.0, 0.5, 1.0, 1.5, 2.0]
  centred = laws.CHINCHILLA.starts(None, None, np.array([20.0, 23.0]))
  np.testing.assert_allclose(centred[:, 1], a - alpha * 20.0)
  assert laws.CHINCHILLA.loss == "huber" and laws.CHINCHILLA.huber_delta == 1e-3


def test_registry():
  assert laws.get("power") is laws.POWER
  three = laws.get("bnsl", breaks=3)
  assert three.param_names[:3] == ("a", "b", "c0")
  assert three.param_names[-3:] == ("c3", "d3", "f3")
  with pytest.raises(ValueError, match="unknown law"):
    laws.get("exponential")
