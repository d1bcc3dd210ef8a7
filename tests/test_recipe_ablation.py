"""benchmarks/recipe_ablation.py's pure logic: the arms are the base with exactly one element
switched off, the run order keeps pairs complete, the claims file it writes is a valid claims
file comparing those arms, and confirmed rows are matched back to their arm. No Ray, no training."""
from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from search.analysis.claims.arms import evaluate_claims
from search.analysis.claims.file import load_claims, parse_claims
from ser_core.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("recipe_ablation", ROOT / "benchmarks" / "recipe_ablation.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["recipe_ablation"] = mod
    spec.loader.exec_module(mod)
    return mod


ra = _module()


def _diff(a: dict, b: dict, prefix: str = "") -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out |= _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out[f"{prefix}{k}"] = (va, vb)
    return out


def test_each_arm_is_the_base_with_only_its_element_switched_off():
    before = copy.deepcopy(ra.BASE)
    arms = ra.ablation_arms(ra.BASE, list(ra.ELEMENTS))
    assert list(arms) == [ra.BASE_ARM] + [f"no_{e}" for e in ra.ELEMENTS]
    assert arms[ra.BASE_ARM] == ra.BASE
    for element, switch in ra.ELEMENTS.items():
        changed = _diff(ra.BASE, arms[f"no_{element}"])
        assert set(changed) == set(switch), element
        assert all(changed[k][1] == v for k, v in switch.items())
    # each arm is a valid train config, and switching off means the train config's default
    defaults = TrainConfig.model_validate({"data": {"prepared": "x"}}).model_dump()
    for element, switch in ra.ELEMENTS.items():
        TrainConfig.model_validate({**arms[f"no_{element}"], "data": {"prepared": "x"}})
        for dotted, value in switch.items():
            node = defaults
            for part in dotted.split("."):
                node = node[part]
            assert node == value, dotted
    assert before == ra.BASE  # building the arms leaves the base alone
    assert ra.BASE["augment"]["mixup_alpha"] > 0


def test_an_element_already_off_or_unknown_is_refused():
    base = copy.deepcopy(ra.BASE)
    base["augment"]["mixup_alpha"] = 0.0
    with pytest.raises(ValueError, match="already off"):
        ra.ablation_arms(base, ["mixup"])
    with pytest.raises(KeyError, match="unknown element"):
        ra.ablation_arms(ra.BASE, ["dropout"])
    del base["optim"]["ema_decay"]
    with pytest.raises(KeyError, match="does not set"):
        ra.ablation_arms(base, ["ema"])


def test_run_order_is_seed_major_so_finished_seeds_hold_every_arm_on_every_fold():
    arms = ra.ablation_arms(ra.BASE, ["mixup", "ema"])
    order = ra.unit_order(arms, [1, 2], [0, 1, 2])
    assert len(order) == len(set(order)) == 3 * 2 * 3
    first_seed = order[: 3 * 3]
    assert {s for _, s, _ in first_seed} == {1}
    assert {(a, f) for a, _, f in first_seed} == {(a, f) for a in arms for f in (0, 1, 2)}


def test_claims_file_compares_the_base_with_each_ablated_arm():
    claims = parse_claims(ra.claims_toml(["mixup", "speaker_norm"]))
    assert [(c.claim, c.arm_a.loss_family, c.stated_effect) for c in claims] == [
        ("mixup", "cross_entropy", 0.0), ("speaker_norm", "cross_entropy", 0.0)]
    a, b = dict(claims[0].arm_a.settings), dict(claims[0].arm_b.settings)
    assert a["augment.mixup_alpha"] == 0.2 and b["augment.mixup_alpha"] == 0.0
    assert {k for k in a if a[k] != b[k]} == {"augment.mixup_alpha"}  # only the element differs
    b2 = dict(claims[1].arm_b.settings)
    assert b2["normalization"] == "global" and b2["augment.mixup_alpha"] == 0.2
    shipped = load_claims(ROOT / "docs" / "recipe_ablation_claims.toml")
    assert [c.claim for c in shipped] == list(ra.DEFAULT_ELEMENTS)
    assert (ROOT / "docs" / "recipe_ablation_claims.toml").read_text() == ra.claims_toml(ra.DEFAULT_ELEMENTS) + "\n"


def _rows(arms: dict, values: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for name, raw in arms.items():
        for i, (fold, seed) in enumerate([(f, s) for f in range(3) for s in (1, 2)]):
            cfg = TrainConfig.model_validate({**raw, "seed": seed, "data": {"prepared": "/p", "fold": fold}})
            rows.append({"sweep": ra.SWEEP_NAME, "source_sweep": ra.LINEAGE, "stage": "confirm",
                         "status": "completed", "trial_id": f"{name}-{i}", "config_key": name,
                         "config_json": cfg.model_dump_json(), "loss_family": "cross_entropy", "frontend": "mel",
                         "model": "cnn_transformer", "seed": seed, "fold": fold, "prepared_id": "p",
                         "val_ua": 0.5, "val_wa": 0.5, "test_ua": values[name][i], "test_wa": values[name][i],
                         "train_corpora": "emodb", "eval_corpora": "emodb"})
    return pd.DataFrame(rows)


def test_rows_are_matched_to_their_arm_and_the_claims_pair_them():
    arms = ra.ablation_arms(ra.BASE, ["mixup", "speaker_norm"])
    values = {"recipe": [0.70, 0.72, 0.60, 0.61, 0.80, 0.79],
              "no_mixup": [0.70, 0.72, 0.60, 0.61, 0.80, 0.79],
              "no_speaker_norm": [0.60, 0.61, 0.52, 0.50, 0.70, 0.69]}
    trials = _rows(arms, values)
    trials["config_key"] = "same-for-all"  # matching must not rely on it
    tagged = ra.arm_of_rows(trials, arms)
    assert tagged == [name for name in arms for _ in range(6)]
    trials["config_key"] = tagged
    # the claims read each row's recipe settings from config_json: no relabelling of any column
    table = evaluate_claims(trials, parse_claims(ra.claims_toml(["mixup", "speaker_norm"])))
    row = table[(table["claim"] == "speaker_norm") & (table["metric"] == "test_ua")].iloc[0]
    assert (row["n_folds"], row["n_seeds"], row["unit"]) == (3, 2, "fold")
    assert row["mean_diff"] == pytest.approx((0.105 + 0.095 + 0.10) / 3)
    assert row["verdict"] == "exceeds E"
    same = table[(table["claim"] == "mixup") & (table["metric"] == "test_ua")].iloc[0]
    assert same["mean_diff"] == 0.0 and same["verdict"] == "inconclusive"


def test_a_row_of_another_configuration_gets_no_arm():
    arms = ra.ablation_arms(ra.BASE, ["mixup"])
    trials = _rows(arms, {"recipe": [0.5] * 6, "no_mixup": [0.5] * 6})
    raw = json.loads(trials.loc[0, "config_json"])
    raw["optim"]["lr"] = 0.5
    trials.loc[0, "config_json"] = json.dumps(raw)
    assert ra.arm_of_rows(trials, arms)[0] is None


def test_a_batch_runs_on_a_real_local_ray_as_confirmation_runs_of_its_lineage(small_prepared, tmp_path):
    """The benchmark's own runner, end to end: its driver imports (which the layout redesign had
    broken without any test noticing), a real Tune grid, and rows recorded as the lineage's
    confirmation runs, each tested on its own fold."""
    import ray
    from ray import cloudpickle

    from search.results import read_trials

    # run as a script, the module is __main__ and Ray's workers get it by value; loaded here from
    # its path it is not importable on a worker, so it travels by value the same way
    cloudpickle.register_pickle_by_value(ra)

    tiny = copy.deepcopy(ra.BASE) | {"variable_length": False}
    tiny["model"] |= {"channels": [8, 8, 8], "d_model": 16, "n_heads": 2, "ff_dim": 32}
    tiny["optim"] |= {"epochs": 2, "warmup_epochs": 0.0}
    try:
        ra.run(small_prepared, tmp_path, "abl-confirm", {"recipe": tiny}, [1], [0, 1], num_cpus=2,
               max_concurrent=2, lineage="abl")
    finally:
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(ra)
    trials = read_trials(tmp_path / "abl-confirm")
    assert sorted(trials["fold"]) == [0, 1] and set(trials["status"]) == {"completed"}
    assert set(trials["stage"]) == {"confirm"} and set(trials["source_sweep"]) == {"abl"}
    # the tables are whole files when the batch returns, as other tools read them
    assert not list((tmp_path / "abl-confirm").glob("parts/*/*.parquet"))
    whole = pd.read_parquet(tmp_path / "abl-confirm" / "trials.parquet")
    assert sorted(whole["trial_id"]) == sorted(trials["trial_id"])
    assert len(pd.read_parquet(tmp_path / "abl-confirm" / "epochs.parquet")) == 2 * 2  # 2 runs x 2 epochs
