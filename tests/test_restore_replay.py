"""A restored sweep may replay a trial that finished after Tune's last experiment snapshot:
Optuna (written at once) and Parquet already hold its outcome. The replay must neither crash
the sweep nor overwrite that first outcome. Real Optuna (SQLite), real Parquet."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.definition import load_sweep
from search.driver.searcher import PruningAwareOptunaSearch
from search.recording.recorder import ParquetRecorder

SWEEPS = Path(__file__).resolve().parents[1] / "search" / "sweeps"


@pytest.fixture(autouse=True)
def bound_studies(tmp_path):
    """The driver binds each study's location (search.driver.study); a restored searcher opens it there."""
    from search.driver.study import StudyLocation, bind, unbind

    path = tmp_path / "optuna.db"
    for name in ("replay", "cover"):
        bind(StudyLocation(name, f"sqlite:///{path}", str(path), path))
    yield
    for name in ("replay", "cover"):
        unbind(name)


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


def _cover_searcher(storage: optuna.storages.BaseStorage) -> PruningAwareOptunaSearch:
    return PruningAwareOptunaSearch(
        space={"family": optuna.distributions.CategoricalDistribution(["a", "b", "c"])},
        metric="val_ua", mode="max", sampler=optuna.samplers.TPESampler(seed=0), storage=storage,
        study_name="cover", max_epochs=2, points_to_evaluate=[{"family": f} for f in "abc"])


def test_trial_asked_after_the_snapshot_is_failed_and_its_cover_point_asked_again(tmp_path):
    """The driver dies after Optuna asked a trial but before Tune's snapshot knew it: the resumed
    searcher fails that trial (nothing could ever finish it) and asks its cover point again."""
    from search.driver.study import FAILED_ATTR, TUNE_ID_ATTR

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    searcher = _cover_searcher(storage)
    assert searcher.suggest("t1") == {"family": "a"}
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's last snapshot
    assert searcher.suggest("t2") == {"family": "b"}  # asked after it; then the driver dies

    # Tune unpickles the searcher it pickled at the start (no __init__: the points are not enqueued twice)
    restored = PruningAwareOptunaSearch.__new__(PruningAwareOptunaSearch)
    restored.restore(str(tmp_path / "searcher.pkl"))
    study = optuna.load_study(study_name="cover", storage=storage)
    lost = study.trials[1]
    assert lost.state == TrialState.FAIL and FAILED_ATTR in lost.user_attrs and lost.user_attrs[TUNE_ID_ATTR] == "t2"
    assert not [t for t in study.trials if t.state == TrialState.RUNNING and t.number != 0]
    asked = [restored.suggest(t)["family"] for t in ("t2", "t3")]
    assert sorted(asked) == ["b", "c"]  # b, lost with the driver, runs after all


def test_trial_asked_but_never_handed_to_tune_is_failed_with_its_own_reason(tmp_path):
    """Optuna's ask and its parameters are several storage writes before suggest() returns and the
    trial gets its Tune id: a driver killed in between leaves a RUNNING trial with no Tune id. The
    resume fails it saying no Tune trial ever ran it (no row can exist for it), and asks its point again."""
    from search.driver.study import FAILED_ATTR, TUNE_ID_ATTR

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    searcher = _cover_searcher(storage)
    assert searcher.suggest("t1") == {"family": "a"}
    searcher.save(str(tmp_path / "searcher.pkl"))
    study = optuna.load_study(study_name="cover", storage=storage)
    study.ask({"family": optuna.distributions.CategoricalDistribution(["a", "b", "c"])})  # then the kill

    restored = PruningAwareOptunaSearch.__new__(PruningAwareOptunaSearch)
    restored.restore(str(tmp_path / "searcher.pkl"))
    lost = optuna.load_study(study_name="cover", storage=storage).trials[1]
    assert lost.state == TrialState.FAIL and TUNE_ID_ATTR not in lost.user_attrs
    assert "before handing it to Ray Tune" in lost.user_attrs[FAILED_ATTR]
    assert sorted(restored.suggest(t)["family"] for t in ("t2", "t3")) == ["b", "c"]


def test_restored_searcher_uses_this_drivers_copy_of_the_study(tmp_path):
    """An object-store sweep's study is a per-driver local copy: the restored searcher (pickled
    with the dead driver's path) must write to the copy this driver uses."""
    import shutil

    from search.driver.study import StudyLocation, bind

    old = tmp_path / "old-driver" / "optuna.db"
    old.parent.mkdir()
    searcher = _searcher(f"sqlite:///{old}")
    searcher.suggest("t1")
    searcher.on_trial_result("t1", {"val_ua": 0.4, "epoch": 1})
    searcher.save(str(tmp_path / "searcher.pkl"))
    new = tmp_path / "new-driver" / "optuna.db"
    new.parent.mkdir()
    shutil.copyfile(old, new)
    old.unlink()  # gone with the head node
    bind(StudyLocation("replay", f"sqlite:///{new}", str(new), new))  # this driver's copy
    restored = PruningAwareOptunaSearch.__new__(PruningAwareOptunaSearch)
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_result("t1", {"val_ua": 0.6, "epoch": 2})
    restored.on_trial_complete("t1", {"val_ua": 0.6, "epoch": 2})
    assert not old.exists()
    assert b"old-driver" not in (tmp_path / "searcher.pkl").read_bytes()  # no storage URL in the state
    trial, = optuna.load_study(study_name="replay", storage=f"sqlite:///{new}").trials
    assert trial.state == TrialState.PRUNED and trial.intermediate_values == {1: 0.4, 2: 0.6}


def test_a_trial_lost_with_the_driver_gets_an_error_row_over_its_epochs(tmp_path):
    """A trial asked after Tune's last snapshot reported epochs, then its driver died. The resume
    fails it in Optuna; it must also get a trials.parquet row (status error, why, its parameters
    with the space's fixed values, its best epoch so far), so that its epochs in epochs.parquet
    belong to a row, and Parquet and Optuna name the same trials."""
    from search.driver import record_lost_trials
    from search.driver.study import StudyLocation, bind, unbind

    sweep = load_sweep(SWEEPS / "demo.toml")
    name = sweep.sweep.name
    path = tmp_path / "optuna.db"
    location = StudyLocation(name, f"sqlite:///{path}", str(path), path)
    bind(location)
    try:
        storage = optuna.storages.RDBStorage(location.url)
        searcher = PruningAwareOptunaSearch(space=sweep.define_by_run, metric="val_ua", mode="max",
                                            sampler=optuna.samplers.TPESampler(seed=0), storage=storage,
                                            study_name=name, max_epochs=6)
        searcher.suggest("t1")
        searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's last snapshot
        config = searcher.suggest("t2")  # asked after it
        recorder = ParquetRecorder(name, sweep.trial_config, str(tmp_path), 0.0, echo=False)
        lost = _Trial("t2", config, {})
        recorder.on_trial_start(0, [], lost)
        for n, v in ((1, 0.40), (2, 0.45), (3, 0.42)):
            recorder.on_trial_result(0, [], lost, {"epoch": n, "train_loss": 1.0, "val_loss": 1.0, "val_ua": v,
                                                   "val_wa": v, "best_val_ua": 0.45, "epoch_seconds": 2.0})
        # the driver dies; the resumed one restores the searcher (t2 is told FAIL) and, at the end,
        # records what was lost, with a fresh recorder as the resumed driver builds it
        restored = PruningAwareOptunaSearch.__new__(PruningAwareOptunaSearch)
        restored.restore(str(tmp_path / "searcher.pkl"))
        again = ParquetRecorder(name, sweep.trial_config, str(tmp_path), 0.0, echo=False)
        assert record_lost_trials(sweep, location, again) == 1
        assert record_lost_trials(sweep, location, again) == 0  # a second resume adds nothing
    finally:
        unbind(name)

    rows = again.store.trials().set_index("trial_id")
    assert list(rows.index) == ["t2"]  # t1 is Tune's to finish; it has no row yet
    row = rows.loc["t2"]
    assert row["status"] == "error" and row["error"].startswith("lost with the driver: asked after the last")
    assert (row["epochs_run"], row["best_epoch"], row["val_ua"], row["train_seconds"]) == (3, 2, 0.45, 6.0)
    for key in ("loss_family", "frontend", "lr", "batch_size", "seed"):  # batch_size, seed: fixed axes
        assert row[key] == config[key], key
    ot = optuna.load_study(study_name=name, storage=storage).trials[1]
    assert ot.state == TrialState.FAIL
    assert row["started_at"].to_pydatetime() == ot.datetime_start.astimezone(row["started_at"].tzinfo)
    assert set(again.store.epochs()["trial_id"]) <= set(rows.index)


def test_a_stopped_trials_best_epoch_is_its_first_best(tmp_path):
    """A stopped trial's row takes its best epoch from epochs.parquet with the training loop's
    rule (ser_core.metrics.improves): equal UAs but for the last bit keep the earlier epoch."""
    sweep = load_sweep(SWEEPS / "demo.toml")
    params = {"loss_family": "cross_entropy", "frontend": "mel", "lr": 1e-3, "batch_size": 32, "seed": 0}
    recorder = ParquetRecorder(sweep.sweep.name, sweep.trial_config, str(tmp_path), 0.0, echo=False)
    trial = _Trial("t1", {k: params.get(k) for k in sweep.space}, {"epoch": 3})
    recorder.on_trial_start(0, [], trial)
    for n, v in ((1, 0.5208333333333333), (2, 0.5), (3, 0.5208333333333334)):
        recorder.on_trial_result(0, [], trial, {"epoch": n, "train_loss": 1.0, "val_loss": 1.0, "val_ua": v,
                                                "val_wa": v, "best_val_ua": 0.5208333333333333, "epoch_seconds": 1.0})
    recorder.on_trial_complete(0, [], trial)  # stopped by ASHA: pruned
    row = recorder.store.trials().set_index("trial_id").loc["t1"]
    assert (row["status"], row["best_epoch"], row["val_ua"]) == ("pruned", 1, 0.5208333333333333)


def test_a_confirmation_run_lost_with_the_driver_gets_an_error_row(tmp_path):
    """A confirmation has no Optuna study: a run with epochs, no row and no trial in the restored
    experiment was lost with a killed driver. Its row takes the configuration from its Tune
    directory's params.json; a run the experiment still has, or one with a row, is left alone."""
    import json

    from search.driver import confirm_config

    from search.driver.confirm import record_lost_runs

    sweep = load_sweep(SWEEPS / "demo.toml")
    params = {"loss_family": "center", "frontend": "stft", "lr": 2e-3, "batch_size": 32, "seed": 0,
              "center_lambda": 0.01, "center_lr": 0.5}
    config = sweep.trial_config({k: params.get(k) for k in sweep.space})
    run = {"config_json": config.model_dump_json(), "seed": 2}
    recorder = ParquetRecorder("demo-confirm", confirm_config, str(tmp_path), 0.0, stage="confirm", echo=False,
                               source_sweep="demo")
    for trial_id in ("lost0001_00003", "live0001_00004"):
        trial = _Trial(trial_id, run, {})
        recorder.on_trial_start(0, [], trial)
        for n, v in ((1, 0.30), (2, 0.35)):
            recorder.on_trial_result(0, [], trial, {"epoch": n, "train_loss": 1.0, "val_loss": 1.0, "val_ua": v,
                                                    "val_wa": v, "best_val_ua": 0.35, "epoch_seconds": 1.5})
    trial_dir = tmp_path / "demo-confirm" / "tune" / "ser_trial_lost0001_00003_3_config_json=x,seed=2_2026-12-01"
    trial_dir.mkdir(parents=True)
    (trial_dir / "params.json").write_text(json.dumps(run))

    again = ParquetRecorder("demo-confirm", confirm_config, str(tmp_path), 0.0, stage="confirm", echo=False,
                            source_sweep="demo")
    assert record_lost_runs(again, known={"live0001_00004"}) == 1
    assert record_lost_runs(again, known={"live0001_00004"}) == 0
    rows = again.store.trials().set_index("trial_id")
    assert list(rows.index) == ["lost0001_00003"]
    row = rows.loc["lost0001_00003"]
    assert row["status"] == "error" and row["error"].startswith("lost with the driver: started after the last")
    assert (row["stage"], row["source_sweep"], row["seed"]) == ("confirm", "demo", 2)
    assert (row["loss_family"], row["frontend"], row["center_lambda"]) == ("center", "stft", 0.01)
    assert (row["epochs_run"], row["best_epoch"], row["val_ua"]) == (2, 2, 0.35)


def _generator(tmp_path: Path, num_samples: int):
    from ray.tune.experiment import Experiment
    from ray.tune.search import ConcurrencyLimiter

    from search.driver.searcher import SweepSearchGenerator

    generator = SweepSearchGenerator(ConcurrencyLimiter(_searcher(f"sqlite:///{tmp_path / 'optuna.db'}"),
                                                        max_concurrent=4))
    generator.add_configurations([Experiment("replay", run=lambda config: None, num_samples=num_samples,
                                             storage_path=str(tmp_path / "tune"))])
    return generator


def test_a_trial_finished_after_the_last_snapshot_counts_toward_num_samples(tmp_path):
    """The driver dies after a trial it asked after its last snapshot has finished: Optuna and
    Parquet hold it, Tune's restored counter did not count it. The resumed sweep must run
    num_samples trials in all, not one more (CI once saw 9 completed rows for num_samples = 8)."""
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    sweep = _generator(tmp_path, num_samples=4)
    sweep.next_trial()
    sweep.save_to_dir(str(snapshots), "first")  # the last snapshot: one trial created
    finished, lost = sweep.next_trial(), sweep.next_trial()
    sweep.on_trial_result(finished.trial_id, {"val_ua": 0.5, "epoch": 6})
    sweep.on_trial_complete(finished.trial_id, {"val_ua": 0.5, "epoch": 6})
    # the driver dies here

    resumed = _generator(tmp_path, num_samples=4)
    resumed.restore_from_dir(str(snapshots))
    assert resumed._counter == 2  # the snapshot's trial and the finished one; the lost one is rerun
    states = {t.user_attrs["tune_trial_id"]: t.state
              for t in optuna.load_study(study_name="replay", storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials}
    assert states[finished.trial_id] == TrialState.COMPLETE and states[lost.trial_id] == TrialState.FAIL
    created = [resumed.next_trial() for _ in range(3)]
    assert created[-1] is None and resumed.is_finished()  # 2 more trials make 4

    # a second resume from a snapshot taken after the first one does not count the trial again
    resumed.save_to_dir(str(snapshots), "second")
    again = _generator(tmp_path, num_samples=4)
    again.restore_from_dir(str(snapshots))
    assert again._counter == 4
