"""Where results live: a local directory or an object-store URI, and the layout of a sweep's
directory. "Is this a local path or a URI" is decided here and nowhere else.

    <results>/<sweep>/trials.parquet, epochs.parquet, confusion.parquet   (search.results.store)
    <results>/<sweep>/parts/<table>/*.parquet   rows a running driver appended since the last
                                                fold into those files (search.results.parts)
    <results>/<sweep>/sweep.json     the run record: the sweep as started (search.driver.run_record)
    <results>/<sweep>/tune/          Ray Tune's experiment: snapshots, trial directories, checkpoints
    <results>/<sweep>/optuna.db      the Optuna study, unless [sweep] optuna_storage names another
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

TUNE_DIR = "tune"
SETTINGS_FILE = "sweep.json"


class ResultsError(ValueError):
    """A row or a results file is invalid; the message names the column or the file."""



def is_uri(location: str | Path) -> bool:
    """A pyarrow filesystem URI (s3://, gs://, file://, hdfs://), not a local path."""
    return "://" in str(location)


def join(root: str, *parts: str) -> str:
    """`root/part/...` for a local path or a URI alike."""
    return "/".join([root.rstrip("/"), *parts])


def filesystem(results: str | Path) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem URI (s3://, gs://, file://, hdfs://) or a plain local path."""
    text = str(results)
    if is_uri(text):
        try:
            return pafs.FileSystem.from_uri(text)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as e:
            raise ResultsError(f"cannot open results location {text!r}: {e}") from None
    return pafs.LocalFileSystem(), Path(text).expanduser().resolve().as_posix()




# A run's results location in this driver process. Tune's snapshot holds objects created with
# the location of the driver that saved them; a resumed run's directory may have moved (a copy
# on another machine, a disk mounted elsewhere). They ask here for the location of this driver.
_BOUND: dict[str, str] = {}


def bind_results(name: str, results: str) -> None:
    """Make `results` the results location of run `name` (a sweep or confirmation) in this process."""
    _BOUND[name] = results


def bound_results(name: str) -> str | None:
    return _BOUND.get(name)


def unbind_results(name: str) -> None:
    _BOUND.pop(name, None)
