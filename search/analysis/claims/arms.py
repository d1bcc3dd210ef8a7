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
5. search.analysis.claims.stats gives the design-aware interval (seeds with one fold: conditional on
   those test speakers; fold means with several, Nadeau & Bengio's corrected t), the p-value of
   "difference = 0", the verdict against 0 and E, and for undecided rows how many more units
   would likely decide them; p-values are Holm-adjusted over the rows of the report. A row
   whose units include a test fold that selection validated on says so (`selection_exposed`).

An `across` claim (Claim.across: its arms name different models or sweeps, e.g. a deep
configuration against the functionals baseline) is the exception the arms ask for: its cell is the
protocol and prepared corpus only, and since its arms share test speakers but no seeds and no
search, each arm's seeds are averaged per test set and the units are the test sets both cover
(step 3 without the seed); the interval over several folds is the same corrected t.

The rows of step 1 (lineage, protocol, arm key, test units) are read by search.analysis.claims.runs,
and an arm's recipe settings by search.analysis.claims.settings; this module pairs and evaluates.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .model import LOWER_IS_BETTER, Claim, ClaimsError
from .runs import CELL_KEYS, CONFIRM_SUFFIX, confirmed_runs, flag, lineage, listed
from .settings import arm_mask, setting_equal, setting_keys, with_setting_columns
from .stats import ALPHA, MAX_UNITS, POWER, DesignResult, design_interval, holm, more_units_needed, verdict

if TYPE_CHECKING:  # pandas is imported lazily so `ser-search --help` stays fast
    import pandas as pd

# CELL_KEYS, CONFIRM_SUFFIX, confirmed_runs, lineage (.runs) and the setting helpers (.settings) are
# defined there and named here too, where they were first.
__all__ = ["CELL_KEYS", "COLUMNS", "CONDITIONAL", "CONFIRM_SUFFIX", "PAIR_KEYS", "arms_of_sweep", "check_arms_held",
           "choose_arm_config", "choose_config",
           "claim_arms", "claim_row", "confirmed_runs", "evaluate_claims", "lineage", "scope_text", "setting_equal",
           "setting_keys", "unit_interval", "with_setting_columns"]

COLUMNS = ("claim", "statement", "sweep", "protocol", "model", "prepared_id", "metric", "arm_a", "arm_b",
           "stated_effect", "n_folds", "n_seeds", "n_pairs", "unit", "mean_diff", "ci_low", "ci_high", "p_value",
           "p_holm", "verdict", "more_pairs_needed", "config_a", "config_b", "confirm_sweeps", "scope",
           "test_train_ratio", "selection_exposed", "note")
PAIR_KEYS = ("seed", "test_unit", "held_out")
# An `across` claim (arms of different models or sweeps: a deep configuration against the
# baseline) shares only the test speakers between its arms: its cell is the protocol and the
# prepared corpus, and its runs pair by test set, each arm's seeds averaged first.
ACROSS_CELL_KEYS = ("protocol", "prepared_id")
TEST_SET_KEYS = ("test_unit", "held_out")
# What a one-test-set row's interval is about: training noise on those speakers, nothing wider.
CONDITIONAL = "conditional on these test speakers"


def choose_config(rows: pd.DataFrame) -> tuple[str | None, pd.DataFrame]:
    """The configuration with the best mean validation UA (then WA, then key) among `rows`: its
    recorded config_key(s) and its rows. Configurations are told apart by `arm_key` (the key
    without the fold design, confirmed_runs) where the rows have it."""
    if rows.empty:
        return None, rows
    key = "arm_key" if "arm_key" in rows.columns else "config_key"
    score = rows.groupby(key)[["val_ua", "val_wa"]].mean().fillna(-math.inf).reset_index()
    score = score.sort_values(["val_ua", "val_wa", key], ascending=[False, False, True], kind="stable")
    chosen = rows[rows[key] == score[key].iloc[0]]
    return ",".join(sorted({str(k) for k in chosen["config_key"]})), chosen


def choose_arm_config(rows: pd.DataFrame, arm: Any) -> tuple[str | None, pd.DataFrame]:
    """choose_config for one arm: over all its rows, or, for an arm naming several sweeps (one
    held-out sweep per outer fold of a nested cross-validation), in each sweep lineage on its own,
    so each outer fold's configuration is chosen on that sweep's validation folds only."""
    import pandas as pd  # noqa: PLC0415

    if len(arm.sweeps) < 2 or rows.empty:
        return choose_config(rows)
    picks = [choose_config(group) for _, group in rows.groupby("lineage", sort=True)]
    keys = sorted({k for key, _ in picks if key for k in key.split(",")})
    return ",".join(keys) or None, pd.concat([chosen for _, chosen in picks])


def _arm_choice_exposure(rows: pd.DataFrame, arm: Any, units: Any) -> tuple[bool, bool]:
    """_choice_exposure of one arm: per sweep lineage for an arm naming several (each outer
    fold's choice read only its own sweep's candidates, which tested only its held-out fold)."""
    if len(arm.sweeps) < 2 or rows.empty:
        return _choice_exposure(rows, units)
    exposed = unknown = False
    for _, group in rows.groupby("lineage", sort=True):
        tested = set(group["test_unit"])
        picked, unsure = _choice_exposure(group, [u for u in units if u[1] in tested])
        exposed, unknown = exposed or picked, unknown or unsure
    return exposed, unknown


def _per_unit(rows: pd.DataFrame, metric: str) -> pd.Series:
    return rows.dropna(subset=[metric]).groupby(list(PAIR_KEYS))[metric].mean()


def _unit_folds(unit: Any) -> frozenset[int]:
    return frozenset(int(f) for f in str(unit).split("+") if f != "")


def _disjoint_units(units: Any) -> tuple[list[Any], int]:
    """The paired units without those whose test set overlaps another's without being equal
    (a nested run's "3+4" beside one-fold runs on 3 and 4 would count fold 3's speakers
    twice): the finer units are kept; how many were left out."""
    sets = {u: _unit_folds(u[1]) for u in units}
    distinct = set(sets.values())
    clash = {fs for fs in distinct if len(fs) > 1 and any(o != fs and o & fs for o in distinct)}
    kept = [u for u in units if sets[u] not in clash]
    return kept, len(units) - len(kept)


def _unit_design(rows: pd.DataFrame, units: Any) -> tuple[float | None, bool, bool]:
    """(n_test/n_train of the paired units, whether any of them reports a test fold that the
    selection validated on, whether that is unknown for some: rows from before the design
    columns), read from the rows behind `units` (ratio None: a row lacks its design)."""
    if not len(units):
        return None, False, False
    keys = list(PAIR_KEYS)
    return _design_of(rows.set_index(keys).loc[list(units)] if len(rows) else rows)


def _design_of(mine: pd.DataFrame) -> tuple[float | None, bool, bool]:
    """(mean n_test/n_train, any exposed, any unknown) of the runs behind some units."""
    trained = mine["n_train_folds"]
    ratio = None
    if len(mine) and trained.notna().all() and (trained.astype(float) > 0).all():
        ratio = float((mine["n_test_folds"].astype(float) / trained.astype(float)).mean())
    flags = [flag(v) for v in mine["selection_exposed"]]
    return ratio, any(f is True for f in flags), any(f is None for f in flags)


def _choice_exposure(rows: pd.DataFrame, units: Any) -> tuple[bool, bool]:
    """The claims choose each arm's configuration among its confirmed candidates by validation
    UA: with several candidates, that choice read the candidates' validation folds, so a paired
    test fold among them is exposed too. (exposed, unknown: a candidate's val_folds missing)."""
    key = "arm_key" if "arm_key" in rows.columns else "config_key"
    if rows.empty or rows[key].nunique() < 2:
        return False, False
    tested = set().union(*(_unit_folds(u[1]) for u in units)) if len(units) else set()
    read: set[int] = set()
    for v in rows["val_folds"] if "val_folds" in rows.columns else [None] * len(rows):
        vals = listed(v)
        if vals is None:
            return False, True
        read |= set(vals)
    return bool(read & tested), False


def _none_if_empty(v: Any) -> Any:
    return None if v == "" else v


def _per_test_set(rows: pd.DataFrame, metric: str) -> pd.Series:
    """An arm's metric per test set, its seeds averaged, keyed like PAIR_KEYS with seed 0 (an
    `across` claim's arms share no seeds to pair)."""
    import pandas as pd  # noqa: PLC0415

    means = rows.dropna(subset=[metric]).groupby(list(TEST_SET_KEYS))[metric].mean()
    return pd.Series(means.to_numpy(), index=pd.MultiIndex.from_tuples(
        [(0, *k) for k in means.index], names=list(PAIR_KEYS)), dtype="float64")


def _test_set_design(rows: pd.DataFrame, units: Any) -> tuple[float | None, bool, bool]:
    """_unit_design for test-set units: read from every run (any seed) on those test sets."""
    if not len(units) or rows.empty:
        return None, False, False
    return _design_of(rows[rows["test_unit"].isin({u[1] for u in units})])


def claim_row(claim: Claim, metric: str, cell: dict[str, Any], rows_a: pd.DataFrame, rows_b: pd.DataFrame,
         confidence: float) -> dict[str, Any]:
    import dataclasses  # noqa: PLC0415

    import pandas as pd  # noqa: PLC0415

    cfg_a, chosen_a = choose_arm_config(rows_a, claim.arm_a)
    cfg_b, chosen_b = choose_arm_config(rows_b, claim.arm_b)
    per_unit = _per_test_set if claim.across else _per_unit
    a = per_unit(chosen_a, metric) if cfg_a else pd.Series(dtype="float64")
    b = per_unit(chosen_b, metric) if cfg_b else pd.Series(dtype="float64")
    common, overlapping = _disjoint_units(list(a.index.intersection(b.index).sort_values()))
    x, y = a.loc[common].to_numpy(dtype=float), b.loc[common].to_numpy(dtype=float)
    diffs = (y - x) if metric in LOWER_IS_BETTER else (x - y)
    folds = [k[1] for k in common]
    seeds = [int(k[0]) for k in common]
    chosen = pd.concat([chosen_a, chosen_b]) if cfg_a and cfg_b else chosen_a.iloc[0:0]
    ratio, exposed, unknown = (_test_set_design if claim.across else _unit_design)(chosen, common)
    for rows, arm in ((rows_a, claim.arm_a), (rows_b, claim.arm_b)):
        picked, unsure = _arm_choice_exposure(rows, arm, common)
        exposed, unknown = exposed or picked, unknown or unsure
    res = design_interval(folds, seeds, diffs.tolist(), confidence, test_train_ratio=ratio)
    if claim.across:  # the seeds behind the units: the fewer of the two arms'
        tested = {u[1] for u in common}
        n_seeds = min((int(r.loc[r["test_unit"].isin(tested), "seed"].nunique()) for r in (chosen_a, chosen_b)),
                      default=0) if common else 0
        res = dataclasses.replace(res, n_seeds=n_seeds, unit="fold")  # its units are test sets, never seeds
    word = verdict(res.ci_low, res.ci_high, claim.stated_effect)
    alpha = 1.0 - confidence  # the runs-needed estimate is made at the report's own level
    more = more_units_needed(res, claim.stated_effect, alpha=alpha) if word == "inconclusive" else None
    confirms = sorted(set(chosen_a["sweep"]) | set(chosen_b["sweep"]))
    sweep, model = cell.get("lineage", ""), cell.get("model", claim.model or "")
    if claim.across:  # each arm's own lineage(s) and model, "a vs b"
        sweep, model = (" vs ".join(",".join(sorted(set(r[c].astype(str)))) or "–" for r in (chosen_a, chosen_b))
                        for c in ("lineage", "model"))
    return {
        "claim": claim.claim, "statement": claim.statement, "sweep": _none_if_empty(sweep),
        "protocol": cell.get("protocol"), "model": _none_if_empty(model),
        "prepared_id": _none_if_empty(cell.get("prepared_id", "")), "metric": metric,
        "arm_a": claim.arm_a.label(), "arm_b": claim.arm_b.label(), "stated_effect": claim.stated_effect,
        "n_folds": res.n_folds, "n_seeds": res.n_seeds, "n_pairs": res.n_pairs, "unit": res.unit,
        "mean_diff": res.mean_diff, "ci_low": res.ci_low, "ci_high": res.ci_high, "p_value": res.p_value,
        "p_holm": math.nan, "verdict": word, "more_pairs_needed": more, "config_a": cfg_a, "config_b": cfg_b,
        "confirm_sweeps": ",".join(s for s in confirms if s) or None,
        "scope": scope_text(res, folds, unknown and not exposed), "test_train_ratio": res.test_train_ratio,
        "selection_exposed": exposed,
        "note": _note(claim, word, res, more, cfg_a, cfg_b, alpha, exposed, overlapping),
    }


def scope_text(res: Any, folds: list[Any], nesting_unknown: bool = False) -> str:
    """What the interval generalises over, in words: one test set's speakers, or k folds; and
    whether some rows cannot say if selection saw their test folds."""
    if res.n_pairs == 0:
        return ""
    unknown = "; nesting unknown (rows predate the design columns)" if nesting_unknown else ""
    if res.n_folds <= 1:
        where = f" (test fold {folds[0]})" if folds and folds[0] != "" else ""
        return f"{CONDITIONAL}{where}{unknown}"
    corrected = "corrected t" if res.test_train_ratio is not None else "plain t: too narrow, design not recorded"
    return f"{res.n_folds} test folds ({corrected}){unknown}"


def _note(claim: Claim, word: str, res: Any, more: int | None, cfg_a: str | None, cfg_b: str | None,
          alpha: float = ALPHA, exposed: bool = False, overlapping: int = 0) -> str:
    """Why an undecided row is undecided, and what would decide it, in a sentence; first, when
    a test fold took part in selection, that the row is optimistic."""
    text = _why(claim, word, res, more, cfg_a, cfg_b, alpha)
    if overlapping:
        left = (f"{overlapping} paired unit(s) left out: their held-out folds overlap other units' test folds "
                "(one configuration confirmed both nested and with --folds)")
        text = f"{left}; {text}" if text else left
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
        if claim.across:
            return "the two arms share no test set with the metric: confirm both on the same folds"
        return "the two arms share no (seed, fold, held-out corpus) with the metric: nothing to pair"
    if not res.has_interval:
        if claim.across:
            return ("across models or sweeps the runs pair by test set only (they share no seeds), and one "
                    "test set gives no interval: confirm both arms on the same folds (confirm --folds)")
        return "one seed only: no interval; confirm with more seeds"  # several folds always give one
    if res.sd == 0.0 and math.isnan(res.ci_low):
        return (f"all {res.n_units} {res.unit} differences are equal: no spread to build an interval on "
                "(the test set's granularity); confirm with more seeds")
    if word != "inconclusive":
        return ""
    if more is None:
        if max(abs(res.mean_diff), abs(res.mean_diff - claim.stated_effect)) == 0:
            return "the mean difference is exactly 0 = E: no number of runs would separate them"
        if res.test_train_ratio:  # the corrected variance never falls below sd^2 * n_test/n_train
            return ("no number of further folds would likely decide it at the observed spread: the corrected "
                    "fold-level variance keeps sd² · n_test/n_train however many folds are added")
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
        mask_a, mask_b = arm_mask(runs, claim.arm_a), arm_mask(runs, claim.arm_b)
        mine = runs[mask_a | mask_b]
        keys = ACROSS_CELL_KEYS if claim.across else CELL_KEYS
        cells = list(mine.groupby(list(keys), sort=True, dropna=False)) if len(mine) else []
        if not cells:
            empty = runs.iloc[0:0]
            cells_rows = [({}, empty, empty)]
        else:
            cells_rows = [(dict(zip(keys, key)), g[mask_a.loc[g.index]], g[mask_b.loc[g.index]])
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
            if not arm_mask(trials, arm).any():
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


def arms_of_sweep(arms: list[dict[str, Any]], sweep: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the arms `sweep`'s confirmation confirms, those that belong to other sweeps) of claim_arms'
    arms: an arm naming no sweep is every sweep's; an arm naming several (one held-out sweep per
    outer fold) is confirmed in each of them, as the arm in that sweep."""
    mine: dict[tuple, dict[str, Any]] = {}
    elsewhere = []
    for arm in arms:
        named = arm.get("sweep", sweep)
        if sweep in ((named,) if isinstance(named, str) else tuple(named)):
            here = {**arm, "sweep": sweep} if "sweep" in arm else arm
            mine.setdefault(tuple(here.items()), here)
        else:
            elsewhere.append(arm)
    return list(mine.values()), elsewhere


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
    key = "arm_key" if "arm_key" in runs.columns else "config_key"
    spread = [c for c in (key, *CELL_KEYS) if c in runs.columns and runs[c].nunique(dropna=False) > 1]
    if spread:
        raise ClaimsError(f"unit_interval takes one configuration in one cell; these runs differ in {spread}")
    units = _per_unit(runs, metric) if len(runs) else pd.Series(dtype="float64")
    keys = list(units.index)
    ratio, _, _ = _unit_design(runs, keys)
    return design_interval([k[1] for k in keys], [int(k[0]) for k in keys], units.to_numpy(dtype=float).tolist(),
                           confidence, test_train_ratio=ratio)
