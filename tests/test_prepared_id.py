"""The identity of a prepared corpus (PreparedCorpus.prepared_id) and where it is recorded: the
trials row and the configuration key, so two preparations of one corpus never pool."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from search.definition import load_sweep
from search.results import ResultsStore, config_columns, config_key, read_trials
from ser_core.corpus import PROTOCOL_FILE, PreparedCorpus

SWEEPS = Path(__file__).resolve().parents[1] / "search" / "sweeps"


def test_prepared_id_names_one_preparation(synthetic_prepared, tmp_path):
    corpus = PreparedCorpus.load(synthetic_prepared)
    pid = corpus.prepared_id
    assert len(pid) == 12 and int(pid, 16) >= 0
    assert PreparedCorpus.load(synthetic_prepared).prepared_id == pid  # stable across loads
    assert corpus.in_memory().prepared_id == pid                       # what the driver hands to Ray
    copy = tmp_path / "copy"
    shutil.copytree(synthetic_prepared, copy)
    assert PreparedCorpus.load(copy).prepared_id == pid                 # a copy is the same preparation
    # a corpus built without load() computes the same identity from its files
    direct = PreparedCorpus(root=copy, manifest=corpus.manifest, waveforms=corpus.waveforms,
                            sample_rate=corpus.sample_rate, labels=corpus.labels, protocol=corpus.protocol)
    assert direct.prepared_id == pid
    # any change to what protocol.json records is another preparation
    protocol = json.loads((copy / PROTOCOL_FILE).read_text())
    protocol["n_folds"] = protocol["n_folds"]  # same content, other formatting: same identity
    (copy / PROTOCOL_FILE).write_text(json.dumps(protocol))
    assert PreparedCorpus.load(copy).prepared_id == pid
    protocol["segment_seconds"] = 2.5
    (copy / PROTOCOL_FILE).write_text(json.dumps(protocol))
    assert PreparedCorpus.load(copy).prepared_id != pid


def test_another_preparation_of_the_same_clips_gets_another_id(synthetic_prepared, tmp_path):
    from ser_core.prepare import PrepareOptions, prepare_corpora

    source = json.loads((synthetic_prepared / PROTOCOL_FILE).read_text())["corpora"]["synthetic"]
    other = tmp_path / "utterance"
    prepare_corpora({"synthetic": Path(source)}, other,
                    PrepareOptions(segment_seconds=1.5, n_folds=3, augment_copies=1, protocol="utterance"),
                    progress=False)
    assert PreparedCorpus.load(other).prepared_id != PreparedCorpus.load(synthetic_prepared).prepared_id


def test_the_same_source_spelled_another_way_is_the_same_preparation(synthetic_prepared, tmp_path):
    """EmoDB prepared from ../shared/data/emodb and from /work/shared/data/emodb are the same clips:
    they must share an identity, or claims refuse to pair runs of the two (and caches split)."""
    from ser_core.prepare import PrepareOptions, prepare_corpora

    source = Path(json.loads((synthetic_prepared / PROTOCOL_FILE).read_text())["corpora"]["synthetic"])
    detour = source.parent / ".." / source.parent.name / source.name  # .../synthetic0/../synthetic0/wav
    again = tmp_path / "again"
    prepare_corpora({"synthetic": detour}, again,
                    PrepareOptions(segment_seconds=1.5, n_folds=3, augment_copies=1), progress=False)
    assert PreparedCorpus.load(again).prepared_id == PreparedCorpus.load(synthetic_prepared).prepared_id


def test_prepared_id_enters_the_trials_row_and_the_config_key(tmp_path):
    cfg = load_sweep(SWEEPS / "center_loss_dai2019.toml").trial_config(
        {"loss_family": "cross_entropy", "frontend": "mel", "lr": 1e-3, "batch_size": 32, "seed": 0})
    assert config_key(cfg) == config_key(cfg, None)  # rows written before prepared_id keep their key
    assert config_key(cfg, "aaaaaaaaaaaa") != config_key(cfg, "bbbbbbbbbbbb") != config_key(cfg)
    cols = config_columns(cfg, prepared_id="aaaaaaaaaaaa")
    assert cols["prepared_id"] == "aaaaaaaaaaaa" and cols["config_key"] == config_key(cfg, "aaaaaaaaaaaa")
    assert config_columns(cfg)["prepared_id"] is None
    store = ResultsStore(tmp_path, "s-confirm")
    store.upsert_trial({"trial_id": "t1", "status": "completed", "stage": "confirm", "source_sweep": "s", **cols})
    row = read_trials(tmp_path).iloc[0]
    assert (row["prepared_id"], row["source_sweep"], row["config_key"]) == (
        "aaaaaaaaaaaa", "s", config_key(cfg, "aaaaaaaaaaaa"))


@pytest.mark.parametrize("missing", ["source_sweep", "prepared_id"])
def test_rows_written_before_the_columns_read_as_null(tmp_path, missing):
    """Results files from before these columns: read back with the columns null."""
    import pandas as pd
    import pyarrow.parquet as pq

    from search.results import TRIALS_SCHEMA

    store = ResultsStore(tmp_path, "old")
    store.upsert_trial({"trial_id": "t1", "status": "completed", "source_sweep": "x", "prepared_id": "y"})
    table = pq.read_table(store.path("trials"))
    keep = [n for n in table.column_names if n != missing]
    pq.write_table(table.select(keep).replace_schema_metadata(TRIALS_SCHEMA.metadata), store.path("trials"))
    assert missing not in pq.read_table(store.path("trials")).column_names
    row = read_trials(tmp_path).iloc[0]
    assert pd.isna(row[missing]) and row["status"] == "completed"
