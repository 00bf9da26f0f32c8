"""Process-wide JAX settings for the command-line entry points."""
import os

# SCALING_CPU_DOTS: which library XLA's CPU backend runs matrix products with. "ynn" (the default) is
# XLA's own, YNNPACK fusions, with which every figure the README and the sweep headers state was
# measured (packed trials excepted: their programs use Eigen, packed_compiler_options). "eigen" runs
# the compiled train step at nanoGPT's CPU configuration 1.15x faster here (A/B timings; within the
# noise in whole-trainer runs), but rounds differently: trained numbers move at
# float32 rounding level, enough to reorder rungs whose losses lie within seed noise
# (benchmarks/RESULTS.md). Only the CPU backend reads it.
_YNN_FUSION_TYPE = "xla_cpu_experimental_ynn_fusion_type"  # which ops go to YNNPACK; none: Eigen's dots
CPU_DOTS = {"eigen": f"--{_YNN_FUSION_TYPE}=", "ynn": ""}


def packed_compiler_options(platform: str) -> dict | None:
  """XLA options for the programs of packed trials (runtime.pack): on CPU, Eigen for their matrix products.

  Under vmap every product is a batched dot, which YNNPACK runs far below its 2-D speed (the quickstart's
  depth 6, three trials: 82 ms a step against Eigen's 52, A/B in one process; at width 16, 14.1 against
  15.2). A packed trial matches its unpacked run to float32 rounding either way; one trial's program keeps
  SCALING_CPU_DOTS.
  """
  return {_YNN_FUSION_TYPE: ""} if platform == "cpu" else None


def configure_cpu_dots() -> None:
  """Makes XLA_FLAGS say what SCALING_CPU_DOTS asks for; unset, XLA_FLAGS stays as it is (XLA's default: ynn).

  XLA reads its flags when the backend starts: call this before the first JAX computation. ValueError for
  an unknown choice.
  """
  choice = os.environ.get("SCALING_CPU_DOTS")
  if choice is None:
    return
  if choice not in CPU_DOTS:
    raise ValueError(f"SCALING_CPU_DOTS={choice!r}: one of {', '.join(CPU_DOTS)}")
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if _YNN_FUSION_TYPE not in f]
  os.environ["XLA_FLAGS"] = " ".join(flags + [CPU_DOTS[choice]] if CPU_DOTS[choice] else flags)


def configure_jax() -> None:
  """The CPU dot library (configure_cpu_dots) and a persistent compilation cache: a re-run of a
  sweep skips most of its compile time.

  Keyed by jax version because cached executables are not portable across versions.
  Set SCALING_JAX_CACHE=off to disable, or to a directory to move it.
  """
  configure_cpu_dots()
  import jax
  where = os.environ.get("SCALING_JAX_CACHE", "")
  if where == "off":
    return
  if not where:
    where = os.path.join(os.path.expanduser("~"), ".cache", "scaling_lab", f"jax-{jax.__version__}")
  jax.config.update("jax_compilation_cache_dir", where)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
