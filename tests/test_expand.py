"""Sweep YAML expansion into trials, and trial ids."""
import pytest

from sweeps import expand
from sweeps.spec import SpecError
from tests.conftest import write

BASE = """
name: grid
model:
  family: gpt
  size: {size}
  options: {{aspect_ratio: 16, head_dim: 8}}
data:
  kind: markov
  vocab_size: 8
  order: 2
  mix: {mix}
train:
  seq_len: 16
  batch_size: 4
  horizon: {{tokens: 4096}}
optimizer:
  lr: {lr}
seed: {seed}
"""


def load(tmp_path, name="s.yaml", size="[1, 2, 3]", mix="[0.2, 0.3, 0.5]", lr="3e-3", seed="0"):
  return expand.load(write(tmp_path, name, BASE.format(size=size, mix=mix, lr=lr, seed=seed)))


def test_lists_expand_to_the_cartesian_product(tmp_path):
  sweep = load(tmp_path, size="[1, 2, 3]", lr="[1e-3, 3e-3]", seed="[0, 1]")
  assert len(sweep.trials) == 12
  assert {tuple(sorted(t.axes)) for t in sweep.trials} == {("model.size", "optimizer.lr", "seed")}
  assert {(t.axes["model.size"], t.axes["optimizer.lr"], t.axes["seed"]) for t in sweep.trials} == {
      (s, lr, seed) for s in (1, 2, 3) for lr in (1e-3, 3e-3) for seed in (0, 1)}
  assert len({t.id for t in sweep.trials}) == 12


def test_a_list_valued_field_is_one_value_unless_given_a_list_of_lists(tmp_path):
  assert len(load(tmp_path, size="1").trials) == 1  # mix is one tuple, not three trials
  sweep = load(tmp_path, size="1", mix="[[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]")
  assert [t.spec.data.mix for t in sweep.trials] == [(0.2, 0.3, 0.5), (0.1, 0.1, 0.8)]


def test_ids_are_hashes_of_the_resolved_config(tmp_path):
  a = load(tmp_path, "a.yaml", size="[1, 2]")
  b = load(tmp_path, "b.yaml", size="[2, 1]")  # same trials, other order
  assert sorted(t.id for t in a.trials) == sorted(t.id for t in b.trials)
  # Writing a default out explicitly resolves to the same config, hence the same id.
  explicit = write(tmp_path, "c.yaml", BASE.format(size="1", mix="[0.2, 0.3, 0.5]", lr="3e-3", seed="0")
                   + "train_default_check: null\n")
  with pytest.raises(SpecError, match="train_default_check"):
    expand.load(explicit)
  text = BASE.format(size="1", mix="[0.2, 0.3, 0.5]", lr="3e-3", seed="0").replace(
      "  batch_size: 4\n", "  batch_size: 4\n  eval_batches: 8\n")
  assert expand.load(write(tmp_path, "d.yaml", text)).trials[0].id == load(tmp_path, size="1").trials[0].id
  # Any change of value changes the id; ids are stable strings of 12 hex digits.
  assert load(tmp_path, size="1", lr="1e-3").trials[0].id != load(tmp_path, size="1").trials[0].id
  assert all(len(t.id) == 12 and int(t.id, 16) >= 0 for t in a.trials)


def test_duplicate_grid_points_run_once(tmp_path):
  assert len(load(tmp_path, size="[1, 1, 2]").trials) == 2


def test_grid_size_limit(tmp_path):
  big = "[" + ", ".join(str(i) for i in range(1, 101)) + "]"
  with pytest.raises(SpecError, match="expands to 1,000,000 trials"):
    load(tmp_path, size=big, lr=big.replace("]", "]").replace("[", "[0."), seed=big)


@pytest.mark.parametrize("runtime", [
    "runtime: {tensorboard: false}", "runtime: {flush_every: 1}", "runtime: {checkpoint_every: 0}",
    "runtime: {checkpoint_minutes: 0.5}", "runtime: {keep_checkpoints: 5}", "runtime: {mesh: {data: 1}}",
    "runtime: {retries: 3, memory_limit_gib: 2}"])
def test_how_to_run_keys_leave_the_trial_ids_unchanged(tmp_path, runtime):
  ids = [t.id for t in load(tmp_path).trials]
  document = BASE.format(size="[1, 2, 3]", mix="[0.2, 0.3, 0.5]", lr="3e-3", seed="0") + runtime + "\n"
  assert [t.id for t in expand.load(write(tmp_path, "r.yaml", document)).trials] == ids


def test_objective_default_is_the_familys_and_options_are_resolved(tmp_path):
  trial = load(tmp_path).trials[0]
  assert trial.config()["train"]["objective"] == {"name": "next_token"}
  vision = expand.load(write(tmp_path, "v.yaml", """
name: v
model: {family: vit, size: 1, options: {aspect_ratio: 16, head_dim: 8}}
data: {kind: shapes}
train: {batch_size: 4, horizon: {examples: 64}, objective: [classify, masked_patches, {name: masked_patches, mask_ratio: 0.75}]}
"""))
  objectives = [t.config()["train"]["objective"] for t in vision.trials]
  assert objectives == [{"name": "classify"}, {"name": "masked_patches", "mask_ratio": 0.6},
                        {"name": "masked_patches", "mask_ratio": 0.75}]
  no_objective = expand.load(write(tmp_path, "d.yaml", """
name: d
model: {family: vit, size: 1, options: {aspect_ratio: 16, head_dim: 8}}
data: {kind: shapes}
train: {batch_size: 4, horizon: {examples: 64}}
"""))
  assert no_objective.trials[0].config()["train"]["objective"] == {"name": "classify"}
