"""A restored sweep may replay a trial that finished after Tune's last experiment snapshot:
Optuna (written at once) and Parquet already hold its outcome. The replay must neither crash
the sweep nor overwrite that first outcome. Real Optuna (SQLite), real Parquet."""
from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from search.config import load_sweep
from search.pruning import PruningAwareOptunaSearch
from search.recorder import ParquetRecorder

SWEEPS = Path(__file__).resolve().parents[1] / "search" / "sweeps"


def _searcher(storage: str) -> PruningAwareOptunaSearch:
    return PruningAwareOptunaSearch(
        space={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)},
        metric="val_ua", mode="max", sampler=optuna.samplers.TPESampler(seed=0),
        storage=optuna.storages.RDBStorage(storage), study_name="replay", max_epochs=6)


def test_searcher_ignores_the_replay_of_a_trial_optuna_already_finished(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = _searcher(storage)
    assert searcher.suggest("t1") is not None
    searcher.on_trial_result("t1", {"val_ua": 0.4, "epoch": 1})
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's snapshot, taken mid-trial
    searcher.on_trial_result("t1", {"val_ua": 0.5, "epoch": 2})
    searcher.on_trial_complete("t1", {"val_ua": 0.5, "epoch": 2})  # ASHA stopped it: pruned

    restored = _searcher(storage)
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_result("t1", {"val_ua": 0.9, "epoch": 2})  # the replay, from the snapshot
    restored.on_trial_result("t1", {"val_ua": 0.9, "epoch": 3})
    restored.on_trial_complete("t1", {"val_ua": 0.9, "epoch": 3})

    # A replay that repeats only an epoch the snapshot had seen, then is stopped again.
    short = _searcher(storage)
    short.restore(str(tmp_path / "searcher.pkl"))
    short.on_trial_result("t1", {"val_ua": 0.9, "epoch": 1})
    short.on_trial_complete("t1", {"val_ua": 0.9, "epoch": 1})

    trial, = optuna.load_study(study_name="replay", storage=storage).trials
    assert trial.state == TrialState.PRUNED
    assert trial.intermediate_values == {1: 0.4, 2: 0.5}
    assert restored.suggest("t2") is not None  # the sweep goes on


class _Trial:
    def __init__(self, trial_id: str, config: dict, last_result: dict) -> None:
        self.trial_id, self.config, self.last_result = trial_id, config, last_result
        self.checkpoint = None


def test_recorder_keeps_the_first_outcome_of_a_replayed_trial(tmp_path):
    sweep = load_sweep(SWEEPS / "demo.toml")
    params = {"loss_family": "cross_entropy", "frontend": "mel", "lr": 1e-3, "batch_size": 32, "seed": 0}
    params = {k: params.get(k) for k in sweep.space}
    recorder = ParquetRecorder(sweep.sweep.name, sweep.trial_config, str(tmp_path), 0.0, echo=False)

    def epoch(value: float, n: int) -> dict:
        return {"epoch": n, "train_loss": 1.0, "val_loss": 1.0, "val_ua": value, "val_wa": value,
                "best_val_ua": value, "epoch_seconds": 1.0}

    first = _Trial("t1", params, epoch(0.5, 2))
    recorder.on_trial_start(0, [], first)
    for n, v in ((1, 0.4), (2, 0.5)):
        recorder.on_trial_result(0, [], first, epoch(v, n))
    recorder.on_trial_complete(0, [], first)  # stopped by ASHA: pruned
    row = recorder.store.trials().set_index("trial_id").loc["t1"]
    assert row["status"] == "pruned" and row["val_ua"] == 0.5, row["error"]

    # A later driver (a fresh recorder, as unpickled by Tuner.restore) sees the trial replayed.
    again = ParquetRecorder(sweep.sweep.name, sweep.trial_config, str(tmp_path), 0.0, echo=False)
    replay = _Trial("t1", params, epoch(0.9, 3))
    again.on_trial_result(0, [], replay, epoch(0.9, 2))
    again.on_trial_result(0, [], replay, epoch(0.9, 3))
    again.on_trial_complete(0, [], replay)
    after = again.store.trials().set_index("trial_id").loc["t1"]
    assert after["status"] == "pruned" and after["val_ua"] == 0.5
    assert after["finished_at"] == row["finished_at"]
    epochs = again.store.epochs()
    assert sorted(epochs["epoch"]) == [1, 2] and epochs["val_ua"].max() == 0.5
