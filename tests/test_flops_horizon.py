"""train.horizon.flops: a trial trains for the steps that spend a FLOP budget (an IsoFLOP sweep's axis)."""
import pytest

from models import counting
from scaling.train import setup
from sweeps import expand
from sweeps.spec import SpecError
from tests.conftest import write

SWEEP = """\
name: iso
model: {{family: gpt, size: [1, 3], options: {{aspect_ratio: 8, head_dim: 4}}}}
data: {{kind: markov, vocab_size: 12}}
train: {{seq_len: 32, batch_size: 8, horizon: {{flops: {flops}, flop_count: [exact, 6n]}}}}
"""


def test_each_trial_spends_its_budget_to_within_half_a_step(tmp_path):
  trials = expand.load(write(tmp_path, "s.yaml", SWEEP.format(flops="[2e10, 8e10]"))).trials
  assert len(trials) == 8 and len({t.id for t in trials}) == 8
  for trial in trials:
    config = trial.config()
    s = setup(config)
    horizon = config["train"]["horizon"]
    per_step = counting.flops_per_step(s.family, s.arch, s.counts, 8, horizon["flop_count"])
    assert per_step == 8 * s.flops["flops_per_example" if horizon["flop_count"] == "exact" else "flops_per_example_6n"]
    assert abs(s.steps * per_step - horizon["flops"]) <= per_step / 2
  # The 6N count leaves out attention and the embedding, so the same budget buys more steps under it.
  steps = {(t.config()["model"]["size"], t.config()["train"]["horizon"]["flop_count"]): setup(t.config()).steps
           for t in trials if t.config()["train"]["horizon"]["flops"] == 2e10}
  assert steps[(1, "6n")] > steps[(1, "exact")] and steps[(3, "exact")] < steps[(1, "exact")]


def test_a_budget_below_one_step_is_one_line(tmp_path):
  with pytest.raises(SpecError, match=r"s.yaml:4: train.horizon.flops: 1e\+06 FLOPs is less than one step of size 1 "
                                      r"\(2.26e\+06 FLOPs per step of 8 examples, counted exact\)"):
    expand.load(write(tmp_path, "s.yaml", SWEEP.format(flops="1e6")))


def test_flop_count_unset_keeps_the_ids_of_other_horizons(tmp_path):
  plain = write(tmp_path, "a.yaml", "name: a\nmodel: {family: gpt, size: 1}\ndata: {kind: markov}\n"
                                    "train: {horizon: {tokens: 4096}}\n")
  spelled = write(tmp_path, "b.yaml", "name: a\nmodel: {family: gpt, size: 1}\ndata: {kind: markov}\n"
                                      "train: {horizon: {tokens: 4096, flop_count: exact, flops: null}}\n")
  assert expand.load(plain).trials[0].id == expand.load(spelled).trials[0].id
