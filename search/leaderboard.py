"""Leaderboard: which configurations (or loss families, frontends, ...) did best.

Ranking uses validation UA only: the test split stays a report, never a selection criterion,
or the leaderboard would leak test information into the choice of the winner. Only completed
trials are ranked and averaged. A pruned trial's validation UA is from the epoch ASHA stopped
it at, so averaging it with full-length runs would punish the configurations ASHA promoted,
and it has no test numbers; pruned and failed trials are therefore only counted per group
(`n_pruned`, `n_error`), and a group with no completed trial is listed last without a rank.

A configuration run with several seeds shows mean ± half-width of the 95 % Student-t
confidence interval over its completed seeds (blank with a single run).

Beside the figures: `test_folds`, the folds the test numbers are on, and `test_exposed`, "yes"
when a test fold shown was also a validation fold of the selection (data.folds without
data.test_folds, or a confirmation moved onto a fold the search validated on): those test
figures are optimistic (README, nested selection).
"""
from __future__ import annotations

import json
import math
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from .pareto import Objective, objectives_from_record, pareto_mask

METRICS = ("val_ua", "val_wa", "test_ua", "test_wa", "test_f1_macro")
# Shown beside a config_key group so the row says what the configuration was.
PARAM_COLUMNS = ("model", "loss_family", "frontend", "center_lambda", "center_lr", "gamma", "temperature",
                 "supcon_weight", "margin", "triplet_weight", "lr", "batch_size")
# Shown too when the trials are not all one within-corpus protocol.
PROTOCOL_COLUMNS = ("train_corpora", "eval_corpora", "classes", "classes_dropped")
DEFAULT_GROUP = ("sweep", "config_key")
FORMATS = ("table", "markdown", "csv", "json")
_NOT_GROUPABLE = set(METRICS) | {"val_f1_macro", "val_precision_macro", "val_recall_macro", "test_precision_macro",
                                 "test_recall_macro", "compactness_val", "compactness_test", "train_seconds",
                                 "config_json", "started_at", "finished_at", "error", "epochs_run", "best_epoch", "status",
                                 # list columns (a cross-validated trial's folds and per-fold figures)
                                 "folds", "val_folds", "test_folds", "val_ua_folds", "test_ua_folds", "test_wa_folds",
                                 "test_f1_macro_folds", "test_precision_macro_folds", "test_recall_macro_folds",
                                 "compactness_test_folds"}


class LeaderboardError(ValueError):
    """The trials table cannot be ranked as asked; the message says which column."""


def mean_ci95(values: pd.Series | np.ndarray | list[float]) -> tuple[float, float, int]:
    """(mean, half-width of the 95 % Student-t interval, n) over the non-null values;
    the half-width is NaN for fewer than two values."""
    x = pd.Series(values, dtype="float64").dropna().to_numpy()
    n = len(x)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, n
    sem = float(x.std(ddof=1)) / math.sqrt(n)
    return mean, float(stats.t.ppf(0.975, df=n - 1) * sem), n


def _several_protocols(df: pd.DataFrame) -> bool:
    if "train_corpora" not in df.columns or "eval_corpora" not in df.columns:
        return False
    pairs = df[["train_corpora", "eval_corpora"]].dropna()
    return bool(len(pairs.drop_duplicates()) > 1 or (pairs["train_corpora"] != pairs["eval_corpora"]).any())


def _with_config_keys(df: pd.DataFrame) -> pd.DataFrame:
    """`df` (modified in place) with the DEFAULT_GROUP columns present; a row without a config
    key is its own configuration, never merged with others."""
    if "sweep" not in df.columns:
        df["sweep"] = pd.NA
    if "config_key" not in df.columns:
        df["config_key"] = pd.NA
    df["config_key"] = df["config_key"].astype("object").where(
        df["config_key"].notna(), "trial:" + df["trial_id"].astype(str))
    return df


def leaderboard(trials: pd.DataFrame, group_by: list[str] | None = None) -> pd.DataFrame:
    """Rank groups of trials by mean validation UA of their completed trials.

    group_by=None: one row per configuration (sweep, config_key), i.e. seeds of one setting
    together, with the setting's parameters beside it. group_by=[...]: one row per value of
    those columns (e.g. loss_family, frontend), exactly the columns given (add "sweep" to keep
    sweeps apart); these rows also name the group's best completed trial by validation UA and
    its test UA (the val-selected model's test score).
    """
    required = {"status", "trial_id", *METRICS}
    missing = sorted(required - set(trials.columns))
    if missing:
        raise LeaderboardError(f"trials table lacks column(s) {missing}; is it from read_trials()?")
    df = trials.copy()
    if group_by is None:
        keys = list(DEFAULT_GROUP)
        df = _with_config_keys(df)
    else:
        keys = list(group_by)
        if not keys:
            raise LeaderboardError("group_by is empty; pass None for the per-configuration leaderboard")
        valid = [c for c in trials.columns if c not in _NOT_GROUPABLE]
        unknown = [c for c in keys if c not in valid]
        if unknown:
            raise LeaderboardError(f"cannot group by {unknown}; valid group-by columns: {', '.join(valid)}")
        if len(set(keys)) != len(keys):
            raise LeaderboardError(f"group_by repeats a column: {keys}")
    params = [c for c in PARAM_COLUMNS if group_by is None and c in df.columns and df[c].notna().any()]
    if group_by is None and _several_protocols(df):
        params += [c for c in PROTOCOL_COLUMNS if c in df.columns and df[c].notna().any()]

    rows = []
    for key, g in df.groupby(keys, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        done = g[g["status"] == "completed"]
        row: dict[str, object] = dict(zip(keys, key))
        for c in params:
            vals = done[c].dropna() if len(done) else g[c].dropna()
            if c in PROTOCOL_COLUMNS:  # leave-one-corpus-out repeats differ here: show them all
                row[c] = " | ".join(sorted(set(map(str, vals)))) or None
            else:
                row[c] = vals.iloc[0] if len(vals) else None
        row["n"] = len(done)
        row["n_pruned"] = int((g["status"] == "pruned").sum())
        row["n_error"] = int((g["status"] == "error").sum())
        row["test_folds"], row["test_exposed"] = _test_design(done)
        for m in METRICS:
            row[f"{m}_mean"], row[f"{m}_ci95"], _ = mean_ci95(done[m])
        if group_by is not None:
            ranked = done.dropna(subset=["val_ua"]).sort_values(["val_ua", "val_wa"], ascending=False, kind="stable")
            best = ranked.iloc[0] if len(ranked) else None
            row["best_trial_id"] = None if best is None else best["trial_id"]
            row["best_val_ua"] = math.nan if best is None else float(best["val_ua"])
            row["best_test_ua"] = math.nan if best is None else float(best["test_ua"])
        rows.append(row)

    columns = ["rank", *keys, *params, "n", "n_pruned", "n_error", "test_folds", "test_exposed",
               *[f"{m}_{s}" for m in METRICS for s in ("mean", "ci95")]]
    if group_by is not None:
        columns += ["best_trial_id", "best_val_ua", "best_test_ua"]
    out = pd.DataFrame(rows, columns=[c for c in columns if c != "rank"])
    if out.empty:
        return pd.DataFrame(columns=columns)
    out["_has"] = out["val_ua_mean"].notna()
    out["_tie"] = out[keys].astype(str).agg("|".join, axis=1)  # deterministic order for exact ties
    out = out.sort_values(["_has", "val_ua_mean", "val_wa_mean", "_tie"], ascending=[False, False, False, True],
                          na_position="last", kind="stable").drop(columns=["_tie"])
    out.insert(0, "rank", pd.array([i + 1 if h else pd.NA for i, h in enumerate(out["_has"])], dtype="Int64"))
    return out.drop(columns=["_has"]).reset_index(drop=True)


def _test_design(done: pd.DataFrame) -> tuple[str | None, str | None]:
    """(the test folds of a group's completed trials, "0,1+2" style, and "yes"/"no": whether any
    of them took part in selection); None where the rows predate the design columns."""
    if "test_folds" not in done.columns or not len(done):
        return None, None
    sets = sorted({"+".join(str(int(f)) for f in v) for v in done["test_folds"]
                   if v is not None and not (isinstance(v, float) and math.isnan(v)) and len(v)})
    exposed = done["selection_exposed"].dropna() if "selection_exposed" in done.columns else pd.Series(dtype=bool)
    return (",".join(sets) or None), (None if not len(exposed) else ("yes" if exposed.astype(bool).any() else "no"))


# ---------------------------------------------------------------------------- rendering


def _fmt_number(v: object) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (float, np.floating)):
        return f"{v:.3g}"
    return str(v)


def display_view(df: pd.DataFrame) -> pd.DataFrame:
    """The people-facing view shared by the terminal table, Markdown and the dashboard: metric
    pairs merged into "mean ± ci" strings, numbers shortened."""
    out = pd.DataFrame(index=df.index)
    for c in df.columns:
        if c.endswith("_ci95"):
            continue
        if c.endswith("_mean") and c[:-5] in METRICS:
            m = c[:-5]
            out[m] = [("" if pd.isna(a) else f"{a:.3f}" + ("" if pd.isna(b) else f" ± {b:.3f}"))
                      for a, b in zip(df[c], df[f"{m}_ci95"])]
        elif c in ("best_val_ua", "best_test_ua"):
            out[c] = ["" if pd.isna(v) else f"{v:.3f}" for v in df[c]]
        else:
            out[c] = [_fmt_number(v) for v in df[c]]
    return out


def _markdown(df: pd.DataFrame) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(c) for c in df.columns) + " |", "|" + "|".join("---" for _ in df.columns) + "|"]
    lines += ["| " + " | ".join(esc(str(v)) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def render(df: pd.DataFrame, fmt: Literal["table", "markdown", "csv", "json"] = "table") -> str:
    """table/markdown for people (mean ± ci95 in one cell); csv/json keep every number raw."""
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        records = json.loads(df.to_json(orient="records", date_format="iso", double_precision=15))
        return json.dumps(records, indent=2)
    if fmt not in FORMATS:
        raise LeaderboardError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if df.empty:
        return "no trials yet"
    view = display_view(df)
    if fmt == "markdown":
        return _markdown(view)
    return view.to_string(index=False)


# ---------------------------------------------------------------------------- Pareto front


def sweep_objectives(results: str) -> dict[str, list[Objective] | None]:
    """Each sweep's objectives, by sweep name, from the `sweep.json` of a sweep dir or of every
    sweep under a results dir (None: a sweep on validation UA alone). A sweep without
    `sweep.json` (a confirmation, or one started by an older ser-search) is not listed."""
    from pyarrow import fs as pafs  # noqa: PLC0415

    from .results import _filesystem  # noqa: PLC0415

    fs, root = _filesystem(results)
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
    configuration with no completed trial is not on the front."""
    names = [o.name for o in objectives]
    missing = [n for n in names if n not in trials.columns]
    if missing:
        raise LeaderboardError(f"trials table lacks objective column(s) {missing} (recorded by every trial of a "
                               f"sweep with [sweep] objectives)")
    board = leaderboard(trials).drop(columns=["rank"])
    if board.empty:
        return board
    df = _with_config_keys(trials[trials["status"] == "completed"].copy())
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
    return pd.concat(fronts, ignore_index=True), [n for n in names if n not in with_objectives]
