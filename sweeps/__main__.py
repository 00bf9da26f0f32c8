"""python -m sweeps {run,validate,status,extend}: run a sweep YAML and analyse it, check it, show its progress,
or predict the optimal size at a larger budget and train it to check (sweeps/extend.py)."""
import argparse
import os
import sys

from scaling import rundir
from sweeps import expand
from sweeps.spec import SpecError


def _whole_number(upper: int):
  """An argparse type: a whole number from 0 to `upper`."""
  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if not 0 <= value <= upper:
      raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {upper}, got {value}")
    return value
  return parse


def _output_root(text: str) -> str:
  """An argparse type: --out, a path or a bucket URL; an empty one would train into the working directory."""
  if not text.strip():
    raise argparse.ArgumentTypeError("an empty path; give the output root (default: runs)")
  return text


def _dash_values(argv: list, flags: tuple) -> list:
  """`--budget -1e12` as `--budget=-1e12`, so the flag's own check refuses it with the reason (argparse alone reads
  -1e12 as an unknown flag and says "expected one argument")."""
  out = []
  for token in argv:
    if out and out[-1] in flags and token.startswith("-") and not token.startswith("--"):
      out[-1] = f"{out[-1]}={token}"
    else:
      out.append(token)
  return out


def _writable_directory(path: str):
  """None if `path` is (or can be made) a directory this process can write into, else why not."""
  import tempfile
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
      pass
  except OSError as e:
    return e.strerror or str(e)
  return None


def _extend(args) -> int:
  """Plans the follow-up sweep, records the prediction before anything trains, then runs it."""
  import json
  from scaling import metrics as metrics_lib
  from sweeps import extend
  try:
    planned = extend.plan(args.sweep_dir, args.budget, args.bootstrap)
  except extend.ExtendError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  parent = os.path.dirname(os.path.abspath(args.sweep_dir))
  try:
    path = extend.write(args.sweep_dir, planned)
    sweep = expand.load(path)
    directory = rundir.sweep_dir(parent, sweep)
    escapes = _out_escapes(argparse.Namespace(out=parent), directory)  # a linked follow-up directory: refused
    if escapes:
      raise SpecError(escapes)
    os.makedirs(directory, exist_ok=True)
    recorded = os.path.join(directory, extend.PREDICTION)
    if os.path.lexists(recorded):  # A relaunch keeps the prediction made before the first trial trained.
      print(f"{recorded}: kept the prediction already recorded")
    else:
      metrics_lib.write_json_atomic(recorded, planned["prediction"])
    p = metrics_lib.read_json(recorded)
  except SpecError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except (OSError, ValueError) as e:  # a file in the way (a link, a FIFO, a directory), or no permission
    where = getattr(e, "filename", None) or parent
    print(f"error: {where}: {metrics_lib.reason_of(e)}; move it away and run `sweeps extend` again", file=sys.stderr)
    return 2
  frontier = p["frontier"]
  print(f"predicted at C = {p['budget']:.3g} ({p['budget_ratio']:.1f}x the largest fitted): N* = "
        f"{frontier['n_params']:,.0f}, D* = {frontier['tokens']:,.0f}, loss {frontier['loss']:.4f} "
        f"[{frontier['loss_ci'][0]:.4f}, {frontier['loss_ci'][1]:.4f}]; training sizes "
        + ", ".join(f"{t['size']} ({t['params_non_embedding']:,} params{', predicted optimum' if t['predicted_optimal'] else ''})"
                    for t in p["trials"]) + f" from {path}")
  print(json.dumps(p["trials"]))
  if args.no_run:
    return 0
  return main(["run", path, "--out", parent] + (["--no-progress"] if args.no_progress else []))


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # One line and exit 2, like every other input error.
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv=None) -> int:
  parser = _Parser(prog="python -m sweeps")
  commands = parser.add_subparsers(dest="command", required=True)
  run_parser = commands.add_parser("run", help="train every trial of the sweep, then analyse it")
  run_parser.add_argument("file")
  run_parser.add_argument("--out", type=_output_root, default="runs", help="output root; the sweep goes in OUT/<name>/")
  run_parser.add_argument("--no-progress", action="store_true")
  run_parser.add_argument("--no-analysis", action="store_true")
  run_parser.add_argument("--retry-failed", action="store_true",
                          help="also re-run trials marked failed (they resume from their last checkpoint)")
  run_parser.add_argument("--backend", choices=("local", "ray", "slurm"), default="local",
                          help="local: one trial after another here; ray: a Ray task per trial; slurm: a job array")
  run_parser.add_argument("--address", default=None, help="--backend ray: the cluster (default: start a local one)")
  run_parser.add_argument("--slurm-cluster", default=None, help=argparse.SUPPRESS)  # "local": submitit's local executor
  run_parser.add_argument("--retries", type=_whole_number(100), default=None,
                          help="re-runs of a crashed trial before it is marked failed (default: runtime.retries)")
  validate_parser = commands.add_parser("validate", help="check the sweep file and list its trials")
  validate_parser.add_argument("file")
  status_parser = commands.add_parser("status", help="state, step and last loss of every trial of a sweep directory")
  status_parser.add_argument("sweep_dir")
  extend_parser = commands.add_parser("extend", help="plan a budget beyond the sweep's, then train the predicted "
                                       "optimum and 0.5x / 2x it to check the prediction")
  extend_parser.add_argument("sweep_dir")
  extend_parser.add_argument("--budget", type=float, required=True, help="FLOPs (C = 6 N D)")
  extend_parser.add_argument("--bootstrap", type=_whole_number(10_000), default=200)
  extend_parser.add_argument("--no-progress", action="store_true")
  extend_parser.add_argument("--no-run", action="store_true", help="write the follow-up sweep and prediction only")
  args = parser.parse_args(_dash_values(sys.argv[1:] if argv is None else list(argv), ("--budget",)))

  if args.command == "extend":
    return _extend(args)
  if args.command == "status":
    from scaling import storage
    from sweeps import status
    try:
      place = storage.opened(args.sweep_dir)  # a bucket URL: this machine's mirror of it, refreshed
    except storage.StorageError as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    if not os.path.exists(os.path.join(place.local, "sweep.json")):
      print(f"error: {args.sweep_dir}: no sweep.json; expected a directory made by `sweeps run`", file=sys.stderr)
      return 2
    try:
      print(status.format_table(status.rows(place.local)))
    except ValueError as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    return 0

  try:
    sweep = expand.load(args.file)
  except SpecError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2

  if args.command == "validate":
    print(f"{args.file}: sweep {sweep.name!r} is valid: {len(sweep.trials)} trial(s)")
    for trial in sweep.trials:
      print(f"  {trial.id}  {rundir.describe_axes(trial.axes)}")
    return 0
  if args.address is not None and args.backend != "ray":
    print("error: --address is for --backend ray", file=sys.stderr)
    return 2
  from scaling import runtime
  try:
    runtime.configure_cpu_dots()  # XLA's flags, read when the backend starts (a cluster's workers' too)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if args.backend != "local":
    return _cluster_run(args, sweep)

  from scaling import distributed
  try:  # Joins the other hosts' processes, if any; must precede every other JAX use.
    distributed.initialize()
  except distributed.DistributedError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  from scaling import logs
  from scaling import mesh as mesh_lib
  logs.configure()  # Process-tagged log lines when there are several processes.
  from scaling.train import Interrupted
  from sweeps.spec import error_at, read_yaml
  runtime.configure_jax()
  import jax
  try:  # A mesh larger than the machine is refused before anything is written.
    mesh_lib.mesh_shape(sweep.runtime.mesh.model_dump(), jax.device_count())
  except mesh_lib.MeshError as e:
    print(f"error: {error_at(args.file, read_yaml(args.file)[1], ('runtime', 'mesh'), str(e))}", file=sys.stderr)
    return 2
  from scaling import storage
  from sweeps import local
  directory = rundir.sweep_dir(args.out, sweep)
  if storage.is_url(directory):
    print(f"error: --out {args.out}: a bucket is for --backend ray or slurm (their tasks stage each trial); the "
          "local backend writes to a path (a mounted bucket, e.g. gcsfuse, is one)", file=sys.stderr)
    return 2
  problem = _out_problem(args, directory)  # The last check before anything is written.
  if problem:
    print(f"error: {problem}", file=sys.stderr)
    return 2
  try:
    states = local.run(sweep, args.out, progress=not args.no_progress, retries=args.retries,
                       retry_failed=args.retry_failed)
  except (Interrupted, KeyboardInterrupt) as e:
    print(f"interrupted: {e}; run the same command again to resume", file=sys.stderr)
    return 130
  except rundir.SweepDirError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if not distributed.is_writer():  # Process 0 reports and analyses for all.
    return 0
  return _report(args, sweep, directory, states)


def _cluster_run(args, sweep) -> int:
  """--backend ray | slurm: this process only submits and waits (no JAX here); the trials run in the tasks."""
  from scaling import storage
  directory = rundir.sweep_dir(args.out, sweep)
  from sweeps import ray_backend  # imports no Ray: the address is checked before anything is written
  problem = (_out_escapes(args, directory) or (args.backend == "ray" and ray_backend.connection_problem(args.address))
             or _out_problem(args, directory))
  if problem:
    print(f"error: {problem}", file=sys.stderr)
    return 2
  if sweep.runtime.pack:
    print(f"note: runtime.pack packs trials on the local backend; --backend {args.backend} runs one trial per task")
  try:
    if args.backend == "ray":
      states = ray_backend.run(sweep, args.out, address=args.address, progress=not args.no_progress,
                               retries=args.retries, retry_failed=args.retry_failed)
    else:
      from sweeps import slurm_backend
      states = slurm_backend.run(sweep, args.out, cluster=args.slurm_cluster, progress=not args.no_progress,
                                 retries=args.retries, retry_failed=args.retry_failed)
  except KeyboardInterrupt:
    print("interrupted; run the same command again to resume (running trials restart from their checkpoints)",
          file=sys.stderr)
    return 130
  except (rundir.SweepDirError, storage.StorageError, ray_backend.ClusterError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return _report(args, sweep, directory, states)


def _out_escapes(args, directory: str):
  """One line if the sweep directory would lie outside its root (scaling/containment.py), else None; writes nothing."""
  from scaling import containment
  from scaling import storage
  try:
    if storage.is_url(directory):
      storage.mirror_dir(directory)  # a URL path of plain names, mirrored inside the staging root
    else:  # a sweep directory that is a link out of --out is never written through
      containment.within(args.out, directory)
  except containment.Escape as e:
    return f"--out {args.out}: {e}"
  return None


def _out_problem(args, directory: str):
  """One line if the sweep directory (a path or a bucket URL) cannot be written, else None."""
  from scaling import storage
  escapes = _out_escapes(args, directory)
  if escapes:
    return escapes
  problem = storage.problem(directory) if storage.is_url(directory) else _writable_directory(directory)
  return f"--out {args.out}: cannot write the sweep directory {directory}: {problem}" if problem else None


def _report(args, sweep, directory, states) -> int:
  """Says how the sweep ended and analyses it; the exit code: 1 if any trial ended `failed` (so that scripts and
  schedulers notice; 2 is kept for bad input), else the analysis's."""
  not_done = ("diverged", "flagged", "failed", "damaged", "running")
  counts = ", ".join(f"{sum(s == k for s in states.values())} {k}" for k in not_done if k in states.values())
  print(f"sweep {sweep.name}: {sum(s == 'done' for s in states.values())}/{len(states)} trials done"
        + (f" ({counts})" if counts else "") + f" in {directory}")
  code = 0
  if not args.no_analysis:
    from analysis import report
    code = report.main([directory])  # a bucket URL: analysed in this machine's mirror, analysis/ pushed back
  return 1 if "failed" in states.values() else code


if __name__ == "__main__":
  from scaling import logs
  sys.exit(logs.exit_code(main))
