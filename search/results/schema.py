"""The Parquet schemas (version 1) of a sweep's three tables and how a trial becomes a row.

Fixed schemas (not Ray's own result files) so a sweep's outcome can be read with
pandas/pyarrow/DuckDB anywhere, merged across sweeps, and compared years later. Columns are
only ever added: a file written before a column existed reads it as null.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ser_core.config import TrainConfig
from ser_core.losses import loss_param_specs
from ser_core.protocols import ProtocolError, design_folds, join_corpora, resolve_corpora

from .location import ResultsError

SCHEMA_VERSION = 1
VERSION_KEY = b"ser_search.schema_version"
TABLE_KEY = b"ser_search.table"
STATUSES = ("completed", "pruned", "error")
STAGES = ("search", "confirm")
# one column per loss parameter, in the order the loss families declare them (ser_core.losses):
# a parameter added to a family becomes a config field, a sweep axis and this column at once
LOSS_PARAM_COLUMNS = tuple(spec.name for spec in loss_param_specs())
LOSS_PARAM_LABELS = {spec.name: spec.label for spec in loss_param_specs()}

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
TABLES = {"trials": (TRIALS_SCHEMA, ("sweep", "trial_id")),
           "epochs": (EPOCHS_SCHEMA, ("sweep", "trial_id", "epoch")),
           "confusion": (CONFUSION_SCHEMA, ("sweep", "trial_id", "split", "true_label", "pred_label"))}


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
    if cfg.frontend.ssl_model is None:  # and before frontend.ssl_model existed
        d["frontend"].pop("ssl_model", None)
    if cfg.model.fuse_functionals == "off":  # and before model.fuse_functionals existed
        d["model"].pop("fuse_functionals", None)
        d["model"].pop("fuse_hidden", None)
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


def is_missing(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT


def cell(value: Any, field: pa.Field, where: str) -> Any:
    """One row value -> the Python value pyarrow stores for the column's type, or a clear error."""
    if is_missing(value):
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
        return [cell(v, pa.field(field.name, t.value_type), where) for v in value]
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


def rows_table(rows: Iterable[dict[str, Any]], schema: pa.Schema, where: str) -> pa.Table:
    names = set(schema.names)
    columns: dict[str, list[Any]] = {n: [] for n in schema.names}
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - names)
        if unknown:
            raise ResultsError(f"{where} row {i}: unknown column(s) {unknown}; valid columns: {', '.join(schema.names)}")
        for field in schema:
            columns[field.name].append(cell(row.get(field.name), field, f"{where} row {i}"))
    return pa.table({n: pa.array(v, type=schema.field(n).type) for n, v in columns.items()}, schema=schema)


