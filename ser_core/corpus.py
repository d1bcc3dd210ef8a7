"""A prepared corpus on disk: the contract between `prepare` (writes it) and training (reads it).

The directory holds `manifest.parquet` (one row per clip, originals and augmented copies),
`waveforms.npy` (float32 (N, L), memory-mapped on load so a corpus larger than RAM still works
and forked workers share pages), `rejects.parquet` and `protocol.json`, which records how the data
were made so a result can always be traced back to its preprocessing and protocol.
`PreparedCorpus.prepared_id` names one preparation (a hash of protocol.json and manifest.parquet),
so results can tell two preparations of one corpus (other folds, other segment length) apart.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .protocols import EvaluationSplit, evaluation_split, subset_masks

# Bump when the on-disk layout changes in a way older readers would misread.
CORPUS_FORMAT_VERSION = 1

MANIFEST_FILE = "manifest.parquet"
WAVEFORMS_FILE = "waveforms.npy"
REJECTS_FILE = "rejects.parquet"
PROTOCOL_FILE = "protocol.json"

MANIFEST_SCHEMA = pa.schema([
    ("row", pa.int64()),            # index into waveforms.npy
    ("path", pa.string()),
    ("corpus", pa.string()),
    ("speaker", pa.string()),       # "corpus:speaker", unique across corpora
    ("gender", pa.string()),        # nullable
    ("raw_label", pa.string()),
    ("label", pa.string()),
    ("label_id", pa.int32()),       # index into protocol["labels"]
    ("session", pa.string()),       # nullable (IEMOCAP only)
    ("duration", pa.float64()),     # seconds of source audio
    ("valid_samples", pa.int64()),  # samples of the segment before zero padding
    ("fold", pa.int32()),
    ("split", pa.string()),         # train/val/test for fold 0
    ("augmented", pa.bool_()),
    ("source_row", pa.int64()),     # = row for originals
    ("snr_db", pa.float64()),       # null for originals
    ("sha1", pa.string()),          # of the source file's bytes
])

REJECTS_SCHEMA = pa.schema([("path", pa.string()), ("corpus", pa.string()), ("reason", pa.string())])


class CorpusFormatError(ValueError):
    """A directory that is not (or no longer) a usable prepared corpus."""


def prepared_identity(protocol: dict[str, Any], manifest_bytes: bytes) -> str:
    """12 hex digits of SHA-256 over the canonical protocol JSON and the manifest file's bytes."""
    h = hashlib.sha256(json.dumps(protocol, sort_keys=True, separators=(",", ":")).encode())
    h.update(b"\0")
    h.update(manifest_bytes)
    return h.hexdigest()[:12]


@dataclass
class PreparedCorpus:
    root: Path
    manifest: pd.DataFrame
    waveforms: np.ndarray           # float32 (N, L), memory-mapped read-only
    sample_rate: int
    labels: tuple[str, ...]
    protocol: dict[str, Any] = field(repr=False)
    # Filled by load() from the bytes it reads anyway; computed from the files when absent.
    _prepared_id: str | None = field(default=None, repr=False, compare=False)

    @property
    def prepared_id(self) -> str:
        """Short hash naming this preparation: protocol.json's content (key order and
        whitespace aside) and manifest.parquet's bytes. Two preparations that differ in any
        setting, fold or clip differ here; a copy of the directory keeps it. waveforms.npy is
        left out: it is derived from what the manifest and protocol record, and hashing
        gigabytes on every load would cost more than it tells."""
        if self._prepared_id is None:
            self._prepared_id = prepared_identity(self.protocol, (self.root / MANIFEST_FILE).read_bytes())
        return self._prepared_id

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def n_folds(self) -> int:
        return int(self.protocol["n_folds"])

    @classmethod
    def load(cls, directory: str | Path) -> "PreparedCorpus":
        root = Path(directory)
        if not root.is_dir():
            raise CorpusFormatError(f"prepared corpus {root} does not exist or is not a directory")
        missing = [n for n in (PROTOCOL_FILE, MANIFEST_FILE, WAVEFORMS_FILE) if not (root / n).is_file()]
        if missing:
            raise CorpusFormatError(f"{root} is not a prepared corpus (missing {', '.join(missing)}); "
                                    "create one with `ser-search prepare`")
        try:
            protocol = json.loads((root / PROTOCOL_FILE).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CorpusFormatError(f"{root / PROTOCOL_FILE}: unreadable ({exc})") from exc
        version = protocol.get("format_version")
        if version != CORPUS_FORMAT_VERSION:
            raise CorpusFormatError(f"{root}: corpus format version {version!r}, this code reads version "
                                    f"{CORPUS_FORMAT_VERSION}; prepare the corpus again")
        for key in ("sample_rate", "labels", "n_folds"):
            if key not in protocol:
                raise CorpusFormatError(f"{root / PROTOCOL_FILE}: missing key {key!r}")

        try:
            manifest_bytes = (root / MANIFEST_FILE).read_bytes()  # once: parsed and hashed
            table = pq.read_table(pa.BufferReader(manifest_bytes))
        except (OSError, pa.ArrowException) as exc:
            raise CorpusFormatError(f"{root / MANIFEST_FILE}: unreadable ({exc})") from exc
        absent = [n for n in MANIFEST_SCHEMA.names if n not in table.column_names]
        if absent:
            raise CorpusFormatError(f"{root / MANIFEST_FILE}: missing columns {', '.join(absent)}")
        manifest = table.to_pandas()

        try:
            waveforms = np.load(root / WAVEFORMS_FILE, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise CorpusFormatError(f"{root / WAVEFORMS_FILE}: unreadable ({exc})") from exc
        if waveforms.dtype != np.float32 or waveforms.ndim != 2:
            raise CorpusFormatError(f"{root / WAVEFORMS_FILE}: expected float32 (N, L), got "
                                    f"{waveforms.dtype} {waveforms.shape}")
        if waveforms.shape[0] != len(manifest) or not np.array_equal(manifest["row"].to_numpy(),
                                                                     np.arange(len(manifest))):
            raise CorpusFormatError(f"{root}: manifest ({len(manifest)} rows) does not match "
                                    f"waveforms.npy ({waveforms.shape[0]} rows)")
        labels = tuple(protocol["labels"])
        ids = manifest["label_id"].to_numpy()
        if len(ids) and (ids.min() < 0 or ids.max() >= len(labels)):
            raise CorpusFormatError(f"{root}: label_id outside 0..{len(labels) - 1}")
        return cls(root=root, manifest=manifest, waveforms=waveforms, sample_rate=int(protocol["sample_rate"]),
                   labels=labels, protocol=protocol, _prepared_id=prepared_identity(protocol, manifest_bytes))

    def split_indices(self, fold: int = 0) -> dict[str, np.ndarray]:
        """Sorted row indices per subset for test fold `fold`: train holds originals and their
        augmented copies, val and test originals only (noisy copies never reach evaluation)."""
        n = self.n_folds
        if not isinstance(fold, (int, np.integer)) or not 0 <= fold < n:
            raise ValueError(f"fold {fold!r} out of range: {self.root} has folds 0..{n - 1} "
                             f"(protocol {self.protocol.get('protocol')!r})")
        return {name: np.flatnonzero(mask).astype(np.int64)
                for name, mask in subset_masks(self.manifest, n, fold).items()}

    def evaluation_split(self, fold: int = 0, *, train_corpora: Sequence[str] | None = None,
                         eval_corpora: Sequence[str] | None = None, leave_out: str | None = None,
                         test_folds: Sequence[int] | None = None) -> EvaluationSplit:
        """Rows and classes under a within-, cross- or leave-one-corpus-out protocol
        (ser_core.protocols); with no corpora named it is `split_indices(fold)`; with
        `test_folds`, `fold` validates and the listed folds are held out for test."""
        return evaluation_split(self.manifest, self.labels, self.n_folds, fold, train_corpora=train_corpora,
                                eval_corpora=eval_corpora, leave_out=leave_out, test_folds=test_folds)

    def corpora(self) -> tuple[str, ...]:
        """The corpora in this prepared directory, sorted."""
        return tuple(sorted(self.manifest["corpus"].astype(str).unique()))

    def targets(self) -> np.ndarray:
        """label_id per row (int64, ready for a loss)."""
        return self.manifest["label_id"].to_numpy().astype(np.int64)

    def in_memory(self) -> "PreparedCorpus":
        """A copy with the waveforms read into RAM: what to hand to a scheduler that pickles the
        corpus (Ray's object store), where a file mapping would not travel to other nodes."""
        return replace(self, waveforms=np.array(self.waveforms, dtype=np.float32, copy=True),
                       manifest=self.manifest.copy())

    def __len__(self) -> int:
        return len(self.manifest)
