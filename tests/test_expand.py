"""Sweep YAML expansion into trials, and trial ids."""
import copy
import glob
import os

import pytest

from sweeps import expand
from sweeps.spec import SpecError
from tests.conftest import ROOT, SHARED_DATA, write

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


ONE_STEP = """
name: one
model: {{family: gpt, size: 1, options: {{aspect_ratio: 16, head_dim: 8}}}}
data: {{kind: markov, vocab_size: 8, order: 2, mix: [0.2, 0.3, 0.5], unique_tokens: 4096}}
train: {{seq_len: 16, batch_size: 4, horizon: {horizon}}}
"""


@pytest.mark.parametrize("at_one_step,under", [
    ("{tokens: 64}", "{tokens: 63}"), ("{examples: 4}", "{examples: 3}"),
    ("{epochs: 0.016667}", "{epochs: 0.016666}"),  # 240 windows of 17 tokens; 4 of them a step
    ("{tokens_per_param: 0.0198}", "{tokens_per_param: 0.0196}"),  # 3,248 non-embedding parameters; 64 tokens a step
    ("{flops: 1443840.0}", "{flops: 1443839.0}")])  # FLOPs of one step, counted exact
def test_a_horizon_of_one_step_trains_and_less_is_refused_for_every_kind(tmp_path, at_one_step, under):
  key = at_one_step[1:at_one_step.index(":")]
  assert len(expand.load(write(tmp_path, "a.yaml", ONE_STEP.format(horizon=at_one_step))).trials) == 1
  with pytest.raises(SpecError, match=rf"b.yaml:5: train.horizon.{key}: .* less than one step"):
    expand.load(write(tmp_path, "b.yaml", ONE_STEP.format(horizon=under)))


def test_non_finite_grid_points_are_refused_not_merged(tmp_path):
  """.inf and .nan once both resolved to null in config.json: one trial id for two grid points."""
  for values in ("[.inf, .nan]", "[.nan, 1.25]", "[1.25, -.inf]"):
    text = BASE.format(size="1", mix="[0.2, 0.3, 0.5]", lr="3e-3", seed="0").replace(
        "head_dim: 8}", f"head_dim: 8, experts: 4, capacity_factor: {values}}}")
    with pytest.raises(SpecError, match="model.options.capacity_factor: expected a finite number, got"):
      expand.load(write(tmp_path, "n.yaml", text))
  with pytest.raises(SpecError, match="optimizer.lr: expected a finite number, got inf"):
    load(tmp_path, size="1", lr="[3e-3, .inf]")


def test_moe_keys_on_a_grid_with_dense_rungs(tmp_path):
  """moe_vs_dense's grid (experts 0, 4, 8 with top_k 1) expands; top_k 2 has no effect on the dense rung."""
  text = BASE.format(size="1", mix="[0.2, 0.3, 0.5]", lr="3e-3", seed="0")
  grid = text.replace("head_dim: 8}", "head_dim: 8, experts: [0, 4, 8], top_k: 1, capacity_factor: 2.0}")
  assert len(expand.load(write(tmp_path, "g.yaml", grid)).trials) == 3
  with pytest.raises(SpecError, match=r"model.options: top_k 2 applies to a mixture of experts \(experts > 0\)"):
    expand.load(write(tmp_path, "k.yaml", grid.replace("top_k: 1", "top_k: 2")))


def test_epochs_of_an_image_dataset_under_one_step_are_refused(tmp_path):
  """The count an epoch is of comes from the files' headers, before anything is decoded."""
  mnist = os.path.join(SHARED_DATA, "mnist")
  if not os.path.isdir(mnist):
    pytest.skip("needs the shared MNIST files")
  text = f"""name: e
model: {{family: vit, size: 1, options: {{aspect_ratio: 16, head_dim: 8, patch_size: 7}}}}
data: {{kind: idx, path: {mnist}}}
train: {{batch_size: 16, horizon: {{epochs: {{epochs}}}}}}
"""
  assert len(expand.load(write(tmp_path, "a.yaml", text.replace("{epochs}", "0.001"))).trials) == 1
  with pytest.raises(SpecError, match=r"train.horizon.epochs: 1e-09 epochs of 60,000 training examples is 6e-05 "
                                      r"examples, less than one step of 16 examples"):
    expand.load(write(tmp_path, "b.yaml", text.replace("{epochs}", "1e-9")))


def _leaves(value, path=()):
  """(path, value) of every leaf of a resolved config (lists are leaves: a grid axis is a list of values)."""
  if isinstance(value, dict) and value:
    for key, inner in value.items():
      yield from _leaves(inner, (*path, key))
  else:
    yield path, value


def _other(value):
  """A different value of the same kind (what a user would change a key to)."""
  if isinstance(value, bool):
    return not value
  if isinstance(value, (int, float)):
    return value + 1 if value == 0 else value * 2
  if isinstance(value, str):
    return value + "_other"
  if isinstance(value, list):
    return [*value, value[-1] if value else 1]
  return 1 if value is None else {"other": 1}


def test_every_key_of_the_resolved_config_changes_the_trial_id_unless_listed():
  """A property over the whole schema, on every shipped sweep's trials: changing any key of a resolved config
  changes its id, except the keys listed as not changing the result (scaling/trial_id.NOT_IN_ID), which never do. A key left
  out of the hash by mistake (say optimizer.grad_clip) would let two different trials share one run directory."""
  from scaling import trial_id
  configs = []
  for path in sorted(glob.glob(os.path.join(ROOT, "sweeps", "configs", "*.yaml"))):
    try:
      configs += [t.config() for t in expand.load(path).trials[:3]]
    except SpecError:  # a sweep over data not on this machine
      continue
  assert len(configs) >= 10
  checked = set()
  for config in configs:
    base = expand.config_id(config)
    for path, value in _leaves(config):
      changed = copy.deepcopy(config)
      parent = changed
      for key in path[:-1]:
        parent = parent[key]
      parent[path[-1]] = _other(value)
      if path in trial_id.NOT_IN_ID:
        assert expand.config_id(changed) == base, path
      else:
        assert expand.config_id(changed) != base, f"{'.'.join(path)} does not change the trial id"
      checked.add(path)
  assert ("optimizer", "grad_clip") in checked and ("train", "horizon", "tokens") in checked and len(checked) > 40
