"""Claim verdicts on constructed confirm tables whose answers are known by construction."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from search.claims import (CLAIMS, Arm, Claim, ClaimsError, PairedResult, add_claims_command, evaluate_claims,
                           paired_difference, render_claims, verdict)
from search.results import ResultsStore


def _row(family: str, frontend: str, seed: int, *, fold: int = 0, key: str | None = None, val_ua: float = 0.5,
         test_ua: float = 0.5, test_wa: float | None = None, compactness: float = 1.0, model: str = "cnn_birnn",
         stage: str = "confirm", status: str = "completed", sweep: str = "s-confirm") -> dict:
    key = key or f"{family}-{frontend}-{model}"
    return {"sweep": sweep, "trial_id": f"{key}-s{seed}-f{fold}-{stage}-{status}", "stage": stage,
            "status": status, "config_key": key, "model": model, "loss_family": family, "frontend": frontend,
            "seed": seed, "fold": fold, "val_ua": val_ua, "val_wa": val_ua,
            "test_ua": test_ua, "test_wa": test_ua if test_wa is None else test_wa, "compactness_test": compactness}


def _center_vs_ce(diffs: list[float], frontend: str = "mel", base: float = 0.55) -> pd.DataFrame:
    rows = []
    for seed, d in enumerate(diffs):
        rows.append(_row("cross_entropy", frontend, seed, test_ua=base + 0.01 * seed, compactness=1.0))
        rows.append(_row("center", frontend, seed, test_ua=base + 0.01 * seed + d, compactness=0.8 - 0.01 * seed))
    return pd.DataFrame(rows)


def _one(table: pd.DataFrame, claim: str, metric: str = "test_ua") -> pd.Series:
    hit = table[(table["claim"] == claim) & (table["metric"] == metric)]
    assert len(hit) == 1
    return hit.iloc[0]


# ---------------------------------------------------------------------------- statistics


def test_paired_interval_equals_hand_computation():
    a = [0.61, 0.64, 0.58, 0.66, 0.63]
    b = [0.55, 0.57, 0.56, 0.60, 0.59]
    d = np.array(a) - np.array(b)
    n = len(d)
    half = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)
    res = paired_difference(a, b)
    assert res.n == 5
    assert res.mean_diff == pytest.approx(d.mean(), abs=1e-12)
    assert res.interval == pytest.approx((d.mean() - half, d.mean() + half), abs=1e-12)
    # the same interval scipy's paired t-test reports
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert res.interval == pytest.approx((ci.low, ci.high), abs=1e-12)
    wider = paired_difference(a, b, confidence=0.99)
    assert wider.interval[0] < res.interval[0] and wider.interval[1] > res.interval[1]


def test_paired_difference_edge_cases_and_errors():
    assert paired_difference([0.7], [0.6]).interval is None
    assert paired_difference([0.7], [0.6]).mean_diff == pytest.approx(0.1)
    assert paired_difference([], []).n == 0
    same = paired_difference([0.6, 0.7, 0.8], [0.5, 0.6, 0.7])  # identical differences: zero width
    assert same.interval == pytest.approx((0.1, 0.1))
    with pytest.raises(ClaimsError, match="a has 2 values but b has 1"):
        paired_difference([0.1, 0.2], [0.1])
    with pytest.raises(ClaimsError, match="position \\[1\\]"):
        paired_difference([0.1, float("nan")], [0.1, 0.2])
    with pytest.raises(ClaimsError, match="confidence"):
        paired_difference([0.1, 0.2], [0.1, 0.2], confidence=95)


@pytest.mark.parametrize(("interval", "effect", "expected"), [
    ((0.04, 0.08), 0.03, "supported"),
    ((0.03, 0.08), 0.03, "inconclusive"),     # touches the stated effect: not wholly above it
    ((-0.01, 0.05), 0.03, "inconclusive"),    # covers zero and the effect
    ((0.01, 0.05), 0.03, "inconclusive"),     # an effect, but maybe smaller than claimed
    ((0.005, 0.02), 0.03, "contradicted"),    # real but smaller than claimed
    ((-0.02, 0.03), 0.03, "contradicted"),    # at or below the stated effect
    ((-0.05, -0.01), 0.0, "contradicted"),
    ((-0.01, 0.01), 0.0, "inconclusive"),
    ((0.001, 0.01), 0.0, "supported"),
])
def test_verdict_rule(interval, effect, expected):
    assert verdict(PairedResult(sum(interval) / 2, interval, 5), effect) == expected


def test_verdict_without_interval_is_inconclusive():
    assert verdict(PairedResult(0.5, None, 1), 0.03) == "inconclusive"


# ---------------------------------------------------------------------------- from trials


def test_center_beats_softmax_by_006_is_supported():
    rng = np.random.default_rng(0)
    diffs = list(0.06 + rng.normal(0, 0.003, size=5))
    table = evaluate_claims(_center_vs_ce(diffs))
    row = _one(table, "1")
    assert row["n_pairs"] == 5
    assert row["mean_diff"] == pytest.approx(np.mean(diffs), abs=1e-9)
    assert row["ci_low"] > 0.03
    assert row["verdict"] == "supported"
    assert _one(table, "1", "test_wa")["verdict"] == "supported"
    assert row["arm_a"] == "center/mel" and row["arm_b"] == "cross_entropy/mel"
    # center is the more compact arm: the oriented difference (CE - center) is positive
    comp = _one(table, "4a", "compactness_test")
    assert comp["mean_diff"] == pytest.approx(np.mean([1.0 - (0.8 - 0.01 * s) for s in range(5)]))
    assert comp["verdict"] == "supported"
    # no STFT runs: inconclusive, with zero pairs shown
    stft = _one(table, "2")
    assert stft["n_pairs"] == 0 and stft["verdict"] == "inconclusive"


def test_no_difference_contradicts_a_three_point_claim():
    rng = np.random.default_rng(1)
    diffs = list(rng.normal(0, 0.003, size=5))
    row = _one(evaluate_claims(_center_vs_ce(diffs)), "1")
    assert row["ci_low"] < 0.0 < row["ci_high"] < 0.03
    assert row["verdict"] == "contradicted"


def test_noisy_difference_covering_zero_and_effect_is_inconclusive():
    row = _one(evaluate_claims(_center_vs_ce([0.10, -0.06, 0.08, -0.04, 0.02])), "1")
    assert row["ci_low"] < 0.0 and row["ci_high"] > 0.03
    assert row["verdict"] == "inconclusive"


def test_too_few_seeds_is_inconclusive():
    row = _one(evaluate_claims(_center_vs_ce([0.08])), "1")
    assert row["n_pairs"] == 1
    assert row["mean_diff"] == pytest.approx(0.08)
    assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])
    assert row["verdict"] == "inconclusive"


def test_only_confirmed_completed_rows_count_and_pairs_need_both_arms():
    df = _center_vs_ce([0.06, 0.061, 0.059])
    extra = [_row("center", "mel", 9, test_ua=0.0, stage="search"),        # search stage: ignored
             _row("center", "mel", 8, test_ua=0.0, status="pruned"),       # not completed: ignored
             _row("center", "mel", 7, test_ua=0.9)]                        # no CE partner: unpaired
    row = _one(evaluate_claims(pd.concat([df, pd.DataFrame(extra)], ignore_index=True)), "1")
    assert row["n_pairs"] == 3
    assert row["mean_diff"] == pytest.approx(0.06)


def test_pairs_by_seed_and_fold():
    rows = []
    for seed in range(2):
        for fold in range(3):
            rows.append(_row("cross_entropy", "mel", seed, fold=fold, test_ua=0.5 + 0.1 * fold))
            rows.append(_row("center", "mel", seed, fold=fold, test_ua=0.55 + 0.1 * fold + 0.001 * seed))
    row = _one(evaluate_claims(pd.DataFrame(rows)), "1")
    assert row["n_pairs"] == 6
    # fold shifts both arms alike; pairing removes it, so the interval is narrow around 0.0505
    assert row["mean_diff"] == pytest.approx(0.0505)
    assert row["ci_high"] - row["ci_low"] < 0.002


def test_each_protocol_gets_its_own_verdict():
    """Within-corpus runs support the claim, the cross-corpus runs of the same arms contradict
    it: the two must not be pooled (or paired with each other)."""
    rows = []
    for seed in range(3):
        for protocol, d in ((("synthetic", "synthetic"), 0.08), (("synthetic", "emodb"), 0.0)):
            for family, gain in (("cross_entropy", 0.0), ("center", d + 0.001 * seed)):
                r = _row(family, "mel", seed, key=f"{family}-{protocol[1]}", test_ua=0.5 + gain)
                rows.append(r | {"train_corpora": protocol[0], "eval_corpora": protocol[1],
                                 "trial_id": r["trial_id"] + protocol[1]})
    table = evaluate_claims(pd.DataFrame(rows))
    mine = table[(table["claim"] == "1") & (table["metric"] == "test_ua")].set_index("protocol")
    assert set(mine.index) == {"within synthetic", "synthetic -> emodb"}
    assert mine.loc["within synthetic", "verdict"] == "supported"
    assert mine.loc["within synthetic", "n_pairs"] == 3
    assert mine.loc["synthetic -> emodb", "verdict"] == "contradicted"
    assert mine.loc["synthetic -> emodb", "mean_diff"] == pytest.approx(0.001)


def test_configuration_is_chosen_by_validation_never_test():
    rows = []
    for seed in range(5):
        rows.append(_row("cross_entropy", "mel", seed, test_ua=0.50))
        # val-best center configuration: modest test numbers (+0.01 over CE)
        rows.append(_row("center", "mel", seed, key="val-best", val_ua=0.70, test_ua=0.51 + 0.001 * seed))
        # test-best center configuration: lower validation, much better test (+0.10)
        rows.append(_row("center", "mel", seed, key="test-best", val_ua=0.60, test_ua=0.60 + 0.001 * seed))
    row = _one(evaluate_claims(pd.DataFrame(rows)), "1")
    assert row["config_a"] == "s-confirm/val-best"
    assert row["mean_diff"] == pytest.approx(0.012)
    assert row["verdict"] == "contradicted"  # the test-best one would have said "supported"


def test_cnn_transformer_claims_use_model_and_orderings():
    rows = []
    acc = {"cross_entropy": 0.70, "bce": 0.68, "smooth_l1": 0.55, "l1": 0.40}
    for seed in range(4):
        for fam, ua in acc.items():
            rows.append(_row(fam, "mel", seed, model="cnn_transformer", test_ua=ua + 0.002 * seed * (fam == "l1")))
        rows.append(_row("cross_entropy", "mel", seed, model="cnn_birnn", key="birnn", val_ua=0.99, test_ua=0.1))
    table = evaluate_claims(pd.DataFrame(rows))
    assert {c: _one(table, c)["verdict"] for c in ("3a", "3b", "3c", "3d", "3e")} == {
        "3a": "supported", "3b": "supported", "3c": "supported", "3d": "supported", "3e": "supported"}
    assert _one(table, "3a")["config_a"] == "s-confirm/cross_entropy-mel-cnn_transformer"
    # claim 1 has no model restriction: the CNN-BiRNN CE run with the best validation UA is its softmax arm
    assert _one(table, "1")["config_b"] == "s-confirm/birnn"


def test_every_claim_and_metric_has_a_row_without_confirmed_runs():
    search_only = _center_vs_ce([0.06] * 4).assign(stage="search")
    table = evaluate_claims(search_only)
    assert len(table) == sum(len(c.metrics) for c in CLAIMS)
    assert set(table["verdict"]) == {"inconclusive"}
    assert (table["n_pairs"] == 0).all()


def test_missing_columns_are_named():
    with pytest.raises(ClaimsError, match="stage"):
        evaluate_claims(pd.DataFrame({"status": ["completed"]}))


def test_custom_claim_lower_is_better_orientation():
    claim = Claim("x", "center compactness", Arm("center", "mel"), Arm("cross_entropy", "mel"),
                  ("compactness_test",), 0.5, "none")
    row = evaluate_claims(_center_vs_ce([0.0] * 3), claims=[claim]).iloc[0]
    assert row["mean_diff"] == pytest.approx(0.21)
    assert row["verdict"] == "contradicted"


# ---------------------------------------------------------------------------- rendering and CLI


def test_render_formats():
    table = evaluate_claims(_center_vs_ce([0.06, 0.062, 0.058]))
    text = render_claims(table, "table")
    assert "supported" in text and "center/mel" in text
    assert render_claims(table, "markdown").startswith("| claim |")
    records = json.loads(render_claims(table, "json"))
    assert records[0]["claim"] == "1" and records[0]["n_pairs"] == 3
    assert render_claims(table, "csv").splitlines()[0].startswith("claim,protocol,statement,arm_a")
    with pytest.raises(ClaimsError, match="unknown format"):
        render_claims(table, "html")


def test_claims_command_reads_a_results_directory(tmp_path, capsys):
    import argparse

    store = ResultsStore(tmp_path, "center-confirm")
    for r in _center_vs_ce([0.06, 0.061, 0.059, 0.062]).to_dict("records"):
        store.upsert_trial(r | {"sweep": "center-confirm"})
    parser = argparse.ArgumentParser()
    add_claims_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["claims", str(tmp_path), "--format", "json"])
    assert args.func(args) == 0
    records = json.loads(capsys.readouterr().out)
    first = next(r for r in records if r["claim"] == "1" and r["metric"] == "test_ua")
    assert first["n_pairs"] == 4 and first["verdict"] == "supported"
    assert first["config_a"] == "center-confirm/center-mel-cnn_birnn"


def test_rows_naming_only_an_evaluation_corpus_are_not_called_within():
    rows = [_row(f, "mel", s, test_ua=0.5) | {"train_corpora": None, "eval_corpora": "emodb",
                                              "trial_id": f"{f}{s}"} for f in ("center", "cross_entropy")
            for s in range(2)]
    protocols = set(evaluate_claims(pd.DataFrame(rows))["protocol"])
    assert protocols == {"(all but the evaluation corpora) -> emodb"}
