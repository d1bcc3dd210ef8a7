"""Part files: a sweep's tables grow by appending small files that are compacted into one.

Why: rewriting a results table for every report costs O(rows) per report and O(rows²) per
sweep (issue 24 measured 80 s to write 12,000 epoch rows one report at a time, and an object
store re-uploads the whole file per report). The driver's writes are buffered in memory instead
and flushed as one small Parquet file per table (a *part*) every `FLUSH_S` seconds, at every
trial's end and at each of Tune's experiment snapshots: a report costs the same at 100 rows as
at 1,000,000, and an object store gets one PUT per flush. In the background the parts are
folded into the table's single file at most every `COMPACT_EVERY_S` seconds and at most
`COMPACT_DUTY` of the time (a fold is O(rows)); also at the end of a run, on `--resume` and by
`ser-search compact`.

    <sweep>/trials.parquet, epochs.parquet, confusion.parquet   the compacted tables
    <sweep>/parts/<table>/<sequence>-<random>.parquet          rows written since the last fold

Rows are replaced by *group*: a trial's row by its trial id, an epoch row by (trial, epoch), a
trial's confusion cells all together by its trial id. Of the files holding a group, the newest
wins: the compacted file is older than every part, and parts are ordered by their sequence (a
clock reading, increasing within a process; a resume folds the parts of an earlier driver first).

Readers: `read_sweep_table` (behind search.results' read_*) reads the compacted file and the
parts and keeps each group's newest rows, so it sees every flushed row exactly once. Other tools
(DuckDB, Polars, pandas) read `<table>.parquet`: complete at the end of a run and after
`ser-search compact`; while a driver runs, at most one fold interval behind.
"""
from __future__ import annotations

import atexit
import logging
import threading
import time
import uuid
import weakref

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from .files import VanishedError, exists, read_results_file, write_atomic
from .location import ResultsError
from .schema import TABLES

logger = logging.getLogger(__name__)

PARTS_DIR = "parts"
# The rows a newer write replaces: the key of one row, except a trial's confusion cells, which
# are replaced together (a re-run may yield other classes).
GROUPS: dict[str, tuple[str, ...]] = {"trials": ("sweep", "trial_id"), "epochs": ("sweep", "trial_id", "epoch"),
                                      "confusion": ("sweep", "trial_id")}
FLUSH_S = 2.0          # buffered rows reach a part file at least this often
COMPACT_EVERY_S = 10.0  # parts are folded into the table's file at most this often while a run goes on
COMPACT_DUTY = 0.05     # ... and at most this share of the time (a fold of a large table takes a while)

_ORDER, _ROW = "__file_order", "__row"
_sequence_lock = threading.Lock()
_last_sequence = 0


def _next_sequence() -> int:
    """A clock reading in ns, strictly increasing within this process."""
    global _last_sequence
    with _sequence_lock:
        _last_sequence = max(time.time_ns(), _last_sequence + 1)
        return _last_sequence


def table_file(root: str, name: str) -> str:
    return f"{root}/{name}.parquet"


def parts_dir(root: str, name: str) -> str:
    return f"{root}/{PARTS_DIR}/{name}"


def list_parts(fs: pafs.FileSystem, root: str, name: str) -> list[str]:
    """The table's part files, oldest first.

    Arrow's `allow_not_found` has a window: the listing fails on a missing directory, then
    Arrow checks that it is missing, and if a writer's first flush created it in between, the
    listing's FileNotFoundError escapes. The directory is never removed, so listing again sees it.
    """
    selector = pafs.FileSelector(parts_dir(root, name), allow_not_found=True)
    for attempt in range(3):
        try:
            infos = fs.get_file_info(selector)
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")
                  and ".tmp-" not in i.base_name)


def has_table(fs: pafs.FileSystem, root: str, name: str) -> bool:
    """Whether the directory holds the table, compacted or in parts."""
    return exists(fs, table_file(root, name)) or bool(list_parts(fs, root, name))


def group_keys(table: pa.Table, name: str) -> list[tuple]:
    return list(zip(*(table.column(k).to_pylist() for k in GROUPS[name])))


def latest_rows(tables: list[pa.Table], name: str) -> pa.Table:
    """The rows of each group from the newest of `tables` (oldest first) that holds the group,
    in file order, then row order."""
    schema = TABLES[name][0]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return schema.empty_table()
    if len(tables) == 1:  # one file never holds a group twice (writes replace within a buffer)
        return tables[0]
    group = list(GROUPS[name])
    whole = pa.concat_tables(tables)
    order = np.concatenate([np.full(t.num_rows, i, dtype=np.int64) for i, t in enumerate(tables)])
    # Only the keys take part in the join: Arrow's hash join carries no list columns (folds).
    keys = whole.select(group).append_column(_ORDER, pa.array(order)).append_column(
        _ROW, pa.array(np.arange(whole.num_rows, dtype=np.int64)))
    newest = keys.group_by(group).aggregate([(_ORDER, "max")])
    joined = keys.join(newest, keys=group)
    kept = joined.filter(pc.equal(joined[_ORDER], joined[f"{_ORDER}_max"])).column(_ROW).to_numpy()
    return whole.take(pa.array(np.sort(kept)))


def read_sweep_table(fs: pafs.FileSystem, root: str, name: str) -> pa.Table:
    """One sweep directory's table: its compacted file and its parts, each group's newest rows.
    A part that a fold removes while being read sends the reader back to list again."""
    schema = TABLES[name][0]
    for _ in range(10):
        parts = list_parts(fs, root, name)
        try:
            whole = table_file(root, name)
            tables = [read_results_file(fs, whole, schema)] if exists(fs, whole) else []
            tables += [read_results_file(fs, p, schema) for p in parts]
        except VanishedError:
            continue
        return latest_rows(tables, name)
    raise ResultsError(f"{root}: its {name} files kept changing while being read; try again")


class Journal:
    """The writer of one sweep directory in this process (one per directory: `journal_for`):
    buffered rows, the part files they are flushed to, and the folds of parts into each table.
    Every public method is thread-safe; flushes and folds of one directory never overlap."""

    def __init__(self, fs: pafs.FileSystem, root: str) -> None:
        self.fs, self.root = fs, root
        self._pending: dict[str, dict[tuple, pa.Table]] = {n: {} for n in TABLES}
        self._buffer_lock = threading.Lock()
        self._disk_lock = threading.RLock()
        self._written: dict[str, int] = {n: 0 for n in TABLES}  # parts this journal wrote since a fold
        self._folded_at = {n: time.monotonic() for n in TABLES}
        self._fold_cost = {n: 0.0 for n in TABLES}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.flush_s = FLUSH_S

    # ------------------------------------------------------------------ buffered rows
    def add(self, name: str, table: pa.Table) -> None:
        """Buffer rows (already checked against the schema); a newer row of a group replaces
        the buffered one. O(rows added), whatever the size of the table on disk."""
        by_group: dict[tuple, list[int]] = {}
        for i, key in enumerate(group_keys(table, name)):
            by_group.setdefault(key, []).append(i)
        slices = {k: (table.slice(v[0], 1) if len(v) == 1 else table.take(pa.array(v))) for k, v in by_group.items()}
        with self._buffer_lock:
            self._pending[name].update(slices)

    def pending_rows(self) -> int:
        with self._buffer_lock:
            return sum(t.num_rows for groups in self._pending.values() for t in groups.values())

    def flush(self) -> None:
        """Write every buffered row: one part file per table that has any."""
        with self._disk_lock:
            with self._buffer_lock:
                pending, self._pending = self._pending, {n: {} for n in TABLES}
            for name, groups in pending.items():
                if not groups:
                    continue
                path = f"{parts_dir(self.root, name)}/{_next_sequence():020d}-{uuid.uuid4().hex[:8]}.parquet"
                try:
                    self.fs.create_dir(parts_dir(self.root, name), recursive=True)
                    write_atomic(self.fs, path, pa.concat_tables(list(groups.values())))
                except BaseException:
                    with self._buffer_lock:  # kept for the next flush; rows buffered since are newer
                        for n, g in pending.items():
                            self._pending[n] = {**g, **self._pending[n]}
                    raise
                pending[name] = {}
                self._written[name] += 1

    # ------------------------------------------------------------------ folds
    def fold(self, name: str, new: pa.Table | None = None, drop: set[tuple] | frozenset = frozenset()) -> None:
        """Fold the table's parts into its file, `new` as the newest rows and the groups in
        `drop` left out. O(rows of the table): for the end of a run, a resume, `compact`, and
        the direct (unbuffered) writes of ResultsStore."""
        schema = TABLES[name][0]
        with self._disk_lock:
            started = time.monotonic()
            parts = list_parts(self.fs, self.root, name)
            whole = table_file(self.root, name)
            if not parts and new is None and not drop:
                return
            tables = [read_results_file(self.fs, whole, schema)] if exists(self.fs, whole) else []
            tables += [read_results_file(self.fs, p, schema) for p in parts]
            table = latest_rows([*tables, *([new] if new is not None else [])], name)
            if drop:
                keep = np.array([k not in drop for k in group_keys(table, name)], dtype=bool)
                table = table.filter(pa.array(keep))
            write_atomic(self.fs, whole, table)
            for p in parts:
                try:
                    self.fs.delete_file(p)
                except OSError as e:  # the next fold reads it again: its rows are older than the file's
                    logger.warning("could not delete the folded part %s: %s", p, e)
            self._written[name] = 0
            self._folded_at[name] = time.monotonic()
            self._fold_cost[name] = self._folded_at[name] - started

    def fold_all(self) -> None:
        self.flush()
        for name in TABLES:
            self.fold(name)

    def fold_if_due(self, name: str, every_s: float = COMPACT_EVERY_S) -> bool:
        """Fold the table when it has parts, `every_s` has passed since its last fold, and
        folding now keeps the folds within COMPACT_DUTY of the time. Returns whether it folded."""
        wait = max(every_s, self._fold_cost[name] / COMPACT_DUTY)
        if self._written[name] and time.monotonic() - self._folded_at[name] >= wait:
            self.fold(name)
            return True
        return False

    def _fold_due(self) -> None:
        for name in TABLES:
            self.fold_if_due(name)

    # ------------------------------------------------------------------ the background thread
    def start(self) -> None:
        """Flush (and fold when due) in a thread of its own, off the Tune event loop."""
        with self._buffer_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"results-journal:{self.root}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
                self._fold_due()
            except Exception as e:  # noqa: BLE001 - rows stay buffered; the next (or a synchronous) flush retries
                logger.warning("results in %s: a background flush or fold failed (retried): %s", self.root, e)

    def close(self) -> None:
        """Stop the thread and flush what is buffered."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=60)
        self.flush()


_JOURNALS: weakref.WeakValueDictionary[tuple[str, str], Journal] = weakref.WeakValueDictionary()
_OPEN: set[Journal] = set()  # journals with a running thread: flushed at interpreter exit
_registry_lock = threading.Lock()


def journal_for(fs: pafs.FileSystem, root: str) -> Journal:
    """The journal of a sweep directory in this process: every store of the directory shares
    its buffer, so their rows keep one order."""
    key = (fs.type_name, root)
    with _registry_lock:
        journal = _JOURNALS.get(key)
        if journal is None:
            journal = _JOURNALS[key] = Journal(fs, root)
        return journal


def keep_open(journal: Journal) -> None:
    with _registry_lock:
        _OPEN.add(journal)
    journal.start()


def release(journal: Journal) -> None:
    journal.close()
    with _registry_lock:
        _OPEN.discard(journal)


@atexit.register
def _flush_open_journals() -> None:
    for journal in list(_OPEN):
        try:
            journal.close()
        except Exception as e:  # noqa: BLE001 - at exit: say so, go on with the others
            logger.warning("results in %s: buffered rows could not be written at exit: %s", journal.root, e)
