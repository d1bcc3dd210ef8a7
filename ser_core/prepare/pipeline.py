"""prepare_corpora: the steps of ser_core.prepare in order, writing one prepared corpus.

Scan and filter (candidates), match fold lists (folds), decode (decode), assign folds, write the
manifest, rejects and protocol.json, then install the directory (output); see the package
docstring for the preprocessing and ser_core.corpus for the layout written.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import librosa
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from ..audio import segment_length
from ..corpora import Utterance
from ..corpora.label_maps import NATIVE_LABELS
from ..corpus import (CORPUS_FORMAT_VERSION, MANIFEST_FILE, MANIFEST_SCHEMA, PROTOCOL_FILE, REJECTS_FILE,
                      REJECTS_SCHEMA, WAVEFORMS_FILE)
from ..fold_lists import FoldMatch
from ..labels import label_index
from ..splits import STANDARD_SPEAKER_FOLDS, VAL_FOLD_RULE, split_names, standard_folds
from .candidates import Reject, label_base, label_filter, scan
from .decode import Clip, Params, decode_all
from .errors import PrepareError
from .folds import apply_fold_lists, assign_folds, fold_list_info
from .options import PrepareOptions
from .output import check_out, install, shrink
from .report import PrepareReport


def _counts(items: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(items).items(), key=lambda kv: (-kv[1], kv[0])))


def prepare_corpora(corpora: dict[str, Path], out: Path, options: PrepareOptions, progress: bool = True,
                    *, overwrite: bool = False) -> PrepareReport:
    """Prepare `corpora` (adapter name -> root) into `out`; see the ser_core.prepare docstring.

    Raises CorpusError for a missing/unrecognisable corpus, SplitError when the protocol cannot
    split the clips, PrepareError when nothing survives or `out` is in the way.
    """
    start = time.perf_counter()
    if not corpora:
        raise PrepareError("no corpus given: pass at least one NAME=PATH")
    out = Path(out).absolute()
    # normalised like the manifest's paths (os.path.abspath): the same folder spelled another way
    # (a/../a, a trailing slash) is the same source, so the same preparation identity
    corpora = {name: Path(os.path.abspath(Path(root).expanduser())) for name, root in corpora.items()}
    check_out(out, overwrite)

    utterances, rejects, found = scan(corpora, options.iemocap_four_class)
    base = label_base(options, {u.corpus for u in utterances})
    if options.labels == "native":
        utterances = [replace(u, label=u.native_label) for u in utterances]
    candidates = label_filter(utterances, base, rejects)
    fold_match: FoldMatch | None = None
    fold_lists: dict | None = None
    listed: tuple[dict[str, int], int] | None = None
    if options.folds_from:
        scanned = candidates
        candidates, fold_match, fold_of = apply_fold_lists(candidates, rejects, options.folds_from)
        fold_lists = fold_list_info(fold_match, scanned)
        listed = (fold_of, fold_match.n_folds)
    if options.standard_folds and candidates:
        # fail before decoding when a corpus has no table; the folds are made again from what survives
        standard_folds([u.corpus for u in candidates], [u.speaker for u in candidates])

    length = segment_length(options.sample_rate, options.segment_seconds)
    per_clip = 1 + options.augment_copies
    params = Params(options.sample_rate, length, options.trim_top_db, options.max_source_seconds,
                     options.augment_copies, options.augment_snr_db, options.seed)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()  # beside `out`, so the final rename stays on one filesystem (atomic)
    try:
        kept: list[tuple[Utterance, Clip]] = []
        handled: Counter[str] = Counter()
        if candidates:
            staging = tmp / "waveforms.staging.npy"
            waves = np.lib.format.open_memmap(staging, mode="w+", dtype=np.float32,
                                              shape=(len(candidates) * per_clip, length))
            first_sha: dict[str, str] = {}
            paths = [os.path.abspath(u.path) for u in candidates]
            for clip in decode_all(paths, params, options.workers, progress):
                u = candidates[clip.index]
                if clip.reason is not None:
                    rejects.append(Reject(paths[clip.index], u.corpus, clip.reason, clip.kind or clip.reason))
                    continue
                if clip.sha1 in first_sha:  # identical audio in two places would leak across splits
                    rejects.append(Reject(paths[clip.index], u.corpus,
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
        folds, n_folds = assign_folds(clips, clip_labels, options, listed)
        splits = split_names(folds, 0, n_folds)

        n_rows = len(kept) * per_clip
        if n_rows == len(candidates) * per_clip:
            staging.rename(tmp / WAVEFORMS_FILE)
        else:
            shrink(staging, tmp / WAVEFORMS_FILE, n_rows)

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
        install(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.seconds = time.perf_counter() - start
    return report
