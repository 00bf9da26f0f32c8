"""`python -m analysis {plot,fit,plan,compare,emergence,goodput}`: see each subcommand's module for its flags."""
import sys


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  commands = {"plot": "analysis.report", "fit": "analysis.fit_cli", "plan": "analysis.plan_cli",
              "compare": "analysis.compare", "emergence": "analysis.emergence_cli",
              "goodput": "analysis.goodput"}
  if not argv or argv[0] not in commands:
    print(f"usage: python -m analysis {{{','.join(commands)}}} ...", file=sys.stderr)
    return 2
  import importlib
  return importlib.import_module(commands[argv[0]]).main(argv[1:])


if __name__ == "__main__":
  from scaling import logs
  sys.exit(logs.exit_code(main))
