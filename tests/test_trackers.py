"""[logging]: a real sweep (and its confirmation) on a real local Ray logs one MLflow run and one
TensorBoard event directory per trial through Ray Tune's own logger callbacks, read back here with
MLflow's own client and TensorBoard's own event reader; a sweep without [logging] writes neither.
Config checks (bad values, relative stores, no effect on a resume's comparison or config_key)
need no Ray."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import ray

from search.definition import SweepConfigError, load_sweep
from search.results import ResultsStore, config_key
from search.analysis.confirmation import plan_confirmation
from search.driver import SweepError, run_confirm, run_sweep
from search.driver.run_record import check_resume_unchanged, record_start
from search.recording.trackers import RESUME_NOTE

from sweep_helpers import write_sweep

MAX_EPOCHS = 3


def _with_logging(path: Path, logging: str) -> Path:
    path.write_text(path.read_text() + "\n[logging]\n" + logging + "\n")
    return path


# ---------------------------------------------------------------------------- config, no Ray


@pytest.mark.parametrize("logging, key", [
    ('mlflow = "ftp://host/runs"', "logging.mlflow"),
    ('mlflow = ""', "logging.mlflow"),
    ('mlflow = "sqlite:///:memory:"', "logging.mlflow"),
    ('tensorboard = "sometimes"', "logging.tensorboard"),
    ('wandb = "cloud"', "logging.wandb"),
    ('experiment = ""', "logging.experiment"),
    ('mlfow = "file:./mlruns"', "logging.mlfow"),
])
def test_bad_logging_values_are_refused_naming_the_key(tmp_path, synthetic_prepared, logging, key):
    path = _with_logging(write_sweep(tmp_path / "s.toml", synthetic_prepared), logging)
    with pytest.raises(SweepConfigError) as e:
        load_sweep(path)
    assert key in str(e.value)


@pytest.mark.parametrize("given, expected", [
    ("file:./mlruns", lambda d: (d / "mlruns").as_uri()),
    ("file:mlruns", lambda d: (d / "mlruns").as_uri()),
    ("mlruns", lambda d: (d / "mlruns").as_uri()),
    ("file:///abs/mlruns", lambda d: "file:///abs/mlruns"),
    ("sqlite:///mlflow.db", lambda d: f"sqlite:///{d / 'mlflow.db'}"),
    ("sqlite:////abs/mlflow.db", lambda d: "sqlite:////abs/mlflow.db"),
    ("http://mlflow.example:5000", lambda d: "http://mlflow.example:5000"),
    ("databricks", lambda d: "databricks"),
])
def test_a_relative_store_is_relative_to_the_sweep_file(tmp_path, synthetic_prepared, given, expected):
    sub = tmp_path / "sweeps"
    sub.mkdir()
    path = _with_logging(write_sweep(sub / "s.toml", synthetic_prepared), f'mlflow = "{given}"')
    assert load_sweep(path).logging.mlflow == expected(sub.resolve())


def test_logging_is_no_change_on_resume_and_no_part_of_a_trial(tmp_path, synthetic_prepared, capsys):
    path = write_sweep(tmp_path / "s.toml", synthetic_prepared, name="s")
    plain = load_sweep(path)
    store = ResultsStore(str(tmp_path / "results"), "s")
    record_start(store, plain, "abc")
    tracked = load_sweep(_with_logging(path, 'mlflow = "file:./mlruns"\ntensorboard = true\nexperiment = "e"'))
    assert tracked.settings() == plain.settings()
    params = {"loss_family": "cross_entropy", "frontend": "mel", "lr": 1e-3, "batch_size": 32, "seed": 0}
    assert tracked.trial_config(params) == plain.trial_config(params)
    assert config_key(tracked.trial_config(params), "abc") == config_key(plain.trial_config(params), "abc")
    check_resume_unchanged(store, tracked, "abc")  # not refused ...
    assert RESUME_NOTE in capsys.readouterr().err  # ... but told the resumed run keeps its trackers
    check_resume_unchanged(store, plain, "abc")
    assert RESUME_NOTE not in capsys.readouterr().err
    # a number changed alongside [logging] is still refused
    path.write_text(path.read_text().replace("max_epochs = 3", "max_epochs = 4"))
    with pytest.raises(SweepError, match="scheduler.max_epochs"):
        check_resume_unchanged(store, load_sweep(path), "abc")


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_wandb_without_the_package_fails_before_ray_starts_naming_it(tmp_path, synthetic_prepared, capsys):
    path = _with_logging(write_sweep(tmp_path / "s.toml", synthetic_prepared), 'wandb = "offline"')
    assert not ray.is_initialized()
    with pytest.raises(SweepError, match="'wandb' package"):
        run_sweep(load_sweep(path), str(tmp_path / "results"), num_cpus=2, echo=False)
    assert not ray.is_initialized()
    assert not (tmp_path / "results" / "t" / "tune").exists()
    from search.cli import main

    assert main(["sweep", str(path), "--results", str(tmp_path / "results")]) == 2  # printed, no traceback
    assert "pip install wandb" in capsys.readouterr().err
    assert not ray.is_initialized()


def test_a_trial_continued_by_a_new_driver_continues_its_mlflow_run(tmp_path, monkeypatch):
    """What --resume does to the callback: Tune unpickles it from tuner.pkl in a new driver and
    starts the unfinished trial again; MLflow then holds one run for it, not two. (Tune's own Trial
    and cloudpickle, MLflow's own file store; the whole resume path is in test_sweep_resume.py.)"""
    import ray.cloudpickle as cloudpickle
    from mlflow.tracking import MlflowClient
    from ray.tune.experiment import Trial

    from search.recording.trackers import LoggingSection, tracker_callbacks

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    trial = Trial("ser_trial", config={"lr": 1e-3, "seed": 0}, trial_id="abc_00000", stub=True)

    def driver():  # a driver's copy of the callback, as tuner.pkl gives it back
        logging = LoggingSection(mlflow=uri)
        callback = tracker_callbacks(logging, run_name="s", stage="search", source_sweep="s",
                                     to_config=lambda params: (_ for _ in ()).throw(ValueError("no config")))[-1]
        callback = cloudpickle.loads(cloudpickle.dumps(callback))
        callback.setup()
        return callback

    first = driver()
    first.log_trial_start(trial)
    first.log_trial_result(1, trial, {"training_iteration": 1, "val_ua": 0.5})
    second = driver()  # the first driver died with the run open
    second.log_trial_start(trial)
    second.log_trial_result(2, trial, {"training_iteration": 2, "val_ua": 0.6})
    second.log_trial_end(trial)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("s").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "val_ua")] == [1, 2]
    assert runs[0].data.params == {"lr": "0.001", "seed": "0"}  # a config that does not build: Tune's params


# ---------------------------------------------------------------------------- a real sweep


@pytest.fixture(scope="module")
def tracked(synthetic_prepared, tmp_path_factory):
    """3 trials x up to 3 epochs with MLflow (a file store beside the sweep file) and TensorBoard,
    then its best configuration confirmed with one seed, logging to the same store."""
    tmp = tmp_path_factory.mktemp("trackers")
    path = _with_logging(write_sweep(tmp / "s.toml", synthetic_prepared, name="tracked", num_samples=3,
                                     max_epochs=MAX_EPOCHS, families=("cross_entropy", "center"), max_train_clips=64),
                         'mlflow = "file:./mlruns"\ntensorboard = true')
    results = tmp / "results"
    try:
        outcome = run_sweep(load_sweep(path), str(results), num_cpus=2, echo=False)
        confirm = run_confirm(str(results), plan_confirmation(str(results), "tracked", top=1, seeds=1), cpus_per_trial=1, max_concurrent=1,
                              num_cpus=2, echo=False)
    finally:
        ray.shutdown()
    return outcome, confirm, (tmp / "mlruns").as_uri()


@pytest.fixture()
def client(tracked, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3's file store, as the sweep asked for
    return MlflowClient(tracked[2])


def _runs(client, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    return client.search_runs([exp.experiment_id])


def test_mlflow_holds_one_run_per_trial_with_params_epochs_and_final_metrics(tracked, client):
    outcome, _, _ = tracked
    trials = pd.read_parquet(f"{outcome.sweep_dir}/trials.parquet")
    epochs = pd.read_parquet(f"{outcome.sweep_dir}/epochs.parquet")
    runs = _runs(client, "tracked")
    assert len(runs) == len(trials) == 3
    by_trial = {r.data.tags["trial_id"]: r for r in runs}
    assert set(by_trial) == set(trials["trial_id"])
    for _, t in trials.iterrows():
        run = by_trial[t["trial_id"]]
        params = run.data.params
        assert params["loss_family"] == t["loss_family"] and params["frontend"] == t["frontend"]
        assert params["model"] == "cnn_transformer" and float(params["lr"]) == pytest.approx(t["lr"])
        assert ("center_lambda" in params) == (t["loss_family"] == "center")
        assert run.data.tags["stage"] == "search" and run.data.tags["sweep"] == "tracked"
        history = client.get_metric_history(run.info.run_id, "val_ua")
        mine = epochs[epochs["trial_id"] == t["trial_id"]].sort_values("epoch")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == mine["epoch"].tolist()
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(mine["val_ua"].tolist())
        assert len(client.get_metric_history(run.info.run_id, "train_loss")) == len(mine)
        assert run.info.status == "FINISHED"
        if t["status"] == "completed":
            assert run.data.metrics["final_test_ua"] == pytest.approx(t["test_ua"])
            assert "final_val_wa" in run.data.metrics
        else:
            assert "final_test_ua" not in run.data.metrics
    assert (trials["status"] == "completed").any()


def test_confirmation_runs_log_to_the_same_store_in_their_own_experiment(tracked, client):
    _, confirm, _ = tracked
    confirmed = pd.read_parquet(f"{confirm.sweep_dir}/trials.parquet")
    runs = _runs(client, "tracked-confirm")
    assert len(runs) == len(confirmed) == 1
    run = runs[0]
    assert run.data.tags["stage"] == "confirm" and run.data.tags["source_sweep"] == "tracked"
    assert "config_json" not in run.data.params
    assert run.data.params["seed"] == str(int(confirmed["seed"].iloc[0]))
    assert run.data.params["loss_family"] == confirmed["loss_family"].iloc[0]
    assert len(client.get_metric_history(run.info.run_id, "val_ua")) == MAX_EPOCHS
    assert run.data.metrics["final_test_ua"] == pytest.approx(confirmed["test_ua"].iloc[0])


def test_tensorboard_has_val_ua_per_epoch_and_hparams_for_every_trial(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    outcome, _, _ = tracked
    epochs = pd.read_parquet(f"{outcome.sweep_dir}/epochs.parquet")
    trials = pd.read_parquet(f"{outcome.sweep_dir}/trials.parquet")
    dirs = sorted({f.parent for f in Path(outcome.sweep_dir, "tune").rglob("events.out.tfevents.*")})
    assert len(dirs) == len(trials)
    seen = set()
    for d in dirs:
        acc = EventAccumulator(str(d))
        acc.Reload()
        assert "ray/tune/val_ua" in acc.Tags()["scalars"], acc.Tags()
        steps = [e.step for e in acc.Scalars("ray/tune/val_ua")]
        values = [e.value for e in acc.Scalars("ray/tune/val_ua")]
        # which trial: its val_ua curve (the directory's name is Tune's)
        match = [tid for tid, g in epochs.groupby("trial_id")
                 if g.sort_values("epoch")["val_ua"].tolist() == pytest.approx(values, abs=1e-6)]
        assert len(match) == 1
        seen.add(match[0])
        assert steps == sorted(epochs.loc[epochs["trial_id"] == match[0], "epoch"].tolist())
        assert "_hparams_/experiment" in acc.PluginTagToContent("hparams")
    assert seen == set(trials["trial_id"])


def test_a_sweep_without_logging_writes_no_tracker_files(synthetic_prepared, tmp_path):
    path = write_sweep(tmp_path / "s.toml", synthetic_prepared, name="plain", num_samples=1, max_epochs=1,
                       families=("cross_entropy",), max_train_clips=32)
    try:
        outcome = run_sweep(load_sweep(path), str(tmp_path / "results"), num_cpus=2, echo=False)
    finally:
        ray.shutdown()
    assert outcome.num_trials == 1 and outcome.num_errors == 0
    assert not list(tmp_path.rglob("events.out.tfevents.*"))
    assert not list(tmp_path.rglob("mlruns")) and not list(tmp_path.rglob("mlflow.db"))
    assert list(Path(outcome.sweep_dir, "tune").rglob("result.json"))  # Tune's own logs are kept


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="the trackers extra is not installed")
@pytest.mark.parametrize("data, expected", [
    ({"fold": 2}, {"fold": 2, "test_folds": "2", "val_folds": "3"}),
    # cross-validated (the older design): tests on 0, 1, 2, validates on 1, 2, 3; data.fold (0) names none
    ({"folds": [0, 1, 2]}, {"test_folds": "0,1,2", "val_folds": "1,2,3"}),
    # held out: selection on 1-4, the one test fold 0; data.fold's default says nothing here
    ({"test_folds": [3], "folds": [0, 1, 2, 4]}, {"fold": 3, "test_folds": "3", "val_folds": "0,1,2,4"}),
])
def test_mlflow_parameters_name_the_folds_the_trials_row_names(data, expected):
    from search.recording.mlflow_runs import _mlflow_params  # noqa: PLC0415 - imports mlflow
    from ser_core.config import TrainConfig  # noqa: PLC0415

    cfg = TrainConfig.model_validate({"data": {"prepared": "p", **data}})
    params = _mlflow_params({"lr": 1e-3}, cfg, n_folds=5)
    assert {k: params.get(k) for k in ("fold", "test_folds", "val_folds")} == {
        "fold": None, "test_folds": None, "val_folds": None, **expected}
