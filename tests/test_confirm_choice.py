"""Which configurations `confirm` re-runs: top K overall, per group, or per claim arm."""
from __future__ import annotations

import pandas as pd
import pytest

from search.analysis.confirmation import choose_for_confirmation


def _trial(tid: str, key: str, family: str, frontend: str, val_ua: float, status: str = "completed",
           model: str = "cnn_transformer") -> dict:
    return {"sweep": "s", "trial_id": tid, "stage": "search", "status": status, "config_key": key,
            "model": model, "loss_family": family, "frontend": frontend, "val_ua": val_ua, "val_wa": val_ua,
            "test_ua": 0.5 if status == "completed" else None, "test_wa": 0.5 if status == "completed" else None,
            "test_f1_macro": 0.5 if status == "completed" else None}


TRIALS = pd.DataFrame([
    _trial("a", "k1", "cross_entropy", "mel", 0.60),
    _trial("b", "k2", "cross_entropy", "mel", 0.55),
    _trial("c", "k3", "center", "mel", 0.50),
    _trial("d", "k4", "center", "stft", 0.45, "pruned"),   # ASHA stopped every center/stft trial
    _trial("e", "k5", "center", "stft", 0.40, "pruned"),
    _trial("f", "k6", "l1", "mel", 0.70, "pruned"),
    _trial("g", "k6", "l1", "mel", 0.30),                   # k6 completed once: its completed run counts
])


def test_top_k_overall_uses_completed_trials_only():
    assert sorted(choose_for_confirmation(TRIALS, 2, None)["trial_id"]) == ["a", "b"]


def test_per_group_takes_the_best_of_each_group_and_stopped_only_groups_too():
    chosen = choose_for_confirmation(TRIALS, 1, ["loss_family", "frontend"])
    assert sorted(chosen["trial_id"]) == ["a", "c", "d", "g"]


def test_arms_keep_only_the_listed_groups_and_name_the_missing_ones(capsys):
    arms = [{"loss_family": "center", "frontend": "stft"}, {"loss_family": "cross_entropy", "frontend": "mel"},
            {"loss_family": "bce", "frontend": "mel"}]
    chosen = choose_for_confirmation(TRIALS, 1, None, arms)
    assert sorted(chosen["trial_id"]) == ["a", "d"]
    assert "bce/mel" in capsys.readouterr().err


def test_claim_arms_confirm_the_claims_model_in_a_sweep_over_several_models(capsys):
    """The CNN-Transformer claims name their model: a better CNN-BiRNN configuration of the
    same loss and frontend must not take the CNN-Transformer arm's place; arms without a
    model (the center-loss claims) take each model's best."""
    from search.analysis.claims import claim_arms

    arms = claim_arms()
    assert {"loss_family": "l1", "frontend": "mel", "model": "cnn_transformer"} in arms
    assert {"loss_family": "center", "frontend": "mel"} in arms
    trials = pd.DataFrame([
        _trial("ce_birnn", "k1", "cross_entropy", "mel", 0.80, model="cnn_birnn"),
        _trial("ce_ct", "k2", "cross_entropy", "mel", 0.60),
        _trial("l1_birnn", "k3", "l1", "mel", 0.70, model="cnn_birnn"),
        _trial("l1_ct", "k4", "l1", "mel", 0.40),
        _trial("center_birnn", "k5", "center", "mel", 0.65, model="cnn_birnn"),
    ])
    chosen = set(choose_for_confirmation(trials, 1, None, arms)["trial_id"])
    assert {"ce_ct", "l1_ct", "ce_birnn", "center_birnn"} <= chosen
    assert "l1_birnn" not in chosen  # l1 is only in CNN-Transformer claims
    missing = set(capsys.readouterr().err.split("no trial for ")[1].split(";")[0].split(", "))
    assert "smooth_l1/mel/cnn_transformer" in missing and "center/stft" in missing
    assert "l1/mel/cnn_transformer" not in missing


def test_confirmation_config_moves_to_the_fold_and_held_out_corpus():
    import json

    from search.driver import confirm_config
    from ser_core.config import TrainConfig

    base = TrainConfig.model_validate({"data": {"prepared": "/x", "fold": 0, "train_corpora": ["a"],
                                                "eval_corpora": ["b"]}, "seed": 7})
    params = {"config_json": base.model_dump_json(), "seed": 2}
    same = confirm_config(params)
    assert same.seed == 2 and same.data.fold == 0 and same.data.train_corpora == ["a"]
    moved = confirm_config(params | {"fold": 2, "leave_out": "b"})
    assert moved.data.fold == 2 and moved.data.leave_out == "b"
    assert moved.data.train_corpora is None and moved.data.eval_corpora is None
    assert json.loads(params["config_json"])["data"]["fold"] == 0  # the stored config is untouched


def test_folds_flag_rejects_what_is_not_a_fold_list(capsys):
    from search.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["confirm", "results", "--folds", "0,a"])
    assert exc.value.code == 2
    assert "expected comma-separated fold numbers, e.g. 0,1,2; got '0,a'" in capsys.readouterr().err


def test_confirmation_seeds_skip_every_seed_the_search_used():
    from search.analysis.confirmation import confirmation_seeds

    searched = pd.DataFrame({"stage": ["search"] * 4 + ["confirm"],
                             "seed": [0, 0, 2, None, 1]})  # a confirm row's seed does not count
    assert confirmation_seeds(searched, 3) == [1, 3, 4]
    assert confirmation_seeds(searched, 0) == []
    assert confirmation_seeds(pd.DataFrame({"stage": ["search"], "seed": [None]}), 2) == [0, 1]


@pytest.mark.parametrize("flag", ["--top", "--seeds"])
def test_confirm_refuses_fewer_than_one_configuration_or_seed(tmp_path, flag, capsys):
    from search.cli import main
    from search.results import ResultsStore

    ResultsStore(tmp_path, "s").upsert_trial({"trial_id": "a", "status": "completed", "stage": "search"})
    try:
        code = main(["confirm", str(tmp_path), flag, "0"])
    except SystemExit as e:
        code = e.code
    assert code == 2
    assert f"{flag} must be at least 1, got 0" in capsys.readouterr().err


def test_a_cross_validated_configuration_is_confirmed_one_test_fold_per_run():
    from search.driver import confirm_config
    from ser_core.config import TrainConfig

    base = TrainConfig.model_validate({"data": {"prepared": "/x", "folds": [0, 1, 2]}, "seed": 7})
    params = {"config_json": base.model_dump_json(), "seed": 2}
    assert confirm_config(params).data.folds == [0, 1, 2]  # no --folds: the same cross-validated run
    moved = confirm_config(params | {"fold": 3})  # was a validation error: fold 3 vs folds [0, 1, 2]
    assert moved.data.fold == 3 and moved.data.folds is None


def test_every_fold_of_a_cross_validated_sweep_is_checked_before_ray_starts():
    from search.driver import SweepError
    from search.driver.sweep import check_protocol
    from ser_core.config import DataConfig

    class FiveFolds:
        def evaluation_split(self, fold, **_):
            if not 0 <= fold < 5:
                raise ValueError(f"fold {fold} out of range 0..4")

    check_protocol(FiveFolds(), DataConfig(prepared="/x", folds=[0, 4]))
    with pytest.raises(SweepError, match="fold 7 out of range"):
        check_protocol(FiveFolds(), DataConfig(prepared="/x", folds=[0, 7]))
