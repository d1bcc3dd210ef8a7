"""Which configurations `confirm` re-runs: top K overall, per group, or per claim arm."""
from __future__ import annotations

import pandas as pd

from search.runner import _choose_for_confirmation


def _trial(tid: str, key: str, family: str, frontend: str, val_ua: float, status: str = "completed") -> dict:
    return {"sweep": "s", "trial_id": tid, "stage": "search", "status": status, "config_key": key,
            "loss_family": family, "frontend": frontend, "val_ua": val_ua, "val_wa": val_ua,
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
    assert sorted(_choose_for_confirmation(TRIALS, 2, None)["trial_id"]) == ["a", "b"]


def test_per_group_takes_the_best_of_each_group_and_stopped_only_groups_too():
    chosen = _choose_for_confirmation(TRIALS, 1, ["loss_family", "frontend"])
    assert sorted(chosen["trial_id"]) == ["a", "c", "d", "g"]


def test_arms_keep_only_the_listed_groups_and_name_the_missing_ones(capsys):
    arms = [{"loss_family": "center", "frontend": "stft"}, {"loss_family": "cross_entropy", "frontend": "mel"},
            {"loss_family": "bce", "frontend": "mel"}]
    chosen = _choose_for_confirmation(TRIALS, 1, None, arms)
    assert sorted(chosen["trial_id"]) == ["a", "d"]
    assert "bce/mel" in capsys.readouterr().err


def test_confirmation_config_moves_to_the_fold_and_held_out_corpus():
    import json

    from search.runner import confirm_config
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
    import pytest

    from search.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["confirm", "results", "--folds", "0,a"])
    assert exc.value.code == 2
    assert "expected comma-separated fold numbers, e.g. 0,1,2; got '0,a'" in capsys.readouterr().err
