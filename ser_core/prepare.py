"""Corpus preparation: adapters + audio decoding -> a prepared corpus directory (see
ser_core.corpus for the layout).

Preprocessing follows the CNN-Transformer paper (resample, mono, librosa silence trim, a fixed
3.5 s segment from the first non-silent frame, Gaussian-noise copies that triple the training
set), each step configurable. Folds are assigned here and stored per clip, so training can pick
any fold without preparing again. A bad file never stops a run: it is listed in
rejects.parquet with its reason and counted in the report.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

import librosa
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm.auto import tqdm

from .audio import AudioError, add_noise, decode_audio, fix_length, segment_length, trim_and_segment
from .corpora import CorpusError, Utterance, get_adapter
from .corpora._scan import NOT_A_FILE
from .corpus import (CORPUS_FORMAT_VERSION, MANIFEST_FILE, MANIFEST_SCHEMA, PROTOCOL_FILE, REJECTS_FILE,
                     REJECTS_SCHEMA, WAVEFORMS_FILE)
from .corpora.label_maps import NATIVE_LABELS
from .fold_lists import FoldMatch, match_folds
from .labels import EMOTIONS, IEMOCAP_4, label_index, ordered
from .splits import (STANDARD_SPEAKER_FOLDS, VAL_FOLD_RULE, SplitError, group_folds, session_folds, split_names,
                     standard_folds, stratified_folds)

DEFAULT_FOLDS = {"speaker": 5, "utterance": 10}  # 10 stratified folds = the paper's 80/10/10


class PrepareError(RuntimeError):
    """Preparation cannot produce a usable corpus (no clip survived, output in the way)."""


class PrepareOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    sample_rate: int = Field(16000, gt=0, description="target rate in Hz (soxr resampling)")
    segment_seconds: float = Field(3.5, gt=0, description="fixed clip length after trimming")
    trim_top_db: float | None = Field(30.0, gt=0, description="librosa trim threshold; None = no trim")
    protocol: Literal["speaker", "utterance", "session"] = "speaker"
    n_folds: int | None = Field(None, ge=3, description="None = protocol default: 5 speaker folds, "
                                "10 utterance folds (80/10/10), one fold per session")
    augment_copies: int = Field(2, ge=0, description="noisy copies per clip; 0 disables augmentation")
    augment_snr_db: float = Field(20.0, description="SNR of the added Gaussian noise")
    iemocap_four_class: bool = False
    # "shared": every corpus on the 8-class EMOTIONS; "native": each corpus's own classes
    # (ser_core.corpora.label_maps.NATIVE_LABELS), e.g. EmoDB's 7 with boredom.
    labels: Literal["shared", "native"] = "shared"
    standard_folds: bool = Field(False, description="speaker protocol: the fixed speaker folds of "
                                 "ser_core.splits.STANDARD_SPEAKER_FOLDS instead of greedy balanced ones")
    folds_from: tuple[Path, ...] = Field((), description="EmoBox corpus folders or test lists whose folds "
                                         "replace the protocol's (ser_core.fold_lists)")
    max_source_seconds: float = Field(60.0, gt=0, description="decode at most this much of each file")
    seed: int = Field(0, ge=0)
    # Measured on EmoDB (454 clips, 2 cores): 1 worker 8.5 s, 2 spawned workers 20 s. A clip
    # costs ~3 ms; each worker pays ~3 s of librosa/numba start-up and the waveforms are
    # pickled back. Worth it only for corpora of many thousands of long clips.
    workers: int = Field(1, ge=1, description="decoding processes (1 = in-process)")

    @model_validator(mode="after")
    def _consistent(self) -> "PrepareOptions":
        if self.max_source_seconds < self.segment_seconds:
            raise ValueError(f"max_source_seconds ({self.max_source_seconds}) must be at least "
                             f"segment_seconds ({self.segment_seconds})")
        if self.protocol == "session" and self.n_folds is not None:
            raise ValueError("n_folds cannot be set with the session protocol (one fold per session)")
        if self.standard_folds and (self.protocol != "speaker" or self.n_folds is not None):
            raise ValueError("standard_folds is a speaker protocol with its own fold count: use it with "
                             "protocol 'speaker' and without n_folds")
        if self.folds_from and (self.protocol != "speaker" or self.n_folds is not None or self.standard_folds):
            raise ValueError("folds_from replaces the protocol's folds: do not combine it with a protocol, "
                             "n_folds or standard_folds")
        return self

    @property
    def fold_protocol(self) -> str:
        """The protocol protocol.json records: a benchmark's lists need not be speaker folds."""
        return "folds-from" if self.folds_from else self.protocol

    @property
    def fold_assignment(self) -> str:
        """How the folds were made (protocol.json's `fold_assignment`)."""
        if self.folds_from:
            return "fold lists"
        if self.protocol == "speaker":
            return "standard speaker folds" if self.standard_folds else "greedy balanced speaker groups"
        return "stratified by label" if self.protocol == "utterance" else "one fold per session"


@dataclass
class PrepareReport:
    out: Path
    found: int                          # utterances the adapters recognised
    prepared: int                       # original clips in the manifest
    augmented: int                      # noisy copies in the manifest
    rejected: dict[str, int]            # reason kind -> files
    handled: dict[str, int]             # what was handled on the way, e.g. "resampled from 44100 Hz"
    labels: tuple[str, ...]
    class_counts: dict[str, int]        # originals per label
    protocol: str
    n_folds: int
    split_counts: dict[str, int]        # originals per subset for fold 0
    found_by_corpus: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    label_set: str = "shared"           # "shared" (EMOTIONS) or "native" (each corpus's own classes)
    fold_assignment: str = ""           # how the folds were made (PrepareOptions.fold_assignment)
    fold_lists: dict | None = None      # --folds-from: what matched and what did not (protocol.json)

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected.values())

    def summary(self) -> str:
        corpora = ", ".join(f"{n} {c}" for c, n in self.found_by_corpus.items())
        lines = [
            f"prepared {self.prepared} clips (+{self.augmented} noisy copies) from {self.found} found "
            f"({corpora}) in {self.seconds:.1f} s -> {self.out}",
            f"  labels ({len(self.labels)}, {self.label_set}): "
            + ", ".join(f"{l} {self.class_counts.get(l, 0)}" for l in self.labels),
            f"  protocol {self.protocol}" + (f" ({self.fold_assignment})" if self.fold_assignment else "")
            + f", {self.n_folds} folds; fold 0: "
            + ", ".join(f"{k} {self.split_counts.get(k, 0)}" for k in ("train", "val", "test"))
            + " clips (before augmentation)",
            f"  rejected {self.n_rejected}" + (": " + ", ".join(f"{k} {v}" for k, v in self.rejected.items())
                                               if self.rejected else "") + f" (see {REJECTS_FILE})",
        ]
        if self.handled:
            lines.append("  handled: " + ", ".join(f"{k} {v}" for k, v in self.handled.items()))
        if self.fold_lists is not None:
            lines.extend(_fold_list_lines(self.fold_lists))
        return "\n".join(lines)


def _fold_list_lines(info: dict, show: int = 5) -> list[str]:
    """The --folds-from part of the summary: counts, then the first few of each kind of miss."""
    missing, unlisted = info["entries_without_clip"], info["clips_in_no_fold"]
    lines = [f"  folds from {len(info['sources'])} list(s): {info['entries']} entries, {info['matched']} matched "
             f"to clips; {len(missing)} entries without a clip, {len(unlisted)} clips in no fold (rejected); "
             f"full lists in {PROTOCOL_FILE} (fold_lists)"]
    lines += [f"    entry {m['wav']} ({m['source']}): {m['reason']}" for m in missing[:show]]
    lines += [f"    clip {c}: in no listed fold" for c in unlisted[:show]]
    if len(missing) > show or len(unlisted) > show:
        lines.append("    ...")
    return lines


# ---------------------------------------------------------------- per-file work (runs in workers)

@dataclass(frozen=True)
class _Params:
    sample_rate: int
    length: int
    top_db: float | None
    max_seconds: float
    copies: int
    snr_db: float
    seed: int


@dataclass
class _Clip:
    index: int
    waves: np.ndarray | None = None     # (1 + copies, length) float32: original then noisy copies
    valid_samples: int = 0
    duration: float = 0.0
    sha1: str = ""
    notes: tuple[str, ...] = ()
    reason: str | None = None           # set when rejected
    kind: str | None = None


def _sha1(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha1").hexdigest()


def _process(params: _Params, task: tuple[int, str]) -> _Clip:
    index, path = task
    try:
        digest = _sha1(path)
        decoded = decode_audio(path, params.sample_rate, params.max_seconds)
        # trim_and_segment is also what `predict` runs, so training and prediction see the same input.
        original, valid = trim_and_segment(decoded.wave, params.sample_rate, segment_samples=params.length,
                                           top_db=params.top_db)
        speech = original[:valid]
        # Noise is added to the speech before padding, so the SNR is the speech's and the
        # padding stays exact zeros in originals and copies alike. Seeded by content: the
        # same file gets the same noise whatever else is in the corpus.
        rng = np.random.default_rng([params.seed, int(digest[:16], 16)])
        waves = np.stack([original] + [fix_length(add_noise(speech, params.snr_db, rng), params.length)
                                       for _ in range(params.copies)])
        return _Clip(index, waves, valid, decoded.source_seconds, digest, decoded.notes)
    except AudioError as exc:
        return _Clip(index, reason=exc.reason, kind=exc.kind)
    except OSError as exc:
        return _Clip(index, reason=f"unreadable: {exc.strerror or exc}", kind="unreadable")
    except Exception as exc:  # noqa: BLE001 - one odd file must not stop a corpus; it is reported
        return _Clip(index, reason=f"decode failed: {type(exc).__name__}: {exc}", kind="decode failed")


def _decode_all(paths: list[str], params: _Params, workers: int, progress: bool) -> Iterator[_Clip]:
    """Clips in input order (so rows are deterministic), decoded in `workers` processes."""
    work = partial(_process, params)
    tasks = list(enumerate(paths))
    bar = tqdm(total=len(tasks), desc="decoding", unit="clip", disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1 or len(tasks) < 2 * workers:
            for task in tasks:
                yield work(task)
                bar.update()
        else:
            # spawn: safe whatever threads the parent runs (torch, arrow); each worker pays a few
            # seconds of librosa/numba start-up, hence workers=1 by default.
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
            try:
                for clip in pool.map(work, tasks, chunksize=max(1, min(16, len(tasks) // (8 * workers)))):
                    yield clip
                    bar.update()
            finally:  # on an error or Ctrl-C, drop the queued files instead of decoding them all
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


# ---------------------------------------------------------------- corpus-level steps

@dataclass
class _Reject:
    path: str
    corpus: str
    reason: str
    kind: str


def _scan(corpora: dict[str, Path], four_class: bool) -> tuple[list[Utterance], list[_Reject], dict[str, int]]:
    utterances: list[Utterance] = []
    rejects: list[_Reject] = []
    found: dict[str, int] = {}
    for name, root in corpora.items():
        adapter = get_adapter(name)
        try:
            utts = adapter.scan(Path(root), iemocap_four_class=four_class)
        except CorpusError as exc:
            msg = str(exc)
            if str(root) in msg and name.lower() in msg.lower():
                raise
            raise CorpusError(f"corpus {name}={root}: {msg}") from exc
        found[name] = len(utts)
        utterances.extend(utts)
        for path, why in getattr(adapter, "unrecognised", []):
            kind = ("duplicate" if why.lower().startswith("duplicate") else
                    NOT_A_FILE if why.startswith(NOT_A_FILE) else "unrecognised file name")
            rejects.append(_Reject(os.path.abspath(path), name, why, kind))
    return utterances, rejects, found


def _label_filter(utterances: list[Utterance], base: tuple[str, ...],
                  rejects: list[_Reject]) -> list[Utterance]:
    kept: list[Utterance] = []
    seen_paths: dict[str, str] = {}
    for u in utterances:
        path = os.path.abspath(u.path)
        if u.label is None:
            rejects.append(_Reject(path, u.corpus, f"unmappable label {u.raw_label!r}", "unmappable label"))
        elif u.label not in base:
            rejects.append(_Reject(path, u.corpus, f"label {u.label!r} (raw {u.raw_label!r}) not in the "
                                   f"label set {', '.join(base)}", "label outside the label set"))
        elif path in seen_paths:
            rejects.append(_Reject(path, u.corpus, f"same file already listed by corpus {seen_paths[path]}",
                                   "duplicate"))
        else:
            seen_paths[path] = u.corpus
            kept.append(u)
    return kept


def _label_base(options: PrepareOptions, corpora: set[str]) -> tuple[str, ...]:
    """The label set clips are kept in: the shared 8 (or IEMOCAP's 4 for every corpus, the old
    --iemocap-four-class), or the union of the corpora's native classes in LABEL_ORDER."""
    if options.labels == "native":
        return ordered({label for name in corpora for label in NATIVE_LABELS[name]})
    return IEMOCAP_4 if options.iemocap_four_class else EMOTIONS


def _apply_fold_lists(candidates: list[Utterance], rejects: list[_Reject],
                      sources: tuple[Path, ...]) -> tuple[list[Utterance], FoldMatch, dict[str, int]]:
    """Match the benchmark's fold lists before decoding: clips in no list are rejected (listed
    with the reason, like any other excluded file); returns (listed clips, match, path -> fold)."""
    match = match_folds([Path(u.path) for u in candidates], [u.corpus for u in candidates], sources,
                        rejected=[(Path(r.path), r.corpus, r.reason) for r in rejects])
    where = ", ".join(map(str, sources))
    for i in match.clips_in_no_fold:
        u = candidates[i]
        rejects.append(_Reject(os.path.abspath(u.path), u.corpus, f"in no test fold of --folds-from {where}",
                               "in no listed fold"))
    listed = {os.path.abspath(candidates[i].path): f for i, f in match.fold_of.items()}
    return [u for i, u in enumerate(candidates) if i in match.fold_of], match, listed


def _fold_list_info(match: FoldMatch, candidates: list[Utterance]) -> dict:
    """protocol.json's record of a --folds-from match: nothing unmatched goes unlisted."""
    return {
        "format": "EmoBox test-fold jsonl (fold N of the lists = fold N-1 here)",
        "sources": match.sources, "entries": match.n_entries, "matched": len(match.fold_of),
        "entries_without_clip": [{"wav": e.wav, "fold": e.fold, "source": e.source, "reason": why}
                                 for e, why in match.entries_without_clip],
        "clips_in_no_fold": [os.path.abspath(candidates[i].path) for i in match.clips_in_no_fold],
    }


def _assign_folds(clips: list[Utterance], labels: list[str], options: PrepareOptions,
                  listed: tuple[dict[str, int], int] | None = None) -> tuple[np.ndarray, int]:
    if listed is not None:  # --folds-from: matched before decoding; a fold may have lost every clip since
        fold_of, n = listed
        folds = np.array([fold_of[os.path.abspath(u.path)] for u in clips], dtype=np.int32)
        empty = sorted(set(range(n)) - set(folds.tolist()))
        if empty:
            raise SplitError(f"--folds-from: test fold(s) {', '.join(str(f + 1) for f in empty)} of the lists "
                             "hold no prepared clip (see the entries without a clip and the rejects)")
        return folds, n
    if options.protocol == "speaker" and options.standard_folds:
        return standard_folds([u.corpus for u in clips], [u.speaker for u in clips])
    if options.protocol == "speaker":
        n = options.n_folds or DEFAULT_FOLDS["speaker"]
        return group_folds([f"{u.corpus}:{u.speaker}" for u in clips], n, options.seed), n
    if options.protocol == "utterance":
        n = options.n_folds or DEFAULT_FOLDS["utterance"]
        return stratified_folds(labels, n, options.seed), n
    folds = session_folds([None if u.session is None else f"{u.corpus}:{u.session}" for u in clips])
    return folds, int(folds.max()) + 1


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse to clobber anything that is not an empty dir or an earlier prepared corpus."""
    if not out.exists():
        return
    if not out.is_dir():
        raise PrepareError(f"output {out} exists and is not a directory")
    entries = list(out.iterdir())
    if not entries:
        return
    if not (out / PROTOCOL_FILE).exists() and not (out / MANIFEST_FILE).exists():
        raise PrepareError(f"output {out} is a non-empty directory that is not a prepared corpus; "
                           "choose another --out")
    if not overwrite:
        raise PrepareError(f"output {out} already holds a prepared corpus; pass overwrite=True "
                           "(CLI: --force) to replace it")


def _install(tmp: Path, out: Path, overwrite: bool) -> None:
    _check_out(out, overwrite)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def _shrink(staging: Path, final: Path, rows: int, chunk: int = 512) -> None:
    """Copy the first `rows` rows of a .npy into a new one, a chunk at a time (bounded RAM)."""
    src = np.load(staging, mmap_mode="r")
    dst = np.lib.format.open_memmap(final, mode="w+", dtype=np.float32, shape=(rows, src.shape[1]))
    for s in range(0, rows, chunk):
        dst[s:s + chunk] = src[s:min(rows, s + chunk)]
    dst.flush()
    del src, dst
    staging.unlink()


def _counts(items: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(items).items(), key=lambda kv: (-kv[1], kv[0])))


def prepare_corpora(corpora: dict[str, Path], out: Path, options: PrepareOptions, progress: bool = True,
                    *, overwrite: bool = False) -> PrepareReport:
    """Prepare `corpora` (adapter name -> root) into `out`; see the module docstring.

    Raises CorpusError for a missing/unrecognisable corpus, SplitError when the protocol cannot
    split the clips, PrepareError when nothing survives or `out` is in the way.
    """
    start = time.perf_counter()
    if not corpora:
        raise PrepareError("no corpus given: pass at least one NAME=PATH")
    out = Path(out).absolute()
    corpora = {name: Path(root).expanduser().absolute() for name, root in corpora.items()}
    _check_out(out, overwrite)

    utterances, rejects, found = _scan(corpora, options.iemocap_four_class)
    base = _label_base(options, {u.corpus for u in utterances})
    if options.labels == "native":
        utterances = [replace(u, label=u.native_label) for u in utterances]
    candidates = _label_filter(utterances, base, rejects)
    fold_match: FoldMatch | None = None
    fold_lists: dict | None = None
    listed: tuple[dict[str, int], int] | None = None
    if options.folds_from:
        scanned = candidates
        candidates, fold_match, fold_of = _apply_fold_lists(candidates, rejects, options.folds_from)
        fold_lists = _fold_list_info(fold_match, scanned)
        listed = (fold_of, fold_match.n_folds)
    if options.standard_folds and candidates:
        # fail before decoding when a corpus has no table; the folds are made again from what survives
        standard_folds([u.corpus for u in candidates], [u.speaker for u in candidates])

    length = segment_length(options.sample_rate, options.segment_seconds)
    per_clip = 1 + options.augment_copies
    params = _Params(options.sample_rate, length, options.trim_top_db, options.max_source_seconds,
                     options.augment_copies, options.augment_snr_db, options.seed)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()  # beside `out`, so the final rename stays on one filesystem (atomic)
    try:
        kept: list[tuple[Utterance, _Clip]] = []
        handled: Counter[str] = Counter()
        if candidates:
            staging = tmp / "waveforms.staging.npy"
            waves = np.lib.format.open_memmap(staging, mode="w+", dtype=np.float32,
                                              shape=(len(candidates) * per_clip, length))
            first_sha: dict[str, str] = {}
            paths = [os.path.abspath(u.path) for u in candidates]
            for clip in _decode_all(paths, params, options.workers, progress):
                u = candidates[clip.index]
                if clip.reason is not None:
                    rejects.append(_Reject(paths[clip.index], u.corpus, clip.reason, clip.kind or clip.reason))
                    continue
                if clip.sha1 in first_sha:  # identical audio in two places would leak across splits
                    rejects.append(_Reject(paths[clip.index], u.corpus,
                                           f"duplicate audio (same bytes as {first_sha[clip.sha1]})", "duplicate"))
                    continue
                first_sha[clip.sha1] = paths[clip.index]
                r = len(kept) * per_clip
                waves[r:r + per_clip] = clip.waves
                handled.update(clip.notes)
                clip.waves = None
                kept.append((u, clip))
            waves.flush()
            del waves
        if not kept:
            raise PrepareError(f"no clip survived preparation of {', '.join(f'{n}={p}' for n, p in corpora.items())}: "
                               f"{len(utterances)} found, rejected "
                               + (", ".join(f"{k} {v}" for k, v in _counts(r.kind for r in rejects).items()) or "none"))

        clips = [u for u, _ in kept]
        clip_labels = [u.label for u in clips]
        present = set(clip_labels)
        labels = tuple(l for l in base if l in present)
        label_id = label_index(labels)
        folds, n_folds = _assign_folds(clips, clip_labels, options, listed)
        splits = split_names(folds, 0, n_folds)

        n_rows = len(kept) * per_clip
        if n_rows == len(candidates) * per_clip:
            staging.rename(tmp / WAVEFORMS_FILE)
        else:
            _shrink(staging, tmp / WAVEFORMS_FILE, n_rows)

        cols: dict[str, list] = {name: [] for name in MANIFEST_SCHEMA.names}
        for i, (u, clip) in enumerate(kept):
            src = i * per_clip
            for k in range(per_clip):
                for name, value in (
                    ("row", src + k), ("path", os.path.abspath(u.path)), ("corpus", u.corpus),
                    ("speaker", f"{u.corpus}:{u.speaker}"), ("gender", u.gender), ("raw_label", u.raw_label),
                    ("label", u.label), ("label_id", label_id[u.label]), ("session", u.session),
                    ("duration", clip.duration), ("valid_samples", clip.valid_samples),
                    ("fold", int(folds[i])), ("split", str(splits[i])), ("augmented", k > 0),
                    ("source_row", src), ("snr_db", options.augment_snr_db if k > 0 else None),
                    ("sha1", clip.sha1),
                ):
                    cols[name].append(value)
        # The label set travels with the manifest too, for readers that never open protocol.json.
        manifest_schema = MANIFEST_SCHEMA.with_metadata({"ser_search.label_set": options.labels})
        pq.write_table(pa.Table.from_pydict(cols, schema=manifest_schema), tmp / MANIFEST_FILE)
        pq.write_table(pa.Table.from_pydict({"path": [r.path for r in rejects], "corpus": [r.corpus for r in rejects],
                                             "reason": [r.reason for r in rejects]}, schema=REJECTS_SCHEMA),
                       tmp / REJECTS_FILE)

        report = PrepareReport(
            out=out, found=len(utterances), prepared=len(kept), augmented=len(kept) * options.augment_copies,
            rejected=_counts(r.kind for r in rejects), handled=_counts(handled.elements()), labels=labels,
            class_counts={l: clip_labels.count(l) for l in labels}, protocol=options.fold_protocol, n_folds=n_folds,
            split_counts=_counts(splits.tolist()), found_by_corpus=found, label_set=options.labels,
            fold_assignment=options.fold_assignment, fold_lists=fold_lists,
        )
        protocol = {
            "format_version": CORPUS_FORMAT_VERSION,
            "sample_rate": options.sample_rate,
            "segment_seconds": options.segment_seconds,
            "segment_samples": length,
            "trim_top_db": options.trim_top_db,
            "labels": list(labels),
            "label_set": options.labels,  # "shared" (EMOTIONS) or "native" (each corpus's own classes)
            "iemocap_four_class": options.iemocap_four_class,
            **({"native_labels": {c: list(NATIVE_LABELS[c]) for c in sorted({u.corpus for u in clips})}}
               if options.labels == "native" else {}),
            "protocol": options.fold_protocol,
            "fold_assignment": options.fold_assignment,
            **({"standard_speaker_folds": {c: [list(g) for g in STANDARD_SPEAKER_FOLDS[c]]
                                           for c in sorted({u.corpus for u in clips})}}
               if options.protocol == "speaker" and options.standard_folds and not options.folds_from else {}),
            **({"fold_lists": fold_lists} if fold_lists is not None else {}),
            "n_folds": n_folds,
            "default_fold": 0,
            "val_fold_rule": VAL_FOLD_RULE,
            "augment_copies": options.augment_copies,
            "augment_snr_db": options.augment_snr_db,
            "augment_noise": "white Gaussian, added to the trimmed speech before zero padding",
            "max_source_seconds": options.max_source_seconds,
            "seed": options.seed,
            "corpora": {name: str(root) for name, root in corpora.items()},
            "counts": {
                "found": report.found, "found_by_corpus": found, "prepared": report.prepared,
                "augmented": report.augmented, "rows": n_rows, "rejected": report.rejected,
                "handled": report.handled, "classes": report.class_counts,
                "speakers": len({f"{u.corpus}:{u.speaker}" for u in clips}),
                "fold_clips": {str(f): int(n) for f, n in zip(*np.unique(folds, return_counts=True))},
                "fold0_split_clips": report.split_counts,
            },
            "software": {"librosa": librosa.__version__, "soundfile": sf.__version__,
                         "libsndfile": sf.__libsndfile_version__, "numpy": np.__version__},
        }
        # protocol.json last: a directory without it is never taken for a complete corpus.
        (tmp / PROTOCOL_FILE).write_text(json.dumps(protocol, indent=2) + "\n")
        _install(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.seconds = time.perf_counter() - start
    return report
