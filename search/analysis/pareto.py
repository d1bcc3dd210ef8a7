"""Pareto fronts of sweeps with several objectives (`[sweep] objectives`): the non-dominated
configurations over validation accuracy and model costs, as leaderboard rows. Dominance is
search.definition.objectives' (NSGA-II's non-dominated sort, Deb et al. 2002).
"""
from __future__ import annotations

import json

import pandas as pd

from search.definition.objectives import Objective, objectives_from_record, pareto_mask

from .differences import with_differences
from .leaderboard import DEFAULT_GROUP, LeaderboardError, leaderboard, with_config_keys


def sweep_objectives(results: str) -> dict[str, list[Objective] | None]:
    """Each sweep's objectives, by sweep name, from the `sweep.json` of a sweep dir or of every
    sweep under a results dir (None: a sweep on validation UA alone). A sweep without
    `sweep.json` (a confirmation, or one started by an older ser-search) is not listed."""
    from pyarrow import fs as pafs  # noqa: PLC0415

    from search.results import filesystem  # noqa: PLC0415

    fs, root = filesystem(results)
    root = root.rstrip("/")
    dirs = [root]
    if fs.get_file_info(root).type == pafs.FileType.Directory:
        dirs += sorted(i.path for i in fs.get_file_info(pafs.FileSelector(root)) if i.type == pafs.FileType.Directory)
    out: dict[str, list[Objective] | None] = {}
    for d in dirs:
        path = f"{d}/sweep.json"
        if fs.get_file_info(path).type != pafs.FileType.File:
            continue
        with fs.open_input_stream(path) as f:
            record = json.loads(f.read().decode("utf-8"))
        name = (record.get("sweep") or {}).get("sweep", {}).get("name") or d.rsplit("/", 1)[-1]
        out[name] = objectives_from_record(record)
    return out


def pareto_front(trials: pd.DataFrame, objectives: list[Objective]) -> pd.DataFrame:
    """The non-dominated configurations of one sweep's trials over `objectives`, best first by
    the first objective: rows as the per-configuration leaderboard's (mean ± 95 % interval over
    a configuration's completed seeds), with each cost objective's mean beside them.

    Completed trials only. A pruned trial is left out, as on the leaderboard: its validation
    figures are from the epoch it was stopped at, and MO-ASHA stopped it because other trials
    at that rung ranked ahead of it on these objectives; it is counted in `n_pruned`. A
    configuration with no completed trial is not on the front. The settings the front's
    configurations differ in have a column each, as on the leaderboard (search.analysis.differences)."""
    names = [o.name for o in objectives]
    missing = [n for n in names if n not in trials.columns]
    if missing:
        raise LeaderboardError(f"trials table lacks objective column(s) {missing} (recorded by every trial of a "
                               f"sweep with [sweep] objectives)")
    board = leaderboard(trials).drop(columns=["rank"])
    if board.empty:
        return board
    df = with_config_keys(trials[trials["status"] == "completed"].copy())
    costs = [n for n in names if f"{n}_mean" not in board.columns]
    if costs:
        per = df.groupby(list(DEFAULT_GROUP), dropna=False)[costs].mean().reset_index()
        board = board.merge(per, on=list(DEFAULT_GROUP), how="left")
        for c in costs:  # counts stay counts (one value per configuration anyway)
            if c in ("params", "macs") and board[c].dropna().eq(board[c].dropna().round()).all():
                board[c] = board[c].round().astype("Int64")
    value_cols = [f"{n}_mean" if f"{n}_mean" in board.columns else n for n in names]
    values = board[value_cols].astype("float64").to_numpy()
    keep = pareto_mask(values, [o.sense for o in objectives]) & (board["n"] > 0).to_numpy()
    front = board[keep]
    order = [c for c in value_cols]
    front = front.sort_values(order, ascending=[o.sense == "min" for o in objectives], kind="stable")
    front = with_differences(front, with_config_keys(trials.copy()))  # the settings the front's rows differ in
    lead = [c for c in front.columns if c not in costs and not c.endswith(("_mean", "_ci95"))]
    rest = [c for c in front.columns if c not in lead and c not in costs]
    return front[lead + costs + rest].reset_index(drop=True)


def pareto_leaderboard(trials: pd.DataFrame, objectives: dict[str, list[Objective] | None]) -> tuple[pd.DataFrame, list[str]]:
    """`pareto_front` of every sweep in `trials` that has objectives (`sweep_objectives`), and
    the names of the sweeps left out for having none. Raises when no sweep has objectives."""
    names = [str(s) for s in trials["sweep"].dropna().unique()] if "sweep" in trials.columns else []
    with_objectives = [n for n in names if objectives.get(n)]
    if not len(trials):
        return pd.DataFrame(), []
    if not with_objectives:
        raise LeaderboardError(f"--pareto needs a sweep with [sweep] objectives; {', '.join(names) or 'these trials'} "
                               f"{'has' if len(names) == 1 else 'have'} none (a sweep on validation UA alone has "
                               f"one best trial: leave out --pareto)")
    fronts = [pareto_front(trials[trials["sweep"] == n], objectives[n]) for n in with_objectives]
    board = pd.concat(fronts, ignore_index=True)
    board = with_differences(board, with_config_keys(trials.copy()))  # over every front listed, not each alone
    return board, [n for n in names if n not in with_objectives]
