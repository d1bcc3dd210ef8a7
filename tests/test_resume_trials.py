"""Trials that Tune restarts from a checkpoint or retries after an error end in the same state
in Optuna as in Parquet. Real Ray Tune, real Optuna (SQLite), real training and Parquet."""
from __future__ import annotations


import optuna
import pytest
import ray
from optuna.trial import TrialState
from ray import tune

from search.definition import load_sweep
from search.driver.searcher import PruningAwareOptunaSearch
from search.recording.recorder import ParquetRecorder
from search.driver import METRIC, connect
from search.driver.study import TUNE_ID_ATTR, bind, finish_study, locate_study, unbind
from search.worker.trainable import make_trainable
from sweep_helpers import write_sweep


@pytest.fixture(scope="module")
def local_ray():
    connect(None, num_cpus=2)
    try:
        yield
    finally:
        ray.shutdown()


def _searcher(storage: optuna.storages.BaseStorage, space, name: str, max_epochs: int) -> PruningAwareOptunaSearch:
    return PruningAwareOptunaSearch(space=space, metric=METRIC, mode="max", storage=storage, study_name=name,
                                    sampler=optuna.samplers.TPESampler(seed=0), max_epochs=max_epochs)


def test_trial_retried_from_its_final_checkpoint_completes(local_ray, synthetic_prepared, tmp_path):
    """A trial whose process dies right after its last epoch's report (a lost node, a killed
    driver) is restarted from that final checkpoint: there is nothing left to train, and it must
    finish as completed, not fail with "nothing to train"."""
    from ser_core.corpus import PreparedCorpus

    sweep = load_sweep(write_sweep(tmp_path / "f.toml", synthetic_prepared, name="final", num_samples=1,
                                   max_epochs=2, families=("cross_entropy",)))
    corpus = PreparedCorpus.load(synthetic_prepared).in_memory()
    marker = tmp_path / "died-once"
    ser_trial = make_trainable(sweep.trial_config)

    def dies_after_final_report(params, corpus):
        ser_trial(params, corpus)
        if not marker.exists():  # the first attempt dies after reporting (and checkpointing) its final epoch
            marker.write_text("x")
            raise RuntimeError("the trial's process died after its final report")

    results = str(tmp_path / "results")
    study = locate_study(f"{results}/final", "final")
    bind(study)  # as run_sweep does for its driver
    recorder = ParquetRecorder("final", sweep.trial_config, results, 0.0, echo=False)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(dies_after_final_report, corpus=corpus), {"cpu": 1}),
        tune_config=tune.TuneConfig(metric=METRIC, mode="max", num_samples=1,
                                    search_alg=_searcher(study.storage(), sweep.define_by_run, "final", 2)),
        run_config=tune.RunConfig(name="tune", storage_path=f"{results}/final", callbacks=[recorder],
                                  failure_config=tune.FailureConfig(max_failures=1), verbose=0),
    )
    grid = tuner.fit()
    assert marker.exists()  # the first attempt did die
    assert grid.num_errors == 0, grid[0].error
    row = recorder.store.trials().iloc[0]
    assert row["status"] == "completed" and row["epochs_run"] == 2 and row["test_ua"] is not None
    trial, = study.load().trials
    assert trial.state == TrialState.COMPLETE and trial.user_attrs[TUNE_ID_ATTR] == row["trial_id"]
    unbind("final")


def test_errored_trial_retried_by_a_resume_is_complete_in_optuna(local_ray, tmp_path):
    """A trial that errored in one driver and is retried by `Tuner.restore(resume_errored=True)`
    after that driver died completes: Optuna must say COMPLETE (as Parquet does), and the study
    must hold no RUNNING trial once every trial has ended."""
    marker = tmp_path / "errored-once"
    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}

    def flaky(params):
        for epoch in (1, 2, 3):
            if epoch == 2 and not marker.exists():
                marker.write_text("x")
                raise RuntimeError("transient failure")
            tune.report({"epoch": epoch, METRIC: 0.1 * epoch})

    study = locate_study(str(tmp_path / "sweep"), "retry")
    bind(study)
    path = str(tmp_path / "sweep")
    tuner = tune.Tuner(
        tune.with_resources(flaky, {"cpu": 1}),
        tune_config=tune.TuneConfig(metric=METRIC, mode="max", num_samples=2,
                                    search_alg=_searcher(study.storage(), space, "retry", 3)),
        run_config=tune.RunConfig(name="tune", storage_path=path, verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    first = tuner.fit()
    assert first.num_errors == 1
    # the driver "dies" here, before the sweep's end is recorded; a new one resumes
    restored = tune.Tuner.restore(f"{path}/tune", trainable=tune.with_resources(flaky, {"cpu": 1}),
                                  resume_unfinished=True, resume_errored=True)
    second = restored.fit()
    assert second.num_errors == 0
    trials = study.load().trials
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "COMPLETE"]
    assert finish_study(study) == 0  # nothing left RUNNING to fail
    unbind("retry")
