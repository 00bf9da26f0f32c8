"""What a repeated token is worth, in a sweep's report (Muennighoff et al. 2023).

A sweep whose trials set `data.unique_tokens` trained D tokens as D / U epochs of U unique
ones. This fits the data-constrained law (analysis/laws.py: L(N, D') with the effective data
D' of U unique tokens seen D / U times) to the final eval losses, reports the decay constant
R*_D and the epoch count at which one more repeated token is worth half a new one, each with
its bootstrap interval and beside the paper's, and lays out the loss against epochs at fixed
compute: trials of one size and one D that differ only in how often they repeat.

U is taken as tokens / epochs, so that D / U is exactly the epochs the trial trained (the
summary's `unique_tokens` counts whole windows, seq_len + 1 tokens each, one more than the
tokens a window trains).
"""
import numpy as np
import pandas as pd

from analysis import fit as fit_lib
from analysis import laws

# Muennighoff et al. 2023, fitted on 400+ runs up to 9B parameters and 900B tokens (their eq. 5-6).
PAPER = {"R_D_star": 15.4, "R_N_star": 5.3}
PAPER["half_worth_epochs"] = float(laws.half_worth_epochs(PAPER["R_D_star"]))
SAME_COMPUTE = 0.01  # Trials within 1% in tokens (and of one size) count as one compute budget.


def applies(done: pd.DataFrame) -> bool:
  """Some finished trial repeated its data: a data-constrained sweep."""
  return "epochs" in done and bool((pd.to_numeric(done.epochs, errors="coerce") > 1).any())


def table(done: pd.DataFrame, params_column: str) -> pd.DataFrame:
  """One row per finished trial: N, D, U (= D / epochs), epochs, loss. A trial without `unique_tokens`
  trained on fresh data throughout: one epoch, U = D."""
  rows = pd.DataFrame({
      "trial_id": done.trial_id,
      "params": pd.to_numeric(done[params_column], errors="coerce"),
      "tokens": pd.to_numeric(done.tokens, errors="coerce"),
      "epochs": pd.to_numeric(done.epochs, errors="coerce").fillna(1.0),
      "final_eval_loss": pd.to_numeric(done.final_eval_loss, errors="coerce")})
  rows["unique"] = rows.tokens / rows.epochs
  keep = np.isfinite(rows[["params", "tokens", "epochs", "final_eval_loss", "unique"]].to_numpy(float)).all(axis=1)
  return rows[keep & (rows.params > 0) & (rows.tokens > 0)].reset_index(drop=True)


def compute_groups(rows: pd.DataFrame) -> pd.DataFrame:
  """Rows of equal size and (within SAME_COMPUTE) equal tokens that differ in epochs, with a `group` id and
  each trial's loss change in % against the group's fewest-epoch trial."""
  out = []
  for params, same_size in rows.sort_values(["params", "tokens"]).groupby("params", sort=True):
    start, cluster = None, []
    clusters = []
    for _, r in same_size.iterrows():
      if start is None or r.tokens > start * (1 + SAME_COMPUTE):
        start, cluster = r.tokens, []
        clusters.append(cluster)
      cluster.append(r)
    for cluster in clusters:
      group = pd.DataFrame(cluster).sort_values("epochs")
      if group.epochs.nunique() < 2:
        continue
      group["group"] = len(out)
      group["loss_change_pct"] = 100 * (group.final_eval_loss / group.final_eval_loss.iloc[0] - 1)
      out.append(group)
  columns = list(rows.columns) + ["group", "loss_change_pct"]
  return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=columns)


def law_inputs(n, d, u, tokens_per_param=None) -> np.ndarray:
  """The law's inputs: (N, D, U), and U_N = min(N, U / tokens_per_param) for the full law."""
  n, d, u = (np.asarray(v, float) for v in (n, d, u))
  return np.stack([n, d, u] if tokens_per_param is None else [n, d, u, laws.unique_params(n, u, tokens_per_param)])


def fit(rows: pd.DataFrame, bootstrap: int, tokens_per_param=None, seed: int = 0):
  """(FitResult, None) or (None, why not): the data-constrained law on (N, D, U) -> final eval loss;
  with tokens_per_param, the full law (excess parameters beyond U_N = U / tokens_per_param discounted)."""
  law = laws.DATA_CONSTRAINED if tokens_per_param is None else laws.DATA_CONSTRAINED_FULL
  inputs = law_inputs(rows.params, rows.tokens, rows.unique, tokens_per_param)
  if not (inputs[1] > inputs[2] * (1 + 1e-9)).any():
    return None, "no trial repeated its data, so R_D_star is not identifiable"
  if tokens_per_param is not None and not (inputs[0] > inputs[3] * (1 + 1e-9)).any():
    return None, (f"no trial has more parameters than U_N = U / {tokens_per_param:g}, so R_N_star is not "
                  "identifiable")
  problem = fit_lib.distinct_inputs_problem(law, inputs, ["N", "D", "U", "U_N"][:law.n_inputs])
  if problem:
    return None, problem
  try:
    return fit_lib.fit_law(law, inputs, rows.final_eval_loss.to_numpy(float), bootstrap=bootstrap, seed=seed), None
  except fit_lib.FitError as e:
    return None, str(e)


def analyze(done: pd.DataFrame, params_column: str, bootstrap: int, tokens_per_param=None) -> tuple[dict, dict]:
  """(what fits.json holds under "data_constrained", what the plot needs: the tables and `predict(N, D, U)`)."""
  rows = table(done, params_column)
  groups = compute_groups(rows)
  result, error = fit(rows, bootstrap, tokens_per_param)
  predict = None if result is None else (
      lambda n, d, u: result.predict(law_inputs(n, d, u, tokens_per_param)))
  if predict is not None and len(groups):
    groups["predicted"] = predict(groups.params, groups.tokens, groups.unique)
  out = {"n_points": int(len(rows)), "params_column": params_column, "paper": PAPER,
         "tokens_per_param": tokens_per_param, "epochs": sorted(float(e) for e in rows.epochs.unique()),
         "fixed_compute": groups.drop(columns=["unique"]).to_dict(orient="records")}
  if result is None:
    out["error"] = error
  else:
    value, lo, hi = result.interval(lambda p: laws.half_worth_epochs(p["R_D_star"]))
    out["fit"] = result.to_dict()
    out["half_worth_epochs"] = {"value": float(value), "ci": [float(lo), float(hi)]}
    # The fitter's upper limits on R*_D, R*_N (laws.r_star_limits): an interval reaching one has no upper bound.
    inputs = law_inputs(rows.params, rows.tokens, rows.unique, tokens_per_param)
    repeats = {"R_D_star": inputs[1] / inputs[2], "R_N_star": inputs[0] / inputs[3] if len(inputs) > 3 else None}
    out["unbounded_above"] = sorted(
        name for name, ratio in repeats.items()
        if name in result.ci and result.ci[name][1] >= 0.98 * laws.r_star_limits(float(ratio.max()) - 1.0)[1])
  return out, {"rows": rows, "groups": groups, "predict": predict}


def _ci(fit_dict, name, open_above=False, digits=3):
  """value [lo, hi]; open_above: the interval reached the fitter's limit, so it has no upper end."""
  lo, hi = fit_dict["ci"][name]
  top = "no upper bound" if open_above else f"{hi:.{digits}g}"
  ci = f" [{lo:.{digits}g}, {top}]" if lo is not None and np.isfinite(lo) else ""
  return f"{fit_dict['params'][name]:.{digits}g}{ci}"


def markdown(section: dict) -> list:
  lines = ["## Repeated data: what a repeated token is worth (Muennighoff et al. 2023)", "",
           f"{section['n_points']} trials, epochs {', '.join(f'{e:g}' for e in section['epochs'])}; "
           f"N = `{section['params_column']}`, D = tokens trained, U = D / epochs (the unique tokens).", ""]
  paper = section["paper"]
  if "error" in section:
    lines += [f"Not fitted: {section['error']}.", ""]
  else:
    f, half = section["fit"], section["half_worth_epochs"]
    lo, hi = half["ci"]
    open_above = "R_D_star" in section["unbounded_above"]
    half_text = f"**{half['value']:.3g}**" + (
        "" if not np.isfinite(lo) else f" [{lo:.3g}, " + ("no upper bound]" if open_above else f"{hi:.3g}]"))
    law = laws.get(f["law"])
    lines += [f"Law: {law.formula}; fitted to {f['n_points']} final eval losses "
              "(95% bootstrap intervals).", "",
              "| constant | this sweep | Muennighoff et al. 2023 |", "|---|---:|---:|",
              f"| R*_D (decay of a repeated token's worth, in epochs) | **{_ci(f, 'R_D_star', open_above)}** | "
              f"{paper['R_D_star']:g} |",
              f"| epochs at which a repeated token is worth half a new one (1 + R*_D ln 2) | {half_text} | "
              f"{paper['half_worth_epochs']:.3g} |",
              f"| R*_N (decay of excess parameters' worth) | " + (
                  f"**{_ci(f, 'R_N_star', 'R_N_star' in section['unbounded_above'])}** "
                  f"(U_N = U / {section['tokens_per_param']:g})"
                  if "R_N_star" in f["params"] else "not fitted: `analysis plot --tokens-per-param R` fits it") +
              f" | {paper['R_N_star']:g} |", "",
              f"Other constants: E = {_ci(f, 'E')}, A = {_ci(f, 'A')}, alpha = {_ci(f, 'alpha')}, "
              f"B = {_ci(f, 'B')}, beta = {_ci(f, 'beta')}.", ""]
    if "R_N_star" not in f["params"]:
      lines += ["(The D-side law: N' = N. It charges models larger than compute-optimal for their unique data "
                "nothing for their excess parameters, so A and alpha absorb that.)", ""]
  groups = pd.DataFrame(section["fixed_compute"])
  if len(groups):
    predicted = "predicted" in groups
    lines += ["Loss against epochs at fixed compute (one size, one D; fewer unique tokens seen more often); "
              "change against the fewest-epoch trial of each row:", "",
              "| params | tokens | " + " | ".join(f"{e:g} ep" for e in sorted(groups.epochs.unique())) + " |",
              "|---:|---:|" + "---:|" * groups.epochs.nunique()]
    epochs = sorted(groups.epochs.unique())
    for _, g in groups.groupby("group", sort=True):
      cells = {e: r for e, r in zip(g.epochs, g.itertuples())}
      lines.append(f"| {g.params.iloc[0]:,.0f} | {g.tokens.iloc[0]:,.0f} | " + " | ".join(
          f"{cells[e].final_eval_loss:.4f} ({cells[e].loss_change_pct:+.1f}%)" if e in cells else "-" for e in epochs)
          + " |")
    lines += ["", "`loss_vs_epochs.png`: these rows" + (", with the fitted law's curve" if predicted else "") + ".",
              ""]
  else:
    lines += ["No two trials of one size and one D differ in epochs: no fixed-compute comparison.", ""]
  return lines


def console_line(section: dict) -> str:
  """The fitted constants in one line, for `analysis plot`'s output."""
  if "fit" not in section:
    return f"data-constrained: not fitted: {section['error']}"
  fit, half = section["fit"], section["half_worth_epochs"]

  def interval(name, lo, hi):  # " [lo, hi]"; none without bootstrap; an open top at the fitter's limit
    if lo is None or not np.isfinite(lo):
      return ""
    return f" [{lo:.3g}, {'no upper bound' if name in section['unbounded_above'] else format(hi, '.3g')}]"

  return (f"data-constrained: R_D_star={fit['params']['R_D_star']:.3g}{interval('R_D_star', *fit['ci']['R_D_star'])} "
          f"(paper {PAPER['R_D_star']:g}); a repeated token is worth half a new one after "
          f"{half['value']:.3g}{interval('R_D_star', *half['ci'])} epochs"
          + (f"; R_N_star={fit['params']['R_N_star']:.3g}{interval('R_N_star', *fit['ci']['R_N_star'])}"
             if "R_N_star" in fit["params"] else ""))
