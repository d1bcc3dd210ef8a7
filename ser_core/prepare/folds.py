"""Fold assignment: the protocol's folds, or a benchmark's fold lists matched before decoding.

Folds are assigned at preparation and stored per clip, so training can pick any fold without
preparing again; the --folds-from match also says what it could not match (protocol.json).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..corpora import Utterance
from ..fold_lists import FoldMatch, match_folds
from ..splits import SplitError, group_folds, session_folds, standard_folds, stratified_folds
from .candidates import Reject
from .options import PrepareOptions

DEFAULT_FOLDS = {"speaker": 5, "utterance": 10}  # 10 stratified folds = the paper's 80/10/10


def apply_fold_lists(candidates: list[Utterance], rejects: list[Reject],
                      sources: tuple[Path, ...]) -> tuple[list[Utterance], FoldMatch, dict[str, int]]:
    """Match the benchmark's fold lists before decoding: clips in no list are rejected (listed
    with the reason, like any other excluded file); returns (listed clips, match, path -> fold)."""
    match = match_folds([Path(u.path) for u in candidates], [u.corpus for u in candidates], sources,
                        rejected=[(Path(r.path), r.corpus, r.reason) for r in rejects])
    where = ", ".join(map(str, sources))
    for i in match.clips_in_no_fold:
        u = candidates[i]
        rejects.append(Reject(os.path.abspath(u.path), u.corpus, f"in no test fold of --folds-from {where}",
                               "in no listed fold"))
    listed = {os.path.abspath(candidates[i].path): f for i, f in match.fold_of.items()}
    return [u for i, u in enumerate(candidates) if i in match.fold_of], match, listed


def fold_list_info(match: FoldMatch, candidates: list[Utterance]) -> dict:
    """protocol.json's record of a --folds-from match: nothing unmatched goes unlisted."""
    return {
        "format": "EmoBox test-fold jsonl (fold N of the lists = fold N-1 here)",
        "sources": match.sources, "entries": match.n_entries, "matched": len(match.fold_of),
        "entries_without_clip": [{"wav": e.wav, "fold": e.fold, "source": e.source, "reason": why}
                                 for e, why in match.entries_without_clip],
        "clips_in_no_fold": [os.path.abspath(candidates[i].path) for i in match.clips_in_no_fold],
    }


def assign_folds(clips: list[Utterance], labels: list[str], options: PrepareOptions,
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
