"""The results store: three Parquet tables per sweep under `<results>/<sweep>/` (schemas:
search.results.schema), read and written on a local disk or an object store alike.

A table is its compacted file plus the part files a running driver appends
(search.results.parts); the readers here read both and never see a row twice. Every file is
replaced atomically (search.results.files), so a reader sees a whole file or none.

One writer per sweep: two processes writing the same sweep at the same moment could lose each
other's rows. The Ray driver is that writer (search.driver.lock).
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs

from .files import exists, read_results_file
from .location import ResultsError, filesystem
from .parts import (GROUPS, group_keys, has_table, journal_for, keep_open, read_sweep_table, release,
                    table_file)
from .schema import (CONFUSION_SCHEMA, EPOCHS_SCHEMA, STAGES, STATUSES, TABLES, TRIALS_SCHEMA, is_missing,
                     rows_table)

def _to_pandas(table: pa.Table) -> pd.DataFrame:
    # Nullable Int64 keeps batch_size/epoch integers when some rows are null.
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def _sweep_roots(fs: pafs.FileSystem, root: str, name: str, shown: str) -> list[str]:
    """`root` when it is a sweep directory holding the table (compacted or in parts), else each
    sweep directory below it that holds one, in sweep-name order; a missing location is an
    error, an empty one is not."""
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise ResultsError(f"results location not found: {shown}")
    if has_table(fs, root, name):
        return [root]
    subdirs = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(root)) if i.type == pafs.FileType.Directory)
    return [d for d in subdirs if has_table(fs, d, name)]


def _read_all(fs: pafs.FileSystem, root: str, name: str, shown: str) -> pd.DataFrame:
    schema = TABLES[name][0]
    if fs.get_file_info(root).type == pafs.FileType.File:  # one Parquet file named directly
        return _to_pandas(read_results_file(fs, root, schema))
    tables = [read_sweep_table(fs, r, name) for r in _sweep_roots(fs, root, name, shown)]
    return _to_pandas(pa.concat_tables(tables) if tables else schema.empty_table())


def sweep_dirs(results: str | Path) -> list[tuple[str, str]]:
    """(results location, sweep name) of each sweep directory at `results` (one sweep's
    directory, or a --results directory of several) that holds any table."""
    fs, root = filesystem(results)
    root = root.rstrip("/")
    text = str(results).rstrip("/")
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        raise ResultsError(f"results location not found: {results}")
    if any(has_table(fs, root, n) for n in TABLES):
        parent, _, name = text.rpartition("/")
        return [(parent or ".", name)]
    subdirs = sorted(i.base_name for i in fs.get_file_info(pafs.FileSelector(root)) if i.type == pafs.FileType.Directory)
    return [(text, d) for d in subdirs if any(has_table(fs, f"{root}/{d}", n) for n in TABLES)]


def read_trials(results: str | Path) -> pd.DataFrame:
    """Every trial under a results dir (all sweeps) or one sweep dir; one row per trial."""
    return _read_all(*filesystem(results), "trials", str(results))


def read_epochs(results: str | Path) -> pd.DataFrame:
    return _read_all(*filesystem(results), "epochs", str(results))


def read_confusion(results: str | Path) -> pd.DataFrame:
    return _read_all(*filesystem(results), "confusion", str(results))


def explain_no_trials(results: str | Path) -> tuple[bool, str]:
    """Why `read_trials(results)` holds no trial, as (started, message). started: a sweep is
    there (its sweep.toml, or epochs of running trials) but no trial has finished yet, which is
    no error. Otherwise no sweep
    is there: the message says where sweeps were looked for and names any folder one level
    below that holds sweeps (e.g. the demo's `--out` instead of its `results/`)."""
    fs, root = filesystem(results)
    shown = str(results).rstrip("/") or str(results)
    root = root.rstrip("/")

    def dirs(path: str) -> list[str]:
        return sorted(i.path for i in fs.get_file_info(pafs.FileSelector(path)) if i.type == pafs.FileType.Directory)

    def has(path: str, name: str) -> bool:
        return exists(fs, f"{path}/{name}")

    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return False, f"no sweep found: {shown} is not a results directory"
    started = [d for d in [root, *dirs(root)] if has(d, "sweep.toml") or has_table(fs, d, "epochs")]
    if started:
        names = ", ".join(d.rsplit("/", 1)[-1] for d in started)
        return True, f"no trial has finished yet in {shown} (sweep: {names})"
    below = [d for d in dirs(root) if any(has_table(fs, s, "trials") for s in dirs(d))]
    hint = ("; sweeps are in " + ", ".join(f"{shown}/{d.rsplit('/', 1)[-1]}" for d in below)) if below else ""
    return False, (f"no sweep found in {shown}: looked for {shown}/trials.parquet and {shown}/*/trials.parquet "
                   f"(pass the --results directory of `ser-search sweep`){hint}")


# ---------------------------------------------------------------------------- store


class ResultsStore:
    """The writer for one sweep's directory `<results>/<sweep>/`.

    Direct (the default): each write is in the table's file when it returns, at O(rows of the
    table) per write; for tools, tests and a run's few bookkeeping rows. `buffered=True` (the
    driver's recorder): writes are buffered and reach part files on a timer, at `flush()` and
    at `close()`, at O(rows written) each (search.results.parts). Either way a later write of a
    row's key replaces the row: a retried trial keeps exactly one row, the last report of an
    epoch wins. One driver writes a sweep at a time (search.driver.lock)."""

    def __init__(self, results: str | Path, sweep: str, *, buffered: bool = False) -> None:
        if not sweep or "/" in sweep or sweep in (".", ".."):
            raise ResultsError(f"invalid sweep name {sweep!r} for a results directory")
        self.sweep = sweep
        self.buffered = buffered
        self.fs, root = filesystem(results)
        self.root = f"{root.rstrip('/')}/{sweep}"
        self.fs.create_dir(self.root, recursive=True)
        self._journal = journal_for(self.fs, self.root)
        if buffered:
            keep_open(self._journal)

    def path(self, name: str) -> str:
        return table_file(self.root, name)

    def upsert_trial(self, row: dict[str, Any]) -> None:
        """Insert or replace the trial's row: a retried trial keeps exactly one row."""
        row = self._own(row, "trials")
        for column in ("trial_id", "status"):
            if is_missing(row.get(column)):
                raise ResultsError(f"trials row: {column!r} is required")
        if row["status"] not in STATUSES:
            raise ResultsError(f"trials row {row['trial_id']!r}: status {row['status']!r} is not one of {STATUSES}")
        if not is_missing(row.get("stage")) and row["stage"] not in STAGES:
            raise ResultsError(f"trials row {row['trial_id']!r}: stage {row['stage']!r} is not one of {STAGES}")
        self._write("trials", rows_table([row], TRIALS_SCHEMA, self.path("trials")))

    def upsert_epochs(self, rows: list[dict[str, Any]]) -> None:
        """Insert or replace per-epoch rows, keyed by (trial_id, epoch)."""
        rows = [self._own(r, "epochs") for r in rows]
        for r in rows:
            if is_missing(r.get("trial_id")) or is_missing(r.get("epoch")):
                raise ResultsError(f"epochs row {r}: 'trial_id' and 'epoch' are required")
        new = rows_table(rows, EPOCHS_SCHEMA, self.path("epochs"))
        keys = group_keys(new, "epochs")
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise ResultsError(f"{self.path('epochs')}: key {dict(zip(GROUPS['epochs'], dup))} appears twice in one update")
        self._write("epochs", new)

    def replace_confusion(self, trial_id: str, rows: list[dict[str, Any]]) -> None:
        """Replace all confusion cells of one trial (every split) with `rows`."""
        own = []
        for r in rows:
            if r.get("trial_id", trial_id) != trial_id:
                raise ResultsError(f"confusion row for trial {r['trial_id']!r} passed to replace_confusion({trial_id!r})")
            own.append(self._own({**r, "trial_id": trial_id}, "confusion"))
        new = rows_table(own, CONFUSION_SCHEMA, self.path("confusion"))
        if own:
            self._write("confusion", new)
        else:  # no cells: the trial's old ones go (a buffer holds no empty group)
            self._journal.flush()
            self._journal.fold("confusion", drop={(self.sweep, trial_id)})

    def flush(self) -> None:
        """Write what is buffered to part files now (a trial's end, a Tune snapshot)."""
        self._journal.flush()

    def keep_current(self, name: str) -> None:
        """Flush, then fold the table into its file unless folds would take more than
        search.results.parts.COMPACT_DUTY of the time: the trials table after each trial's end,
        so `trials.parquet` itself stays current for other tools while folding stays cheap."""
        self._journal.flush()
        self._journal.fold_if_due(name, every_s=0.0)

    def compact(self) -> None:
        """Fold every part into the tables' files (search.results.parts): after it, each table
        is one file, as DuckDB, Polars or pandas expect."""
        self._journal.fold_all()

    def close(self) -> None:
        """Flush and stop the background writer of a buffered store."""
        release(self._journal)

    def rebase(self, column: str, old_prefix: str, new_prefix: str) -> int:
        """Rewrite the trial rows whose `column` starts with `old_prefix` to start with
        `new_prefix` (a results directory moved: its checkpoint paths). Returns how many."""
        self._journal.flush()
        table = read_sweep_table(self.fs, self.root, "trials")
        values = table.column(column).to_pylist()
        moved = [i for i, v in enumerate(values) if isinstance(v, str) and v.startswith(old_prefix)]
        if moved:
            at_moved = set(moved)
            fixed = [new_prefix + v[len(old_prefix):] if i in at_moved else v for i, v in enumerate(values)]
            at = table.schema.get_field_index(column)
            table = table.set_column(at, table.schema.field(column), pa.array(fixed, type=table.schema.field(column).type))
            self._journal.fold("trials", new=table.take(pa.array(moved)))
        return len(moved)

    def save_source(self, text: str) -> None:
        """Keep the sweep file next to its results (sweep.toml), so a result says how it was made."""
        data = text.encode("utf-8")
        tmp = f"{self.root}/sweep.toml.tmp-{uuid.uuid4().hex}"
        with self.fs.open_output_stream(tmp) as sink:
            sink.write(data)
        self.fs.move(tmp, f"{self.root}/sweep.toml")

    def trials(self) -> pd.DataFrame:
        return self._read("trials")

    def epochs(self) -> pd.DataFrame:
        return self._read("epochs")

    def confusion(self) -> pd.DataFrame:
        return self._read("confusion")

    # ------------------------------------------------------------------ internals

    def _own(self, row: dict[str, Any], table: str) -> dict[str, Any]:
        if not isinstance(row, dict):
            raise ResultsError(f"{table} row must be a dict, got {type(row).__name__}")
        sweep = row.get("sweep", self.sweep)
        if sweep != self.sweep:
            raise ResultsError(f"{table} row of sweep {sweep!r} given to the store of sweep {self.sweep!r}")
        return {**row, "sweep": self.sweep}

    def _write(self, name: str, new: pa.Table) -> None:
        if self.buffered:
            self._journal.add(name, new)
        else:
            self._journal.flush()  # rows another store of this directory buffered are older
            self._journal.fold(name, new=new)

    def _read(self, name: str) -> pd.DataFrame:
        self._journal.flush()  # a store reads its own writes
        return _to_pandas(read_sweep_table(self.fs, self.root, name))
