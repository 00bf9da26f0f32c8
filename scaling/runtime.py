"""Process-wide JAX settings for the command-line entry points."""
import os


def configure_jax() -> None:
  """Persistent compilation cache: a re-run of a sweep skips most of its compile time.

  Keyed by jax version because cached executables are not portable across versions.
  Set SCALING_JAX_CACHE=off to disable, or to a directory to move it.
  """
  import jax
  where = os.environ.get("SCALING_JAX_CACHE", "")
  if where == "off":
    return
  if not where:
    where = os.path.join(os.path.expanduser("~"), ".cache", "scaling_lab", f"jax-{jax.__version__}")
  jax.config.update("jax_compilation_cache_dir", where)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
