"""Ablation claims: arms that differ by a training-recipe setting (read from config_json),
confirmed with `confirm --for-claims --claims FILE` and judged by `ser-search claims`."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from search.analysis.claims import Arm, ClaimsError, claim_arms, evaluate_claims, parse_claims
from search.analysis.claims.settings import setting_equal, with_setting_columns
from search.cli import main
from search.analysis.confirmation import choose_for_confirmation

ABLATION = """
[[claim]]
id = "mixup"
statement = "mixup helps the recipe"
a = { loss_family = "cross_entropy", settings = { mixup_alpha = 0.2, ema_decay = 0.99 } }
b = { loss_family = "cross_entropy", settings = { mixup_alpha = 0.0, ema_decay = 0.99 } }
metric = "test_ua"
effect = 0.0
"""


def _config(mixup: float, ema: float, lr: float = 1e-3) -> str:
    # the shape of a recorded TrainConfig dump: nested sections
    return json.dumps({"loss": {"family": "cross_entropy"}, "augment": {"mixup_alpha": mixup},
                       "optim": {"ema_decay": ema, "lr": lr}, "seed": 0})


def _row(key: str, mixup: float, ema: float, seed: int, test_ua: float, val_ua: float = 0.6, fold: int = 0,
         stage: str = "confirm", lr: float = 1e-3) -> dict:
    return {"sweep": "s-confirm" if stage == "confirm" else "s", "source_sweep": "s", "stage": stage,
            "status": "completed", "trial_id": f"{key}-{seed}-{fold}-{stage}", "config_key": key, "prepared_id": "p",
            "model": "cnn_transformer", "loss_family": "cross_entropy", "frontend": "mel", "seed": seed,
            "fold": fold, "val_ua": val_ua, "val_wa": val_ua, "test_ua": test_ua, "test_wa": test_ua,
            "config_json": _config(mixup, ema, lr)}


def test_settings_parse_into_the_arm_and_its_label():
    (claim,) = parse_claims(ABLATION)
    assert claim.arm_a == Arm("cross_entropy", settings=(("mixup_alpha", 0.2), ("ema_decay", 0.99)))
    assert claim.arm_a.label() == "cross_entropy [mixup_alpha=0.2, ema_decay=0.99]"
    assert claim_arms([claim]) == [{"loss_family": "cross_entropy", "mixup_alpha": 0.2, "ema_decay": 0.99},
                                   {"loss_family": "cross_entropy", "mixup_alpha": 0.0, "ema_decay": 0.99}]


@pytest.mark.parametrize(("text", "expected"), [
    (ABLATION.replace("mixup_alpha = 0.0", "mixup_alpha = 0.2"), "are the same"),
    # b names no value for mixup_alpha: a's runs (mixup 0.2, ema 0.99) are also b's
    (ABLATION.replace("mixup_alpha = 0.0, ", ""), "could match the same runs"),
    (ABLATION.replace("mixup_alpha = 0.2", "mixup_alfa = 0.2"), r"settings\.mixup_alfa: unknown axis"),
    (ABLATION.replace("mixup_alpha = 0.2", "seed = 1"), "runs pair by seed"),
    (ABLATION.replace("mixup_alpha = 0.2", "frontend = 'mel'"), "the arm's .or the claim's. frontend"),
])
def test_bad_settings_are_refused(text, expected):
    with pytest.raises(ClaimsError, match=expected):
        parse_claims(text, source="abl.toml")


def test_setting_columns_come_from_config_json_and_match_numerically():
    df = pd.DataFrame([_row("k1", 0.2, 0.99, 1, 0.7), _row("k2", 0.0, 0.99, 1, 0.6)])
    df.loc[2] = dict(df.loc[1], trial_id="old", config_json=None)
    out = with_setting_columns(df, ["mixup_alpha", "optim.ema_decay", "lr"])
    assert out["mixup_alpha"].tolist()[:2] == [0.2, 0.0] and pd.isna(out["mixup_alpha"].iloc[2])
    assert out["optim.ema_decay"].tolist()[:2] == [0.99, 0.99]
    assert "lr" not in df.columns and out["lr"].tolist()[:2] == [1e-3, 1e-3]
    assert setting_equal(0, 0.0) and setting_equal(0.1 + 0.2, 0.3) and not setting_equal(None, 0.0)
    assert not setting_equal(True, 1) and not setting_equal(0.2, "0.2")


def test_an_ablation_pairs_the_two_settings_by_seed_and_fold():
    diffs = [0.03, 0.05, 0.04, 0.06]
    rows = []
    for seed, d in enumerate(diffs, start=1):
        rows.append(_row("with", 0.2, 0.99, seed, 0.60 + 0.01 * seed + d))
        rows.append(_row("without", 0.0, 0.99, seed, 0.60 + 0.01 * seed))
        # a third configuration: mixup off AND another EMA; it must belong to neither arm
        rows.append(_row("other", 0.0, 0.0, seed, 0.99, val_ua=0.99))
    table = evaluate_claims(pd.DataFrame(rows), parse_claims(ABLATION))
    (row,) = table.to_dict("records")
    assert row["config_a"] == "with" and row["config_b"] == "without"
    assert row["n_pairs"] == 4 and row["mean_diff"] == pytest.approx(sum(diffs) / 4)
    assert row["verdict"] == "exceeds E" and row["arm_b"] == "cross_entropy [mixup_alpha=0.0, ema_decay=0.99]"


def test_confirm_for_claims_takes_the_best_search_trial_of_each_settings_arm(capsys):
    trials = pd.DataFrame([
        _row("with-a", 0.2, 0.99, 0, 0.5, val_ua=0.70, stage="search"),
        _row("with-b", 0.2, 0.99, 0, 0.5, val_ua=0.65, stage="search", lr=3e-3),
        _row("without", 0.0, 0.99, 0, 0.5, val_ua=0.60, stage="search"),
        _row("no-ema", 0.0, 0.0, 0, 0.5, val_ua=0.90, stage="search"),
    ])
    chosen = choose_for_confirmation(trials, 1, None, claim_arms(parse_claims(ABLATION)))
    assert sorted(chosen["config_key"]) == ["with-a", "without"]
    assert list(chosen.columns) == list(trials.columns)  # the setting columns are not carried out


def test_confirm_claims_file_needs_for_claims_and_a_valid_file(tmp_path: Path, capsys):
    path = tmp_path / "abl.toml"
    path.write_text(ABLATION)
    assert main(["confirm", str(tmp_path), "--claims", str(path)]) == 2
    assert "add --for-claims" in capsys.readouterr().err
    path.write_text(ABLATION.replace("effect", "efect"))
    assert main(["confirm", str(tmp_path), "--for-claims", "--claims", str(path)]) == 2
    assert "efect: unknown key" in capsys.readouterr().err
