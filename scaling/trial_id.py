"""The trial id: a short hash of a resolved trial config (what config.json holds), less the keys that do not
change the result. A run directory is named by it, so every package that reads run directories checks a
config.json against its directory's name with `config_id`; the sweep schema (sweeps/spec.py) lists nothing here.
"""
import hashlib
import json

# Train keys that decide only whether a trial stops early, never a number it logs: left out of the trial
# id, so turning one off lets the same trial resume from its checkpoint and finish.
NOT_IN_ID = (("train", "stop_when_off_forecast"),)
# Keys added after trials were first hashed are hashed only when set, so earlier trials keep their ids.
HASHED_WHEN_SET = {("train", "inject_corruption_at_step"): None, ("data", "unique_tokens"): None,
                   ("train", "horizon", "flops"): None, ("train", "horizon", "flop_count"): "exact",
                   ("optimizer", "schedule"): "cosine", ("optimizer", "decay_fraction"): 0.2}


def config_id(config: dict) -> str:
  """The id of a resolved config (what config.json holds): a short hash of it, less the keys kept out of ids.

  A run directory is named by it, so its config.json can be checked against its name.
  """
  resolved = json.loads(json.dumps(config))
  for section, key in NOT_IN_ID:
    if isinstance(resolved.get(section), dict):
      resolved[section].pop(key, None)
  for path, unset in HASHED_WHEN_SET.items():
    parent = resolved
    for key in path[:-1]:
      parent = parent.get(key) if isinstance(parent, dict) else None
    if isinstance(parent, dict) and path[-1] in parent and parent[path[-1]] == unset:
      del parent[path[-1]]
  canonical = json.dumps(resolved, sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(canonical.encode()).hexdigest()[:12]
