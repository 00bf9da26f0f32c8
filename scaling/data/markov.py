"""A synthetic language whose entropy is known exactly: an interpolated n-gram chain.

The next token given the last `order` tokens is drawn from a mixture

    P(c | x_{t-k..t-1}) = sum_j  mix[j] * T_j(c | x_{t-j..t-1}),   j = 0..order

where T_0 is a Zipfian unigram and each T_j (j >= 1) gives every length-j context
a sparse set of `support` successors with Dirichlet weights. Low orders are
cheap to learn (a unigram needs no parameters, a bigram needs no attention);
each higher order needs attention to one more past token and a table V times
larger to memorise, so wider and deeper models keep finding loss to remove.

The successors of a context are drawn (without replacement) from a Zipfian
preference of its oldest token x_{t-j}. So x_{t-j} alone already says which
successors are likely, and an attention head that looks j tokens back is
rewarded before the MLP can memorise the full context (with uniform successor
sets that signal is near zero: I(x_t; x_{t-2}) = 0.040 nats for V=16 vs 0.071
with the preference; the zipf exponent sets its strength, 0 means uniform).

The chain is an order-`order` Markov chain on V^order states, so its stationary
distribution, entropy rate and the Bayes-optimal loss at every context length
are computed exactly (numerically, to ~1e-10 nats) from the tables;
`empirical_loss` checks them against samples.
"""
import dataclasses
import functools
from typing import Annotated, Literal

import numpy as np
import pydantic

from scaling.data import registry


@dataclasses.dataclass(frozen=True)
class MarkovSpec:
  # Defaults: the quickstart language (sweeps/configs/quickstart.yaml), chosen by measurement so
  # that a 1k..170k-parameter GPT ladder learns more of it at every rung within 0.4M tokens.
  vocab_size: int = 12
  order: int = 3
  mix: tuple = (0.1, 0.2, 0.3, 0.4)  # weight of T_0 .. T_order; sums to 1
  support: int = 2  # successors per context in each T_j, j >= 1
  concentration: float = 0.5  # Dirichlet concentration of successor weights
  zipf: float = 1.0  # exponent of the unigram T_0 and of each token's successor preference
  seed: int = 0  # seed of the tables: the language itself

  def __post_init__(self):
    if len(self.mix) != self.order + 1:
      raise ValueError(f"mix has {len(self.mix)} weights, expected order + 1 = {self.order + 1}")
    if abs(sum(self.mix) - 1) > 1e-6 or min(self.mix) < 0:
      raise ValueError(f"mix must be non-negative and sum to 1, got {self.mix}")
    if self.vocab_size ** self.order > 2 ** 20:
      raise ValueError(f"vocab_size ** order = {self.vocab_size ** self.order} states is too many (max 2^20)")
    if not 1 <= self.support <= self.vocab_size:
      raise ValueError(f"support must be in [1, vocab_size], got {self.support}")


class MarkovLanguage:
  """Samples token windows and knows their exact Bayes-optimal loss (nats/token)."""

  def __init__(self, spec: MarkovSpec):
    self.spec = spec
    self.vocab_size = spec.vocab_size
    self.next_token_probs = _conditional_table(spec)  # [V^order, V]
    self._cumulative = np.cumsum(self.next_token_probs, axis=1)
    self._cumulative[:, -1] = 1.0
    self.stationary = _stationary(self.next_token_probs, spec.vocab_size, spec.order)  # [V^order]
    self._stationary_cumulative = np.cumsum(self.stationary)
    self._stationary_cumulative[-1] = 1.0

  # ---- Sampling ----

  def sample(self, rng: np.random.Generator, n_sequences: int, length: int) -> np.ndarray:
    """int32 [n_sequences, length] windows of the stationary chain."""
    return self.sample_each([rng], n_sequences, length)[0]

  def sample_each(self, rngs: list, n_sequences: int, length: int) -> list:
    """sample() for each generator, as one chain over all their rows: the same windows, one pass of the
    per-token loop instead of one per generator (packed trials each draw their own batch)."""
    V, k = self.vocab_size, self.spec.order
    draws = [(rng.random(n_sequences), rng.random((n_sequences, max(length - k, 0)))) for rng in rngs]
    state = np.searchsorted(self._stationary_cumulative, np.concatenate([d[0] for d in draws]), side="right")
    state = np.minimum(state, V ** k - 1)
    uniforms = np.concatenate([d[1] for d in draws])
    # The state index is the last k tokens in base V, most recent token last.
    out = np.empty((len(state), max(length, k)), np.int32)
    for i in range(k):
      out[:, i] = (state // V ** (k - 1 - i)) % V
    for t in range(k, length):
      nxt = (self._cumulative[state] < uniforms[:, t - k, None]).sum(axis=1)
      out[:, t] = nxt
      state = (state * V + nxt) % V ** k
    return np.split(out[:, :length], len(rngs))

  # ---- Exact entropies ----

  @functools.cached_property
  def entropy_rate(self) -> float:
    """H(X_t | all past) in nats/token: sum over states of pi(s) * H(P(.|s))."""
    return float(self.stationary @ _row_entropy(self.next_token_probs))

  @functools.cached_property
  def _joint(self) -> np.ndarray:
    """Stationary joint of k+1 consecutive tokens, axes ordered oldest first."""
    V, k = self.vocab_size, self.spec.order
    return (self.stationary[:, None] * self.next_token_probs).reshape((V,) * (k + 1))

  @functools.cached_property
  def _conditional_entropy_by_context(self) -> np.ndarray:
    """H(X_t | X_{t-c..t-1}) for context lengths c = 0..order (nats)."""
    k = self.spec.order
    block_entropy = [0.0]  # H of c+1 consecutive tokens, c = 0..k
    for c in range(k + 1):
      marginal = self._joint.sum(axis=tuple(range(k - c)))  # last c+1 tokens
      block_entropy.append(_entropy(marginal.ravel()))
    return np.diff(block_entropy)

  def optimal_loss(self, seq_len: int) -> float:
    """Bayes-optimal mean loss when predicting tokens 1..seq_len of a window from their prefix.

    Position t (1-based) sees t tokens of context, so the first `order - 1`
    predictions are worse than the entropy rate; this is the floor a model
    trained on these windows can reach.
    """
    by_context = self._conditional_entropy_by_context
    k = self.spec.order
    total = sum(by_context[min(c, k)] for c in range(1, seq_len + 1))
    return float(total / seq_len)

  def score(self, windows: np.ndarray) -> np.ndarray:
    """The true model's mean loss per window [n] (nats/token), scored like a model's.

    Predicts tokens 1..L-1 of each window from its prefix with the exact
    conditional P(x_t | last min(t, order) tokens): the Bayes-optimal loss on
    exactly these windows, e.g. a fixed eval set.
    """
    V, k = self.vocab_size, self.spec.order
    n_sequences, seq_len = windows.shape[0], windows.shape[1] - 1
    # P(next | last c tokens) for short contexts, from the stationary joint.
    short = [self._joint.sum(axis=tuple(range(k - c))).reshape(V ** c, V) for c in range(k)]
    short = [p / p.sum(axis=1, keepdims=True) for p in short]
    nll = np.empty((n_sequences, seq_len))
    for t in range(1, seq_len + 1):
      c = min(t, k)
      context = np.zeros(n_sequences, np.int64)
      for token in windows[:, t - c:t].T:
        context = context * V + token
      table = self.next_token_probs if c == k else short[c]
      nll[:, t - 1] = -np.log(table[context, windows[:, t]])
    return nll.mean(axis=1)

  def empirical_loss(self, rng: np.random.Generator, n_sequences: int, seq_len: int) -> tuple:
    """(mean, standard error) of `score` on fresh windows; the mean converges to `optimal_loss`.

    This checks the tables, the sampler and the entropy bookkeeping against each other.
    """
    per_window = self.score(self.sample(rng, n_sequences, seq_len + 1))
    # Windows are independent draws; positions within one are not.
    return float(per_window.mean()), float(per_window.std(ddof=1) / np.sqrt(n_sequences))

  def describe(self) -> dict:
    return {"kind": "markov", "entropy_rate": self.entropy_rate,
            "conditional_entropy_by_context": [float(h) for h in self._conditional_entropy_by_context],
            **dataclasses.asdict(self.spec)}


def _conditional_table(spec: MarkovSpec) -> np.ndarray:
  V, k = spec.vocab_size, spec.order
  rng = np.random.default_rng(spec.seed)
  zipf_ranks = 1.0 / np.arange(1, V + 1) ** spec.zipf
  unigram = rng.permutation(zipf_ranks / zipf_ranks.sum())
  probs = np.broadcast_to(spec.mix[0] * unigram, (V,) * k + (V,)).copy()
  for j in range(1, k + 1):
    # T_j: each of the V^j contexts (the last j tokens) gets `support` successors, drawn without
    # replacement (Gumbel top-k) from the Zipfian preference of the context's oldest token.
    n_contexts = V ** j
    log_preference = np.log(np.stack([rng.permutation(zipf_ranks) for _ in range(V)]))  # [oldest, next]
    oldest = np.arange(n_contexts) // V ** (j - 1)
    gumbel = -np.log(-np.log(rng.random((n_contexts, V))))
    successors = np.argsort(-(log_preference[oldest] + gumbel), axis=1)[:, : spec.support]
    weights = rng.dirichlet(np.full(spec.support, spec.concentration), size=n_contexts)
    table = np.zeros((n_contexts, V))
    np.put_along_axis(table, successors, weights, axis=1)
    # Broadcast over the k - j older tokens that T_j ignores.
    probs += spec.mix[j] * table.reshape((1,) * (k - j) + (V,) * j + (V,))
  return probs.reshape(V ** k, V)


def _stationary(next_token_probs, V, k, tol=1e-13, max_iter=100_000) -> np.ndarray:
  """Stationary distribution over the V^k states by power iteration."""
  P = next_token_probs.reshape(V, V ** (k - 1), V)  # oldest token, middle tokens, next token
  pi = np.full(V ** k, 1.0 / V ** k)
  for _ in range(max_iter):
    # New state = (middle tokens, next token); sum out the oldest token.
    new = np.einsum("om,omn->mn", pi.reshape(V, V ** (k - 1)), P).ravel()
    if np.abs(new - pi).sum() < tol:
      return new / new.sum()
    pi = new
  raise RuntimeError("stationary distribution did not converge")


def _row_entropy(probs) -> np.ndarray:
  with np.errstate(divide="ignore", invalid="ignore"):
    return -np.where(probs > 0, probs * np.log(probs), 0.0).sum(axis=-1)


def _entropy(p) -> float:
  return float(_row_entropy(p[None])[0])


# ---- The `markov` data kind ----


@registry.register
class MarkovData(registry.TokenData):
  """Synthetic interpolated n-gram language; defaults are MarkovSpec's."""
  kind: Literal["markov"]
  vocab_size: int = pydantic.Field(MarkovSpec.vocab_size, ge=2, le=4096)
  order: int = pydantic.Field(MarkovSpec.order, ge=1, le=8)
  mix: Annotated[tuple[float, ...], pydantic.Field(strict=False)] = MarkovSpec.mix  # YAML gives a list
  support: int = pydantic.Field(MarkovSpec.support, ge=1)
  concentration: float = pydantic.Field(MarkovSpec.concentration, gt=0)
  zipf: float = pydantic.Field(MarkovSpec.zipf, ge=0, le=64)  # 4096 ** -64 is still a normal float64
  seed: int = pydantic.Field(MarkovSpec.seed, ge=0, le=2 ** 32 - 1)

  @pydantic.model_validator(mode="after")
  def _valid_language(self):  # One source of truth for what a language may be.
    self.language_spec()
    return self

  def language_spec(self) -> MarkovSpec:
    return MarkovSpec(**{k: v for k, v in self.model_dump().items() if k not in ("kind", "unique_tokens")})

  def model_inputs(self, seq_len: int) -> dict:
    return {"vocab_size": self.vocab_size, "seq_len": seq_len}

  def open(self, seq_len: int):
    return MarkovSource(MarkovLanguage(self.language_spec()), seq_len)

  def draw_bytes(self, tokens: int, seq_len: int) -> int:
    # The sampler holds a float64 uniform beside each int32 token, and per position a row's cumulative
    # table (float64) and its comparison (bool) over the vocabulary.
    return 12 * tokens + 9 * (tokens // (seq_len + 1)) * self.vocab_size


class MarkovSource(registry.Source):
  """Windows of seq_len + 1 tokens of the stationary chain; knows their Bayes-optimal loss."""

  def __init__(self, language: MarkovLanguage, seq_len: int):
    self.language, self.seq_len = language, seq_len
    self.features = {"tokens": ((seq_len + 1,), np.int32)}
    self.model_inputs = {"vocab_size": language.vocab_size, "seq_len": seq_len}
    self.info = language.describe()
    self.entropy_floor = language.optimal_loss(seq_len)

  def draw(self, rng, n, split, rows=None) -> dict:
    # Sampling is sequential per row, so a host samples the whole batch and keeps its rows.
    windows = self.language.sample(rng, n, self.seq_len + 1)
    return {"tokens": windows if rows is None else windows[rows]}

  def draw_each(self, rngs, n, split) -> list:
    return [{"tokens": w} for w in self.language.sample_each(rngs, n, self.seq_len + 1)]

  def eval_set_floor(self, batches: list) -> float:
    return float(np.mean([self.language.score(b["tokens"]).mean() for b in batches]))
