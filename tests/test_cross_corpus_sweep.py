"""Cross-corpus protocols through the whole service on a real local Ray: a sweep trained on the
synthetic corpus and tested on the real EmoDB clips, its Parquet rows and leaderboard, a
leave-one-corpus-out confirmation of both claim arms, and claim verdicts per protocol."""
from __future__ import annotations

import pytest
import ray

from search.analysis.claims import VERDICTS, evaluate_claims
from search.definition import load_sweep
from search.analysis.leaderboard import leaderboard, render
from search.results import read_confusion, read_trials
from search.analysis.confirmation import plan_confirmation
from search.driver import SweepError, run_confirm, run_sweep

from sweep_helpers import TINY_BASE

SHARED = {"neutral", "happy", "sad", "angry", "fear", "disgust"}


def _sweep_text(prepared, data: str, name: str = "xc") -> str:
    return f"""
[sweep]
name = "{name}"
num_samples = 3
max_concurrent_trials = 2
seed = 0
cover_choices = true

[data]
prepared = "{prepared}"
max_train_clips = 96
{data}

[scheduler]
max_epochs = 2
grace_period = 2

[space]
loss_family = {{ choices = ["cross_entropy", "center"] }}
frontend = "mel"
lr = {{ low = 1e-3, high = 3e-3, log = true }}
batch_size = 32
seed = 0
""" + TINY_BASE


@pytest.fixture(scope="module")
def cross_results(mixed_prepared, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("xc")
    path = tmp / "xc.toml"
    path.write_text(_sweep_text(mixed_prepared, 'train_corpora = ["synthetic"]\neval_corpora = ["emodb"]'))
    results = tmp / "results"
    try:
        outcome = run_sweep(load_sweep(path), str(results), num_cpus=2, echo=False)
        plan = plan_confirmation(str(results), "xc", top=1, seeds=2,
                                 arms=[{"loss_family": "cross_entropy", "frontend": "mel"},
                                       {"loss_family": "center", "frontend": "mel"}])
        confirm = run_confirm(str(results), plan, num_cpus=2, echo=False, leave_one_corpus_out=True)
    finally:
        ray.shutdown()
    return outcome, confirm, results


def test_sweep_rows_name_the_corpora_and_the_classes_used(cross_results):
    outcome, _, _ = cross_results
    assert outcome.num_errors == 0
    trials = read_trials(outcome.sweep_dir)
    assert len(trials) == 3 and set(trials["status"]) == {"completed"}
    assert set(trials["train_corpora"]) == {"synthetic"} and set(trials["eval_corpora"]) == {"emodb"}
    for classes, dropped in zip(trials["classes"], trials["classes_dropped"]):
        assert set(classes.split(",")) == SHARED
        assert dropped == "calm: only in the training corpora; surprise: only in the training corpora"
    # no EmoDB test clip is counted under a dropped class, as truth or as prediction
    conf = read_confusion(outcome.sweep_dir)
    test = conf[conf["split"] == "test"]
    dropped = test["true_label"].isin(["calm", "surprise"]) | test["pred_label"].isin(["calm", "surprise"])
    assert test.loc[dropped, "count"].sum() == 0 and test["count"].sum() > 0


def test_leaderboard_shows_and_groups_by_the_protocol(cross_results):
    _, _, results = cross_results
    trials = read_trials(results)
    board = leaderboard(trials)
    for column in ("train_corpora", "eval_corpora", "classes_dropped"):
        assert column in board.columns
    assert "calm: only in the training corpora" in render(board, "table")
    by_protocol = leaderboard(trials, group_by=["train_corpora", "eval_corpora"])
    assert set(zip(by_protocol["train_corpora"], by_protocol["eval_corpora"])) == {
        ("synthetic", "emodb"), ("emodb", "synthetic")}


def test_leave_one_corpus_out_confirmation_and_claims_per_protocol(cross_results):
    _, confirm, _ = cross_results
    assert confirm.num_errors == 0
    rows = read_trials(confirm.sweep_dir)
    # 2 arms x 2 seeds x 2 held-out corpora, all completed, at full budget
    assert len(rows) == 8 and set(rows["status"]) == {"completed"} and rows["epochs_run"].eq(2).all()
    assert sorted(rows.groupby(["loss_family", "eval_corpora"]).size().tolist()) == [2, 2, 2, 2]
    assert set(zip(rows["train_corpora"], rows["eval_corpora"])) == {("synthetic", "emodb"), ("emodb", "synthetic")}
    # the held-out corpus does not change the configuration key: one configuration per arm
    assert rows.groupby("loss_family")["config_key"].nunique().eq(1).all()

    claims = evaluate_claims(rows)
    claim1 = claims[(claims["claim"] == "1") & (claims["metric"] == "test_ua")].set_index("protocol")
    assert set(claim1.index) == {"synthetic -> emodb", "emodb -> synthetic"}
    assert claim1["n_pairs"].eq(2).all()
    assert claim1["verdict"].isin(VERDICTS).all()
    assert set(claim1["sweep"]) == {"xc"} and set(claim1["n_folds"]) == {1}  # the lineage confirmed
    # the pair differences are recomputable from the rows: paired by seed within a protocol
    for protocol, (train, evaluate) in {"synthetic -> emodb": ("synthetic", "emodb"),
                                        "emodb -> synthetic": ("emodb", "synthetic")}.items():
        mine = rows[(rows["train_corpora"] == train) & (rows["eval_corpora"] == evaluate)]
        a = mine[mine["loss_family"] == "center"].set_index("seed")["test_ua"]
        b = mine[mine["loss_family"] == "cross_entropy"].set_index("seed")["test_ua"]
        assert claim1.loc[protocol, "mean_diff"] == pytest.approx(float((a - b).mean()))


def test_unknown_corpus_fails_before_any_trial(mixed_prepared, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(_sweep_text(mixed_prepared, 'leave_out = "ravdess"', name="bad"))
    try:
        with pytest.raises(SweepError, match=r"'ravdess' is not in the prepared data \(it holds: emodb, synthetic\)"):
            run_sweep(load_sweep(path), str(tmp_path / "results"), num_cpus=2, echo=False)
    finally:
        ray.shutdown()
    assert not (tmp_path / "results" / "bad" / "trials.parquet").exists()


def test_confirmation_splits_are_checked_before_any_run(mixed_prepared):
    """Every configuration x fold x held-out corpus of a confirmation is formed before Ray runs
    anything; one that cannot be formed names the repeat and the reason."""
    from search.driver.confirm import check_confirmation_splits
    from ser_core.config import TrainConfig
    from ser_core.corpus import PreparedCorpus

    corpus = PreparedCorpus.load(mixed_prepared)
    good = TrainConfig.model_validate({"data": {"prepared": str(mixed_prepared), "train_corpora": ["synthetic"],
                                                "eval_corpora": ["emodb"]}}).model_dump_json()
    check_confirmation_splits(corpus, [good], folds=[0, 1], held_out=["emodb", "synthetic"])
    bad = TrainConfig.model_validate({"data": {"prepared": str(mixed_prepared), "train_corpora": ["synthetic"],
                                               "eval_corpora": ["ravdess"]}}).model_dump_json()
    with pytest.raises(SweepError, match=r"confirmation run \(fold 1\) of cross_entropy/mel: .*'ravdess'"):
        check_confirmation_splits(corpus, [good, bad], folds=[1])


def test_confirm_folds_out_of_range_is_a_clear_error(cross_results):
    _, _, results = cross_results
    try:
        with pytest.raises(SweepError, match=r"--folds \[7\] out of range: the prepared data has folds 0\.\.2"):
            run_confirm(str(results), plan_confirmation(str(results), "xc", top=1, seeds=1), num_cpus=2, echo=False,
                        folds=[0, 7], name="xc-folds")
    finally:
        ray.shutdown()
