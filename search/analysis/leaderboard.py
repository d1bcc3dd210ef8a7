"""Leaderboard: which configurations (or loss families, frontends, ...) did best.

Ranking uses validation UA only: the test split stays a report, never a selection criterion,
or the leaderboard would leak test information into the choice of the winner. Only completed
trials are ranked and averaged. A pruned trial's validation UA is from the epoch ASHA stopped
it at, so averaging it with full-length runs would punish the configurations ASHA promoted,
and it has no test numbers; pruned and failed trials are therefore only counted per group
(`n_pruned`, `n_error`), and a group with no completed trial is listed last without a rank.

Two configurations differing in a setting outside those columns (normalization, a recipe or
augmentation setting, a model size, any [base] key a sweep varies) get a column for it, named
by its dotted path in the TrainConfig (`normalization`, `optim.weight_decay`), placed after the
parameter columns (search.analysis.differences): a row shows every setting it differs in from
the other rows listed.

A configuration run with several seeds or folds shows mean ± half-width of a 95 % interval as
wide as its design's evidence: test figures and validation UA by the claims'
own rule, as the dashboard shows them (seeds averaged per test set; one test set: over seeds,
conditional on those speakers; several folds: Nadeau & Bengio's corrected t, since the folds'
training sets overlap), validation WA over the seeds' means (design_intervals). Blank with a
single unit. `--group-by` rows summarise a group's configurations instead: plain Student t over
its completed trials.

Beside the figures: `test_folds`, the folds the test numbers are on, and `test_exposed`, "yes"
when a test fold shown was also a validation fold of the selection (data.folds without
data.test_folds, or a confirmation moved onto a fold the search validated on): those test
figures are optimistic (docs/selection-and-claims.md, nested selection).
"""
from __future__ import annotations

import json
import math
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from .differences import with_differences

METRICS = ("val_ua", "val_wa", "test_ua", "test_wa", "test_f1_macro")
# Shown too when the trials are not all one within-corpus protocol.
PROTOCOL_COLUMNS = ("train_corpora", "eval_corpora", "classes", "classes_dropped")
DEFAULT_GROUP = ("sweep", "config_key")
FORMATS = ("table", "markdown", "csv", "json")


def param_columns() -> tuple[str, ...]:
    """The columns shown beside a configuration to say what it was. The loss parameters' come
    from their declarations (ser_core.losses, via the trials schema), read when a leaderboard is
    built rather than when this module is imported (reading settings stays free of torch)."""
    from search.results import LOSS_PARAM_COLUMNS  # noqa: PLC0415

    return ("model", "loss_family", "frontend", *LOSS_PARAM_COLUMNS, "lr", "batch_size")


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


def design_intervals(runs: pd.DataFrame, metrics: tuple[str, ...] = METRICS) -> dict[str, tuple[float, float]]:
    """Each metric's (mean, 95 % half-width) over one configuration's completed `runs`, as wide as
    the design's evidence, by the claims' rule (search.analysis.claims.unit_interval: seeds
    averaged per test set; over seeds with one test set, over the test sets with several,
    Nadeau & Bengio's corrected t where the training folds are recorded). Test metrics and
    validation UA (per fold where a cross-validated run recorded it: per_fold_validation, as the
    dashboard reads it); validation WA, which has no per-fold figures, over the seeds' means.
    Leave-one-corpus-out repeats are one test set per held-out corpus. Half-width NaN without
    two units."""
    from .claims.arms import unit_interval  # noqa: PLC0415 - the claims package imports this module
    from .claims.model import TEST_METRICS  # noqa: PLC0415
    from .claims.runs import per_fold_validation  # noqa: PLC0415

    present = [m for m in metrics if m in runs.columns]
    out = {m: (math.nan, math.nan) for m in metrics}
    if len(runs) == 1:  # one run: its figures, and an interval only over its folds
        one_run = [m for m in present if not _has_fold_figures(runs, m)]
        for m in one_run:
            value = runs[m].iloc[0]
            out[m] = (math.nan if pd.isna(value) else float(value)), math.nan
        present = [m for m in present if m not in one_run]
    if not present or not len(runs):
        return out
    runs = _seeded(runs)
    by_seed = runs.groupby("seed")[present].mean()
    one_test_set = _one_test_set(runs)
    units = None
    for m in present:
        # one test set without per-fold figures to split (the common case): the claims' rule is the
        # t over the seeds' means, taken directly (design_units costs ~20 ms a configuration)
        split = _has_fold_figures(runs, m) or (m == "val_ua" and _has_fold_figures(runs, "test_ua"))
        if (m not in TEST_METRICS and m != "val_ua") or (one_test_set and not split):
            out[m] = mean_ci95(by_seed[m])[:2]
            continue
        units = design_units_of(runs) if units is None else units
        res = unit_interval(per_fold_validation(units) if m == "val_ua" else units, m)
        if res.n_pairs == 0:  # rows that predate the per-fold figures: their mean, no interval
            out[m] = mean_ci95(runs[m])[0], math.nan
        else:
            out[m] = float(res.mean_diff), float((res.ci_high - res.ci_low) / 2) if res.has_interval else math.nan
    return out


def _has_fold_figures(runs: pd.DataFrame, metric: str) -> bool:
    column = f"{metric}_folds"
    return column in runs.columns and runs[column].map(lambda v: hasattr(v, "__len__") and len(v) > 1).any()


def _one_test_set(runs: pd.DataFrame) -> bool:
    """Every run is tested on the same one test set (a metric without per-fold figures then has
    its seeds as units: the common case, and the leaderboard's fast path, since design_units
    costs ~20 ms a configuration)."""
    n = len(runs)
    tests = runs["test_folds"].tolist() if "test_folds" in runs.columns else [None] * n
    folds = runs["fold"].tolist() if "fold" in runs.columns else [None] * n
    held = runs["eval_corpora"].tolist() if "eval_corpora" in runs.columns else [None] * n
    sets = set()
    for t, f, h in zip(tests, folds, held):
        listed = tuple(int(x) for x in t) if hasattr(t, "__len__") and not isinstance(t, str) and len(t) else None
        sets.add((listed or (None if pd.isna(f) else int(f)), None if pd.isna(h) else str(h)))
        if len(sets) > 1:
            return False
    return True


def _seeded(runs: pd.DataFrame) -> pd.DataFrame:
    """A row that recorded no seed is a draw of its own."""
    seeds = runs["seed"] if "seed" in runs.columns else pd.Series(math.nan, index=runs.index)
    unseeded = -1 - np.arange(len(runs))
    return runs.assign(seed=np.where(seeds.isna(), unseeded, seeds.fillna(0)).astype("int64"))


def design_units_of(runs: pd.DataFrame) -> pd.DataFrame:
    """One configuration's completed runs as test-set units (claims.design_units, from the recorded
    design columns: the leaderboard already groups by config_key), leave-one-corpus-out repeats
    made one test set per held-out corpus and one protocol."""
    from .claims.runs import design_units  # noqa: PLC0415

    units = design_units(_seeded(runs), read_config=False)
    if units["held_out"].astype(str).nunique() > 1:  # each held-out corpus's folds are test sets of their own
        units["test_unit"] = units["held_out"].astype(str) + ":" + units["test_unit"].astype(str)
    units["protocol"] = " | ".join(sorted(set(units["protocol"].astype(str))))
    return units


def _several_protocols(df: pd.DataFrame) -> bool:
    if "train_corpora" not in df.columns or "eval_corpora" not in df.columns:
        return False
    pairs = df[["train_corpora", "eval_corpora"]].dropna()
    return bool(len(pairs.drop_duplicates()) > 1 or (pairs["train_corpora"] != pairs["eval_corpora"]).any())


def with_config_keys(df: pd.DataFrame) -> pd.DataFrame:
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

    Per configuration, the settings that differ between the rows (over every row, of every
    sweep listed) follow the parameter columns, one column each, named by dotted path
    (search.analysis.differences). A custom group_by adds none: its rows pool configurations,
    which may differ within a row, so a setting has no one value per row there.
    """
    required = {"status", "trial_id", *METRICS}
    missing = sorted(required - set(trials.columns))
    if missing:
        raise LeaderboardError(f"trials table lacks column(s) {missing}; is it from read_trials()?")
    df = trials.copy()
    if group_by is None:
        keys = list(DEFAULT_GROUP)
        df = with_config_keys(df)
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
    params = [c for c in param_columns() if group_by is None and c in df.columns and df[c].notna().any()]
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
        if group_by is None:
            for m, (mean, half) in design_intervals(done).items():
                row[f"{m}_mean"], row[f"{m}_ci95"] = mean, half
        else:  # a spread over the group's configurations, each trial one draw of the search
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
    out = out.drop(columns=["_has"]).reset_index(drop=True)
    return with_differences(out, df) if group_by is None else out


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


def markdown_table(df: pd.DataFrame) -> str:
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
        return markdown_table(view)
    return view.to_string(index=False)
