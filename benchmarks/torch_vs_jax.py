"""The platform's GPT training throughput against a PyTorch nanoGPT-style model of the same shape.

  python -m benchmarks.torch_vs_jax [--rounds 2] [--steps 300] [--threads 2] [--cpu-dots ynn,eigen]
                                    [--steps-per-dispatch 1,8]

Both train nanoGPT's CPU configuration (sweeps/configs/shakespeare_baby.yaml: 4 layers, 4 heads,
width 128, block 64, batch 12, vocab 65 characters of tiny Shakespeare) with AdamW. Each side runs in
a subprocess of its own with the same thread count, alternating A B A B, and reports steady-state
tokens/s (after its compile or warmup). The platform side is the real trainer, `scaling/train.train`,
reading `tokens_per_second` from its summary (eval and checkpoints are not in it). The reference
(written here, in the style of nanoGPT's model.py: learned positions, LayerNorm, biases, tied
embedding, `scaled_dot_product_attention`) is eager PyTorch. `--cpu-dots` lists the platform's CPU dot
libraries to race (scaling/runtime.py's SCALING_CPU_DOTS), `--steps-per-dispatch` the trainer's
`runtime.steps_per_dispatch` values (default: the runtime's); each pair is a side of its own in every round.
Prints one line per run and the ratio platform / PyTorch of the medians. Needs `pip install torch` (a CPU
build).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "sweeps", "configs", "shakespeare_baby.yaml")
TEXT = os.path.join(os.path.dirname(ROOT), "shared", "data", "tiny_shakespeare", "input.txt")
LAYERS, HEADS, WIDTH, BLOCK, BATCH = 4, 4, 128, 64, 12


def platform_tokens_per_second(steps: int, steps_per_dispatch: int | None = None) -> float:
  """The real trainer on shakespeare_baby.yaml for `steps` steps; its steady-state tokens/s."""
  from scaling import runtime
  runtime.configure_jax()
  from scaling import train as train_lib
  from sweeps import expand
  config = expand.load(CONFIG).trials[0].config()
  config["train"]["horizon"] = {**config["train"]["horizon"], "examples": steps * BATCH}
  config["train"]["eval_every"], config["train"]["eval_batches"] = steps, 1
  with tempfile.TemporaryDirectory() as tmp:
    summary = train_lib.train(config, os.path.join(tmp, "run"), progress=False,
                              runtime={"checkpoint_every": 0, "tensorboard": False, "flush_every": 50,
                                       **({"steps_per_dispatch": steps_per_dispatch} if steps_per_dispatch else {})})
  return summary["tokens_per_second"]


def torch_tokens_per_second(steps: int, threads: int, warmup: int = 20) -> float:
  import numpy as np
  import torch
  from torch import nn
  from torch.nn import functional as F
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  with open(TEXT, encoding="utf-8") as f:
    text = f.read()
  chars = sorted(set(text))
  data = np.array([chars.index(c) for c in text[: int(0.9 * len(text))]], dtype=np.int64)

  class Block(nn.Module):
    def __init__(self):
      super().__init__()
      self.ln1, self.ln2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
      self.qkv, self.proj = nn.Linear(WIDTH, 3 * WIDTH), nn.Linear(WIDTH, WIDTH)
      self.up, self.down = nn.Linear(WIDTH, 4 * WIDTH), nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x):
      b, t, _ = x.shape
      q, k, v = self.qkv(self.ln1(x)).split(WIDTH, dim=2)
      q, k, v = (z.view(b, t, HEADS, WIDTH // HEADS).transpose(1, 2) for z in (q, k, v))
      y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, WIDTH)
      x = x + self.proj(y)
      return x + self.down(F.gelu(self.up(self.ln2(x)), approximate="tanh"))

  class GPT(nn.Module):
    def __init__(self):
      super().__init__()
      self.tokens, self.positions = nn.Embedding(len(chars), WIDTH), nn.Embedding(BLOCK, WIDTH)
      self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
      self.ln = nn.LayerNorm(WIDTH)
      self.head = nn.Linear(WIDTH, len(chars), bias=False)
      self.head.weight = self.tokens.weight

    def forward(self, idx, targets):
      x = self.tokens(idx) + self.positions(torch.arange(idx.shape[1]))
      for block in self.blocks:
        x = block(x)
      return F.cross_entropy(self.head(self.ln(x)).reshape(-1, len(chars)), targets.reshape(-1))

  model = GPT()
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
  rng = np.random.default_rng(0)

  def step():
    starts = rng.integers(0, len(data) - BLOCK - 1, BATCH)
    windows = torch.from_numpy(data[starts[:, None] + np.arange(BLOCK + 1)])
    loss = model(windows[:, :-1], windows[:, 1:])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss

  for _ in range(warmup):
    step()
  start = time.perf_counter()
  for _ in range(steps):
    loss = step()
  loss.item()
  return steps * BATCH * BLOCK / (time.perf_counter() - start)


def _child(side: str, steps: int, threads: int) -> float:
  # XLA's CPU client uses every core; give PyTorch the same (--threads defaults to the core count).
  env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
  side, dots, per_dispatch = (side.split(":") + ["", ""])[:3]
  if dots:
    env["SCALING_CPU_DOTS"] = dots
  out = subprocess.run([sys.executable, "-m", "benchmarks.torch_vs_jax", "--child", side, "--steps", str(steps),
                        "--threads", str(threads)] + (["--steps-per-dispatch", per_dispatch] if per_dispatch else []),
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
  if out.returncode != 0:
    raise SystemExit(f"{side} run failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])["tokens_per_second"]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.torch_vs_jax")
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--threads", type=int, default=os.cpu_count())
  parser.add_argument("--cpu-dots", default="ynn", help="comma-separated SCALING_CPU_DOTS values to race")
  parser.add_argument("--steps-per-dispatch", default="", help="comma-separated runtime.steps_per_dispatch values")
  parser.add_argument("--child", choices=["platform", "torch"], default=None)
  args = parser.parse_args(argv)
  if args.child:
    rate = (platform_tokens_per_second(args.steps, int(args.steps_per_dispatch or 0)) if args.child == "platform"
            else torch_tokens_per_second(args.steps, args.threads))
    print(json.dumps({"tokens_per_second": rate}))
    return 0
  sides = [f"platform:{dots}" + (f":{k}" if k else "") for dots in args.cpu_dots.split(",")
           for k in args.steps_per_dispatch.split(",")] + ["torch"]
  rates = {side: [] for side in sides}
  for round_ in range(args.rounds):
    for side in sides:
      rates[side].append(_child(side, args.steps, args.threads))
      print(f"round {round_ + 1} {side:15s} {rates[side][-1]:9.0f} tokens/s", flush=True)
  for side in sides[:-1]:
    ratio = statistics.median(rates[side]) / statistics.median(rates["torch"])
    print(f"{side} / PyTorch (medians, {args.threads} threads, {args.steps} steps): {ratio:.2f}x")
  return 0


if __name__ == "__main__":
  sys.exit(main())
