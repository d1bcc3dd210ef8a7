"""Results on disk: each sweep's Parquet tables (trials, epochs, confusion; schema version 1),
the store that reads and writes them on a local disk or an object store, where a results
location points (a path or a URI) and how a sweep's directory is laid out, and the names
ser-search writes into the Optuna study beside them.

Nothing here imports Ray: the leaderboard, claims and dashboard read results without it.
"""
from .location import SETTINGS_FILE, TUNE_DIR, ResultsError, filesystem, is_uri, join
from .schema import (CONFUSION_SCHEMA, EPOCHS_SCHEMA, FOLD_FIGURES, LOSS_PARAM_COLUMNS, LOSS_PARAM_LABELS, SCHEMA_VERSION, STAGES,
                     STATUSES, TRIALS_SCHEMA, config_columns, config_key, confusion_rows, design_columns,
                     tests_whole_corpora)
from .store import ResultsStore, explain_no_trials, read_confusion, read_epochs, read_trials, sweep_dirs

__all__ = [
    "CONFUSION_SCHEMA", "EPOCHS_SCHEMA", "FOLD_FIGURES", "LOSS_PARAM_COLUMNS", "LOSS_PARAM_LABELS", "SCHEMA_VERSION", "SETTINGS_FILE",
    "STAGES", "STATUSES", "TRIALS_SCHEMA", "TUNE_DIR", "ResultsError", "ResultsStore", "config_columns", "config_key",
    "confusion_rows", "design_columns", "explain_no_trials", "filesystem", "is_uri", "join", "read_confusion",
    "read_epochs", "read_trials", "sweep_dirs", "tests_whole_corpora",
]
