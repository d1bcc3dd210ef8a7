"""The results store: three Parquet tables per sweep under `<results>/<sweep>/`.

Parquet with fixed schemas (not Ray's own result files) so a sweep's outcome can be read
with pandas/pyarrow/DuckDB anywhere, merged across sweeps, and compared years later. Files
are small (one row per trial or epoch), so an update reads the file, replaces the affected
rows and rewrites it; the rewrite goes to a temporary name that is then moved over the old
file, so a reader sees either the old or the new file, never half of one.

One writer per sweep: the upsert is read-modify-write, so two processes writing the same
sweep at the same moment can lose each other's rows. The Ray driver is that writer.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import threading
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ser_core.config import TrainConfig
from ser_core.protocols import ProtocolError, design_folds, join_corpora, resolve_corpora

SCHEMA_VERSION = 1
VERSION_KEY = b"ser_search.schema_version"
TABLE_KEY = b"ser_search.table"
STATUSES = ("completed", "pruned", "error")
STAGES = ("search", "confirm")
LOSS_PARAM_COLUMNS = ("center_lambda", "center_lr", "gamma", "temperature", "supcon_weight", "margin",
                      "triplet_weight")

_TS = pa.timestamp("us", tz="UTC")
_F = pa.float64()
_I = pa.int64()
_S = pa.string()


def _schema(name: str, fields: list[tuple[str, pa.DataType]]) -> pa.Schema:
    return pa.schema(fields, metadata={VERSION_KEY: str(SCHEMA_VERSION).encode(), TABLE_KEY: name.encode()})


TRIALS_SCHEMA = _schema("trials", [
    ("sweep", _S), ("trial_id", _S), ("stage", _S), ("status", _S), ("source_sweep", _S),
    ("config_key", _S), ("prepared_id", _S), ("model", _S), ("loss_family", _S), ("frontend", _S),
    *[(c, _F) for c in LOSS_PARAM_COLUMNS],
    ("lr", _F), ("batch_size", _I), ("seed", _I), ("fold", _I),
    ("train_corpora", _S), ("eval_corpora", _S), ("classes", _S), ("classes_dropped", _S),
    ("epochs_run", _I), ("best_epoch", _I),
    ("val_ua", _F), ("val_wa", _F), ("val_f1_macro", _F), ("val_precision_macro", _F), ("val_recall_macro", _F),
    ("test_ua", _F), ("test_wa", _F), ("test_f1_macro", _F), ("test_precision_macro", _F),
    ("test_recall_macro", _F),
    # a cross-validated trial (data.folds): its folds, each fold's val/test UA, the t interval of test_ua
    ("folds", pa.list_(_I)), ("val_ua_folds", pa.list_(_F)), ("test_ua_folds", pa.list_(_F)),
    ("test_ua_ci95_low", _F), ("test_ua_ci95_high", _F),
    # each fold's run's other test figures (cross-validated trials): the claims pair fold by fold
    *[(f"{m}_folds", pa.list_(_F)) for m in ("test_wa", "test_f1_macro", "test_precision_macro",
                                             "test_recall_macro", "compactness_test")],
    # the design: folds validated on (what selection read), folds tested on (null: whole corpora),
    # and whether a test fold reported here was also a validation fold of the selection
    ("val_folds", pa.list_(_I)), ("test_folds", pa.list_(_I)), ("selection_exposed", pa.bool_()),
    ("n_train_folds", _I),  # folds one run trains on: n_test/n_train of the corrected fold-level interval
    ("compactness_val", _F), ("compactness_test", _F),
    ("train_seconds", _F), ("node", _S), ("gpu_fraction", _F), ("checkpoint", _S), ("error", _S),
    ("params", _I), ("macs", _I), ("latency_ms", _F),  # the model's cost (ser_core.cost)
    ("config_json", _S), ("started_at", _TS), ("finished_at", _TS),
])
EPOCHS_SCHEMA = _schema("epochs", [
    ("sweep", _S), ("trial_id", _S), ("epoch", _I), ("train_loss", _F), ("val_loss", _F),
    ("val_ua", _F), ("val_wa", _F), ("best_val_ua", _F), ("seconds", _F),
])
CONFUSION_SCHEMA = _schema("confusion", [
    ("sweep", _S), ("trial_id", _S), ("split", _S), ("true_label", _S), ("pred_label", _S), ("count", _I),
])
_TABLES = {"trials": (TRIALS_SCHEMA, ("sweep", "trial_id")),
           "epochs": (EPOCHS_SCHEMA, ("sweep", "trial_id", "epoch")),
           "confusion": (CONFUSION_SCHEMA, ("sweep", "trial_id", "split", "true_label", "pred_label"))}


class ResultsError(ValueError):
    """A row or a results file is invalid; the message names the column or the file."""


# ---------------------------------------------------------------------------- rows


def config_key(cfg: TrainConfig, prepared_id: str | None = None) -> str:
    """Short hash of everything that defines a configuration except what a protocol repeats
    it over — the seed, the test fold and the held-out corpus of leave-one-corpus-out — so
    those repeats group together (and the leaderboard's mean is the cross-validated one).
    Where and how things run (device, fastpath, the feature cache, paths of the prepared corpus
    and outputs) is left out too: the same setting on another node is the same configuration. Named training
    and evaluation corpora stay in: a cross-corpus design is a different experiment. So does
    `prepared_id` (PreparedCorpus.prepared_id) when given: two preparations of one corpus
    (speaker vs utterance folds, 2.5 s vs 3.5 s segments) are two experiments, whatever path
    they were prepared into."""
    d = cfg.model_dump(mode="json", exclude={"seed": True, "device": True, "output": True, "fastpath": True,
                                             "feature_cache": True, "feature_cache_dir": True,
                                             "data": {"prepared", "fold", "leave_out"}})
    # which corpus is held out is a repeat; holding one out at all is a different design
    d["data"]["leave_one_corpus_out"] = cfg.data.leave_out is not None
    if cfg.data.folds is None:  # keys of configurations written before data.folds existed stay the same
        d["data"].pop("folds", None)
    if cfg.data.test_folds is None:  # and before data.test_folds existed
        d["data"].pop("test_folds", None)
    if prepared_id is not None:  # absent: the key of rows written before corpora had an identity
        d["prepared_id"] = prepared_id
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


FOLD_FIGURES = ("val_ua_folds", "test_ua_folds", "test_wa_folds", "test_f1_macro_folds", "test_precision_macro_folds",
                "test_recall_macro_folds", "compactness_test_folds")  # a cross-validated trial's per-fold lists


def tests_whole_corpora(data: Any, corpora: Sequence[str] | None = None) -> bool:
    """Whether a data section's test set is whole corpora that are never trained or validated
    on (leave-one-corpus-out, or evaluation corpora disjoint from the training ones), so folds
    name no test speakers. A corpus on both sides keeps the fold rule (ser_core.protocols)."""
    train_c, eval_c = data.train_corpora, data.eval_corpora
    if corpora:
        try:
            train_c, eval_c = resolve_corpora(corpora, **data.corpus_args())
        except ProtocolError:
            pass
    if data.leave_out is not None:
        return True
    if train_c is None or eval_c is None:
        return False  # every corpus on both sides, or the evaluation corpora are the training ones
    return not set(train_c) & set(eval_c)


def design_columns(cfg: TrainConfig, n_folds: int | None, selected_by: TrainConfig | None = None,
                   corpora: Sequence[str] | None = None) -> dict[str, Any]:
    """val_folds, test_folds, selection_exposed and fold of a trial row (ser_core.protocols.design_folds).

    `selected_by`: the configuration whose validation score chose this one (the searched trial a
    confirmation re-runs); its validation folds count as selection too. `fold` is the test
    fold of a one-test-fold design and null for a cross-validated one, whose test folds are
    several. Without `n_folds` (a corpus with no fold count) the design is not recorded."""
    d = cfg.data
    tests = d.test_folds if d.test_folds is not None else (d.folds or [d.fold])
    fold = int(tests[0]) if len(tests) == 1 else None
    if not n_folds:
        return {"fold": fold, "val_folds": None, "test_folds": None, "selection_exposed": None,
                "n_train_folds": None}
    cross = tests_whole_corpora(d, corpora)
    design = design_folds(n_folds, d.fold, d.folds, d.test_folds, cross_corpus=cross)
    # one run validates on one fold and tests on len(test set) folds (1 per run of the older CV design)
    per_run_test = len(design.test_folds) if d.test_folds is not None else 1
    selected_on: tuple[int, ...] = ()
    if selected_by is not None:
        s = selected_by.data
        selected_on = design_folds(n_folds, s.fold, s.folds, s.test_folds).val_folds
    return {"fold": fold, "val_folds": list(design.val_folds),
            "test_folds": None if design.test_folds is None else list(design.test_folds),
            "selection_exposed": bool(design.exposed(selected_on)),
            "n_train_folds": None if cross else n_folds - 1 - per_run_test}


def config_columns(cfg: TrainConfig, corpora: Sequence[str] | None = None,
                   prepared_id: str | None = None, n_folds: int | None = None,
                   selected_by: TrainConfig | None = None) -> dict[str, Any]:
    """The trials-row columns a TrainConfig determines; a family's unused parameters are None.
    With `corpora` (those in the prepared data) the training and evaluation corpora are
    written out even where the config leaves them implicit ("every corpus"); `prepared_id`
    (the prepared corpus the trial ran on) is recorded and enters the config_key; `n_folds`
    and `selected_by` give the fold design (design_columns)."""
    d = cfg.data
    if corpora:
        try:
            train_c, eval_c = resolve_corpora(corpora, **d.corpus_args())
        except ProtocolError:  # the trial itself will fail with this error; the row says so
            train_c, eval_c = d.train_corpora, d.eval_corpora
    else:
        train_c = d.train_corpora or None
        eval_c = d.eval_corpora or ([d.leave_out] if d.leave_out else None) or train_c
    return {
        "config_key": config_key(cfg, prepared_id),
        "prepared_id": prepared_id,
        "model": cfg.model.name,
        "loss_family": cfg.loss.family,
        "frontend": cfg.frontend.kind,
        **{c: getattr(cfg.loss, c, None) for c in LOSS_PARAM_COLUMNS},
        "lr": cfg.optim.lr,
        "batch_size": cfg.optim.batch_size,
        "seed": cfg.seed,
        "folds": cfg.data.folds,
        **design_columns(cfg, n_folds, selected_by, corpora),
        "train_corpora": join_corpora(train_c) if train_c else None,
        "eval_corpora": join_corpora(eval_c) if eval_c else None,
        "config_json": cfg.model_dump_json(),
    }


def confusion_rows(matrix: np.ndarray, labels: Sequence[str], split: str) -> list[dict[str, Any]]:
    """A (C, C) confusion matrix (rows true, columns predicted) -> long-format rows, zeros kept
    so every cell of every trial is present and sums over a split give the split size."""
    m = np.asarray(matrix)
    if m.shape != (len(labels), len(labels)):
        raise ResultsError(f"confusion matrix for split {split!r} has shape {m.shape}, "
                           f"expected ({len(labels)}, {len(labels)}) for labels {list(labels)}")
    return [{"split": split, "true_label": str(t), "pred_label": str(p), "count": int(m[i, j])}
            for i, t in enumerate(labels) for j, p in enumerate(labels)]


def _is_missing(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT


def _cell(value: Any, field: pa.Field, where: str) -> Any:
    """One row value -> the Python value pyarrow stores for the column's type, or a clear error."""
    if _is_missing(value):
        return None
    t = field.type
    bad = ResultsError(f"{where}: column {field.name!r} expects {t}, got {type(value).__name__} {value!r}")
    if pa.types.is_string(t):
        if not isinstance(value, str):
            raise bad
        return value
    if pa.types.is_boolean(t):
        if not isinstance(value, (bool, np.bool_)):
            raise bad
        return bool(value)
    if pa.types.is_list(t):
        if not isinstance(value, (list, tuple, np.ndarray)):
            raise bad
        return [_cell(v, pa.field(field.name, t.value_type), where) for v in value]
    if isinstance(value, (bool, np.bool_)):
        raise bad  # True is an int in Python; in a metric column it is a bug
    if pa.types.is_integer(t):
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
            return int(value)
        raise bad
    if pa.types.is_floating(t):
        if isinstance(value, (int, float, np.integer, np.floating)):
            return float(value)
        raise bad
    if pa.types.is_timestamp(t):
        if isinstance(value, (int, float)) and math.isfinite(value):  # epoch seconds (time.time())
            return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                raise ResultsError(f"{where}: column {field.name!r} needs a timezone-aware datetime "
                                   f"(e.g. datetime.now(timezone.utc)), got naive {value!r}")
            return value.astimezone(dt.timezone.utc)
        raise bad
    raise bad


def _table(rows: Iterable[dict[str, Any]], schema: pa.Schema, where: str) -> pa.Table:
    names = set(schema.names)
    columns: dict[str, list[Any]] = {n: [] for n in schema.names}
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - names)
        if unknown:
            raise ResultsError(f"{where} row {i}: unknown column(s) {unknown}; valid columns: {', '.join(schema.names)}")
        for field in schema:
            columns[field.name].append(_cell(row.get(field.name), field, f"{where} row {i}"))
    return pa.table({n: pa.array(v, type=schema.field(n).type) for n, v in columns.items()}, schema=schema)


# ---------------------------------------------------------------------------- files


def _filesystem(results: str | Path) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem URI (s3://, gs://, file://, hdfs://) or a plain local path."""
    text = str(results)
    if "://" in text:
        try:
            return pafs.FileSystem.from_uri(text)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as e:
            raise ResultsError(f"cannot open results location {text!r}: {e}") from None
    return pafs.LocalFileSystem(), Path(text).expanduser().resolve().as_posix()


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
    schema = _TABLES[name][0]
    tables = [_read_file(fs, f, schema) for f in _result_files(fs, root, name, shown)]
    return _to_pandas(pa.concat_tables(tables) if tables else schema.empty_table())


def read_trials(results: str | Path) -> pd.DataFrame:
    """Every trial under a results dir (all sweeps) or one sweep dir; one row per trial."""
    return _read_all(*_filesystem(results), "trials", str(results))


def read_epochs(results: str | Path) -> pd.DataFrame:
    return _read_all(*_filesystem(results), "epochs", str(results))


def read_confusion(results: str | Path) -> pd.DataFrame:
    return _read_all(*_filesystem(results), "confusion", str(results))


def explain_no_trials(results: str | Path) -> tuple[bool, str]:
    """Why `read_trials(results)` holds no trial, as (started, message). started: a sweep is
    there (its sweep.toml, or epochs of running trials) but no trial has finished yet, which is
    no error. Otherwise no sweep
    is there: the message says where sweeps were looked for and names any folder one level
    below that holds sweeps (e.g. the demo's `--out` instead of its `results/`)."""
    fs, root = _filesystem(results)
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
        self.fs, root = _filesystem(results)
        self.root = f"{root.rstrip('/')}/{sweep}"
        self.fs.create_dir(self.root, recursive=True)
        self._lock = threading.Lock()

    def path(self, name: str) -> str:
        return f"{self.root}/{name}.parquet"

    def upsert_trial(self, row: dict[str, Any]) -> None:
        """Insert or replace the trial's row: a retried trial keeps exactly one row."""
        row = self._own(row, "trials")
        for column in ("trial_id", "status"):
            if _is_missing(row.get(column)):
                raise ResultsError(f"trials row: {column!r} is required")
        if row["status"] not in STATUSES:
            raise ResultsError(f"trials row {row['trial_id']!r}: status {row['status']!r} is not one of {STATUSES}")
        if not _is_missing(row.get("stage")) and row["stage"] not in STAGES:
            raise ResultsError(f"trials row {row['trial_id']!r}: stage {row['stage']!r} is not one of {STAGES}")
        self._upsert("trials", [row])

    def upsert_epochs(self, rows: list[dict[str, Any]]) -> None:
        """Insert or replace per-epoch rows, keyed by (trial_id, epoch)."""
        rows = [self._own(r, "epochs") for r in rows]
        for r in rows:
            if _is_missing(r.get("trial_id")) or _is_missing(r.get("epoch")):
                raise ResultsError(f"epochs row {r}: 'trial_id' and 'epoch' are required")
        self._upsert("epochs", rows)

    def replace_confusion(self, trial_id: str, rows: list[dict[str, Any]]) -> None:
        """Replace all confusion cells of one trial (every split) with `rows`."""
        own = []
        for r in rows:
            if r.get("trial_id", trial_id) != trial_id:
                raise ResultsError(f"confusion row for trial {r['trial_id']!r} passed to replace_confusion({trial_id!r})")
            own.append(self._own({**r, "trial_id": trial_id}, "confusion"))
        new = _table(own, CONFUSION_SCHEMA, f"{self.path('confusion')}")
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
        return _read_file(self.fs, path, _TABLES[name][0]) if _exists(self.fs, path) else None

    def _upsert(self, name: str, rows: list[dict[str, Any]]) -> None:
        schema, key_cols = _TABLES[name]
        new = _table(rows, schema, self.path(name))
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
