"""The results store: three Parquet tables per sweep under `<results>/<sweep>/` (schemas:
search.results.schema), read and written on a local disk or an object store alike. Files
are small (one row per trial or epoch), so an update reads the file, replaces the affected
rows and rewrites it; the rewrite goes to a temporary name that is then moved over the old
file, so a reader sees either the old or the new file, never half of one.

One writer per sweep: the upsert is read-modify-write, so two processes writing the same
sweep at the same moment can lose each other's rows. The Ray driver is that writer.
"""
from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .location import ResultsError, filesystem
from .schema import (CONFUSION_SCHEMA, SCHEMA_VERSION, STAGES, STATUSES, TABLES, VERSION_KEY, is_missing,
                     rows_table)

def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.File


def _read_file(fs: pafs.FileSystem, path: str, schema: pa.Schema) -> pa.Table:
    """One results file, checked for a schema version this code understands and brought to the
    current schema (columns a file lacks come back null, so additive changes stay readable)."""
    try:
        # One sequential read into memory: opening the path twice (footer, then pages) could
        # straddle a writer's rename and mix two versions of the file.
        with fs.open_input_stream(path) as stream:
            table = pq.read_table(pa.BufferReader(stream.read()))
    except (pa.ArrowInvalid, OSError) as e:
        raise ResultsError(f"cannot read results file {path}: {e}") from None
    meta = table.schema.metadata or {}
    raw = meta.get(VERSION_KEY)
    if raw is None:
        raise ResultsError(f"{path} is not a ser-search results file (no {VERSION_KEY.decode()} in its metadata)")
    try:
        version = int(raw.decode())
    except ValueError:
        raise ResultsError(f"{path}: unreadable schema version {raw!r}") from None
    if version > SCHEMA_VERSION:
        raise ResultsError(f"{path} has results schema version {version}, newer than this reader "
                           f"({SCHEMA_VERSION}); upgrade ser-search to read it")
    columns = []
    for field in schema:
        if field.name in table.column_names:
            try:
                columns.append(table.column(field.name).cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise ResultsError(f"{path}: column {field.name!r} cannot be read as {field.type}: {e}") from None
        else:
            columns.append(pa.nulls(table.num_rows, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _write_atomic(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with fs.open_output_stream(tmp) as sink:
            pq.write_table(table, sink)
        fs.move(tmp, path)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except OSError:
            pass
        raise


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    # Nullable Int64 keeps batch_size/epoch integers when some rows are null.
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def _result_files(fs: pafs.FileSystem, root: str, name: str, shown: str) -> list[str]:
    """`<root>/<name>.parquet` for a sweep dir, else `<root>/*/<name>.parquet` (several
    sweeps), in sweep-name order; a missing location is an error, an empty one is not."""
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise ResultsError(f"results location not found: {shown}")
    if info.type == pafs.FileType.File:
        return [root]
    single = f"{root.rstrip('/')}/{name}.parquet"
    if _exists(fs, single):
        return [single]
    subdirs = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(root)) if i.type == pafs.FileType.Directory)
    return [p for p in (f"{d}/{name}.parquet" for d in subdirs) if _exists(fs, p)]


def _read_all(fs: pafs.FileSystem, root: str, name: str, shown: str) -> pd.DataFrame:
    schema = TABLES[name][0]
    tables = [_read_file(fs, f, schema) for f in _result_files(fs, root, name, shown)]
    return _to_pandas(pa.concat_tables(tables) if tables else schema.empty_table())


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
        return _exists(fs, f"{path}/{name}")

    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return False, f"no sweep found: {shown} is not a results directory"
    started = [d for d in [root, *dirs(root)] if has(d, "sweep.toml") or has(d, "epochs.parquet")]
    if started:
        names = ", ".join(d.rsplit("/", 1)[-1] for d in started)
        return True, f"no trial has finished yet in {shown} (sweep: {names})"
    below = [d for d in dirs(root) if any(has(s, "trials.parquet") for s in dirs(d))]
    hint = ("; sweeps are in " + ", ".join(f"{shown}/{d.rsplit('/', 1)[-1]}" for d in below)) if below else ""
    return False, (f"no sweep found in {shown}: looked for {shown}/trials.parquet and {shown}/*/trials.parquet "
                   f"(pass the --results directory of `ser-search sweep`){hint}")


# ---------------------------------------------------------------------------- store


class ResultsStore:
    """The writer for one sweep's directory `<results>/<sweep>/`."""

    def __init__(self, results: str | Path, sweep: str) -> None:
        if not sweep or "/" in sweep or sweep in (".", ".."):
            raise ResultsError(f"invalid sweep name {sweep!r} for a results directory")
        self.sweep = sweep
        self.fs, root = filesystem(results)
        self.root = f"{root.rstrip('/')}/{sweep}"
        self.fs.create_dir(self.root, recursive=True)
        self._lock = threading.Lock()

    def path(self, name: str) -> str:
        return f"{self.root}/{name}.parquet"

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
        self._upsert("trials", [row])

    def upsert_epochs(self, rows: list[dict[str, Any]]) -> None:
        """Insert or replace per-epoch rows, keyed by (trial_id, epoch)."""
        rows = [self._own(r, "epochs") for r in rows]
        for r in rows:
            if is_missing(r.get("trial_id")) or is_missing(r.get("epoch")):
                raise ResultsError(f"epochs row {r}: 'trial_id' and 'epoch' are required")
        self._upsert("epochs", rows)

    def replace_confusion(self, trial_id: str, rows: list[dict[str, Any]]) -> None:
        """Replace all confusion cells of one trial (every split) with `rows`."""
        own = []
        for r in rows:
            if r.get("trial_id", trial_id) != trial_id:
                raise ResultsError(f"confusion row for trial {r['trial_id']!r} passed to replace_confusion({trial_id!r})")
            own.append(self._own({**r, "trial_id": trial_id}, "confusion"))
        new = rows_table(own, CONFUSION_SCHEMA, f"{self.path('confusion')}")
        with self._lock:
            old = self._current("confusion")
            if old is not None:
                keep = np.array([t != trial_id for t in old.column("trial_id").to_pylist()], dtype=bool)
                new = pa.concat_tables([old.filter(pa.array(keep)), new])
            _write_atomic(self.fs, self.path("confusion"), new)

    def save_source(self, text: str) -> None:
        """Keep the sweep file next to its results (sweep.toml), so a result says how it was made."""
        data = text.encode("utf-8")
        tmp = f"{self.root}/sweep.toml.tmp-{uuid.uuid4().hex}"
        with self.fs.open_output_stream(tmp) as sink:
            sink.write(data)
        self.fs.move(tmp, f"{self.root}/sweep.toml")

    def trials(self) -> pd.DataFrame:
        return _read_all(self.fs, self.root, "trials", self.root)

    def epochs(self) -> pd.DataFrame:
        return _read_all(self.fs, self.root, "epochs", self.root)

    def confusion(self) -> pd.DataFrame:
        return _read_all(self.fs, self.root, "confusion", self.root)

    # ------------------------------------------------------------------ internals

    def _own(self, row: dict[str, Any], table: str) -> dict[str, Any]:
        if not isinstance(row, dict):
            raise ResultsError(f"{table} row must be a dict, got {type(row).__name__}")
        sweep = row.get("sweep", self.sweep)
        if sweep != self.sweep:
            raise ResultsError(f"{table} row of sweep {sweep!r} given to the store of sweep {self.sweep!r}")
        return {**row, "sweep": self.sweep}

    def _current(self, name: str) -> pa.Table | None:
        path = self.path(name)
        return _read_file(self.fs, path, TABLES[name][0]) if _exists(self.fs, path) else None

    def _upsert(self, name: str, rows: list[dict[str, Any]]) -> None:
        schema, key_cols = TABLES[name]
        new = rows_table(rows, schema, self.path(name))
        new_keys = list(zip(*(new.column(k).to_pylist() for k in key_cols)))
        if len(set(new_keys)) != len(new_keys):
            dup = next(k for k in new_keys if new_keys.count(k) > 1)
            raise ResultsError(f"{self.path(name)}: key {dict(zip(key_cols, dup))} appears twice in one update")
        with self._lock:
            old = self._current(name)
            if old is not None:
                wanted = set(new_keys)
                old_keys = zip(*(old.column(k).to_pylist() for k in key_cols))
                keep = np.array([k not in wanted for k in old_keys], dtype=bool)
                new = pa.concat_tables([old.filter(pa.array(keep)), new])
            _write_atomic(self.fs, self.path(name), new)
