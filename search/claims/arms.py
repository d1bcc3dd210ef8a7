"""From trials to claim rows: which runs form each arm, how they pair, one row per design cell.

A claim compares two arms inside **one sweep lineage** (a search sweep and the confirmations of
it), **one model** and **one prepared corpus** (`prepared_id`), within one protocol (training ->
evaluation corpora). Different sweeps search different spaces with their own budgets; pairing an
arm of one with an arm of another (both confirmed with seeds 1..N) would compare runs that share
nothing but a seed number. So the rows are one per (claim, lineage, protocol, model, prepared_id)
x metric, and a pair never crosses them.

Inside a cell:
1. Only `stage == "confirm"`, `status == "completed"` trials count (search-stage and pruned
   trials ran other budgets).
2. Each arm's configuration (`config_key`) is the one with the best mean **validation** UA (then
   WA, then key) among the cell's runs of that arm; test numbers never take part, or the verdict
   would be tuned on the test set.
3. The two configurations' test metrics pair by (seed, test set, held-out corpus). The test
   set is a run's test fold; a cross-validated run (data.folds without held-out folds) gives one
   unit per fold from its per-fold figures (`test_ua_folds`, ...), never its mean against one
   fold; a run with held-out folds (data.test_folds) gives one unit, its test folds together
   ("0+1"). A unit repeated by two confirmations of the lineage is averaged; a pair lacking
   the metric on either side is left out. Differences are oriented so positive means "arm a is
   better" (b - a for compactness, where lower is tighter).
4. A configuration is one arm whatever design confirmed it: its key leaves out the fold design
   (data.folds / data.test_folds), so a configuration confirmed by cross-validated runs and by
   one-fold runs is one configuration with units on each fold.
5. search.claims.stats gives the design-aware interval (seeds with one fold: conditional on
   those test speakers; fold means with several, Nadeau & Bengio's corrected t), the p-value of
   "difference = 0", the verdict against 0 and E, and for undecided rows how many more units
   would likely decide them; p-values are Holm-adjusted over the rows of the report. A row
   whose units include a test fold that selection validated on says so (`selection_exposed`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .model import LOWER_IS_BETTER, Arm, Claim, ClaimsError
from .stats import ALPHA, MAX_UNITS, POWER, DesignResult, design_interval, holm, more_units_needed, verdict

if TYPE_CHECKING:  # pandas is imported lazily so `ser-search --help` stays fast
    import pandas as pd

COLUMNS = ("claim", "statement", "sweep", "protocol", "model", "prepared_id", "metric", "arm_a", "arm_b",
           "stated_effect", "n_folds", "n_seeds", "n_pairs", "unit", "mean_diff", "ci_low", "ci_high", "p_value",
           "p_holm", "verdict", "more_pairs_needed", "config_a", "config_b", "confirm_sweeps", "scope",
           "test_train_ratio", "selection_exposed", "note")
PAIR_KEYS = ("seed", "test_unit", "held_out")
# What a one-test-set row's interval is about: training noise on those speakers, nothing wider.
CONDITIONAL = "conditional on these test speakers"
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


def _missing(v: Any) -> bool:
    import pandas as pd  # noqa: PLC0415

    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _protocol(train: Any, evaluate: Any) -> str:
    if _missing(train) and _missing(evaluate):
        return "within"  # rows written before the corpora were recorded
    if train == evaluate:
        return f"within {train}"
    return f"{'(all but the evaluation corpora)' if _missing(train) else train} -> {evaluate}"


def confirmed_runs(trials: pd.DataFrame) -> pd.DataFrame:
    """The confirmed, completed trials with the columns the pairing needs (lineage, protocol,
    held-out corpus, cell keys); a row without a config key stands alone."""
    required = {"stage", "status", "loss_family", "frontend", "seed", "val_ua"}
    missing = sorted(required - set(trials.columns))
    if missing:
        raise ClaimsError(f"trials table lacks column(s) {missing}; is it from read_trials()?")
    df = trials[(trials["stage"] == "confirm") & (trials["status"] == "completed")].copy()
    for c in ("sweep", "source_sweep", "config_key", "prepared_id", "fold", "model", "val_wa", "train_corpora",
              "eval_corpora"):
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
    df["config_key"] = [_design_free_key(k, c, p) for k, c, p in
                        zip(df["config_key"], df.get("config_json", [None] * len(df)), df["prepared_id"])]
    return _test_units(df)


def _design_free_key(key: str, config_json: Any, prepared_id: str) -> str:
    """The configuration's key without its fold design (data.folds, data.test_folds): what the
    claims call one arm. A row whose configuration cannot be read keeps its recorded key."""
    if not isinstance(config_json, str) or not config_json:
        return key
    from ser_core.config import TrainConfig  # noqa: PLC0415 - pydantic, only when claims run

    from ..results import config_key  # noqa: PLC0415
    try:
        cfg = TrainConfig.model_validate_json(config_json)
    except ValueError:
        return key
    if cfg.data.folds is None and cfg.data.test_folds is None:
        return key  # the recorded key already leaves the fold out
    data = cfg.data.model_copy(update={"folds": None, "test_folds": None})
    return config_key(cfg.model_copy(update={"data": data}), prepared_id or None)


def _listed(v: Any) -> list[int] | None:
    """A list cell (a Parquet list column read by pandas: list, ndarray or missing) as ints."""
    if isinstance(v, str) or not hasattr(v, "__iter__"):
        return None
    items = [int(x) for x in v]
    return items or None


def _test_units(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, test set): `test_unit` names the test folds, `n_test_folds` counts
    them. A cross-validated run whose listed folds were its test folds becomes one row per
    fold, each metric taken from its per-fold list (`<metric>_folds`; a metric without one is
    missing for that run, never its mean); its `selection_exposed` is then per fold."""
    import pandas as pd  # noqa: PLC0415

    from .model import TEST_METRICS  # noqa: PLC0415

    for c in ("folds", "test_folds", "val_folds", "n_train_folds", "selection_exposed",
              *(f"{m}_folds" for m in TEST_METRICS)):
        if c not in df.columns:
            df[c] = None
    out: list[dict[str, Any]] = []
    for row in df.to_dict("records"):
        folds, tests = _listed(row["folds"]), _listed(row["test_folds"])
        if folds and (tests is None or sorted(tests) == sorted(folds)):  # the older CV design: one unit a fold
            vals = set(_listed(row["val_folds"]) or [])
            for i, f in enumerate(folds):
                unit = dict(row, test_unit=str(f), n_test_folds=1, fold=float(f),
                            selection_exposed=(f in vals) if row["val_folds"] is not None else row["selection_exposed"])
                for m in TEST_METRICS:
                    per = row.get(f"{m}_folds")
                    unit[m] = float(per[i]) if per is not None and not _missing(per) and len(per) == len(folds) \
                        else math.nan
                out.append(unit)
        elif tests:
            out.append(dict(row, test_unit="+".join(str(f) for f in sorted(tests)), n_test_folds=len(tests)))
        else:
            out.append(dict(row, test_unit="" if row["fold"] < 0 else str(int(row["fold"])), n_test_folds=1))
    return pd.DataFrame(out, columns=[*df.columns, "test_unit", "n_test_folds"]) if out else \
        df.assign(test_unit=pd.Series(dtype="object"), n_test_folds=pd.Series(dtype="float64"))


def setting_keys(claims: Sequence[Claim]) -> list[str]:
    """Every recipe setting the claims' arms fix, in first-mention order."""
    return list(dict.fromkeys(k for c in claims for arm in (c.arm_a, c.arm_b) for k, _ in arm.settings))


def with_setting_columns(trials: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """`trials` with a column per setting key (a sweep axis name such as mixup_alpha or
    augment.freq_mask_width), read from each row's recorded configuration (`config_json`, the
    trial's whole TrainConfig): recipe settings have no columns of their own. A key that is
    already a column is kept as it is; a row without a configuration gets None."""
    import json  # noqa: PLC0415

    from search.space import get_path, resolve_axis  # noqa: PLC0415 - pydantic, only when settings are used

    missing = [k for k in keys if k not in trials.columns]
    if not missing:
        return trials
    paths = {k: resolve_axis(k).path for k in missing}
    configs = [json.loads(t) if isinstance(t, str) and t else None
               for t in (trials["config_json"] if "config_json" in trials.columns else [None] * len(trials))]

    def value(cfg: Any, path: tuple[str, ...]) -> Any:
        try:
            return get_path(cfg, path) if isinstance(cfg, dict) else None
        except KeyError:
            return None

    return trials.assign(**{k: [value(c, paths[k]) for c in configs] for k in missing})


def setting_equal(value: Any, wanted: Any) -> bool:
    """A recorded setting equals an arm's: numbers within float round-off (0 == 0.0), other
    values exactly; a missing value never matches."""
    import numbers  # noqa: PLC0415

    if _missing(value):
        return False
    if isinstance(wanted, bool) or isinstance(value, (bool, _np_bool())):
        return isinstance(value, (bool, _np_bool())) and isinstance(wanted, bool) and bool(value) == wanted
    if isinstance(wanted, numbers.Real) and isinstance(value, numbers.Real):
        return math.isclose(float(value), float(wanted), rel_tol=1e-9, abs_tol=1e-12)
    return bool(value == wanted)


def _np_bool() -> type:
    import numpy as np  # noqa: PLC0415

    return np.bool_


def _arm_mask(df: pd.DataFrame, arm: Arm) -> pd.Series:
    mask = df["loss_family"] == arm.loss_family
    if arm.frontend is not None:
        mask &= df["frontend"] == arm.frontend
    if arm.model is not None:
        mask &= df["model"] == arm.model
    for key, wanted in arm.settings:
        mask &= df[key].map(lambda v, w=wanted: setting_equal(v, w)).astype(bool)
    return mask


def choose_config(rows: pd.DataFrame) -> tuple[str | None, pd.DataFrame]:
    """The configuration with the best mean validation UA (then WA, then key) among `rows`."""
    if rows.empty:
        return None, rows
    score = rows.groupby("config_key")[["val_ua", "val_wa"]].mean().fillna(-math.inf).reset_index()
    score = score.sort_values(["val_ua", "val_wa", "config_key"], ascending=[False, False, True], kind="stable")
    best = str(score["config_key"].iloc[0])
    return best, rows[rows["config_key"] == best]


def _per_unit(rows: pd.DataFrame, metric: str) -> pd.Series:
    return rows.dropna(subset=[metric]).groupby(list(PAIR_KEYS))[metric].mean()


def _unit_design(rows: pd.DataFrame, units: Any) -> tuple[float | None, bool]:
    """(n_test/n_train of the paired units, whether any of them reports a test fold that the
    selection validated on), read from the rows behind `units` (None: a row lacks its design)."""
    if not len(units):
        return None, False
    keys = list(PAIR_KEYS)
    mine = rows.set_index(keys).loc[list(units)] if len(rows) else rows
    trained = mine["n_train_folds"]
    ratio = None
    if len(mine) and trained.notna().all() and (trained.astype(float) > 0).all():
        ratio = float((mine["n_test_folds"].astype(float) / trained.astype(float)).mean())
    exposed = bool(mine["selection_exposed"].fillna(False).astype(bool).any()) if len(mine) else False
    return ratio, exposed


def _none_if_empty(v: Any) -> Any:
    return None if v == "" else v


def claim_row(claim: Claim, metric: str, cell: dict[str, Any], rows_a: pd.DataFrame, rows_b: pd.DataFrame,
         confidence: float) -> dict[str, Any]:
    import pandas as pd  # noqa: PLC0415

    cfg_a, chosen_a = choose_config(rows_a)
    cfg_b, chosen_b = choose_config(rows_b)
    a = _per_unit(chosen_a, metric) if cfg_a else pd.Series(dtype="float64")
    b = _per_unit(chosen_b, metric) if cfg_b else pd.Series(dtype="float64")
    common = a.index.intersection(b.index).sort_values()
    x, y = a.loc[common].to_numpy(dtype=float), b.loc[common].to_numpy(dtype=float)
    diffs = (y - x) if metric in LOWER_IS_BETTER else (x - y)
    folds = [k[1] for k in common]
    seeds = [int(k[0]) for k in common]
    chosen = pd.concat([chosen_a, chosen_b]) if cfg_a and cfg_b else chosen_a.iloc[0:0]
    ratio, exposed = _unit_design(chosen, common)
    res = design_interval(folds, seeds, diffs.tolist(), confidence, test_train_ratio=ratio)
    word = verdict(res.ci_low, res.ci_high, claim.stated_effect)
    alpha = 1.0 - confidence  # the runs-needed estimate is made at the report's own level
    more = more_units_needed(res, claim.stated_effect, alpha=alpha) if word == "inconclusive" else None
    confirms = sorted(set(chosen_a["sweep"]) | set(chosen_b["sweep"]))
    return {
        "claim": claim.claim, "statement": claim.statement, "sweep": _none_if_empty(cell.get("lineage", "")),
        "protocol": cell.get("protocol"), "model": _none_if_empty(cell.get("model", claim.model or "")),
        "prepared_id": _none_if_empty(cell.get("prepared_id", "")), "metric": metric,
        "arm_a": claim.arm_a.label(), "arm_b": claim.arm_b.label(), "stated_effect": claim.stated_effect,
        "n_folds": res.n_folds, "n_seeds": res.n_seeds, "n_pairs": res.n_pairs, "unit": res.unit,
        "mean_diff": res.mean_diff, "ci_low": res.ci_low, "ci_high": res.ci_high, "p_value": res.p_value,
        "p_holm": math.nan, "verdict": word, "more_pairs_needed": more, "config_a": cfg_a, "config_b": cfg_b,
        "confirm_sweeps": ",".join(s for s in confirms if s) or None,
        "scope": scope_text(res, folds), "test_train_ratio": res.test_train_ratio, "selection_exposed": exposed,
        "note": _note(claim, word, res, more, cfg_a, cfg_b, alpha, exposed),
    }


def scope_text(res: Any, folds: list[Any]) -> str:
    """What the interval generalises over, in words: one test set's speakers, or k folds."""
    if res.n_pairs == 0:
        return ""
    if res.n_folds <= 1:
        where = f" (test fold {folds[0]})" if folds and folds[0] != "" else ""
        return f"{CONDITIONAL}{where}"
    corrected = "corrected t" if res.test_train_ratio is not None else "plain t: too narrow, design not recorded"
    return f"{res.n_folds} test folds ({corrected})"


def _note(claim: Claim, word: str, res: Any, more: int | None, cfg_a: str | None, cfg_b: str | None,
          alpha: float = ALPHA, exposed: bool = False) -> str:
    """Why an undecided row is undecided, and what would decide it, in a sentence; first, when
    a test fold took part in selection, that the row is optimistic."""
    text = _why(claim, word, res, more, cfg_a, cfg_b, alpha)
    if exposed:
        warn = ("NOT NESTED: some paired test folds were validation folds of the selection that chose these "
                "configurations (selection_exposed); hold test folds out of the search ([data] test_folds)")
        return f"{warn}; {text}" if text else warn
    return text


def _why(claim: Claim, word: str, res: Any, more: int | None, cfg_a: str | None, cfg_b: str | None,
         alpha: float = ALPHA) -> str:
    missing = [f"arm {side} ({arm.label()})" for side, arm, cfg in (("a", claim.arm_a, cfg_a),
                                                                     ("b", claim.arm_b, cfg_b)) if cfg is None]
    if missing:
        hint = f"; `ser-search confirm --for-claims` the sweep of {claim.sweep}" if claim.sweep else ""
        return f"{' and '.join(missing)} {'have' if len(missing) > 1 else 'has'} no confirmed run{hint}"
    if res.n_pairs == 0:
        return "the two arms share no (seed, fold, held-out corpus) with the metric: nothing to pair"
    if not res.has_interval:
        return "one seed only: no interval; confirm with more seeds"  # several folds always give one
    if res.sd == 0.0 and math.isnan(res.ci_low):
        return (f"all {res.n_units} {res.unit} differences are equal: no spread to build an interval on "
                "(the test set's granularity); confirm with more seeds")
    if word != "inconclusive":
        return ""
    if more is None:
        if max(abs(res.mean_diff), abs(res.mean_diff - claim.stated_effect)) == 0:
            return "the mean difference is exactly 0 = E: no number of runs would separate them"
        return f"more than {MAX_UNITS} more {res.unit}s would be needed at the observed spread"
    power = f"({POWER:.0%} power, two-sided alpha {alpha:g} at the observed spread)"
    if res.unit == "fold":  # the interval is over fold means: more seeds per fold do not narrow it
        return (f"about {more} more fold{'s' if more != 1 else ''} would likely decide it {power}; "
                "more seeds per fold do not narrow a fold-level interval, and a corpus has only so many "
                "folds: where it has no more, this row cannot be decided on it")
    return f"about {more} more {res.unit}{'s' if more != 1 else ''} would likely decide it {power}"


def evaluate_claims(trials: pd.DataFrame, claims: Sequence[Claim] | None = None,
                    confidence: float = 0.95) -> pd.DataFrame:
    """One row per (claim, sweep lineage, protocol, model, prepared corpus) x metric, columns
    COLUMNS, from the confirmed, completed trials; `claims=None` checks the papers' claims
    (the shipped papers.toml). A claim whose arms no lineage has confirmed still gets a row per
    metric (n_pairs 0, inconclusive) saying so. p_holm adjusts p_value over every row returned."""
    import pandas as pd  # noqa: PLC0415

    from .file import papers_claims  # noqa: PLC0415

    claims = papers_claims() if claims is None else tuple(claims)
    runs = with_setting_columns(confirmed_runs(trials), setting_keys(claims))
    out: list[dict[str, Any]] = []
    for claim in claims:
        for metric in claim.metrics:
            if metric not in trials.columns:
                raise ClaimsError(f"claim {claim.claim}: trials table lacks column {metric!r}")
        if not (math.isfinite(claim.stated_effect) and claim.stated_effect >= 0):
            raise ClaimsError(f"claim {claim.claim}: stated effect must be a finite number >= 0 (name the arm "
                              f"said to be better as arm a), got {claim.stated_effect}")
        mask_a, mask_b = _arm_mask(runs, claim.arm_a), _arm_mask(runs, claim.arm_b)
        mine = runs[mask_a | mask_b]
        cells = list(mine.groupby(list(CELL_KEYS), sort=True, dropna=False)) if len(mine) else []
        if not cells:
            empty = runs.iloc[0:0]
            cells_rows = [({}, empty, empty)]
        else:
            cells_rows = [(dict(zip(CELL_KEYS, key)), g[mask_a.loc[g.index]], g[mask_b.loc[g.index]])
                          for key, g in cells]
        for cell, rows_a, rows_b in cells_rows:
            for metric in claim.metrics:
                out.append(claim_row(claim, metric, cell, rows_a, rows_b, confidence))
    table = pd.DataFrame(out, columns=list(COLUMNS))
    table["p_holm"] = holm(table["p_value"].tolist()) if len(table) else []
    table["more_pairs_needed"] = pd.array(table["more_pairs_needed"].tolist(), dtype="Int64")
    for c in ("n_folds", "n_seeds", "n_pairs"):
        table[c] = table[c].astype("int64")
    table["selection_exposed"] = table["selection_exposed"].astype(bool)
    table["test_train_ratio"] = table["test_train_ratio"].astype("float64")
    table.attrs["confidence"] = confidence
    return table


def check_arms_held(trials: pd.DataFrame, claims: Sequence[Claim], where: str) -> None:
    """Every arm of every claim must be held by some trial (any stage) under `where`; an arm no
    sweep holds is a typo or the wrong results directory, and is named with what is there."""
    for c in ("loss_family", "frontend", "model"):
        if c not in trials.columns:
            raise ClaimsError(f"trials table lacks column {c!r}; is it from read_trials()?")
    trials = with_setting_columns(trials, setting_keys(claims))
    problems = []
    for claim in claims:
        for side, arm in (("a", claim.arm_a), ("b", claim.arm_b)):
            if not _arm_mask(trials, arm).any():
                fixed = ", ".join(f"{k}={v!r}" for k, v in arm.cell().items())
                problems.append(f"  {claim.origin or 'claim ' + claim.claim}.{side}: no sweep under {where} holds "
                                f"a trial with {fixed}")
    if problems:
        held = sorted({"/".join(str(v) for v in r) for r in
                       trials[["loss_family", "frontend", "model"]].dropna().itertuples(index=False, name=None)})
        shown = ", ".join(held[:20]) + (f", ... ({len(held)} in all)" if len(held) > 20 else "")
        raise ClaimsError("claims name arms the results do not hold:\n" + "\n".join(problems)
                          + f"\n  the trials there hold (loss_family/frontend/model): {shown or 'none'}")


def claim_arms(claims: Sequence[Claim] | None = None) -> list[dict[str, str]]:
    """Every arm the claims compare, in first-mention order: what `ser-search confirm
    --for-claims` confirms, so no claim lacks an arm. An arm tied to a model (the
    CNN-Transformer claims) carries `model`, so a sweep over several models confirms that
    model's configuration; an arm without one matches any model."""
    from .file import papers_claims  # noqa: PLC0415

    seen: dict[tuple[tuple[str, str], ...], None] = {}
    for c in papers_claims() if claims is None else claims:
        for arm in (c.arm_a, c.arm_b):
            seen.setdefault(tuple(arm.cell().items()), None)
    return [dict(cell) for cell in seen]


def unit_interval(runs: pd.DataFrame, metric: str, confidence: float = 0.95) -> DesignResult:
    """The design-aware interval of one configuration's `metric` in one cell, by the rule of a
    claim row's arm: `runs` are rows of confirmed_runs for ONE configuration (config_key) in ONE
    cell (lineage, protocol, model, prepared_id). Its values are averaged per unit (seed, test
    set, held-out corpus: a unit repeated by two confirmations counts once) and design_interval
    is taken over the units: over seeds with one test set (conditional on those test speakers),
    over the test sets' seed means with several, with Nadeau & Bengio's correction where every
    unit's n_test/n_train is recorded. `mean_diff` is then the mean of the metric, not a
    difference. A run lacking the metric is left out; no run with it gives n_pairs 0 and NaN."""
    import pandas as pd  # noqa: PLC0415

    if metric not in runs.columns:
        raise ClaimsError(f"runs lack column {metric!r}")
    spread = [c for c in ("config_key", *CELL_KEYS) if c in runs.columns and runs[c].nunique(dropna=False) > 1]
    if spread:
        raise ClaimsError(f"unit_interval takes one configuration in one cell; these runs differ in {spread}")
    units = _per_unit(runs, metric) if len(runs) else pd.Series(dtype="float64")
    keys = list(units.index)
    ratio, _ = _unit_design(runs, keys)
    return design_interval([k[1] for k in keys], [int(k[0]) for k in keys], units.to_numpy(dtype=float).tolist(),
                           confidence, test_train_ratio=ratio)
