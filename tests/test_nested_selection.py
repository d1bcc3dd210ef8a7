"""Nested selection and the claims' units (issue 21): held-out test folds that no run trains or
validates on, the design recorded per trial (val_folds, test_folds, selection_exposed), claims
that pair a cross-validated run fold by fold and count one configuration as one arm, and the
corrected fold-level interval (Nadeau & Bengio 2003)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import ray
from pydantic import ValidationError
from scipy import stats

from ser_core.config import DataConfig, TrainConfig
from ser_core.corpus import PreparedCorpus
from ser_core.protocols import design_folds
from ser_core.train import FoldsResult, fit

from search.analysis.claims import Arm, Claim, design_interval, evaluate_claims, render_claims
from search.analysis.leaderboard import leaderboard
from search.results import config_columns
from search.driver import confirm_config
from search.driver.confirm import exposed_confirmations

TINY_MODEL = {"name": "cnn_transformer", "channels": [8, 16, 16, 16], "d_model": 32, "n_heads": 2,
              "n_layers": 1, "ff_dim": 64}


@pytest.fixture(scope="module")
def corpus(synthetic_prepared) -> PreparedCorpus:
    return PreparedCorpus.load(synthetic_prepared)


def _folds_of(corpus: PreparedCorpus, rows: np.ndarray) -> set[int]:
    return set(corpus.manifest["fold"].to_numpy()[rows].tolist())


# ------------------------------------------------------------------------ the split itself


def test_a_held_out_fold_is_only_ever_tested(corpus):
    """test_folds = [0]: every validation fold's split trains and validates without fold 0's
    speakers, and tests on fold 0's original clips only."""
    m = corpus.manifest
    held = m.index[(m["fold"] == 0) & ~m["augmented"]].to_numpy()
    for val in (1, 2):
        split = corpus.evaluation_split(val, test_folds=[0])
        assert _folds_of(corpus, split.rows["train"]) == {1, 2} - {val}
        assert _folds_of(corpus, split.rows["val"]) == {val}
        assert sorted(split.rows["test"].tolist()) == sorted(held.tolist())
        speakers = {k: set(m["speaker"].to_numpy()[v]) for k, v in split.rows.items()}
        assert not speakers["test"] & (speakers["train"] | speakers["val"])
    with pytest.raises(ValueError, match="both the validation fold and a held-out test fold"):
        corpus.evaluation_split(0, test_folds=[0])
    with pytest.raises(ValueError, match=r"test_folds \[7\] out of range"):
        corpus.evaluation_split(1, test_folds=[7])


def test_impossible_designs_are_refused_naming_the_key():
    for bad, message in [
        ({"folds": [0, 1], "test_folds": [1]}, r"data.folds and data.test_folds share fold\(s\) \[1\]"),
        ({"test_folds": [0]}, r"data.fold and data.test_folds share fold\(s\) \[0\]"),  # fold defaults to 0
        ({"folds": [1], "test_folds": [0]}, "at least 2"),
        ({"folds": [1, 2], "test_folds": [0, 0]}, "lists a fold twice"),
        ({"folds": [1, 2], "test_folds": [0], "leave_out": "emodb"}, "within-corpus protocol"),
    ]:
        with pytest.raises(ValidationError, match=message):
            DataConfig(prepared="p", **bad)
    ok = DataConfig(prepared="p", folds=[1, 2], test_folds=[0])
    assert ok.fold == 1 and ok.protocol_args()["test_folds"] == [0]
    assert "test_folds" not in DataConfig(prepared="p").protocol_args()  # older callers see the old keys


def test_a_sweep_asking_for_an_impossible_design_exits_2_before_ray(synthetic_prepared, tmp_path, capsys):
    from search.cli import main
    from sweep_helpers import write_sweep

    path = write_sweep(tmp_path / "s.toml", synthetic_prepared, name="bad", num_samples=1, max_epochs=1,
                       families=("cross_entropy",))
    path.write_text(path.read_text().replace("max_train_clips = 96", "max_train_clips = 96\nfolds = [0, 1]\n"
                                                                     "test_folds = [1]"))
    assert main(["sweep", str(path), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "data.folds and data.test_folds share fold(s) [1]" in err
    assert not ray.is_initialized()
    assert not (tmp_path / "r" / "bad").exists()


# ------------------------------------------------------------------- a nested trial trains


def test_nested_trial_tests_every_fold_run_on_the_held_out_fold(corpus, synthetic_prepared):
    cfg = TrainConfig.model_validate({
        "data": {"prepared": str(synthetic_prepared), "folds": [1, 2], "test_folds": [0], "max_train_clips": 48},
        "model": TINY_MODEL, "frontend": {"n_mels": 32}, "optim": {"epochs": 1, "batch_size": 32},
        "seed": 3, "device": "cpu"})
    result = fit(cfg, corpus)
    assert isinstance(result, FoldsResult) and result.folds == (1, 2) and result.test_folds == (0,)
    n_held = len(corpus.evaluation_split(1, test_folds=[0]).rows["test"])
    n_val = {f: len(corpus.evaluation_split(f, test_folds=[0]).rows["val"]) for f in (1, 2)}
    for f, run in zip((1, 2), result.per_fold):
        assert run.test.confusion.sum() == n_held  # every run is tested on fold 0, and only on it
        assert run.val.confusion.sum() == n_val[f]  # and validated on its own selection fold
    m = result.metrics()
    # k models on ONE test set: no fold-level interval
    assert math.isnan(m["test_ua_ci95_low"]) and math.isnan(m["test_ua_ci95_high"])
    per = result.fold_metrics()
    assert per["test_ua_folds"] == [r.test.ua for r in result.per_fold]
    assert per["test_wa_folds"] == [r.test.wa for r in result.per_fold]


# ------------------------------------------------------------------------ the design columns


def _cfg(data: dict, seed: int = 0, family: str = "cross_entropy", **loss) -> TrainConfig:
    return TrainConfig.model_validate({"data": {"prepared": "p", **data}, "seed": seed, "model": TINY_MODEL,
                                       "loss": {"family": family, **loss}})


@pytest.mark.parametrize("data, val, test, exposed, trained, fold", [
    ({"fold": 0}, [1], [0], False, 3, 0),                                   # one fold: val f+1
    ({"fold": 4}, [0], [4], False, 3, 4),                                   # wraps around
    ({"folds": [0, 1, 2]}, [1, 2, 3], [0, 1, 2], True, 3, None),            # the older CV design leaks
    ({"folds": [0, 2]}, [1, 3], [0, 2], False, 3, None),                    # ... unless no test fold validates
    ({"folds": [1, 2, 3, 4], "test_folds": [0]}, [1, 2, 3, 4], [0], False, 3, 0),  # nested
    ({"folds": [2, 3, 4], "test_folds": [0, 1]}, [2, 3, 4], [0, 1], False, 2, None),
])
def test_each_row_records_what_selection_read_and_what_it_reports(data, val, test, exposed, trained, fold):
    cols = config_columns(_cfg(data), n_folds=5)
    assert cols["val_folds"] == val and cols["test_folds"] == test
    assert cols["selection_exposed"] is exposed and cols["n_train_folds"] == trained
    assert cols["fold"] == fold  # a trial with several test folds has no single fold


def test_a_confirmation_on_a_fold_the_search_validated_on_is_marked():
    searched = _cfg({"fold": 0})  # validated on fold 1
    config_json = searched.model_dump_json()
    for fold, exposed in ((0, False), (1, True), (2, False)):
        run = confirm_config({"config_json": config_json, "seed": 5, "fold": fold})
        assert config_columns(run, n_folds=5, selected_by=searched)["selection_exposed"] is exposed, fold
    assert exposed_confirmations([config_json], [0, 1, 2], 5) == [1]
    nested = _cfg({"folds": [1, 2, 3, 4], "test_folds": [0]})
    as_searched = confirm_config({"config_json": nested.model_dump_json(), "seed": 5})
    assert as_searched.data.test_folds == [0]  # re-run as designed: still nested
    assert config_columns(as_searched, n_folds=5, selected_by=nested)["selection_exposed"] is False
    assert exposed_confirmations([nested.model_dump_json()], None, 5) == []
    assert exposed_confirmations([nested.model_dump_json()], [0, 3], 5) == [3]
    assert exposed_confirmations([_cfg({"folds": [0, 1, 2]}).model_dump_json()], None, 5) == [1, 2]


# ----------------------------------------------------------------------------- the claims

CLAIM = Claim(claim="c", statement="center beats cross-entropy", arm_a=Arm(loss_family="center"),
              arm_b=Arm(loss_family="cross_entropy"), stated_effect=0.0, metrics=("test_ua",))


def _row(cfg: TrainConfig, trial: str, test_ua: float, *, selected_by: TrainConfig | None = None,
         per_fold: list[float] | None = None) -> dict:
    cols = config_columns(cfg, n_folds=5, prepared_id="pid", selected_by=selected_by)
    row = {**cols, "sweep": "s-confirm", "source_sweep": "s", "trial_id": trial, "stage": "confirm",
           "status": "completed", "val_ua": 0.5, "val_wa": 0.5, "test_ua": test_ua, "frontend": "mel"}
    if per_fold is not None:
        row |= {"test_ua_folds": per_fold, "test_ua": float(np.mean(per_fold))}
    return row


def test_claims_pair_a_cross_validated_run_fold_by_fold_not_its_mean_against_one_fold():
    """The issue's constructed case: center = cross-entropy + 0.01 on every fold, per-fold test
    UA 0.80 / 0.50 / 0.50. Center was confirmed with cross-validated runs (their mean is 0.61),
    cross-entropy with one-fold runs. Pairing the mean with fold 0 read -0.19, "opposite"."""
    rows = []
    for seed, noise in ((0, 0.0), (1, 0.004)):
        cv = _cfg({"folds": [0, 1, 2]}, seed, "center", center_lambda=0.01, center_lr=0.5)
        rows.append(_row(cv, f"cv{seed}", 0, per_fold=[0.81 + noise, 0.51 - noise, 0.51 + 2 * noise]))
        for f, ua in zip((0, 1, 2), (0.80, 0.50, 0.50)):
            rows.append(_row(_cfg({"fold": f}, seed), f"ce{seed}{f}", ua + noise / 2))
    table = evaluate_claims(pd.DataFrame(rows), [CLAIM])
    r = table.iloc[0]
    assert r["n_folds"] == 3 and r["n_pairs"] == 6 and r["unit"] == "fold"
    # seed 0: +0.01 on every fold; seed 1: +0.012, +0.004, +0.016 (fold means 0.011, 0.007, 0.013)
    assert r["mean_diff"] == pytest.approx(np.mean([0.011, 0.007, 0.013]), abs=1e-9)
    assert r["verdict"] != "opposite"
    assert r["selection_exposed"]  # folds 1 and 2 were validation folds of the CV runs
    assert "NOT NESTED" in r["note"] and "NOT NESTED" in render_claims(table)


def test_a_configuration_confirmed_both_ways_is_one_arm_covering_every_fold():
    """Center confirmed by cross-validated runs on folds 0-2 and by one-fold runs on fold 3:
    one configuration with units on 4 folds (it was two keys, and the claim took one of them)."""
    rows = []
    for seed in (0, 1):
        center = dict(family="center", center_lambda=0.01, center_lr=0.5)
        rows.append(_row(_cfg({"folds": [0, 1, 2]}, seed, **center), f"cv{seed}", 0,
                         per_fold=[0.62 + seed / 100, 0.55, 0.58 - seed / 50]))
        rows.append(_row(_cfg({"fold": 3}, seed, **center), f"one{seed}", 0.6 + seed / 100))
        for f, ua in zip(range(4), (0.60, 0.54, 0.57, 0.59)):
            rows.append(_row(_cfg({"fold": f}, seed), f"ce{seed}{f}", ua))
    r = evaluate_claims(pd.DataFrame(rows), [CLAIM]).iloc[0]
    assert r["n_folds"] == 4 and r["n_pairs"] == 8
    # one arm, named by the keys its rows recorded (the cross-validated runs' and the one-fold runs')
    keys = {_row(_cfg({"fold": 3}, 0, **center), "x", 0)["config_key"],
            _row(_cfg({"folds": [0, 1, 2]}, 0, **center), "x", 0)["config_key"]}
    assert len(keys) == 2 and set(r["config_a"].split(",")) == keys


def test_the_fold_level_interval_is_corrected_for_overlapping_training_sets():
    diffs = [0.031, 0.012, -0.004, 0.026, 0.018]
    folds = list(range(5))
    plain = design_interval(folds, [1] * 5, diffs)
    corrected = design_interval(folds, [1] * 5, diffs, test_train_ratio=1 / 3)
    k, ratio = 5, 1 / 3
    half_plain = (plain.ci_high - plain.ci_low) / 2
    half = (corrected.ci_high - corrected.ci_low) / 2
    assert half >= math.sqrt(1 + k * ratio) * half_plain * (1 - 1e-12)
    assert half == pytest.approx(math.sqrt(1 + k * ratio) * half_plain, rel=1e-12)  # 1.633 x
    se = np.std(diffs, ddof=1) * math.sqrt(1 / k + ratio)
    assert corrected.p_value == pytest.approx(2 * stats.t.sf(abs(np.mean(diffs)) / se, k - 1), rel=1e-12)
    assert corrected.test_train_ratio == ratio and plain.test_train_ratio is None
    # one fold: seeds are the units, no correction, and the row says what it is conditional on
    one = design_interval([0] * 3, [1, 2, 3], [0.01, 0.02, 0.04], test_train_ratio=1 / 3)
    assert one.test_train_ratio is None


def test_claim_rows_apply_the_correction_and_label_one_fold_rows():
    rows = []
    for seed in (0, 1, 2):
        for f, (a, b) in enumerate(((0.62, 0.60), (0.55, 0.56), (0.58, 0.55), (0.61, 0.58), (0.57, 0.57))):
            rows.append(_row(_cfg({"fold": f}, seed, "center", center_lambda=0.01, center_lr=0.5), f"a{seed}{f}",
                             a + seed / 1000))
            rows.append(_row(_cfg({"fold": f}, seed), f"b{seed}{f}", b))
    r = evaluate_claims(pd.DataFrame(rows), [CLAIM]).iloc[0]
    assert r["n_folds"] == 5 and r["test_train_ratio"] == pytest.approx(1 / 3)
    fold_means = [0.02 + 0.001, -0.01 + 0.001, 0.03 + 0.001, 0.03 + 0.001, 0.0 + 0.001]
    t = stats.t.ppf(0.975, 4)
    half = t * np.std(fold_means, ddof=1) * math.sqrt(1 / 5 + 1 / 3)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((np.mean(fold_means) - half, np.mean(fold_means) + half))
    assert "corrected" in r["scope"] and not r["selection_exposed"]

    one = evaluate_claims(pd.DataFrame([x for x in rows if x["fold"] == 2]), [CLAIM])
    assert one.iloc[0]["scope"] == "conditional on these test speakers (test fold 2)"
    assert json.loads(render_claims(one, "json"))[0]["scope"].startswith("conditional on these test speakers")
    assert "conditional on these test speakers" in render_claims(one)


def test_leaderboard_marks_test_figures_whose_folds_took_part_in_selection():
    rows = [_row(_cfg({"folds": [0, 1, 2]}, 0), "cv", 0, per_fold=[0.6, 0.5, 0.5]),
            _row(_cfg({"folds": [1, 2, 3, 4], "test_folds": [0]}, 0), "nested", 0.55)]
    for r in rows:
        r |= {"stage": "search", "sweep": "s", "val_wa": 0.5, "test_wa": 0.5, "test_f1_macro": 0.5}
    board = leaderboard(pd.DataFrame(rows)).set_index("config_key")
    cv_key, nested_key = rows[0]["config_key"], rows[1]["config_key"]
    assert board.loc[cv_key, "test_exposed"] == "yes" and board.loc[cv_key, "test_folds"] == "0+1+2"
    assert board.loc[nested_key, "test_exposed"] == "no" and board.loc[nested_key, "test_folds"] == "0"


def test_design_folds_matches_the_protocol_rule():
    assert design_folds(5, 3) .val_folds == (4,)
    assert design_folds(5, 1, [1, 4]).val_folds == (0, 2)
    assert design_folds(5, 1, [1, 2], [0]).exposed() == ()
    assert design_folds(5, 0, [0, 1, 2]).exposed() == (1, 2)
    assert design_folds(5, 0, cross_corpus=True).test_folds is None


# ------------------------------------------------------------- review findings, each pinned


def _single(fold: int, seed: int, lr: float, **loss) -> TrainConfig:
    cfg = _cfg({"fold": fold}, seed, **loss)
    return cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"lr": lr})})


def test_choosing_among_confirmed_candidates_on_their_validation_folds_is_exposure():
    """Searched on fold 0 (validated on 1), confirmed with --folds 0,2,3,4 and two candidates per
    arm: the claims choose each arm's configuration by validation UA over folds 1, 3, 4, 0, so
    test folds 0, 3 and 4 took part in that choice. With one candidate per arm they did not."""
    center = dict(family="center", center_lambda=0.01, center_lr=0.5)
    searched = _cfg({"fold": 0})

    def rows(candidates: tuple[float, ...]) -> list[dict]:
        out = []
        for seed in (1, 2):
            for f in (0, 2, 3, 4):
                for i, lr in enumerate(candidates):
                    for fam, loss, ua in (("c", center, 0.60), ("e", {}, 0.55)):
                        cfg = _single(f, seed, lr, **loss)
                        out.append(_row(cfg, f"{fam}{i}{seed}{f}", ua + f / 100 + seed / 1000, selected_by=searched)
                                   | {"val_ua": 0.5 + i / 10})
        return out

    one = evaluate_claims(pd.DataFrame(rows((1e-3,))), [CLAIM]).iloc[0]
    assert one["n_folds"] == 4 and not one["selection_exposed"]
    two = evaluate_claims(pd.DataFrame(rows((1e-3, 2e-3))), [CLAIM]).iloc[0]
    assert two["n_folds"] == 4 and two["selection_exposed"] and "NOT NESTED" in two["note"]


def test_rows_without_design_columns_read_their_design_from_the_config():
    """Rows written before the design columns (or by a recorder that knew no fold count): a
    nested run is still one unit on its held-out fold, not one unit per selection fold, and a
    row of the older CV design is 'nesting unknown', never silently nested."""
    nested = _cfg({"folds": [1, 2, 3, 4], "test_folds": [0]}, 0, "center", center_lambda=0.01, center_lr=0.5)
    old = ("val_folds", "test_folds", "selection_exposed", "n_train_folds")
    rows = [{k: v for k, v in _row(nested, "n0", 0.6).items() if k not in old},
            {k: v for k, v in _row(_cfg({"fold": 0}, 0), "e0", 0.5).items() if k not in old},
            {k: v for k, v in _row(_cfg({"folds": [1, 2, 3, 4], "test_folds": [0]}, 1, "center", center_lambda=0.01,
                                        center_lr=0.5), "n1", 0.62).items() if k not in old},
            {k: v for k, v in _row(_cfg({"fold": 0}, 1), "e1", 0.52).items() if k not in old}]
    r = evaluate_claims(pd.DataFrame(rows), [CLAIM]).iloc[0]
    assert r["n_folds"] == 1 and r["n_pairs"] == 2 and r["scope"].startswith("conditional on these test speakers")

    legacy = [{k: v for k, v in _row(_cfg({"folds": [0, 1, 2]}, s, "center", center_lambda=0.01, center_lr=0.5),
                                      f"cv{s}", 0, per_fold=[0.6, 0.5, 0.55 + s / 100]).items() if k not in old}
              for s in (0, 1)]
    legacy += [{k: v for k, v in _row(_cfg({"fold": f}, s), f"e{s}{f}", 0.5).items() if k not in old}
               for s in (0, 1) for f in (0, 1, 2)]
    r = evaluate_claims(pd.DataFrame(legacy), [CLAIM]).iloc[0]
    assert r["n_folds"] == 3 and "nesting unknown" in r["scope"]


def test_units_whose_test_folds_overlap_are_not_counted_twice():
    """A configuration confirmed nested (folds 3 and 4 held out together) and with --folds 3,4:
    the joint unit would count the speakers of folds 3 and 4 twice; the finer units are kept."""
    center = dict(family="center", center_lambda=0.01, center_lr=0.5)
    rows = []
    for seed in (0, 1):
        nested_a = _cfg({"folds": [0, 1, 2], "test_folds": [3, 4]}, seed, **center)
        nested_b = _cfg({"folds": [0, 1, 2], "test_folds": [3, 4]}, seed)
        rows += [_row(nested_a, f"na{seed}", 0.6), _row(nested_b, f"nb{seed}", 0.55)]
        for f in (3, 4):
            rows += [_row(_cfg({"fold": f}, seed, **center), f"a{seed}{f}", 0.6 + f / 100 + seed / 500),
                     _row(_cfg({"fold": f}, seed), f"b{seed}{f}", 0.55)]
    r = evaluate_claims(pd.DataFrame(rows), [CLAIM]).iloc[0]
    assert r["n_folds"] == 2 and r["n_pairs"] == 4
    assert "left out" in r["note"]


def test_named_corpora_on_both_sides_keep_the_fold_design():
    """eval_corpora naming the training corpus is within-corpus: its rows record test folds and
    exposure; only evaluation corpora never trained on are whole-corpus tests."""
    within = _cfg({"fold": 0, "train_corpora": ["a", "b"], "eval_corpora": ["a"]})
    cols = config_columns(within, corpora=["a", "b"], n_folds=5)
    assert cols["test_folds"] == [0] and cols["val_folds"] == [1] and cols["n_train_folds"] == 3
    moved = confirm_config({"config_json": within.model_dump_json(), "seed": 1, "fold": 1})
    assert config_columns(moved, corpora=["a", "b"], n_folds=5, selected_by=within)["selection_exposed"] is True
    assert exposed_confirmations([within.model_dump_json()], [1, 2], 5, ["a", "b"]) == [1]
    across = _cfg({"fold": 0, "train_corpora": ["a"], "eval_corpora": ["b"]})
    assert config_columns(across, corpora=["a", "b"], n_folds=5)["test_folds"] is None
    assert exposed_confirmations([across.model_dump_json()], [1], 5, ["a", "b"]) == []
