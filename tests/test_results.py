"""Parquet results store: schemas, upserts, atomic rewrites, multi-sweep reads."""
from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from search.definition import load_sweep
from search.results import (
    SCHEMA_VERSION,
    TRIALS_SCHEMA,
    ResultsError,
    ResultsStore,
    config_columns,
    config_key,
    confusion_rows,
    read_confusion,
    read_epochs,
    read_trials,
)

SWEEPS = Path(__file__).resolve().parents[1] / "search" / "sweeps"
T0 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def _row(trial_id: str, **kw) -> dict:
    return {"trial_id": trial_id, "status": "completed", "stage": "search", "loss_family": "cross_entropy",
            "frontend": "mel", "lr": 1e-3, "batch_size": 32, "seed": 0, "val_ua": 0.5, "test_ua": 0.4,
            "started_at": T0, "finished_at": T0 + dt.timedelta(seconds=90), **kw}


def test_upsert_trial_round_trip_and_replace(tmp_path):
    store = ResultsStore(tmp_path, "s1")
    store.upsert_trial(_row("t1"))
    store.upsert_trial(_row("t2", status="pruned", test_ua=None))
    store.upsert_trial(_row("t1", val_ua=0.75, epochs_run=np.int64(12)))  # a retry replaces its row

    df = store.trials()
    assert list(df["trial_id"]) == ["t2", "t1"]  # every trial exactly once
    t1 = df.set_index("trial_id").loc["t1"]
    assert t1["val_ua"] == 0.75 and t1["epochs_run"] == 12 and t1["sweep"] == "s1"
    assert pd.isna(t1["center_lambda"]) and pd.isna(t1["error"])  # missing keys are null
    assert t1["started_at"] == pd.Timestamp(T0) and str(df["started_at"].dtype) == "datetime64[us, UTC]"
    assert df["batch_size"].dtype == pd.Int64Dtype()
    assert pd.isna(df.set_index("trial_id").loc["t2", "test_ua"])

    file = tmp_path / "s1" / "trials.parquet"
    schema = pq.read_schema(file)
    assert schema.metadata[b"ser_search.schema_version"] == str(SCHEMA_VERSION).encode()
    assert schema.field("val_ua").type == pa.float64() and schema.field("batch_size").type == pa.int64()
    assert schema.field("finished_at").type == pa.timestamp("us", tz="UTC")
    assert [p.name for p in (tmp_path / "s1").iterdir()] == ["trials.parquet"]  # no temp files left


def test_epoch_seconds_are_accepted_as_timestamps(tmp_path):
    store = ResultsStore(tmp_path, "s")
    store.upsert_trial(_row("t", started_at=T0.timestamp()))
    assert store.trials()["started_at"].iloc[0] == pd.Timestamp(T0)


@pytest.mark.parametrize("row, match", [
    (_row("t", val_uaa=0.5), r"unknown column\(s\) \['val_uaa'\]"),
    (_row("t", val_ua="0.5"), "column 'val_ua' expects double, got str"),
    (_row("t", batch_size=32.5), "column 'batch_size' expects int64"),
    (_row("t", seed=True), "column 'seed' expects int64, got bool"),
    (_row("t", started_at=dt.datetime(2025, 1, 1)), "needs a timezone-aware datetime"),
    (_row("t", status="done"), "status 'done' is not one of"),
    (_row("t", stage="final"), "stage 'final' is not one of"),
    ({"status": "completed"}, "'trial_id' is required"),
    (_row("t", sweep="other"), "sweep 'other' given to the store of sweep 's'"),
])
def test_bad_rows_are_rejected_with_the_column_named(tmp_path, row, match):
    store = ResultsStore(tmp_path, "s")
    with pytest.raises(ResultsError, match=match):
        store.upsert_trial(row)
    assert not (tmp_path / "s" / "trials.parquet").exists()


def test_epochs_upsert_by_trial_and_epoch(tmp_path):
    store = ResultsStore(tmp_path, "s")
    store.upsert_epochs([{"trial_id": "a", "epoch": e, "val_ua": 0.1 * e, "train_loss": 2.0 / e} for e in (1, 2)])
    store.upsert_epochs([{"trial_id": "b", "epoch": 1, "val_ua": 0.3}])
    store.upsert_epochs([{"trial_id": "a", "epoch": 2, "val_ua": 0.9}, {"trial_id": "a", "epoch": 3, "val_ua": 0.95}])
    df = read_epochs(tmp_path / "s").sort_values(["trial_id", "epoch"])
    assert list(zip(df["trial_id"], df["epoch"], df["val_ua"])) == [
        ("a", 1, 0.1), ("a", 2, 0.9), ("a", 3, 0.95), ("b", 1, 0.3)]
    assert pd.isna(df.set_index(["trial_id", "epoch"]).loc[("a", 2), "train_loss"])  # the replaced row is whole
    with pytest.raises(ResultsError, match="appears twice"):
        store.upsert_epochs([{"trial_id": "a", "epoch": 1}, {"trial_id": "a", "epoch": 1}])
    with pytest.raises(ResultsError, match="'epoch' are required"):
        store.upsert_epochs([{"trial_id": "a"}])


def test_confusion_rows_and_replace(tmp_path):
    store = ResultsStore(tmp_path, "s")
    labels = ["angry", "happy", "sad"]
    m = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])
    store.replace_confusion("t1", confusion_rows(m, labels, "test") + confusion_rows(m.T, labels, "val"))
    store.replace_confusion("t2", confusion_rows(np.eye(3, dtype=int), labels, "test"))
    store.replace_confusion("t1", confusion_rows(2 * m, labels, "test"))  # rerun: old t1 cells all go

    df = read_confusion(tmp_path)
    t1 = df[df["trial_id"] == "t1"]
    assert set(t1["split"]) == {"test"} and len(t1) == 9 and t1["count"].sum() == 2 * m.sum()
    cell = t1[(t1["true_label"] == "happy") & (t1["pred_label"] == "angry")]["count"].item()
    assert cell == 4
    assert df[df["trial_id"] == "t2"]["count"].sum() == 3
    with pytest.raises(ResultsError, match=r"shape \(2, 2\), expected \(3, 3\)"):
        confusion_rows(np.zeros((2, 2)), labels, "test")
    with pytest.raises(ResultsError, match="passed to replace_confusion"):
        store.replace_confusion("t3", [{"trial_id": "t4", "split": "test"}])


def test_readers_span_sweeps_and_single_sweep_dirs(tmp_path):
    ResultsStore(tmp_path, "alpha").upsert_trial(_row("a1"))
    beta = ResultsStore(tmp_path, "beta")
    beta.upsert_trial(_row("b1"))
    beta.upsert_trial(_row("b2"))
    ResultsStore(tmp_path, "gamma")  # a sweep that has not finished a trial yet
    (tmp_path / "notes").mkdir()

    both = read_trials(tmp_path)
    assert sorted(zip(both["sweep"], both["trial_id"])) == [("alpha", "a1"), ("beta", "b1"), ("beta", "b2")]
    assert list(read_trials(tmp_path / "beta")["trial_id"]) == ["b1", "b2"]
    assert list(read_trials(f"file://{tmp_path.as_posix()}")["trial_id"]) == ["a1", "b1", "b2"]

    empty = read_trials(tmp_path / "gamma")
    assert empty.empty and list(empty.columns) == TRIALS_SCHEMA.names
    with pytest.raises(ResultsError, match="results location not found"):
        read_trials(tmp_path / "nope")


def test_uri_store(tmp_path):
    store = ResultsStore(f"file://{tmp_path.as_posix()}/res", "u")
    store.upsert_trial(_row("x"))
    store.save_source("[sweep]\nname = 'u'\n")
    assert (tmp_path / "res" / "u" / "trials.parquet").is_file()
    assert (tmp_path / "res" / "u" / "sweep.toml").read_text() == "[sweep]\nname = 'u'\n"
    assert list(store.trials()["trial_id"]) == ["x"]


def test_newer_schema_version_is_refused_with_the_file_named(tmp_path):
    ResultsStore(tmp_path, "old").upsert_trial(_row("t"))
    newer = tmp_path / "new"
    newer.mkdir()
    table = pa.table({"sweep": ["new"], "trial_id": ["t"]}).replace_schema_metadata(
        {b"ser_search.schema_version": b"2"})
    pq.write_table(table, newer / "trials.parquet")
    with pytest.raises(ResultsError, match=r"new/trials\.parquet has results schema version 2, newer"):
        read_trials(tmp_path)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    pq.write_table(pa.table({"a": [1]}), foreign / "trials.parquet")
    with pytest.raises(ResultsError, match=r"foreign/trials\.parquet is not a ser-search results file"):
        read_trials(foreign)


def test_reading_while_a_sweep_writes(tmp_path):
    store = ResultsStore(tmp_path, "live")
    store.upsert_trial(_row("t0"))
    n_writes = 40
    done = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(1, n_writes + 1):
                store.upsert_trial(_row(f"t{i}", val_ua=i / n_writes))
        except BaseException as e:  # surfaced below
            failures.append(e)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    seen = []
    while not done.is_set():
        df = read_trials(tmp_path)  # must never see a half-written file
        seen.append(len(df))
        assert df["trial_id"].is_unique
    thread.join()
    assert not failures
    assert len(read_trials(tmp_path)) == n_writes + 1
    assert seen == sorted(seen) and len(seen) > 1


def test_config_columns_and_key():
    cfg = load_sweep(SWEEPS / "center_loss_dai2019.toml")
    base = {"loss_family": "center", "center_lambda": 0.1, "center_lr": 0.5, "frontend": "mel",
            "lr": 1e-3, "batch_size": 32, "seed": 0}
    tc = cfg.trial_config(base)
    cols = config_columns(tc)
    assert cols["loss_family"] == "center" and cols["center_lambda"] == 0.1 and cols["model"] == "cnn_birnn"
    assert cols["gamma"] is None and cols["fold"] == 0 and cols["batch_size"] == 32
    assert '"center_lambda":0.1' in cols["config_json"]

    other_seed = cfg.trial_config({**base, "seed": 3})
    elsewhere = cfg.with_prepared("/elsewhere/prepared").trial_config(base)
    other_lr = cfg.trial_config({**base, "lr": 2e-3})
    assert config_key(other_seed) == config_key(tc) == config_key(elsewhere)
    # where the spectrogram cache lives, or whether it is used, changes no number: same configuration
    cache_elsewhere = tc.model_copy(update={"feature_cache_dir": "/scratch/cache"})
    no_cache = tc.model_copy(update={"feature_cache": "off"})
    assert config_key(cache_elsewhere) == config_key(tc) == config_key(no_cache)
    assert config_key(other_lr) != config_key(tc)
    assert len(config_key(tc)) == 12

    ce = cfg.trial_config({**base, "loss_family": "cross_entropy", "center_lambda": None, "center_lr": None})
    ce_cols = config_columns(ce)
    assert ce_cols["center_lambda"] is None and ce_cols["center_lr"] is None



def test_rows_built_from_configs_store_nulls_for_unused_parameters(tmp_path):
    cfg = load_sweep(SWEEPS / "center_loss_dai2019.toml")
    params = {"loss_family": "center", "center_lambda": 0.1, "center_lr": 0.5, "frontend": "stft",
              "lr": 1e-3, "batch_size": 16, "seed": 0}
    store = ResultsStore(tmp_path, cfg.sweep.name)
    store.upsert_trial({"trial_id": "c", "status": "completed", **config_columns(cfg.trial_config(params))})
    store.upsert_trial({"trial_id": "s", "status": "completed", **config_columns(cfg.trial_config(
        {**params, "loss_family": "cross_entropy", "center_lambda": None, "center_lr": None}))})
    df = store.trials().set_index("trial_id")
    assert df.loc["c", "center_lambda"] == 0.1 and df.loc["c", "frontend"] == "stft"
    assert df[["center_lambda", "center_lr"]].loc["s"].isna().all()
    assert df.loc["s", "config_key"] != df.loc["c", "config_key"]
