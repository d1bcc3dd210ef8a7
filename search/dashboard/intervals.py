"""The confirmed groups of a results directory and their intervals, by the claims' own cells and
design (search.analysis.claims): a group is one loss family x frontend in one cell (sweep lineage,
protocol, model, prepared corpus), never pooled across cells; its configuration is the one the
claims choose (best mean validation UA); its interval is taken over units (a test set's seeds
averaged), over seeds with one test set and over the test sets with several (Nadeau & Bengio's
corrected t where the design is recorded): confirmed runs are seeds x folds, and runs that share a
test set are not independent. Two groups of one cell are compared as a claims row would compare
them (pairwise_differences).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import permutations
from typing import Any

import pandas as pd

# the claims' own cells and rules: which configuration, what scope, a claim row
from search.analysis.claims.arms import CELL_KEYS, choose_config, claim_row, confirmed_runs, scope_text, unit_interval
from search.analysis.claims.model import Arm, Claim, ClaimsError
from search.analysis.claims.runs import is_missing, per_fold_validation

INTERVAL_METRICS = ("val_ua", "test_ua")
_CELL_NAMES = {"lineage": "sweep", "protocol": "", "model": "", "prepared_id": "prepared"}


@dataclass(frozen=True, eq=False)  # runs is a DataFrame: no value equality, no hash
class ConfirmedGroup:
    """One loss family x frontend in one claims cell: `cell` holds the values of CELL_KEYS,
    `label` names the group on the page (with its cell where the results hold several),
    `config_key` is the configuration the claims' rule chose among the group's `n_configs`,
    and `runs` are that configuration's rows of search.analysis.claims.confirmed_runs (one per run and
    test set; a cross-validated run's validation UA per fold from its val_ua_folds)."""

    cell: tuple[Any, ...]
    loss_family: Any
    frontend: Any
    label: str
    config_key: str | None
    n_configs: int
    runs: pd.DataFrame = field(repr=False)

    @property
    def cell_dict(self) -> dict[str, Any]:
        return dict(zip(CELL_KEYS, self.cell))


def group_label(family: Any, frontend: Any) -> str:
    return f"{family} · {frontend}"


def cell_text(cell: dict[str, Any], keys: Any = CELL_KEYS) -> str:
    """A cell in words ('sweep s · within emodb · cnn_transformer · prepared 1a2b'), over `keys`."""
    parts = []
    for k in keys:
        v = cell.get(k)
        shown = "–" if is_missing(v) or v == "" else str(v)
        parts.append(f"{_CELL_NAMES[k]} {shown}".strip())
    return " · ".join(parts)


def confirmed_groups(trials: pd.DataFrame) -> list[ConfirmedGroup]:
    """The confirmed groups of `trials`, ordered by cell, then loss family and frontend (a
    cell's groups stand together); [] when nothing is confirmed or the table cannot be read
    as trials."""
    if trials.empty or not {"stage", "status"} <= set(trials.columns):
        return []
    try:
        runs = confirmed_runs(trials)
    except ClaimsError:
        return []
    if runs.empty:
        return []
    found = []
    for key, g in runs.groupby([*CELL_KEYS, "loss_family", "frontend"], dropna=False, sort=True):
        cfg, chosen = choose_config(g)
        found.append((tuple(key[:len(CELL_KEYS)]), key[-2], key[-1], cfg, int(g["arm_key"].nunique()),
                      per_fold_validation(chosen)))
    varying = [k for i, k in enumerate(CELL_KEYS) if len({f[0][i] for f in found}) > 1]
    groups = []
    for cell, family, frontend, cfg, n_configs, chosen in found:
        label = group_label(family, frontend)
        if varying:
            label += f" [{cell_text(dict(zip(CELL_KEYS, cell)), varying)}]"
        groups.append(ConfirmedGroup(cell, family, frontend, label, cfg, n_configs, chosen))
    return groups


def _groups(source: pd.DataFrame | list[ConfirmedGroup]) -> list[ConfirmedGroup]:
    return source if isinstance(source, list) else confirmed_groups(source)


def _half_width(res: Any) -> float:
    return (res.ci_high - res.ci_low) / 2 if math.isfinite(res.ci_low) and math.isfinite(res.ci_high) else math.nan


INTERVAL_COLUMNS = (*CELL_KEYS, "loss_family", "frontend", "group", "n_configs", "config_key",
                    *[f"{m}_{s}" for m in INTERVAL_METRICS for s in ("mean", "ci95", "n", "unit", "folds", "seeds")],
                    "scope", "test_train_ratio", "selection_exposed")


def confirmed_intervals(source: pd.DataFrame | list[ConfirmedGroup]) -> pd.DataFrame:
    """Per confirmed group (`source`: the trials table, or its confirmed_groups), the mean and
    95 % half-width of val and test UA of the configuration the claims choose, from the design:
    values averaged per test set over seeds, then search.analysis.claims.unit_interval over the units
    (`*_n` units, `*_unit` seed or fold, `*_folds` x `*_seeds` behind them). `scope` says what
    the test interval is about (one test set's speakers, or k folds with the corrected t), and
    `selection_exposed` whether a test fold of the group was a validation fold of the selection."""
    rows = []
    for g in _groups(source):
        row: dict[str, Any] = {**g.cell_dict, "loss_family": g.loss_family, "frontend": g.frontend,
                               "group": g.label, "n_configs": g.n_configs, "config_key": g.config_key}
        for m in INTERVAL_METRICS:
            res = unit_interval(g.runs, m) if m in g.runs.columns else None
            if res is None or res.n_pairs == 0:
                row |= {f"{m}_mean": math.nan, f"{m}_ci95": math.nan, f"{m}_n": 0, f"{m}_unit": None,
                        f"{m}_folds": 0, f"{m}_seeds": 0}
                continue
            row |= {f"{m}_mean": res.mean_diff, f"{m}_ci95": _half_width(res), f"{m}_n": res.n_units,
                    f"{m}_unit": res.unit, f"{m}_folds": res.n_folds, f"{m}_seeds": res.n_seeds}
            if m == "test_ua":
                tested = g.runs.dropna(subset=[m])
                row |= {"scope": scope_text(res, sorted(tested["test_unit"].astype(str).unique())),
                        "test_train_ratio": res.test_train_ratio,
                        "selection_exposed": bool(tested["selection_exposed"].fillna(False).astype(bool).any())}
        row.setdefault("scope", "")
        row.setdefault("test_train_ratio", None)
        row.setdefault("selection_exposed", False)
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(INTERVAL_COLUMNS))
    for m in INTERVAL_METRICS:
        for s in ("n", "folds", "seeds"):
            out[f"{m}_{s}"] = out[f"{m}_{s}"].astype("int64")
    out["test_train_ratio"] = out["test_train_ratio"].astype("float64")
    out["selection_exposed"] = out["selection_exposed"].astype(bool)
    return out


PAIRWISE_COLUMNS = ("row", "col", "cell", "diff", "ci_low", "ci_high", "p_value", "verdict", "n_pairs", "n_folds",
                    "n_seeds", "unit", "scope", "test_train_ratio", "selection_exposed", "note", "config_row",
                    "config_col")


def pairwise_differences(source: pd.DataFrame | list[ConfirmedGroup], metric: str,
                         confidence: float = 0.95) -> pd.DataFrame:
    """Every ordered pair (row, col) of distinct groups of ONE cell that both have `metric`
    (`source`: the trials table, or its confirmed_groups): the paired difference row - col of
    their chosen configurations by (seed, test set, held-out corpus) with the design-aware
    interval, its verdict against 0 and its scope: the claims row 'row vs col' with a stated
    effect of 0 (search.analysis.claims.arms computes it). Groups of different cells are never paired:
    they share nothing but seed numbers, so they get no entry."""
    groups = [g for g in _groups(source) if metric in g.runs.columns and g.runs[metric].notna().any()]
    rows = []
    for a, b in permutations(groups, 2):
        if a.cell != b.cell:
            continue
        claim = Claim(claim="dashboard", statement=f"{a.label} vs {b.label}", arm_a=_arm(a), arm_b=_arm(b),
                      metrics=(metric,), stated_effect=0.0)
        r = claim_row(claim, metric, a.cell_dict, a.runs, b.runs, confidence)
        rows.append({"row": a.label, "col": b.label, "cell": cell_text(a.cell_dict), "diff": r["mean_diff"],
                     **{k: r[k] for k in ("ci_low", "ci_high", "p_value", "verdict", "n_pairs", "n_folds", "n_seeds",
                                          "unit", "scope", "test_train_ratio", "selection_exposed", "note")},
                     "config_row": r["config_a"], "config_col": r["config_b"]})
    out = pd.DataFrame(rows, columns=list(PAIRWISE_COLUMNS))
    out["selection_exposed"] = out["selection_exposed"].astype(bool)
    return out


def _arm(g: ConfirmedGroup) -> Arm:
    return Arm(loss_family=str(g.loss_family), frontend=None if is_missing(g.frontend) else str(g.frontend))
