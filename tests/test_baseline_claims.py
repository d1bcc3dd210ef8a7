"""A deep configuration against the baseline in one claims row (issue 22): arms that name different
models or sweeps share the test speakers, not seeds or a search, so they pair by test set (each
arm's seeds averaged per fold) with the corrected fold-level interval, and the row says which two
sweeps and models it compares."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from search.analysis.claims import evaluate_claims, parse_claims, render_claims
from search.results.schema import config_columns
from ser_core.config import TrainConfig

TINY = {"name": "cnn_transformer", "channels": [8, 16, 16, 16], "d_model": 32, "n_heads": 2, "n_layers": 1,
        "ff_dim": 64}
CLAIMS = """
[[claim]]
id = "D1"
statement = "the deep recipe beats the functionals baseline"
a = { loss_family = "center", model = "cnn_transformer", sweep = "deep" }
b = { loss_family = "cross_entropy", model = "linear", sweep = "baselines" }
metric = "test_ua"
effect = 0
"""
# per-fold test UA by seed: the deep arm's three seeds, the baseline's two
DEEP = {1: [0.80, 0.70, 0.74, 0.78, 0.69], 2: [0.82, 0.68, 0.75, 0.80, 0.71], 3: [0.79, 0.71, 0.73, 0.77, 0.70]}
BASE = {1: [0.78, 0.69, 0.70, 0.72, 0.71], 2: [0.77, 0.70, 0.71, 0.73, 0.72]}


def _rows(sweep: str, model: dict, family: str, by_seed: dict[int, list[float]], data: dict, val: float) -> list:
    rows = []
    for seed, per_fold in by_seed.items():
        loss = {"family": family, **({"center_lambda": 0.01, "center_lr": 0.5} if family == "center" else {})}
        cfg = TrainConfig.model_validate({"data": {"prepared": "p", **data}, "seed": seed, "model": model,
                                          "loss": loss})
        row = {**config_columns(cfg, n_folds=5, prepared_id="pid"), "sweep": f"{sweep}-confirm",
               "source_sweep": sweep, "trial_id": f"{sweep}{seed}", "stage": "confirm", "status": "completed",
               "val_ua": val, "val_wa": val}
        if len(per_fold) > 1:
            row |= {"test_ua_folds": per_fold, "test_ua": float(np.mean(per_fold))}
        else:
            row["test_ua"] = per_fold[0]
        rows.append(row)
    return rows


def test_a_deep_sweep_against_the_baseline_sweep_pairs_by_fold_with_the_corrected_interval():
    five = {"folds": [0, 1, 2, 3, 4]}
    trials = pd.DataFrame(_rows("deep", TINY, "center", DEEP, five, 0.7)
                          + _rows("baselines", {"name": "linear"}, "cross_entropy", BASE, five, 0.6))
    (claim,) = parse_claims(CLAIMS)
    assert claim.across and claim.model is None
    r = evaluate_claims(trials, [claim]).iloc[0]

    per_fold = [np.mean([DEEP[s][f] for s in DEEP]) - np.mean([BASE[s][f] for s in BASE]) for f in range(5)]
    sd = np.std(per_fold, ddof=1)
    half = stats.t.ppf(0.975, 4) * sd * math.sqrt(1 / 5 + 1 / 3)  # 1 test fold per run, 3 training folds
    assert r["unit"] == "fold" and r["n_folds"] == 5 and r["n_pairs"] == 5 and r["n_seeds"] == 2
    assert r["mean_diff"] == pytest.approx(np.mean(per_fold))
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((np.mean(per_fold) - half, np.mean(per_fold) + half))
    assert r["sweep"] == "deep vs baselines" and r["model"] == "cnn_transformer vs linear"
    assert r["arm_a"] == "center (cnn_transformer) @deep" and r["arm_b"] == "cross_entropy (linear) @baselines"
    assert "deep vs baselines" in render_claims(pd.DataFrame([r]))


def test_across_sweeps_one_held_out_test_set_gives_no_interval_and_says_what_would():
    nested = {"folds": [1, 2, 3, 4], "test_folds": [0]}
    trials = pd.DataFrame(_rows("deep", TINY, "center", {s: [v[0]] for s, v in DEEP.items()}, nested, 0.7)
                          + _rows("baselines", {"name": "linear"}, "cross_entropy", {s: [v[0]] for s, v in BASE.items()},
                                  nested, 0.6))
    r = evaluate_claims(trials, parse_claims(CLAIMS)).iloc[0]
    assert r["n_pairs"] == 1 and math.isnan(r["ci_low"]) and r["verdict"] == "inconclusive"
    assert r["mean_diff"] == pytest.approx(np.mean([v[0] for v in DEEP.values()]) - np.mean([v[0] for v in BASE.values()]))
    assert "pair by test set only" in r["note"] and "confirm --folds" in r["note"]
    assert not r["selection_exposed"]  # fold 0 was held out of both searches


def test_arms_of_one_sweep_and_model_still_pair_by_seed():
    """Naming the same sweep and model on both arms is an ordinary claim: seeds pair."""
    five = {"folds": [0, 1, 2, 3, 4]}
    trials = pd.DataFrame(_rows("deep", TINY, "center", DEEP, five, 0.7)
                          + _rows("deep", TINY, "cross_entropy", {s: [x - 0.01 for x in v] for s, v in DEEP.items()},
                                  five, 0.6))
    (claim,) = parse_claims(CLAIMS.replace('model = "linear", sweep = "baselines"',
                                           'model = "cnn_transformer", sweep = "deep"'))
    assert not claim.across
    r = evaluate_claims(trials, [claim]).iloc[0]
    assert r["n_pairs"] == 15 and r["n_seeds"] == 3 and r["mean_diff"] == pytest.approx(0.01)
    assert r["sweep"] == "deep" and r["model"] == "cnn_transformer"


@pytest.mark.parametrize("arm_b, message", [
    ('{ loss_family = "center", model = "cnn_transformer", sweep = "deep" }', "are the same"),
    ('{ loss_family = "center" }', "could match the same runs"),
    ('{ loss_family = "center", model = "linear", settings = { seed = 1 } }', "runs pair by seed"),
])
def test_claims_file_errors_for_arms_that_cannot_be_told_apart(arm_b, message):
    from search.analysis.claims import ClaimsError

    text = CLAIMS.replace('{ loss_family = "cross_entropy", model = "linear", sweep = "baselines" }', arm_b)
    with pytest.raises(ClaimsError, match=message):
        parse_claims(text)


def test_a_model_set_for_the_claim_and_an_arm_is_refused():
    from search.analysis.claims import ClaimsError

    with pytest.raises(ClaimsError, match="model is set both for the claim and in arm a"):
        parse_claims(CLAIMS.replace('metric = "test_ua"', 'metric = "test_ua"\nmodel = "linear"'))


def test_claim_arms_carry_the_sweep_an_arm_belongs_to():
    """`claim_arms` carries an arm's sweep, so `confirm --for-claims --sweep deep` plans the deep
    arm and leaves the baseline's arm to the baseline sweep's confirmation (search/cli)."""
    from search.analysis.claims import claim_arms

    arms = claim_arms(parse_claims(CLAIMS))
    assert arms == [{"loss_family": "center", "model": "cnn_transformer", "sweep": "deep"},
                    {"loss_family": "cross_entropy", "model": "linear", "sweep": "baselines"}]


def test_confirm_for_claims_of_a_sweep_no_arm_belongs_to_is_exit_2_before_any_work(tmp_path, capsys):
    """Every arm of the file names another sweep: confirming this one for those claims would
    confirm nothing the claims read (without arms it would confirm the overall winners instead)."""
    import ray

    from search.cli import main

    claims = tmp_path / "claims.toml"
    claims.write_text(CLAIMS)
    assert main(["confirm", str(tmp_path / "results"), "--sweep", "other", "--for-claims",
                 "--claims", str(claims)]) == 2
    err = capsys.readouterr().err
    assert "2 arm(s) belong to other sweeps" in err and "no arm of these claims belongs to sweep 'other'" in err
    assert not ray.is_initialized() and not (tmp_path / "results").exists()


# Nested cross-validation done as one held-out sweep per outer fold (test_folds = [f], selection on
# the other four): each sweep confirmed two candidate configurations (lr 1e-3 and 3e-3) with seeds
# 1-3. Per outer fold: (validation UA, test UA by seed) of each candidate. The validation winner
# differs between folds, so a choice over all five sweeps at once (lr 1e-3: mean validation 0.72
# against 0.70) would pair other runs on folds 1 and 3.
NESTED_DEEP = {
    0: {1e-3: (0.74, [0.80, 0.81, 0.79]), 3e-3: (0.70, [0.60, 0.61, 0.59])},
    1: {1e-3: (0.70, [0.70, 0.71, 0.69]), 3e-3: (0.72, [0.76, 0.75, 0.77])},
    2: {1e-3: (0.75, [0.74, 0.73, 0.75]), 3e-3: (0.69, [0.64, 0.65, 0.63])},
    3: {1e-3: (0.66, [0.66, 0.64, 0.65]), 3e-3: (0.71, [0.79, 0.80, 0.81])},
    4: {1e-3: (0.75, [0.70, 0.69, 0.71]), 3e-3: (0.68, [0.60, 0.58, 0.59])},
}
NESTED_CLAIMS = CLAIMS.replace('sweep = "deep"', 'sweep = ["q-f0", "q-f1", "q-f2", "q-f3", "q-f4"]')


def _nested_rows() -> list[dict]:
    rows = []
    for outer, candidates in NESTED_DEEP.items():
        data = {"test_folds": [outer], "folds": [f for f in range(5) if f != outer]}
        for lr, (val, tests) in candidates.items():
            for seed, test in enumerate(tests, start=1):
                cfg = TrainConfig.model_validate({"data": {"prepared": "p", **data}, "seed": seed, "model": TINY,
                                                  "optim": {"lr": lr}, "loss": {"family": "center", "center_lambda": 0.01,
                                                                                "center_lr": 0.5}})
                rows.append({**config_columns(cfg, n_folds=5, prepared_id="pid"), "sweep": f"q-f{outer}-confirm",
                             "source_sweep": f"q-f{outer}", "trial_id": f"q{outer}-{lr}-{seed}", "stage": "confirm",
                             "status": "completed", "val_ua": val, "val_wa": val, "test_ua": test})
    # the baseline: one-fold runs on each test fold (validation fold f+1), seeds 1-2
    for f in range(5):
        rows += [r | {"trial_id": f"b{f}-{r['seed']}"} for r in
                 _rows("baselines", {"name": "linear"}, "cross_entropy", {s: [v[f]] for s, v in BASE.items()},
                       {"fold": f}, 0.6)]
    return rows


def test_an_arm_of_one_held_out_sweep_per_outer_fold_is_nested_cross_validation_against_the_baseline():
    (claim,) = parse_claims(NESTED_CLAIMS)
    assert claim.across and claim.arm_a.sweeps == ("q-f0", "q-f1", "q-f2", "q-f3", "q-f4")
    r = evaluate_claims(pd.DataFrame(_nested_rows()), [claim]).iloc[0]

    # each outer fold's configuration is its own sweep's validation winner, its seeds averaged
    chosen = {f: max(c.values(), key=lambda vt: vt[0])[1] for f, c in NESTED_DEEP.items()}
    per_fold = [np.mean(chosen[f]) - np.mean([BASE[s][f] for s in BASE]) for f in range(5)]
    half = stats.t.ppf(0.975, 4) * np.std(per_fold, ddof=1) * math.sqrt(1 / 5 + 1 / 3)
    assert r["unit"] == "fold" and r["n_folds"] == 5 and r["n_pairs"] == 5
    assert r["mean_diff"] == pytest.approx(np.mean(per_fold))
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((np.mean(per_fold) - half, np.mean(per_fold) + half))
    # one configuration per outer fold (a config_key holds its fold design); a choice over all five
    # sweeps at once (lr 1e-3: mean validation 0.72 against 0.70) would give another mean above
    assert len(r["config_a"].split(",")) == 5
    # no outer fold's choice read its own test fold: the row is nested (a choice over all five
    # sweeps at once would have read every fold as validation)
    assert not r["selection_exposed"] and "NOT NESTED" not in r["note"]
    assert r["sweep"] == "q-f0,q-f1,q-f2,q-f3,q-f4 vs baselines"
    assert r["arm_a"] == "center (cnn_transformer) @q-f0,q-f1,q-f2,q-f3,q-f4"


def test_a_sweep_of_a_nested_arm_confirms_that_arm_and_leaves_the_others_to_their_sweeps():
    from search.analysis.claims import arms_of_sweep, claim_arms

    arms = claim_arms(parse_claims(NESTED_CLAIMS))
    mine, elsewhere = arms_of_sweep(arms, "q-f3")
    assert mine == [{"loss_family": "center", "model": "cnn_transformer", "sweep": "q-f3"}]
    assert [a["sweep"] for a in elsewhere] == ["baselines"]
    mine, elsewhere = arms_of_sweep(arms, "baselines")
    assert mine == [{"loss_family": "cross_entropy", "model": "linear", "sweep": "baselines"}] and len(elsewhere) == 1


@pytest.mark.parametrize("sweep, message", [
    ('["q-f0", "q-f0"]', "names a sweep twice"),
    ('["q-f0", ""]', "a sweep name cannot be empty"),
])
def test_a_nested_arm_names_each_sweep_once(sweep, message):
    from search.analysis.claims import ClaimsError

    with pytest.raises(ClaimsError, match=message):
        parse_claims(CLAIMS.replace('sweep = "deep"', f"sweep = {sweep}"))
