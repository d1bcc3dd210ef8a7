"""Claim verdicts on constructed confirm tables whose answers are known by construction: the
design-aware interval against scipy, the verdict words, Holm, the pairing inside one sweep
lineage / model / prepared corpus, claims files and the CLI."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from search.analysis.claims import (CLAIMS, COLUMNS, TEST_METRICS, VERDICTS, Arm, Claim, ClaimsError,
                           add_claims_command, claim_arms, design_interval, evaluate_claims, holm, lineage,
                           load_claims, more_units_needed, parse_claims, render_claims, t_interval, verdict)
from search.analysis.claims.stats import StatsError
from search.cli import main
from search.results import TRIALS_SCHEMA, ResultsStore

LINEAGE = "s"


def _row(family: str, frontend: str, seed: int, *, fold: int = 0, key: str | None = None, val_ua: float = 0.5,
         test_ua: float = 0.5, test_wa: float | None = None, compactness: float = 1.0, model: str = "cnn_birnn",
         stage: str = "confirm", status: str = "completed", sweep: str = f"{LINEAGE}-confirm",
         source_sweep: str | None = LINEAGE, prepared_id: str | None = "p0") -> dict:
    key = key or f"{family}-{frontend}-{model}"
    return {"sweep": sweep, "source_sweep": source_sweep, "trial_id": f"{key}-s{seed}-f{fold}-{stage}-{status}",
            "stage": stage, "status": status, "config_key": key, "prepared_id": prepared_id, "model": model,
            "loss_family": family, "frontend": frontend, "seed": seed, "fold": fold, "val_ua": val_ua,
            "val_wa": val_ua, "test_ua": test_ua, "test_wa": test_ua if test_wa is None else test_wa,
            "compactness_test": compactness}


def _center_vs_ce(diffs: list[float], frontend: str = "mel", base: float = 0.55, **kw) -> pd.DataFrame:
    rows = []
    for seed, d in enumerate(diffs, start=1):
        rows.append(_row("cross_entropy", frontend, seed, test_ua=base + 0.01 * seed, compactness=1.0, **kw))
        rows.append(_row("center", frontend, seed, test_ua=base + 0.01 * seed + d, compactness=0.8 - 0.01 * seed,
                         **kw))
    return pd.DataFrame(rows)


def _one(table: pd.DataFrame, claim: str, metric: str = "test_ua", **where) -> pd.Series:
    hit = table[(table["claim"] == claim) & (table["metric"] == metric)]
    for k, v in where.items():
        hit = hit[hit[k] == v]
    assert len(hit) == 1, hit
    return hit.iloc[0]


# ---------------------------------------------------------------------------- statistics


def test_one_fold_is_a_paired_t_over_seeds_as_scipy_computes_it():
    a = [0.61, 0.64, 0.58, 0.66, 0.63]
    b = [0.55, 0.57, 0.56, 0.60, 0.59]
    d = (np.array(a) - np.array(b)).tolist()
    res = design_interval([0] * 5, [1, 2, 3, 4, 5], d)
    ref = stats.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert res.unit == "seed" and res.n_folds == 1 and res.n_seeds == 5 and res.n_pairs == 5
    assert res.mean_diff == pytest.approx(np.mean(d), abs=1e-12)
    assert (res.ci_low, res.ci_high) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    wider = design_interval([0] * 5, [1, 2, 3, 4, 5], d, confidence=0.99)
    assert wider.ci_low < res.ci_low and wider.ci_high > res.ci_high


def test_several_folds_give_a_t_interval_over_fold_means():
    """3 folds x 4 seeds: the seeds of a fold share its test set, so the interval is taken over
    the 3 fold means (df 2), not the 12 pairs (df 11) — by hand with scipy."""
    rng = np.random.default_rng(3)
    fold_effect = {0: 0.02, 1: 0.07, 2: 0.04}  # the fold matters more than the seed
    folds, seeds, diffs = [], [], []
    for f, e in fold_effect.items():
        for s in range(1, 5):
            folds.append(f)
            seeds.append(s)
            diffs.append(e + rng.normal(0, 0.002))
    res = design_interval(folds, seeds, diffs)
    means = [np.mean([d for d, ff in zip(diffs, folds) if ff == f]) for f in (0, 1, 2)]
    ref = stats.ttest_1samp(means, 0.0)
    ci = ref.confidence_interval(0.95)
    assert res.unit == "fold" and res.n_folds == 3 and res.n_seeds == 4 and res.n_pairs == 12
    assert res.units == pytest.approx(tuple(means), abs=1e-12)
    assert res.mean_diff == pytest.approx(np.mean(means), abs=1e-12)
    assert (res.ci_low, res.ci_high) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    # pooling the 12 pairs as independent would claim a far narrower interval
    pooled = stats.ttest_1samp(diffs, 0.0).confidence_interval(0.95)
    assert (pooled.high - pooled.low) < 0.5 * (res.ci_high - res.ci_low)


def test_folds_weigh_the_same_whatever_their_number_of_seeds():
    res = design_interval([0, 0, 0, 1], [1, 2, 3, 1], [0.10, 0.10, 0.10, 0.00])
    assert res.mean_diff == pytest.approx(0.05)  # (0.10 + 0.00) / 2, not 0.075
    assert res.n_folds == 2 and res.n_seeds == 3 and res.n_pairs == 4


def test_t_interval_edge_cases_and_errors():
    assert math.isnan(t_interval([0.1])[1]) and t_interval([0.1])[0] == pytest.approx(0.1)
    assert all(math.isnan(v) for v in t_interval([]))
    mean, low, high, p, sd = t_interval([0.1, 0.1, 0.1])  # zero spread (up to rounding): no interval
    assert mean == pytest.approx(0.1) and sd == 0.0 and all(math.isnan(v) for v in (low, high, p))
    with pytest.raises(StatsError, match="position \\[1\\]"):
        t_interval([0.1, float("nan")])
    with pytest.raises(StatsError, match="confidence"):
        t_interval([0.1, 0.2], confidence=95)
    with pytest.raises(StatsError, match="line up"):
        design_interval([0], [1, 2], [0.1])


@pytest.mark.parametrize(("interval", "effect", "expected"), [
    ((0.04, 0.08), 0.03, "exceeds E"),
    ((0.03, 0.08), 0.03, "consistent with E"),          # touches E: contains it, not above it
    ((0.01, 0.05), 0.03, "consistent with E"),          # the old rule: "inconclusive"
    ((0.005, 0.02), 0.03, "real but smaller than E"),   # the old rule: "contradicted"
    ((-0.01, 0.02), 0.03, "not detected"),              # the old rule: "contradicted"
    ((-0.02, 0.0), 0.03, "not detected"),               # touches 0: contains it
    ((-0.05, -0.01), 0.03, "opposite"),                 # the old rule: "contradicted"
    ((-0.01, 0.05), 0.03, "inconclusive"),
    ((0.0, 0.05), 0.03, "inconclusive"),                # touches 0, contains E
    ((0.001, 0.01), 0.0, "exceeds E"),                  # an ordering that holds
    ((-0.01, 0.01), 0.0, "inconclusive"),               # E = 0: contains both 0 and E
    ((0.0, 0.01), 0.0, "inconclusive"),
    ((-0.02, -0.001), 0.0, "opposite"),
    ((math.nan, math.nan), 0.03, "inconclusive"),       # no interval
])
def test_verdict_words(interval, effect, expected):
    assert verdict(*interval, effect) == expected


def test_every_verdict_word_is_reachable_and_bad_input_is_refused():
    reached = {verdict(lo, hi, 0.03) for lo, hi in [(0.04, 0.08), (0.01, 0.05), (0.005, 0.02), (-0.01, 0.02),
                                                    (-0.05, -0.01), (-0.01, 0.05)]}
    assert reached == set(VERDICTS)
    with pytest.raises(StatsError, match=">= 0"):
        verdict(0.0, 0.1, -0.03)
    with pytest.raises(StatsError, match="low end above"):
        verdict(0.2, 0.1, 0.03)


def test_holm_against_a_hand_example():
    # sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04 -> 0.06 (step-down max)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.01, math.nan, 0.04])  # NaN: no test, not counted in m = 2
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []
    with pytest.raises(StatsError, match="outside"):
        holm([1.5])


def test_more_units_needed_is_the_smallest_total_meeting_the_power_formula():
    units = [0.06, -0.01, 0.05, 0.00]  # mean 0.025, between 0 and E = 0.03: undecided
    res = design_interval([0] * 4, [1, 2, 3, 4], units)
    assert verdict(res.ci_low, res.ci_high, 0.03) == "inconclusive"
    more = more_units_needed(res, 0.03)
    delta = max(abs(res.mean_diff), abs(res.mean_diff - 0.03))  # the farther of 0 and E

    def enough(total: int) -> bool:
        return (stats.t.ppf(0.975, total - 1) + stats.t.ppf(0.8, total - 1)) * res.sd / math.sqrt(total) <= delta

    total = 4 + more
    assert enough(total) and not enough(total - 1)
    noisier = design_interval([0] * 4, [1, 2, 3, 4], [2 * u - res.mean_diff for u in units])  # same mean, 2 x sd
    assert more_units_needed(noisier, 0.03) > more
    assert more_units_needed(design_interval([0], [1], [0.02]), 0.03) is None  # no spread yet


# ---------------------------------------------------------------------------- from trials


def test_center_beating_softmax_by_006_exceeds_a_three_point_claim():
    rng = np.random.default_rng(0)
    diffs = list(0.06 + rng.normal(0, 0.003, size=5))
    table = evaluate_claims(_center_vs_ce(diffs))
    assert list(table.columns) == list(COLUMNS)
    row = _one(table, "1")
    assert (row["n_pairs"], row["n_seeds"], row["n_folds"], row["unit"]) == (5, 5, 1, "seed")
    assert row["mean_diff"] == pytest.approx(np.mean(diffs), abs=1e-9)
    assert row["ci_low"] > 0.03 and row["verdict"] == "exceeds E"
    assert row["sweep"] == LINEAGE and row["model"] == "cnn_birnn" and row["prepared_id"] == "p0"
    assert row["p_value"] < 1e-4 and row["p_holm"] >= row["p_value"]
    assert pd.isna(row["more_pairs_needed"])
    assert _one(table, "1", "test_wa")["verdict"] == "exceeds E"
    assert row["arm_a"] == "center/mel" and row["arm_b"] == "cross_entropy/mel"
    # center is the more compact arm: the oriented difference (CE - center) is positive
    comp = _one(table, "4a", "compactness_test")
    assert comp["mean_diff"] == pytest.approx(np.mean([1.0 - (0.8 - 0.01 * s) for s in range(1, 6)]))
    assert comp["verdict"] == "exceeds E"  # E = 0: the ordering holds
    # no STFT runs: inconclusive, with zero pairs shown and why
    stft = _one(table, "2")
    assert stft["n_pairs"] == 0 and stft["verdict"] == "inconclusive" and "have no confirmed run" in stft["note"]


def test_no_difference_is_not_detected_rather_than_contradicted():
    rng = np.random.default_rng(1)
    row = _one(evaluate_claims(_center_vs_ce(list(rng.normal(0, 0.003, size=5)))), "1")
    assert row["ci_low"] < 0.0 < row["ci_high"] < 0.03
    assert row["verdict"] == "not detected"


def test_a_real_but_smaller_effect_and_the_opposite_are_told_apart():
    small = _one(evaluate_claims(_center_vs_ce([0.010, 0.012, 0.011, 0.009, 0.010])), "1")
    assert 0 < small["ci_low"] and small["ci_high"] < 0.03 and small["verdict"] == "real but smaller than E"
    worse = _one(evaluate_claims(_center_vs_ce([-0.05, -0.052, -0.049, -0.051])), "1")
    assert worse["verdict"] == "opposite"


def test_noisy_difference_covering_zero_and_effect_is_inconclusive_with_runs_needed():
    row = _one(evaluate_claims(_center_vs_ce([0.10, -0.06, 0.08, -0.04, 0.02])), "1")
    assert row["ci_low"] < 0.0 and row["ci_high"] > 0.03
    assert row["verdict"] == "inconclusive"
    assert int(row["more_pairs_needed"]) > 0 and "more seeds would likely decide it" in row["note"]


def test_identical_differences_give_no_interval_rather_than_certainty():
    """Two seeds whose differences are equal (accuracies move in steps of one test clip): a
    zero spread is granularity, not p < 0.001."""
    row = _one(evaluate_claims(_center_vs_ce([0.010, 0.010])), "1")
    assert row["n_pairs"] == 2 and row["mean_diff"] == pytest.approx(0.01)
    assert math.isnan(row["ci_low"]) and math.isnan(row["p_value"]) and math.isnan(row["p_holm"])
    assert row["verdict"] == "inconclusive" and pd.isna(row["more_pairs_needed"])
    assert "differences are equal" in row["note"]


def test_too_few_seeds_is_inconclusive():
    row = _one(evaluate_claims(_center_vs_ce([0.08])), "1")
    assert row["n_pairs"] == 1 and row["mean_diff"] == pytest.approx(0.08)
    assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"]) and math.isnan(row["p_value"])
    assert row["verdict"] == "inconclusive" and pd.isna(row["more_pairs_needed"])
    assert "no interval" in row["note"]


def test_only_confirmed_completed_rows_count_and_pairs_need_both_arms():
    df = _center_vs_ce([0.06, 0.061, 0.059])
    extra = [_row("center", "mel", 9, test_ua=0.0, stage="search", sweep=LINEAGE),  # search stage: ignored
             _row("center", "mel", 8, test_ua=0.0, status="pruned"),               # not completed: ignored
             _row("center", "mel", 7, test_ua=0.9)]                                # no CE partner: unpaired
    row = _one(evaluate_claims(pd.concat([df, pd.DataFrame(extra)], ignore_index=True)), "1")
    assert row["n_pairs"] == 3
    assert row["mean_diff"] == pytest.approx(0.06)


def test_pairs_by_seed_and_fold_with_the_interval_over_fold_means():
    rows = []
    for seed in range(1, 3):
        for fold in range(3):
            rows.append(_row("cross_entropy", "mel", seed, fold=fold, test_ua=0.5 + 0.1 * fold))
            rows.append(_row("center", "mel", seed, fold=fold,
                             test_ua=0.5 + 0.1 * fold + 0.05 + 0.01 * fold + 0.001 * seed))
    row = _one(evaluate_claims(pd.DataFrame(rows)), "1")
    assert (row["n_pairs"], row["n_folds"], row["n_seeds"], row["unit"]) == (6, 3, 2, "fold")
    fold_means = [0.05 + 0.01 * f + 0.0015 for f in range(3)]  # the fold shift of both arms cancels
    ci = stats.ttest_1samp(fold_means, 0.0).confidence_interval(0.95)
    assert row["mean_diff"] == pytest.approx(np.mean(fold_means))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high))


def test_each_protocol_gets_its_own_verdict():
    """Within-corpus runs support the claim, the cross-corpus runs of the same arms do not
    detect it: the two must not be pooled (or paired with each other)."""
    rows = []
    for seed in range(1, 4):
        for protocol, d in ((("synthetic", "synthetic"), 0.08), (("synthetic", "emodb"), 0.0)):
            for family, gain in (("cross_entropy", 0.0), ("center", d + 0.001 * seed)):
                r = _row(family, "mel", seed, key=f"{family}-{protocol[1]}", test_ua=0.5 + gain)
                rows.append(r | {"train_corpora": protocol[0], "eval_corpora": protocol[1],
                                 "trial_id": r["trial_id"] + protocol[1]})
    table = evaluate_claims(pd.DataFrame(rows))
    mine = table[(table["claim"] == "1") & (table["metric"] == "test_ua")].set_index("protocol")
    assert set(mine.index) == {"within synthetic", "synthetic -> emodb"}
    assert mine.loc["within synthetic", "verdict"] == "exceeds E"
    assert mine.loc["within synthetic", "n_pairs"] == 3
    assert mine.loc["synthetic -> emodb", "verdict"] == "not detected"
    assert mine.loc["synthetic -> emodb", "mean_diff"] == pytest.approx(0.002)


def test_configuration_is_chosen_by_validation_never_test():
    rows = []
    for seed in range(1, 6):
        rows.append(_row("cross_entropy", "mel", seed, test_ua=0.50))
        # val-best center configuration: modest test numbers (+0.012 over CE)
        rows.append(_row("center", "mel", seed, key="val-best", val_ua=0.70, test_ua=0.51 + 0.001 * seed - 0.001))
        # test-best center configuration: lower validation, much better test (+0.10)
        rows.append(_row("center", "mel", seed, key="test-best", val_ua=0.60, test_ua=0.60 + 0.001 * seed))
    row = _one(evaluate_claims(pd.DataFrame(rows)), "1")
    assert row["config_a"] == "val-best"
    assert row["mean_diff"] == pytest.approx(0.012)
    assert row["verdict"] == "real but smaller than E"  # the test-best one would "exceed E"


def test_two_sweeps_in_one_results_directory_are_never_paired_across():
    """Two sweeps searched with seed 0, both confirmed with seeds 1..4, in one results directory.
    The CNN-Transformer sweep's cross-entropy arm has the better validation UA; a claim without
    a model must still pair the center arm only with the cross-entropy arm of its own sweep.
    (Before lineages, the best CE across all sweeps became the softmax arm: center +0.04 over its
    own sweep's CE was reported as -0.155 against the other sweep's.)"""
    rows = []
    for seed in range(1, 5):
        jitter = 0.001 * seed
        rows += [_row("cross_entropy", "mel", seed, sweep="center-vs-softmax-confirm", source_sweep="center-vs-softmax",
                      key="ce-dai", val_ua=0.55, test_ua=0.50 + jitter),
                 _row("center", "mel", seed, sweep="center-vs-softmax-confirm", source_sweep="center-vs-softmax",
                      key="center-dai", val_ua=0.58, test_ua=0.54 + 2 * jitter),
                 _row("cross_entropy", "mel", seed, sweep="loss-functions-confirm", source_sweep="loss-functions",
                      key="ce-other", val_ua=0.80, test_ua=0.70)]
    table = evaluate_claims(pd.DataFrame(rows))
    paired = table[(table["claim"] == "1") & (table["metric"] == "test_ua") & (table["n_pairs"] > 0)]
    assert len(paired) == 1
    assert paired["mean_diff"].iloc[0] == pytest.approx(0.04 + 0.001 * 2.5)
    assert paired["config_b"].iloc[0] == "ce-dai"
    row = _one(table, "1", sweep="center-vs-softmax")
    assert row["verdict"] == "consistent with E" or row["verdict"] == "exceeds E"
    other = _one(table, "1", sweep="loss-functions")  # its own row: no center arm there
    assert other["n_pairs"] == 0 and pd.isna(other["config_a"]) and other["config_b"] == "ce-other"


def test_a_claim_without_a_model_gets_a_row_per_model_and_never_pairs_across_models():
    rows = []
    for seed in range(1, 5):
        rows += [_row("center", "mel", seed, model="cnn_birnn", key="c-b", test_ua=0.50 + 0.05 + 0.001 * seed),
                 _row("cross_entropy", "mel", seed, model="cnn_birnn", key="ce-b", test_ua=0.50),
                 _row("center", "mel", seed, model="cnn_transformer", key="c-t", test_ua=0.60),
                 _row("cross_entropy", "mel", seed, model="cnn_transformer", key="ce-t", val_ua=0.9,
                      test_ua=0.60 - 0.001 * seed)]
    table = evaluate_claims(pd.DataFrame(rows))
    birnn, trans = _one(table, "1", model="cnn_birnn"), _one(table, "1", model="cnn_transformer")
    assert (birnn["config_a"], birnn["config_b"]) == ("c-b", "ce-b")
    assert (trans["config_a"], trans["config_b"]) == ("c-t", "ce-t")
    assert birnn["mean_diff"] == pytest.approx(0.0525) and trans["mean_diff"] == pytest.approx(0.0025)


def test_cnn_transformer_claims_fix_their_model_and_check_the_orderings():
    rows = []
    acc = {"cross_entropy": 0.70, "bce": 0.68, "smooth_l1": 0.55, "l1": 0.40}
    for seed in range(1, 5):
        for k, (fam, ua) in enumerate(acc.items()):  # each family's own drift over seeds: a spread
            rows.append(_row(fam, "mel", seed, model="cnn_transformer", test_ua=ua + 0.002 * seed * k))
        rows.append(_row("cross_entropy", "mel", seed, model="cnn_birnn", key="birnn", val_ua=0.99, test_ua=0.1))
    table = evaluate_claims(pd.DataFrame(rows))
    for c in ("3a", "3b", "3c", "3d", "3e"):
        mine = table[(table["claim"] == c) & (table["metric"] == "test_ua")]
        assert len(mine) == 1 and mine["model"].iloc[0] == "cnn_transformer"
        assert mine["verdict"].iloc[0] == "exceeds E", c
    assert _one(table, "3a")["config_a"] == "cross_entropy-mel-cnn_transformer"


def test_two_preparations_in_one_lineage_are_separate_rows():
    """Speaker vs utterance folds of one corpus (two prepared_ids) are two experiments."""
    a = _center_vs_ce([0.06, 0.061, 0.059], prepared_id="speaker-folds")
    b = _center_vs_ce([-0.02, -0.021, -0.019], prepared_id="utterance-folds")
    b["trial_id"] = b["trial_id"] + "-u"
    table = evaluate_claims(pd.concat([a, b], ignore_index=True))
    assert _one(table, "1", prepared_id="speaker-folds")["mean_diff"] == pytest.approx(0.06)
    assert _one(table, "1", prepared_id="utterance-folds")["mean_diff"] == pytest.approx(-0.02)


def test_a_named_confirmation_belongs_to_the_sweep_it_confirms():
    """`confirm --name x-loco` records source_sweep: its rows join the lineage of the sweep
    confirmed, and a unit repeated by two confirmations of it is averaged, not counted twice."""
    first = _center_vs_ce([0.06, 0.062], sweep="s-confirm")
    again = _center_vs_ce([0.08, 0.062, 0.061], sweep="s-again")
    again["trial_id"] = again["trial_id"] + "-again"
    row = _one(evaluate_claims(pd.concat([first, again], ignore_index=True)), "1")
    assert row["sweep"] == LINEAGE and row["confirm_sweeps"] == "s-again,s-confirm"
    assert row["n_pairs"] == 3 and row["mean_diff"] == pytest.approx((0.07 + 0.062 + 0.061) / 3)


def test_lineage_of_rows_without_a_recorded_source_sweep():
    assert lineage("center-vs-softmax-confirm", "confirm", None) == "center-vs-softmax"
    assert lineage("center-vs-softmax-confirm", "confirm", "center-vs-softmax") == "center-vs-softmax"
    assert lineage("x-loco", "confirm", "x") == "x"
    assert lineage("x-loco", "confirm", None) == "x-loco"  # unknown: stands alone, never pooled
    assert lineage("abc", "search", None) == "abc"
    assert lineage("-confirm", "confirm", float("nan")) == "-confirm"


def test_holm_adjusts_over_every_row_of_the_report():
    table = evaluate_claims(_center_vs_ce([0.06, 0.058, 0.061, 0.059]))
    assert table["p_holm"].tolist() == pytest.approx(holm(table["p_value"].tolist()), nan_ok=True)
    tested = table["p_value"].notna()
    assert tested.sum() >= 3 and (table.loc[tested, "p_holm"] >= table.loc[tested, "p_value"]).all()
    assert table.loc[~tested, "p_holm"].isna().all()


def test_every_claim_and_metric_has_a_row_without_confirmed_runs():
    table = evaluate_claims(_center_vs_ce([0.06] * 4).assign(stage="search"))
    assert len(table) == sum(len(c.metrics) for c in CLAIMS)
    assert set(table["verdict"]) == {"inconclusive"} and (table["n_pairs"] == 0).all()
    assert table["sweep"].isna().all()


def test_missing_columns_and_bad_claims_are_named():
    with pytest.raises(ClaimsError, match="stage"):
        evaluate_claims(pd.DataFrame({"status": ["completed"]}))
    backwards = Claim("neg", "softmax beats center", Arm("center", "mel"), Arm("cross_entropy", "mel"), ("test_ua",),
                      -0.03)
    with pytest.raises(ClaimsError, match="claim neg: stated effect must be a finite number >= 0"):
        evaluate_claims(_center_vs_ce([0.06, 0.06]), claims=[backwards])


def test_custom_claim_lower_is_better_orientation():
    claim = Claim("x", "center compactness", Arm("center", "mel"), Arm("cross_entropy", "mel"),
                  ("compactness_test",), 0.5)
    row = evaluate_claims(_center_vs_ce([0.0] * 3), claims=[claim]).iloc[0]
    assert row["mean_diff"] == pytest.approx(0.22)  # CE 1.0 against center 0.8 - 0.01 * seed, seeds 1..3
    assert row["verdict"] == "real but smaller than E"


def test_rows_naming_only_an_evaluation_corpus_are_not_called_within():
    rows = [_row(f, "mel", s, test_ua=0.5) | {"train_corpora": None, "eval_corpora": "emodb",
                                              "trial_id": f"{f}{s}"} for f in ("center", "cross_entropy")
            for s in range(2)]
    protocols = set(evaluate_claims(pd.DataFrame(rows))["protocol"].dropna())
    assert protocols == {"(all but the evaluation corpora) -> emodb"}


# ---------------------------------------------------------------------------- claims files


def test_the_shipped_papers_claims():
    by_id = {c.claim: c for c in CLAIMS}
    assert list(by_id) == ["1", "2", "3a", "3b", "3c", "3d", "3e", "4a", "4b"]
    assert (by_id["1"].arm_a, by_id["1"].arm_b) == (Arm("center", "mel"), Arm("cross_entropy", "mel"))
    assert by_id["1"].stated_effect == 0.03 and by_id["2"].stated_effect == 0.04
    assert by_id["2"].arm_a == Arm("center", "stft")
    assert by_id["3a"].arm_b == Arm("l1", "mel", "cnn_transformer") and by_id["3a"].stated_effect == 0.10
    assert {by_id[c].stated_effect for c in ("3c", "3d", "3e", "4a", "4b")} == {0.0}
    assert by_id["4a"].metrics == ("compactness_test",) and by_id["1"].metrics == ("test_ua", "test_wa")
    assert {"loss_family": "l1", "frontend": "mel", "model": "cnn_transformer"} in claim_arms()
    assert set(TEST_METRICS) <= set(TRIALS_SCHEMA.names)  # a claim metric is always a trials column


def _write(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


MY_CLAIM = """
[[claim]]
id = "mine"
statement = "center on STFT beats center on Mel"
a = { loss_family = "center", frontend = "stft" }
b = { loss_family = "center", frontend = "mel" }
model = "cnn_birnn"
metric = "test_ua"
effect = 0.01
"""


def test_a_claims_file_of_ones_own():
    (claim,) = parse_claims(MY_CLAIM, source="mine.toml")
    assert claim.arm_a == Arm("center", "stft", "cnn_birnn") and claim.arm_b == Arm("center", "mel", "cnn_birnn")
    assert claim.metrics == ("test_ua",) and claim.stated_effect == 0.01
    assert claim.origin == "mine.toml: claim[0] (id 'mine')"


@pytest.mark.parametrize(("text", "expected"), [
    ('colour = "red"\n' + MY_CLAIM, r"colour: unknown key"),
    (MY_CLAIM.replace('metric = "test_ua"', 'metric = "test_ua"\nwidth = 3'),
     r"claim\[0\] \(id 'mine'\)\.width: unknown key"),
    (MY_CLAIM.replace('frontend = "stft" }', 'frontend = "stft", lr = 1 }'),
     r"claim\[0\] \(id 'mine'\)\.a\.lr: unknown key"),
    (MY_CLAIM.replace('metric = "test_ua"\n', ""), r"exactly one of"),
    (MY_CLAIM.replace('"test_ua"', '"val_ua"'), r"unknown metric 'val_ua' \(validation chose"),
    (MY_CLAIM.replace("effect = 0.01", "effect = -0.01"), r"effect: Input should be greater than or equal to 0"),
    (MY_CLAIM.replace('frontend = "mel"', 'frontend = "stft"'), r"arms a and b are the same"),
    (MY_CLAIM.replace('model = "cnn_birnn"', 'frontend = "mel"'), r"frontend is set both"),
    (MY_CLAIM.replace(', frontend = "stft"', ""), r"could match the same runs"),
    (MY_CLAIM + MY_CLAIM, r"claim id\(s\) \['mine'\] appear more than once"),
    ("[[claim]\n", r"is not valid TOML"),
    ("", r"claim: Field required"),
])
def test_claims_file_errors_name_the_file_and_key(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(ClaimsError, match=expected) as info:
        load_claims(path)
    assert str(path) in str(info.value)


def test_missing_claims_file(tmp_path):
    with pytest.raises(ClaimsError, match="claims file not found"):
        load_claims(tmp_path / "nope.toml")


# ---------------------------------------------------------------------------- rendering and CLI


def test_render_formats():
    table = evaluate_claims(_center_vs_ce([0.06, 0.062, 0.058]))
    text = render_claims(table, "table")
    assert "exceeds E" in text and "folds x seeds" in text and "1 x 3" in text and "95% CI" in text
    assert "1: center + softmax beats softmax on Mel by > 3 points  (a = center/mel, b = cross_entropy/mel)" in text
    assert "2, 4b: arm a (center/stft) and arm b (cross_entropy/stft) have no confirmed run" in text  # notes
    assert render_claims(table, "markdown").startswith("| claim | sweep |")
    records = json.loads(render_claims(table, "json"))
    assert set(records[0]) == set(COLUMNS)
    first = next(r for r in records if r["claim"] == "1" and r["metric"] == "test_ua")
    assert first["n_pairs"] == 3 and first["verdict"] == "exceeds E" and first["more_pairs_needed"] is None
    assert render_claims(table, "csv").splitlines()[0] == ",".join(COLUMNS)
    with pytest.raises(ClaimsError, match="unknown format"):
        render_claims(table, "html")


def _results(tmp_path: Path) -> Path:
    store = ResultsStore(tmp_path / "results", f"{LINEAGE}-confirm")
    for r in _center_vs_ce([0.06, 0.061, 0.059, 0.062]).to_dict("records"):
        store.upsert_trial(r)
    return tmp_path / "results"


def test_claims_command_reads_a_results_directory(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    add_claims_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["claims", str(_results(tmp_path)), "--format", "json"])
    assert args.func(args) == 0
    records = json.loads(capsys.readouterr().out)
    first = next(r for r in records if r["claim"] == "1" and r["metric"] == "test_ua")
    assert first["n_pairs"] == 4 and first["verdict"] == "exceeds E"
    assert first["sweep"] == LINEAGE and first["config_a"] == "center-mel-cnn_birnn" and first["prepared_id"] == "p0"


def test_claims_command_with_ones_own_claims_file(tmp_path, capsys):
    results = _results(tmp_path)
    path = _write(tmp_path, '''
[[claim]]
id = "mine"
statement = "center beats softmax on Mel by 1 point"
a = { loss_family = "center" }
b = { loss_family = "cross_entropy" }
frontend = "mel"
metric = "test_ua"
effect = 0.01
''')
    assert main(["claims", str(results), "--claims", str(path), "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["claim"] for r in records] == ["mine"]
    assert records[0]["verdict"] == "exceeds E" and records[0]["stated_effect"] == 0.01


def test_claims_command_refuses_a_bad_file_or_an_arm_no_sweep_holds(tmp_path, capsys):
    results = _results(tmp_path)
    bad = _write(tmp_path, MY_CLAIM.replace("effect", "efect"), "bad.toml")
    assert main(["claims", str(results), "--claims", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "claim[0] (id 'mine').efect: unknown key" in err
    typo = _write(tmp_path, MY_CLAIM.replace('"center", frontend = "stft"', '"centre", frontend = "stft"'),
                  "typo.toml")
    assert main(["claims", str(results), "--claims", str(typo)]) == 2
    err = capsys.readouterr().err
    assert "typo.toml: claim[0] (id 'mine').a: no sweep under" in err and "loss_family='centre'" in err
    assert "center/mel/cnn_birnn" in err  # what the results do hold
    assert main(["claims", str(results), "--claims", str(tmp_path / "absent.toml")]) == 2
    assert "claims file not found" in capsys.readouterr().err


def test_the_readme_claims_file_example_is_valid():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Claims", 1)[1].split("\n### ", 1)[0]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (claim,) = parse_claims(example, source="README.md")
    assert claim.arm_a == Arm("center", "stft", "cnn_birnn") and claim.stated_effect == 0.02
    for word in VERDICTS:
        assert f"| {word} |" in section  # every verdict word is explained


def test_claims_command_on_a_folder_without_any_sweep_says_so(tmp_path, capsys):
    # The demo's --out folder instead of its results/: no placeholder verdict rows, exit 2.
    demo = tmp_path / "demo-out"
    shutil.copytree(_results(tmp_path / "src"), demo / "results")
    assert main(["claims", str(demo)]) == 2
    out = capsys.readouterr()
    assert "no sweep found in" in out.err and f"sweeps are in {demo}/results" in out.err
    assert "claim" not in out.out


def test_runs_needed_use_the_reports_confidence_level():
    # The power estimate must be made at the report's own alpha (1 - confidence), not always 0.05.
    diffs = [0.06, -0.01, 0.05, 0.00]
    trials = _center_vs_ce(diffs)
    at95 = _one(evaluate_claims(trials, confidence=0.95), "1")
    at99 = _one(evaluate_claims(trials, confidence=0.99), "1")
    assert at95["verdict"] == at99["verdict"] == "inconclusive"
    res = design_interval([0] * 4, [1, 2, 3, 4], diffs, confidence=0.99)
    assert at99["more_pairs_needed"] == more_units_needed(res, 0.03, alpha=0.01)
    assert at99["more_pairs_needed"] > at95["more_pairs_needed"]
    assert "alpha 0.01" in at99["note"]


def test_the_table_says_verdicts_are_per_row_and_holm_is_family_wise():
    table = evaluate_claims(_center_vs_ce([0.06, 0.061, 0.059, 0.062]))
    text = render_claims(table, "table")
    assert f"p_holm: Holm-adjusted over these {len(table)} rows (family-wise)" in text
    assert "each row's own 95% interval, unadjusted" in text
