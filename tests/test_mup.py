"""muP (models/mup.py): the coordinate check is flat in width under mup and not under sp, and it catches a
muP with one layer's learning-rate multiplier removed; the multipliers and the model changes by hand."""
import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from models import mup, registry
from scaling import coord_check

WIDTHS = (16, 32, 64, 128)  # an 8x range
STEPS, LR = 4, 3e-2


def shapes_of(family, arch):
  """The model `arch` builds, shapes and metadata only (nnx.eval_shape: no init compiled): all the multipliers read."""
  return nnx.eval_shape(lambda: family.build(arch, 0))


def largest_slope(frame):
  return coord_check.slopes(frame, STEPS).abs().max()


@pytest.fixture(scope="module")
def coords():
  # sp's growth (slopes over 1) needs no more than the two ends of the range to be seen: a compile per width saved.
  return {p: coord_check.run(widths, depth=2, steps=STEPS, lr=LR, parametrization=p, seeds=(0,))
          for p, widths in (("mup", WIDTHS), ("sp", (WIDTHS[0], WIDTHS[-1])))}


@pytest.mark.slow  # coordinate checks at five widths
def test_coordinates_are_flat_in_width_under_mup_and_grow_under_sp(coords):
  mup_slopes, sp_slopes = (coord_check.slopes(coords[p], STEPS) for p in ("mup", "sp"))
  assert set(mup_slopes.index) == {"embedding", "block0", "block0.attn", "block0.mlp", "block1", "block1.attn",
                                   "block1.mlp", "residual", "logits"}
  # How much each layer's activations moved since init, against width: flat under mup (measured +0.09 at
  # most, -0.18 at least), growing under sp (+0.99 to +1.67 for the blocks).
  assert mup_slopes.max() < 0.25 and mup_slopes.min() > -0.3, mup_slopes
  assert sp_slopes.max() > 0.8, sp_slopes
  # At init (step 0) both are flat; muP's readout starts at zero.
  assert coord_check.slopes(coords["sp"], 0, of="mean_abs").abs().max() < 0.2
  assert (coords["mup"].query("step == 0 and layer == 'logits'")["mean_abs"] == 0).all()


@pytest.mark.slow  # coordinate checks of two models (about 15 s)
def test_the_coordinate_check_catches_a_missing_multiplier(monkeypatch):
  correct = mup.lr_multipliers

  def without_mlp_down(model):  # the MLPs' down projections keep lr, as under sp
    return {path: 1.0 if "mlp']['down" in path else m for path, m in (correct(model) or {}).items()}

  monkeypatch.setattr(mup, "lr_multipliers", without_mlp_down)
  broken = coord_check.slopes(coord_check.run(WIDTHS, depth=2, steps=STEPS, lr=LR, parametrization="mup",
                                              seeds=(0,)), STEPS)
  assert broken.max() > 0.4, broken  # measured +0.65 (block1.mlp)


def test_multipliers_follow_the_logical_axes():
  family = registry.get("gpt")
  arch = family.ladder(4, vocab_size=12, seq_len=16, aspect_ratio=16, head_dim=8, parametrization="mup",
                       base_width=16, base_depth=2)
  model = shapes_of(family, arch)
  multipliers = mup.lr_multipliers(model)
  hidden = [p for p, m in multipliers.items() if m != 1.0]
  assert all(m in (1.0, 0.25) for m in multipliers.values())  # m = 64 / 16
  for name in ("qkv", "out", "up", "down"):
    assert any(f"['{name}']['kernel']" in p for p in hidden), name
  for name in ("token_embedding", "unembedding", "scale"):
    assert all(name not in p for p in hidden), name
  assert mup.branch_multiplier(arch) == 0.5 and mup.output_multiplier(arch) == 0.25
  assert mup.lr_multipliers(shapes_of(family, dataclasses.replace(arch, parametrization="sp"))) is None
  experts = shapes_of(family, family.ladder(2, vocab_size=12, seq_len=16, aspect_ratio=16, head_dim=8, experts=4,
                                           parametrization="mup", base_width=16))
  routed = {p: m for p, m in mup.lr_multipliers(experts).items() if "['mlp']['" in p}
  assert routed and all((m == 0.5) == ("router" not in p) for p, m in routed.items())


def test_readout_and_branches_carry_the_multipliers():
  """Under mup the logits are the unembedding of the hidden states times 1/m, and each block adds its branches
  times base_depth/depth; at the base shape (m = 1, depth = base_depth) nothing is scaled."""
  family = registry.get("gpt")
  arch = family.ladder(2, vocab_size=12, seq_len=16, aspect_ratio=16, head_dim=8, parametrization="mup",
                       base_width=8, base_depth=1)
  model = family.build(arch, 0)
  tokens = jax.random.randint(jax.random.key(0), (2, 16), 0, 12)
  x = model.token_embedding(tokens)
  out, attended, mixed = model.blocks[0].parts(x)
  unscaled = model.blocks[0].attn(model.blocks[0].attn_norm(x))
  np.testing.assert_allclose(attended, 0.5 * unscaled, rtol=1e-6)
  np.testing.assert_allclose(out, x + attended + mixed, rtol=1e-5, atol=1e-6)
  hidden = model.hidden(tokens)
  np.testing.assert_allclose(model(tokens), model.unembedding(hidden), rtol=1e-6)
  base = family.ladder(1, vocab_size=12, seq_len=16, aspect_ratio=16, head_dim=8, parametrization="mup")
  assert mup.width_mult(base) == 1.0 and mup.branch_multiplier(base) == 1.0
  with pytest.raises(ValueError, match="parametrization"):
    family.ladder(1, vocab_size=12, seq_len=16, parametrization="ntk")


def test_depth_alpha_splits_depth_between_branch_and_learning_rate():
  """CompleteP's alpha: branches times (base_depth/depth)^alpha, the blocks' learning rates times
  (base_depth/depth)^(1 - alpha) (on top of 1/m for hidden weights); alpha = 1/2 is depth-muP. A fixed `width`
  gives a depth-only ladder whose base width is that width."""
  family = registry.get("gpt")
  for alpha, branch, hidden, block_norm in ((1.0, 0.25, 0.5, 1.0), (0.5, 0.5, 0.25, 0.5)):
    arch = family.ladder(4, vocab_size=12, seq_len=16, width=32, head_dim=8, parametrization="mup",
                         base_width=16, depth_alpha=alpha)
    assert (arch.width, arch.depth) == (32, 4)
    assert mup.branch_multiplier(arch) == pytest.approx(branch)
    multipliers = mup.lr_multipliers(shapes_of(family, arch))
    for path, multiplier in multipliers.items():
      expected = (hidden if "kernel" in path else block_norm) if path.startswith("['blocks']") else 1.0
      assert multiplier == pytest.approx(expected), (alpha, path)
  with pytest.raises(ValueError, match="mup option"):
    family.ladder(2, vocab_size=12, seq_len=16, depth_alpha=0.5)
  fixed = [family.ladder(d, vocab_size=12, seq_len=16, width=32, head_dim=8, parametrization="mup")
           for d in (1, 2, 8)]
  assert [a.width for a in fixed] == [32, 32, 32] and {a.base_width for a in fixed} == {32}
  assert [mup.width_mult(a) for a in fixed] == [1.0, 1.0, 1.0]
  with pytest.raises(ValueError, match="depth_alpha"):
    family.ladder(2, vocab_size=12, seq_len=16, parametrization="mup", depth_alpha=0.25)
  with pytest.raises(ValueError, match="head_dim"):
    family.ladder(2, vocab_size=12, seq_len=16, width=30, head_dim=8)
  with pytest.raises(ValueError, match="width"):
    family.ladder(2, vocab_size=12, seq_len=16, width=32.0, head_dim=8)
