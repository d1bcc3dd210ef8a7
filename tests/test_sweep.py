"""A real sweep on a real local Ray with OptunaSearch + ASHA: Parquet results against the
schema, ASHA-stopped trials reaching Optuna as pruned, the leaderboard CLI, config errors."""
from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pandas as pd
import pyarrow.parquet as pq
import pytest
import ray

from search.definition import SweepConfigError, load_sweep
from search.results import SCHEMA_VERSION, TRIALS_SCHEMA
from search.analysis.confirmation import plan_confirmation
from search.driver import run_sweep

from sweep_helpers import write_sweep

NUM_SAMPLES, MAX_EPOCHS = 8, 3


@pytest.fixture(scope="module")
def finished_sweep(synthetic_prepared, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    sweep = load_sweep(write_sweep(tmp / "s.toml", synthetic_prepared, num_samples=NUM_SAMPLES,
                                   max_epochs=MAX_EPOCHS))
    try:
        outcome = run_sweep(sweep, str(tmp / "results"), num_cpus=2, echo=False)
    finally:
        ray.shutdown()
    return outcome, tmp / "results"


def test_trials_parquet_matches_schema_and_holds_every_trial_once(finished_sweep):
    outcome, _ = finished_sweep
    table = pq.read_table(f"{outcome.sweep_dir}/trials.parquet")
    meta = table.schema.metadata or {}
    assert meta.get(b"ser_search.schema_version") == str(SCHEMA_VERSION).encode()
    for field in TRIALS_SCHEMA:
        assert table.schema.field(field.name).type == field.type, field.name
    trials = table.to_pandas()
    assert len(trials) == NUM_SAMPLES and trials["trial_id"].is_unique
    assert set(trials["status"]) <= {"completed", "pruned"}
    assert (trials["status"] == "pruned").any(), "ASHA should stop some trials"
    assert (trials["status"] == "completed").any()
    done = trials[trials["status"] == "completed"]
    assert done["epochs_run"].eq(MAX_EPOCHS).all()
    assert done[["test_ua", "test_wa", "test_f1_macro", "compactness_val"]].notna().all().all()
    stopped = trials[trials["status"] == "pruned"]
    assert stopped["epochs_run"].lt(MAX_EPOCHS).all() and stopped["test_ua"].isna().all()
    # every family and both frontends were tried (cover_choices)
    assert set(trials["loss_family"]) == {"cross_entropy", "center", "bce"}
    assert set(trials["frontend"]) == {"mel", "stft"}
    # center parameters are null, not fake, where the family has no centers
    uses_centers = trials["loss_family"] == "center"
    assert trials.loc[uses_centers, ["center_lambda", "center_lr"]].notna().all().all()
    assert trials.loc[~uses_centers, ["center_lambda", "center_lr"]].isna().all().all()
    assert trials["node"].notna().all() and (trials["gpu_fraction"] == 0).all()
    for cfg in trials["config_json"]:
        assert json.loads(cfg)["optim"]["epochs"] == MAX_EPOCHS


def test_epochs_and_confusion_are_consistent(finished_sweep, synthetic_prepared):
    outcome, _ = finished_sweep
    trials = pd.read_parquet(f"{outcome.sweep_dir}/trials.parquet")
    epochs = pd.read_parquet(f"{outcome.sweep_dir}/epochs.parquet")
    for _, t in trials.iterrows():
        mine = epochs[epochs["trial_id"] == t["trial_id"]].sort_values("epoch")
        assert mine["epoch"].tolist() == list(range(1, int(t["epochs_run"]) + 1))
        assert t["val_ua"] == pytest.approx(mine["val_ua"].max())
    from ser_core.corpus import PreparedCorpus

    n_test = len(PreparedCorpus.load(synthetic_prepared).split_indices(0)["test"])
    confusion = pd.read_parquet(f"{outcome.sweep_dir}/confusion.parquet")
    completed = set(trials.loc[trials["status"] == "completed", "trial_id"])
    assert set(confusion["trial_id"]) == completed
    sums = confusion[confusion["split"] == "test"].groupby("trial_id")["count"].sum()
    assert (sums == n_test).all()
    _assert_epoch_rows_are_their_own(outcome.sweep_dir)


def _assert_epoch_rows_are_their_own(sweep_dir: str) -> int:
    """Every epoch row holds that epoch's own validation figures (the training history stored in
    the trial's final checkpoint), the last epoch included; the trial row holds the best epoch's.
    Returns how many completed trials ended on an epoch that was not their best: the rows those
    would get wrong if the final report overwrote the last epoch's figures with the best's."""
    import torch

    from search.worker.trainable import STATE_FILE

    trials = pd.read_parquet(f"{sweep_dir}/trials.parquet")
    epochs = pd.read_parquet(f"{sweep_dir}/epochs.parquet")
    done = trials[trials["status"] == "completed"]
    assert len(done)
    for _, t in done.iterrows():
        state = torch.load(f"{t['checkpoint'].rsplit('/', 1)[0]}/{STATE_FILE}", weights_only=False)
        history = pd.DataFrame(state["history"]).set_index("epoch")
        mine = epochs[epochs["trial_id"] == t["trial_id"]].set_index("epoch").sort_index()
        assert mine.index.tolist() == history.index.tolist() == list(range(1, MAX_EPOCHS + 1))
        for col in ("val_ua", "val_wa", "best_val_ua", "train_loss", "val_loss"):
            assert mine[col].tolist() == pytest.approx(history[col].tolist(), abs=1e-12), (t["trial_id"], col)
        assert t["best_epoch"] == state["best_epoch"]
        assert t["val_ua"] == pytest.approx(history.loc[t["best_epoch"], "val_ua"])
        assert t["val_wa"] == pytest.approx(history.loc[t["best_epoch"], "val_wa"])
    return int((done["best_epoch"] < done["epochs_run"]).sum())


def test_asha_stopped_trials_reach_optuna_as_pruned(finished_sweep):
    outcome, _ = finished_sweep
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{outcome.study_path}")
    trials = pd.read_parquet(f"{outcome.sweep_dir}/trials.parquet")
    states = [t.state for t in study.trials]
    assert len(study.trials) == NUM_SAMPLES
    n_pruned = int((trials["status"] == "pruned").sum())
    assert states.count(optuna.trial.TrialState.PRUNED) == n_pruned > 0
    assert states.count(optuna.trial.TrialState.COMPLETE) == NUM_SAMPLES - n_pruned
    for t in study.trials:
        assert t.intermediate_values, "every epoch is reported to Optuna"
        if t.state == optuna.trial.TrialState.PRUNED:
            assert max(t.intermediate_values) < MAX_EPOCHS
            assert t.value == t.intermediate_values[max(t.intermediate_values)]
    # the values Optuna learned from match the Parquet rows, pruned ones included
    assert sorted(round(t.value, 6) for t in study.trials) == sorted(round(v, 6) for v in trials["val_ua"])


def test_leaderboard_command_on_the_results(finished_sweep):
    outcome, results = finished_sweep
    run = subprocess.run([sys.executable, "-m", "search.cli", "leaderboard", str(results),
                          "--group-by", "loss_family,frontend", "--format", "json"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    ranked = [r for r in rows if r.get("rank") is not None]
    assert ranked and [r["rank"] for r in ranked] == sorted(r["rank"] for r in ranked)
    trials = pd.read_parquet(f"{outcome.sweep_dir}/trials.parquet")
    best = trials[trials["status"] == "completed"].sort_values("val_ua", ascending=False).iloc[0]
    assert ranked[0]["best_trial_id"] == best["trial_id"]
    run = subprocess.run([sys.executable, "-m", "search.cli", "leaderboard", str(results),
                          "--group-by", "nonsense"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "nonsense" in run.stderr


def test_bad_sweep_file_fails_before_ray_starts(tmp_path, synthetic_prepared, capsys):
    from search.cli import main

    path = write_sweep(tmp_path / "bad.toml", synthetic_prepared)
    text = path.read_text()
    for bad, key in ((text.replace('lr = { low = 5e-4, high = 3e-3, log = true }',
                                   'lr = { low = 3e-3, high = 5e-4, log = true }'), "space.lr"),
                     (text.replace('"bce"', '"softmaxx"'), "softmaxx"),
                     (text.replace("max_epochs = 3", "max_epochs = 3\nmax_epoch = 4"), "scheduler.max_epoch")):
        path.write_text(bad)
        with pytest.raises(SweepConfigError, match=key):
            load_sweep(path)
        assert main(["sweep", str(path), "--results", str(tmp_path / "r")]) == 2
        assert key in capsys.readouterr().err
        assert not ray.is_initialized()
        assert not (tmp_path / "r").exists()


def test_confirm_reruns_top_configurations_with_seeds(finished_sweep):
    from search.analysis.leaderboard import leaderboard
    from search.results import read_trials
    from search.driver import run_confirm

    outcome, results = finished_sweep
    try:
        confirm = run_confirm(str(results), plan_confirmation(str(results), "t", top=2, seeds=2), num_cpus=2,
                              echo=False)
    finally:
        ray.shutdown()
    rows = pd.read_parquet(f"{confirm.sweep_dir}/trials.parquet")
    assert len(rows) == 4 and set(rows["stage"]) == {"confirm"} and set(rows["status"]) == {"completed"}
    assert sorted(rows["seed"]) == [1, 1, 2, 2]  # the sweep searched with seed 0: not reused
    assert rows["epochs_run"].eq(MAX_EPOCHS).all()  # no early stopping
    search = pd.read_parquet(f"{outcome.sweep_dir}/trials.parquet")
    top2 = search[search["status"] == "completed"].sort_values("val_ua", ascending=False).head(2)
    assert set(rows["config_key"]) == set(top2["config_key"])
    # every row names its lineage and the prepared corpus it ran on (the claims pair within them)
    from ser_core.corpus import PreparedCorpus
    prepared = json.loads(search["config_json"].iloc[0])["data"]["prepared"]
    assert set(search["prepared_id"]) == set(rows["prepared_id"]) == {PreparedCorpus.load(prepared).prepared_id}
    assert set(search["source_sweep"]) == set(rows["source_sweep"]) == {"t"}
    board = leaderboard(read_trials(confirm.sweep_dir))
    assert (board["n"] == 2).all()
    assert board["val_ua_ci95"].notna().all() and (board["val_ua_ci95"] >= 0).all()
    # Between this sweep and its confirmation some completed trial ends past its best epoch (a
    # precondition: without one, the check above could not see a last epoch overwritten).
    assert _assert_epoch_rows_are_their_own(outcome.sweep_dir) + _assert_epoch_rows_are_their_own(
        confirm.sweep_dir) > 0
