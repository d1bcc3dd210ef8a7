"""Reading and writing one results Parquet file, on a local disk or an object store alike.

A file is read in one sequential read and written under a temporary name that is then moved
over the old one, so a reader sees either the old or the new file, never half of one.
"""
from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .location import ResultsError
from .schema import SCHEMA_VERSION, VERSION_KEY


class VanishedError(ResultsError):
    """A file listed a moment ago is gone: a compaction folded it into its table meanwhile.
    The reader lists again (search.results.parts.read_sweep_table)."""


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.File


def read_results_file(fs: pafs.FileSystem, path: str, schema: pa.Schema) -> pa.Table:
    """One results file, checked for a schema version this code understands and brought to the
    current schema (columns a file lacks come back null, so additive changes stay readable)."""
    try:
        # One sequential read into memory: opening the path twice (footer, then pages) could
        # straddle a writer's rename and mix two versions of the file.
        with fs.open_input_stream(path) as stream:
            table = pq.read_table(pa.BufferReader(stream.read()))
    except FileNotFoundError:
        raise VanishedError(f"results file {path} is gone") from None
    except (pa.ArrowInvalid, OSError) as e:
        if not exists(fs, path):
            raise VanishedError(f"results file {path} is gone") from None
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


def write_atomic(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    """Write `table` to `path` through a temporary name in the same directory: one PUT on an
    object store, an atomic rename on a local disk."""
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
