"""Results written in O(1) per report (search.results.parts): buffered rows reach small part
files, readers see parts and compacted files alike and never a row twice, the newest write of a
key wins, a killed writer loses nothing it flushed, and `ser-search compact` folds the parts."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest

from search.driver.lock import hold_sweep
from search.results import ResultsStore, read_confusion, read_epochs, read_trials
from search.results import parts
from search.results.parts import list_parts
from search.results.schema import confusion_rows

ROOT = Path(__file__).resolve().parents[1]


def _epoch(trial: str, epoch: int, val: float) -> dict:
    return {"trial_id": trial, "epoch": epoch, "train_loss": 1.0, "val_loss": 1.0, "val_ua": val, "val_wa": val,
            "best_val_ua": val, "seconds": 0.1}


def _parts(store: ResultsStore, name: str) -> list[str]:
    return list_parts(store.fs, store.root, name)


@pytest.fixture
def hand_flushed(monkeypatch):
    """Buffered stores made in the test flush only when told (no timer flush in between)."""
    monkeypatch.setattr(parts, "FLUSH_S", 3600.0)


def test_a_buffered_report_rewrites_no_table_and_a_flush_writes_one_part(tmp_path, hand_flushed):
    ResultsStore(tmp_path, "s").upsert_epochs([_epoch(f"old{i}", 1, 0.5) for i in range(1000)])
    table = tmp_path / "s" / "epochs.parquet"
    before = (table.stat().st_size, table.stat().st_mtime_ns)

    store = ResultsStore(tmp_path, "s", buffered=True)
    for epoch in range(1, 51):
        store.upsert_epochs([_epoch("new", epoch, epoch / 100)])
    assert (table.stat().st_size, table.stat().st_mtime_ns) == before  # 50 reports: the big file untouched
    assert _parts(store, "epochs") == []
    assert len(read_epochs(tmp_path / "s")) == 1000  # not yet on disk

    store.flush()
    assert len(_parts(store, "epochs")) == 1  # one part for the 50 reports
    assert (table.stat().st_size, table.stat().st_mtime_ns) == before
    epochs = read_epochs(tmp_path / "s")
    assert len(epochs) == 1050 and not epochs.duplicated(["trial_id", "epoch"]).any()
    store.close()


def test_the_newest_write_of_a_key_wins_across_file_and_parts_and_compaction_keeps_it(tmp_path, hand_flushed):
    direct = ResultsStore(tmp_path, "s")
    direct.upsert_epochs([_epoch("t1", 1, 0.1), _epoch("t2", 1, 0.9)])
    direct.upsert_trial({"trial_id": "t1", "status": "error", "error": "boom"})
    direct.replace_confusion("t1", confusion_rows([[3, 1], [0, 2]], ["a", "b"], "test"))

    store = ResultsStore(tmp_path, "s", buffered=True)
    store.upsert_epochs([_epoch("t1", 1, 0.2), _epoch("t1", 2, 0.4)])
    store.flush()
    store.upsert_epochs([_epoch("t1", 1, 0.3)])  # the report of epoch 1 made again (a restored trial)
    store.upsert_trial({"trial_id": "t1", "status": "completed"})  # the retried trial's outcome
    store.replace_confusion("t1", confusion_rows([[1, 0, 0], [0, 1, 0], [0, 0, 1]], ["a", "b", "c"], "test"))
    store.flush()
    assert len(_parts(store, "epochs")) == 2

    def check() -> None:
        epochs = read_epochs(tmp_path / "s").set_index(["trial_id", "epoch"])["val_ua"]
        assert epochs.to_dict() == {("t1", 1): 0.3, ("t1", 2): 0.4, ("t2", 1): 0.9}
        trials = read_trials(tmp_path / "s")
        assert trials[["trial_id", "status"]].values.tolist() == [["t1", "completed"]]
        cells = read_confusion(tmp_path / "s")
        assert len(cells) == 9 and set(cells["true_label"]) == {"a", "b", "c"}  # the old 2x2 cells are gone

    check()
    store.compact()
    assert all(_parts(store, n) == [] for n in ("trials", "epochs", "confusion"))
    check()
    # after compaction each table is one plain Parquet file: what pandas, DuckDB or Polars read
    plain = pd.read_parquet(tmp_path / "s" / "epochs.parquet").set_index(["trial_id", "epoch"])["val_ua"]
    assert plain.to_dict() == {("t1", 1): 0.3, ("t1", 2): 0.4, ("t2", 1): 0.9}
    store.close()


def test_a_reader_never_sees_a_row_twice_while_parts_are_flushed_and_folded(tmp_path, hand_flushed):
    store = ResultsStore(tmp_path, "s", buffered=True)
    done = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(120):
                # every epoch is reported twice, the second time in a later part: only one may show
                store.upsert_epochs([_epoch("t", i, 0.0)])
                store.flush()
                store.upsert_epochs([_epoch("t", i, 1.0)])
                store.flush()
                if i % 10 == 9:
                    store.compact()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failures.append(e)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    seen, reads = 0, 0
    while not done.is_set() or reads == 0:
        epochs = read_epochs(tmp_path / "s")
        assert not epochs.duplicated(["trial_id", "epoch"]).any()
        assert len(epochs) >= seen  # rows never disappear
        seen, reads = len(epochs), reads + 1
    writer.join()
    assert not failures, failures
    assert reads > 5
    final = read_epochs(tmp_path / "s")
    assert len(final) == 120 and set(final["val_ua"]) == {1.0}
    store.close()


class _CreatedWhileListed:
    """A local filesystem on which the first listing of a missing directory meets Arrow's
    `allow_not_found` window: a writer creates the directory after the listing failed and before
    Arrow checked that it is missing, so the listing's FileNotFoundError escapes (Arrow's own
    message). Reproduced with real threads in 5,245 of 200,000 listings; made deterministic here."""

    def __init__(self, created: Path, part: Path) -> None:
        self.local, self.created, self.part, self.raised = pafs.LocalFileSystem(), created, part, 0

    def get_file_info(self, what):
        if isinstance(what, pafs.FileSelector) and not self.created.exists() and not self.raised:
            self.created.mkdir(parents=True)
            self.part.write_bytes(b"")  # the writer's first part lands in it too
            self.raised += 1
            raise FileNotFoundError(f"[Errno 2] Cannot list directory '{what.base_dir}'. "
                                    "Detail: [errno 2] No such file or directory")
        return self.local.get_file_info(what)


def test_listing_parts_survives_the_directory_appearing_while_it_is_listed(tmp_path):
    epochs_dir = tmp_path / "s" / "parts" / "epochs"
    fs = _CreatedWhileListed(epochs_dir, epochs_dir / "000001-a.parquet")
    assert list_parts(fs, (tmp_path / "s").as_posix(), "epochs") == [(epochs_dir / "000001-a.parquet").as_posix()]
    assert fs.raised == 1


_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    import search.results.parts as parts
    parts.FLUSH_S = 3600  # only the explicit flush below reaches disk
    from search.results import ResultsStore
    store = ResultsStore(sys.argv[1], "s", buffered=True)
    row = lambda e, v: {"trial_id": "t", "epoch": e, "train_loss": 1.0, "val_loss": 1.0, "val_ua": v,
                        "val_wa": v, "best_val_ua": v, "seconds": 0.1}
    for e in range(1, 6):
        store.upsert_epochs([row(e, e / 10)])
    store.flush()            # epochs 1-5 flushed (a Tune snapshot names epoch 4's checkpoint, say)
    for e in range(6, 9):
        store.upsert_epochs([row(e, e / 10)])   # 6-8 buffered when the driver dies
    print("ready", flush=True)
    time.sleep(600)
""")


def test_a_killed_writer_loses_no_flushed_report_and_a_resume_duplicates_none(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert read_epochs(tmp_path / "s")["epoch"].tolist() == [1, 2, 3, 4, 5]  # flushed: all there

    # the resume: the parts are folded, then the restored trial reports again from epoch 5 on
    ResultsStore(tmp_path, "s").compact()
    store = ResultsStore(tmp_path, "s", buffered=True)
    for e in range(5, 9):
        store.upsert_epochs([_epoch("t", e, 0.5 if e == 5 else e / 10 + 0.01)])
    store.close()
    epochs = read_epochs(tmp_path / "s").sort_values("epoch")
    assert epochs["epoch"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert epochs.set_index("epoch").loc[[1, 2, 3, 4], "val_ua"].tolist() == [0.1, 0.2, 0.3, 0.4]
    assert epochs.set_index("epoch").loc[5, "val_ua"] == 0.5  # the last report of an epoch wins


def test_compact_folds_every_sweep_and_is_refused_while_a_driver_holds_one(tmp_path):
    for name in ("a", "b"):
        store = ResultsStore(tmp_path, name, buffered=True)
        store.upsert_trial({"trial_id": f"{name}1", "status": "completed"})
        store.upsert_epochs([_epoch(f"{name}1", 1, 0.5)])
        store.close()  # flushed to parts, not folded
        assert _parts(store, "trials") and not (tmp_path / name / "trials.parquet").exists()
    cmd = [sys.executable, "-m", "search.cli", "compact", str(tmp_path)]
    with hold_sweep(tmp_path / "b", "sweep 'b'"):
        busy = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert busy.returncode == 2 and "being run by" in busy.stderr, busy.stderr[-2000:]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("a", "b"):
        assert not list((tmp_path / name / "parts").rglob("*.parquet"))
        assert pd.read_parquet(tmp_path / name / "trials.parquet")["trial_id"].tolist() == [f"{name}1"]
    assert sorted(read_trials(tmp_path)["trial_id"]) == ["a1", "b1"]


@pytest.mark.parametrize("uri", [True, False])
def test_parts_on_an_object_store_uri_read_like_local_ones(tmp_path, uri):
    results = f"file://{tmp_path}" if uri else str(tmp_path)
    store = ResultsStore(results, "s", buffered=True)
    store.upsert_epochs([_epoch("t", 1, 0.5)])
    store.flush()
    assert read_epochs(f"{results}/s")["trial_id"].tolist() == ["t"]
    store.close()


def test_rebase_moves_only_the_paths_under_the_old_directory(tmp_path):
    store = ResultsStore(tmp_path, "s")
    store.upsert_trial({"trial_id": "a", "status": "completed", "checkpoint": "/old/s/tune/a/checkpoint_000002/best.pt"})
    store.upsert_trial({"trial_id": "b", "status": "completed", "checkpoint": "/elsewhere/b/best.pt"})
    store.upsert_trial({"trial_id": "c", "status": "pruned"})
    assert store.rebase("checkpoint", "/old/s/", f"{tmp_path}/s/") == 1
    paths = read_trials(tmp_path / "s").set_index("trial_id")["checkpoint"]
    assert paths["a"] == f"{tmp_path}/s/tune/a/checkpoint_000002/best.pt"
    assert paths["b"] == "/elsewhere/b/best.pt" and pd.isna(paths["c"])
    assert len(paths) == 3


def test_keep_current_folds_the_table_into_its_file_while_folds_are_cheap(tmp_path, hand_flushed):
    """The trials table after a trial's end: readers of trials.parquet itself see the row."""
    store = ResultsStore(tmp_path, "s", buffered=True)
    store.upsert_trial({"trial_id": "a", "status": "completed"})
    store.keep_current("trials")
    assert pd.read_parquet(tmp_path / "s" / "trials.parquet")["trial_id"].tolist() == ["a"]
    assert _parts(store, "trials") == []
    store.close()
