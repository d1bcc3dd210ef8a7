"""Confirmed runs as the claims read them: one row per (run, test set), with the columns a claim
row pairs and groups on.

- `lineage`: the search sweep a row belongs to (a confirmation belongs to the sweep it confirms);
- `protocol`: training -> evaluation corpora;
- `arm_key`: the configuration's key without its fold design, so one configuration is one arm
  whatever design confirmed it (read from the row's recorded config_json);
- `test_unit`: the test folds a row reports on; a run of the older cross-validated design gives
  one row per fold from its per-fold figures.

The cell a claim row is about is CELL_KEYS (search.analysis.claims.arms pairs inside it).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .model import ClaimsError

if TYPE_CHECKING:  # pandas is imported lazily so `ser-search --help` stays fast
    import pandas as pd

CELL_KEYS = ("lineage", "protocol", "model", "prepared_id")
CONFIRM_SUFFIX = "-confirm"


def lineage(sweep: Any, stage: Any, source_sweep: Any) -> str:
    """The search sweep a trial row belongs to: its recorded `source_sweep`; for rows written
    before that column, a confirm sweep `<name>-confirm` belongs to `<name>`, any other sweep
    to itself."""
    if isinstance(source_sweep, str) and source_sweep:
        return source_sweep
    name = sweep if isinstance(sweep, str) else ""
    if stage == "confirm" and name.endswith(CONFIRM_SUFFIX) and len(name) > len(CONFIRM_SUFFIX):
        return name[: -len(CONFIRM_SUFFIX)]
    return name


def is_missing(v: Any) -> bool:
    import pandas as pd  # noqa: PLC0415

    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _protocol(train: Any, evaluate: Any) -> str:
    if is_missing(train) and is_missing(evaluate):
        return "within"  # rows written before the corpora were recorded
    if train == evaluate:
        return f"within {train}"
    return f"{'(all but the evaluation corpora)' if is_missing(train) else train} -> {evaluate}"


def confirmed_runs(trials: pd.DataFrame) -> pd.DataFrame:
    """The confirmed, completed trials with the columns the pairing needs (lineage, protocol,
    held-out corpus, cell keys); a row without a config key stands alone."""
    required = {"stage", "status", "loss_family", "frontend", "seed", "val_ua"}
    missing = sorted(required - set(trials.columns))
    if missing:
        raise ClaimsError(f"trials table lacks column(s) {missing}; is it from read_trials()?")
    return design_units(trials[(trials["stage"] == "confirm") & (trials["status"] == "completed")])


def design_units(runs: pd.DataFrame, read_config: bool = True) -> pd.DataFrame:
    """`runs` (completed trials of any stage) as the claims read them: one row per run and test
    set (`test_unit`; a run of the older cross-validated design gives one per fold, from its
    per-fold figures) with the cell, arm and design columns the pairing and unit_interval need.
    `read_config=False` takes each run's design from its recorded columns and its arm from its
    recorded config_key (no validation of config_json: what a caller that already groups by
    config_key, the leaderboard, needs)."""
    df = runs.copy()
    for c in ("stage", "sweep", "source_sweep", "config_key", "prepared_id", "fold", "model", "val_wa",
              "train_corpora", "eval_corpora"):
        if c not in df.columns:
            df[c] = None
    if "trial_id" not in df.columns:
        df["trial_id"] = [f"row{i}" for i in range(len(df))]
    df["config_key"] = df["config_key"].astype("object").where(df["config_key"].notna(),
                                                               "trial:" + df["trial_id"].astype(str))
    df["lineage"] = [lineage(s, st, src) for s, st, src in zip(df["sweep"], df["stage"], df["source_sweep"])]
    df["protocol"] = [_protocol(t, e) for t, e in zip(df["train_corpora"], df["eval_corpora"])]
    df["held_out"] = df["eval_corpora"].astype("object").where(df["eval_corpora"].notna(), "")
    df["prepared_id"] = df["prepared_id"].astype("object").where(df["prepared_id"].notna(), "")
    df["model"] = df["model"].astype("object").where(df["model"].notna(), "")
    df["fold"] = df["fold"].astype("float64").fillna(-1.0)  # no fold recorded: one fold
    df["sweep"] = df["sweep"].astype("object").where(df["sweep"].notna(), "")
    configs = df["config_json"] if "config_json" in df.columns and read_config else [None] * len(df)
    designs = [_arm_design(k, c, p) for k, c, p in zip(df["config_key"], configs, df["prepared_id"])]
    df["arm_key"] = [d[0] for d in designs]
    df["_design"] = [d[1] for d in designs]
    return _test_units(df)


def _arm_design(key: str, config_json: Any, prepared_id: str) -> tuple[str, tuple[Any, Any] | None]:
    """(the configuration's key without its fold design — what the claims call one arm —, the
    design (data.folds, data.test_folds) its config ran with). Every row with a readable config
    is keyed the same way, so one configuration is one arm whatever design ran it and whatever
    key an older version recorded; a row without one keeps its recorded key and its columns'
    design (None)."""
    if not isinstance(config_json, str) or not config_json:
        return key, None
    from ser_core.config import TrainConfig  # noqa: PLC0415 - pydantic, only when claims run

    from search.results import config_key  # noqa: PLC0415
    try:
        cfg = TrainConfig.model_validate_json(config_json)
    except ValueError:
        return key, None
    data = cfg.data.model_copy(update={"folds": None, "test_folds": None})
    return config_key(cfg.model_copy(update={"data": data}), prepared_id or None), (cfg.data.folds, cfg.data.test_folds)


def listed(v: Any) -> list[int] | None:
    """A list cell (a Parquet list column read by pandas: list, ndarray or missing) as ints."""
    if isinstance(v, str) or not hasattr(v, "__iter__"):
        return None
    items = [int(x) for x in v]
    return items or None


def per_fold_validation(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` (rows of design_units / confirmed_runs) with each cross-validated run's validation UA
    per fold: design_units splits such a run into one row per test fold but takes only the test
    figures from the per-fold lists, so each fold's row would carry the run's mean validation UA
    and a fold-level interval over them would have no spread. (The dashboard's and the
    leaderboard's validation intervals both read it.)"""
    import pandas as pd  # noqa: PLC0415

    if runs.empty or not {"val_ua_folds", "folds", "fold"} <= set(runs.columns):
        return runs
    tests_col = runs["test_folds"] if "test_folds" in runs.columns else pd.Series(None, index=runs.index)
    vals = []
    for v, folds, tests, per, fold in zip(runs["val_ua"], runs["folds"], tests_col, runs["val_ua_folds"],
                                          runs["fold"]):
        fl, tl = listed(folds), listed(tests)
        pl = None if isinstance(per, str) or not hasattr(per, "__iter__") else (list(per) or None)
        if fl and pl and len(pl) == len(fl) and (tl is None or sorted(tl) == sorted(fl)) and fold in fl:
            v = float(pl[[int(x) for x in fl].index(int(fold))])
        vals.append(v)
    return runs.assign(val_ua=pd.Series(vals, index=runs.index, dtype="float64"))


def flag(v: Any) -> bool | None:
    """selection_exposed as read: True, False, or None where the row predates the column."""
    return None if is_missing(v) else bool(v)


def _test_units(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, test set): `test_unit` names the test folds, `n_test_folds` counts
    them. The design is read from the run's config (its columns for rows without one). A run of
    the older cross-validated design (data.folds without data.test_folds: each listed fold a test
    fold) becomes one row per fold, each metric taken from its per-fold list (`<metric>_folds`; a
    metric without one is missing for that run, never its mean), exposed where the fold was also
    one of the run's validation folds (unknown where val_folds was not recorded). A nested run
    gives one unit, its held-out folds together."""
    import pandas as pd  # noqa: PLC0415

    from .model import TEST_METRICS  # noqa: PLC0415

    for c in ("folds", "test_folds", "val_folds", "n_train_folds", "selection_exposed",
              *(f"{m}_folds" for m in TEST_METRICS)):
        if c not in df.columns:
            df[c] = None
    out: list[dict[str, Any]] = []
    for row in df.to_dict("records"):
        if row["_design"] is not None:
            folds, tests = row["_design"]
            folds, tests = (list(folds) if folds else None), (list(tests) if tests else None)
        else:  # no readable config: the columns (test_folds equals folds in the older CV design)
            folds, tests = listed(row["folds"]), listed(row["test_folds"])
            if folds and tests is not None and sorted(tests) == sorted(folds):
                tests = None
        row["selection_exposed"] = flag(row["selection_exposed"])
        if folds and tests is None:  # the older CV design: one unit a fold
            vals = listed(row["val_folds"])
            for i, f in enumerate(folds):
                unit = dict(row, test_unit=str(f), n_test_folds=1, fold=float(f),
                            selection_exposed=None if vals is None else f in vals)
                for m in TEST_METRICS:
                    per = row.get(f"{m}_folds")
                    unit[m] = float(per[i]) if per is not None and not is_missing(per) and len(per) == len(folds) \
                        else math.nan
                out.append(unit)
        elif tests:
            out.append(dict(row, test_unit="+".join(str(f) for f in sorted(tests)), n_test_folds=len(tests)))
        else:
            out.append(dict(row, test_unit="" if row["fold"] < 0 else str(int(row["fold"])), n_test_folds=1))
    return pd.DataFrame(out, columns=[*df.columns, "test_unit", "n_test_folds"]) if out else \
        df.assign(test_unit=pd.Series(dtype="object"), n_test_folds=pd.Series(dtype="float64"))
