"""Coordinate check (as microsoft/mup does it): how big every layer's activations are, against width, over the
first steps of training. Under muP the curves are flat in width; under the standard parametrization some
layer's activations grow with width once the first updates land (the readout's logits first).

  python -m scaling.coord_check [--widths 32,64,128,256,512] [--depth 2] [--steps 4] [--lr 3e-2] [--out FILE.csv]

Each row: parametrization, width, depth, seed, step (0 = at init), layer (embedding, each block's
attention and MLP branch as added to the residual stream and its output, the final residual stream,
logits), mean |activation| and mean |activation - its value at init| on one fixed batch. The change is
what muP keeps width-independent (the updates' effect); the size at init is the same under both. The
trainer's own optimizer (scaling/train.make_optimizer with the parametrization's learning-rate
multipliers) and objective take each step, on the synthetic Markov language. Against depth (--depths),
CompleteP makes each block's own change shrink as 1/depth while the final residual stream and the
logits stay put.
"""
import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from flax import nnx

from models import mup, registry
from scaling import objectives
from scaling import train as train_lib
from scaling.data import Batches

DATA = {"kind": "markov", "vocab_size": 12, "order": 3, "mix": [0.1, 0.2, 0.3, 0.4], "support": 2,
        "concentration": 0.5, "zipf": 1.0, "seed": 0}
OPTIMIZER = {"lr": 1e-2, "weight_decay": 0.0, "b1": 0.9, "b2": 0.95, "eps": 1e-8, "warmup_steps": 0,
             "min_lr_ratio": 1.0, "grad_clip": 0.0, "schedule": "cosine"}


def gpt_activations(model, tokens) -> dict:
  """{layer: activations [B, L, ...]} of a GPT on tokens [B, L]."""
  out = {}
  x = out["embedding"] = model.token_embedding(tokens)
  for i, block in enumerate(model.blocks):
    x, out[f"block{i}.attn"], out[f"block{i}.mlp"] = block.parts(x)
    out[f"block{i}"] = x
  out["residual"] = x  # the last block's output: the stream the readout sees, at any depth
  out["logits"] = model(tokens)
  return out


def run(widths, depth=2, steps=4, lr=3e-2, parametrization="mup", seeds=(0, 1), head_dim=8, base_width=None,
        batch_size=16, seq_len=32, options=None) -> pd.DataFrame:
  """The coordinate check of the GPT family at these widths (depth fixed; or widths fixed and depths varied
  by calling it per depth). `options` adds ladder options (e.g. to break one rule on purpose)."""
  family, objective = registry.get("gpt"), objectives.get("next_token")
  base_width = base_width or min(widths)
  rows = []
  for width in widths:
    arch = family.ladder(depth, vocab_size=DATA["vocab_size"], seq_len=seq_len, width=width,
                         head_dim=head_dim, parametrization=parametrization, base_width=base_width,
                         **(options or {}))
    for seed in seeds:
      model = family.build(arch, seed)
      graphdef, params = nnx.split(model)
      optimizer, _ = train_lib.make_optimizer({**OPTIMIZER, "lr": lr}, steps, lr_multipliers=mup.lr_multipliers(model))
      data = Batches(DATA, seq_len, batch_size, seed)

      probe = data.train(0)["tokens"][:, :-1]  # every step's activations are measured on this batch

      @jax.jit  # one compile per width: the first call's activations are the initial ones
      def step(params, opt_state, tokens, initial):
        activations = gpt_activations(nnx.merge(graphdef, params), probe)
        sizes = {k: (jnp.abs(a).mean(), jnp.abs(a - initial[k]).mean()) for k, a in activations.items()}
        loss_fn = lambda p: objective.loss(nnx.merge(graphdef, p), {"tokens": tokens}, None, {})[0]
        updates, opt_state = optimizer.update(jax.grad(loss_fn)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state, sizes, activations

      opt_state = jax.jit(optimizer.init)(params)
      initial = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                             jax.eval_shape(lambda p: gpt_activations(nnx.merge(graphdef, p), probe), params))
      for t in range(steps + 1):
        params, opt_state, sizes, activations = step(params, opt_state, data.train(t)["tokens"], initial)
        if t == 0:
          initial = activations
        for layer, (size, change) in jax.device_get(sizes).items():
          rows.append({"parametrization": parametrization, "width": width, "depth": depth, "seed": seed, "step": t,
                       "layer": layer, "mean_abs": float(size), "mean_abs_change": float(change) if t else 0.0})
  return pd.DataFrame(rows)


def slopes(frame: pd.DataFrame, step: int, against: str = "width", of: str = "mean_abs_change") -> pd.Series:
  """Per layer, the slope of log `of` (mean |activation change since init|, or mean |activation|) against log
  width (or depth) at `step`, seeds averaged; 0 is flat. Layers that exist only at some depths are left out."""
  at = frame[frame["step"] == step].groupby(["layer", against])[of].mean().reset_index()
  at = at[at[of] > 0]  # nothing to compare: no change yet, or a zero-initialised readout
  everywhere = at.groupby("layer")[against].transform("count") == at[against].nunique()
  return at[everywhere].groupby("layer").apply(
      lambda g: np.polyfit(np.log(g[against]), np.log(g[of]), 1)[0], include_groups=False)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--widths", default="32,64,128,256,512")
  parser.add_argument("--depth", type=int, default=2)
  parser.add_argument("--depths", default=None, help="instead: these depths at the first of --widths (CompleteP)")
  parser.add_argument("--steps", type=int, default=4)
  parser.add_argument("--lr", type=float, default=3e-2)
  parser.add_argument("--out", default=None, help="write every row to this CSV")
  args = parser.parse_args()
  widths = [int(w) for w in args.widths.split(",")]
  if args.depths:
    depths = [int(d) for d in args.depths.split(",")]
    frames = [run([widths[0]], d, args.steps, args.lr, p, options={"base_depth": depths[0]})
              for p in mup.PARAMETRIZATIONS for d in depths]
    against, span = "depth", f"depths {depths[0]}-{depths[-1]} at width {widths[0]}"
  else:
    frames = [run(widths, args.depth, args.steps, args.lr, p) for p in mup.PARAMETRIZATIONS]
    against, span = "width", f"widths {widths[0]}-{widths[-1]} at depth {args.depth}"
  frame = pd.concat(frames, ignore_index=True)
  if args.out:
    frame.to_csv(args.out, index=False)
  for parametrization, part in frame.groupby("parametrization"):
    print(f"{parametrization}: slope of log mean |activation change| vs log {against} at step {args.steps} ({span}): "
          + ", ".join(f"{k} {v:+.2f}" for k, v in slopes(part, args.steps, against).items()))


if __name__ == "__main__":
  main()
