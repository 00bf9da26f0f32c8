"""The synthetic language: its exact entropy must match what sampling produces."""
import numpy as np
import pytest

from scaling.data import Batches, train_steps
from scaling.data.markov import MarkovLanguage, MarkovSpec


@pytest.fixture(scope="module")
def language():
  return MarkovLanguage(MarkovSpec(vocab_size=8, order=3, mix=(0.1, 0.2, 0.3, 0.4), support=2, seed=3))


def true_nll_by_position(language, tokens):
  """-log P(x_t | x_{t-k..t-1}) under the true chain, positions t >= order."""
  V, k = language.vocab_size, language.spec.order
  state = np.zeros(len(tokens), dtype=np.int64)
  for i in range(k):
    state = state * V + tokens[:, i]
  nll = []
  for t in range(k, tokens.shape[1]):
    nll.append(-np.log(language.next_token_probs[state, tokens[:, t]]))
    state = (state * V + tokens[:, t]) % V ** k
  return np.stack(nll, axis=1)


def test_sampled_nll_matches_exact_entropy_rate(language):
  tokens = language.sample(np.random.default_rng(0), 4000, 40)
  nll = true_nll_by_position(language, tokens)
  standard_error = nll.mean(axis=1).std() / np.sqrt(len(nll))
  assert abs(nll.mean() - language.entropy_rate) < 4 * standard_error + 1e-3


def test_stationary_distribution_is_stationary(language):
  V, k = language.vocab_size, language.spec.order
  pi = language.stationary
  P = language.next_token_probs.reshape(V, V ** (k - 1), V)
  moved = np.einsum("om,omn->mn", pi.reshape(V, V ** (k - 1)), P).ravel()
  np.testing.assert_allclose(moved, pi, atol=1e-12)
  # Sampled windows start in the stationary distribution: token marginals agree.
  tokens = language.sample(np.random.default_rng(1), 20000, 5)
  marginal = pi.reshape((V,) * k).sum(axis=tuple(range(k - 1)))
  np.testing.assert_allclose(np.bincount(tokens[:, 0], minlength=V) / len(tokens), marginal, atol=0.015)


def test_optimal_loss_orders(language):
  by_context = language.describe()["conditional_entropy_by_context"]
  assert all(a > b for a, b in zip(by_context, by_context[1:])), "more context must help at every order"
  assert by_context[-1] == pytest.approx(language.entropy_rate)
  # Short contexts at the start of a window cost extra; the excess shrinks like 1/seq_len.
  assert language.optimal_loss(4) > language.optimal_loss(64) > language.entropy_rate
  expected = (by_context[1] + by_context[2] + (64 - 2) * by_context[3]) / 64
  assert language.optimal_loss(64) == pytest.approx(expected)


def test_sampling_is_a_pure_function_of_the_seed(language):
  a = language.sample(np.random.default_rng((5, 17)), 4, 12)
  b = language.sample(np.random.default_rng((5, 17)), 4, 12)
  c = language.sample(np.random.default_rng((5, 18)), 4, 12)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_bad_spec_is_refused():
  with pytest.raises(ValueError, match="mix"):
    MarkovSpec(order=2, mix=(0.5, 0.5))
  with pytest.raises(ValueError, match="states"):
    MarkovSpec(vocab_size=1024, order=3, mix=(0.25,) * 4)


def test_empirical_loss_of_the_true_model_matches_the_exact_floor():
  language = MarkovLanguage(MarkovSpec())  # the quickstart's language
  for seq_len in (1, 3, 32):
    mean, standard_error = language.empirical_loss(np.random.default_rng(seq_len), 4000, seq_len)
    assert abs(mean - language.optimal_loss(seq_len)) < 4 * standard_error


def test_tables_are_a_pure_function_of_the_seed():
  a, b = MarkovLanguage(MarkovSpec(seed=3)), MarkovLanguage(MarkovSpec(seed=3))
  np.testing.assert_array_equal(a.next_token_probs, b.next_token_probs)
  np.testing.assert_allclose(a.next_token_probs.sum(axis=1), 1.0)
  assert not np.array_equal(a.next_token_probs, MarkovLanguage(MarkovSpec(seed=4)).next_token_probs)


def test_trials_on_one_stream_draw_their_steps_together_what_each_draws_alone():
  """Packed trials draw several steps' batches in one pass (data.train_steps): the same windows as one draw
  per step and trial."""
  config = {"kind": "markov", "vocab_size": 8, "order": 2, "mix": [0.2, 0.3, 0.5]}
  trials = [Batches(config, 16, 4, seed) for seed in (0, 1, 7)]
  for first, n in ((0, 1), (5, 3)):
    together = train_steps(trials, first, n)["tokens"]
    assert together.shape == (n, 3, 4, 17)
    for i in range(n):
      for t, trial in enumerate(trials):
        np.testing.assert_array_equal(together[i, t], trial.train(first + i)["tokens"])
  assert not np.array_equal(together[0, 0], together[0, 1]) and not np.array_equal(together[0, 0], together[1, 0])
  # Trials on another stream (here a data-constrained one) draw alone, into the same layout; `rows` keeps rows.
  mixed = [trials[0], Batches({**config, "unique_tokens": 17 * 12}, 16, 4, 0)]
  drawn = train_steps(mixed, 2, 2, rows=slice(1, 3))["tokens"]
  for i in range(2):
    for t, trial in enumerate(mixed):
      np.testing.assert_array_equal(drawn[i, t], trial.train(2 + i)["tokens"][1:3])