"""Fold assignment for evaluation protocols (greedy speaker folds, the standard published
speaker folds, sessions, stratified utterance folds; benchmark fold lists: ser_core.fold_lists).

Every clip gets one integer fold; for test fold f the validation fold is (f + 1) % n_folds and
the rest is train. Storing folds rather than one fixed split lets a sweep or a cross-validation
pick any fold at train time from the same prepared corpus.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedKFold

MIN_FOLDS = 3  # test, validation and at least one train fold
VAL_FOLD_RULE = "(test_fold + 1) % n_folds"


class SplitError(ValueError):
    """The clips cannot be split under the requested protocol."""


def _check_n_folds(n_folds: int) -> None:
    if n_folds < MIN_FOLDS:
        raise SplitError(f"n_folds must be at least {MIN_FOLDS} (test, validation, train), got {n_folds}")


def group_folds(groups: Sequence[str], n_folds: int, seed: int = 0, *, what: str = "speaker") -> np.ndarray:
    """Fold per clip such that all clips of a group (speaker, session) share one fold.

    Greedy balancing of clip counts: groups, largest first, go to the fold with the fewest clips
    so far. The seed only orders groups of equal size, so the result is deterministic.
    """
    _check_n_folds(n_folds)
    keys, inverse, counts = np.unique(np.asarray(groups, dtype=object).astype(str),
                                      return_inverse=True, return_counts=True)
    if len(keys) < n_folds:
        raise SplitError(f"{n_folds} folds need at least {n_folds} distinct {what}s, found {len(keys)} "
                         f"({', '.join(map(str, keys))}); lower n_folds or use the utterance protocol")
    tiebreak = np.random.default_rng(seed).permutation(len(keys))
    order = sorted(range(len(keys)), key=lambda g: (-int(counts[g]), int(tiebreak[g])))
    load = np.zeros(n_folds, dtype=np.int64)
    fold_of_group = np.empty(len(keys), dtype=np.int32)
    for g in order:
        f = int(np.argmin(load))  # lowest fold index among equally loaded ones
        fold_of_group[g] = f
        load[f] += counts[g]
    return fold_of_group[inverse.reshape(-1)]


# Standard leave-speakers-out folds, fixed so that numbers line up with speaker-independent
# results reported on the same split (fold f = the f-th tuple; speaker ids as the adapters
# write them). `prepare --folds standard` uses these instead of group_folds' greedy balance.
#
# EmoDB (Burkhardt et al. 2005): 10 speakers, 5 male (03 10 11 12 15), 5 female
# (08 09 13 14 16). Speaker-independent EmoDB work uses leave-one-speaker-out (10 folds) or
# 5 folds of 2 speakers; no single published pairing is canonical, so the pairing here is a
# rule anyone can rebuild: the males in ascending id order paired with the females in
# ascending id order, one male + one female per fold, so every test fold is gender-balanced.
# On the full corpus (535 clips, boredom included) the folds hold 107, 81, 116, 104 and 127 clips.
EMODB_SPEAKER_PAIRS: tuple[tuple[str, str], ...] = (
    ("03", "08"), ("10", "09"), ("11", "13"), ("12", "14"), ("15", "16"),
)
# RAVDESS (Livingstone & Russo 2018): 24 actors, odd male / even female; the usual
# speaker-independent split is 6 folds of 4 consecutive actors (1-4, 5-8, ..., 21-24), so
# each fold holds 2 male and 2 female actors.
RAVDESS_ACTOR_GROUPS: tuple[tuple[str, ...], ...] = tuple(
    tuple(f"Actor_{a:02d}" for a in range(first, first + 4)) for first in range(1, 25, 4)
)
STANDARD_SPEAKER_FOLDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "emodb": EMODB_SPEAKER_PAIRS,
    "ravdess": RAVDESS_ACTOR_GROUPS,
}


def standard_folds(corpora: Sequence[str], speakers: Sequence[str]) -> tuple[np.ndarray, int]:
    """(fold per clip, n_folds) from STANDARD_SPEAKER_FOLDS; clip i is speaker `speakers[i]`
    of corpus `corpora[i]`.

    Every corpus must have a standard table and all must have the same number of folds (fold f
    of each then forms fold f); every fold must hold clips, or the split would be unusable.
    """
    corpora = [str(c) for c in corpora]
    present = sorted(set(corpora))
    lacking = [c for c in present if c not in STANDARD_SPEAKER_FOLDS]
    if lacking:
        raise SplitError(f"no standard speaker folds for corpus {', '.join(lacking)}; standard folds exist for "
                         f"{', '.join(sorted(STANDARD_SPEAKER_FOLDS))} (use the default greedy speaker folds, "
                         "or --protocol session for IEMOCAP)")
    counts = {c: len(STANDARD_SPEAKER_FOLDS[c]) for c in present}
    if len(set(counts.values())) > 1:
        raise SplitError("standard folds of different sizes cannot share fold ids: "
                         + ", ".join(f"{c} has {n}" for c, n in counts.items()) + "; prepare them separately")
    n_folds = next(iter(counts.values()))
    fold_of = {(c, spk): f for c in present for f, group in enumerate(STANDARD_SPEAKER_FOLDS[c]) for spk in group}
    folds = np.empty(len(corpora), dtype=np.int32)
    for i, key in enumerate(zip(corpora, map(str, speakers))):
        if key not in fold_of:
            raise SplitError(f"{key[0]} speaker {key[1]!r} is in no standard fold "
                             f"(known: {' '.join(s for g in STANDARD_SPEAKER_FOLDS[key[0]] for s in g)})")
        folds[i] = fold_of[key]
    empty = sorted(set(range(n_folds)) - set(folds.tolist()))
    if empty:
        raise SplitError("standard fold(s) without a clip: " + "; ".join(
            f"fold {f} ({', '.join(f'{c} ' + ' '.join(STANDARD_SPEAKER_FOLDS[c][f]) for c in present)})"
            for f in empty))
    return folds, n_folds


def session_folds(sessions: Sequence[str | None]) -> np.ndarray:
    """One fold per session (leave-one-session-out), sessions in sorted order."""
    missing = sum(s is None for s in sessions)
    if missing:
        raise SplitError(f"session protocol needs a session for every clip; {missing} of {len(sessions)} "
                         "clips have none (only IEMOCAP records sessions)")
    keys = sorted(set(sessions))  # type: ignore[type-var]
    _check_n_folds(len(keys))
    index = {k: i for i, k in enumerate(keys)}
    return np.array([index[s] for s in sessions], dtype=np.int32)


def stratified_folds(labels: Sequence[str], n_folds: int = 10, seed: int = 0) -> np.ndarray:
    """Fold per clip, each fold holding about 1/n_folds of every class (the utterance protocol;
    10 folds give the paper's 80/10/10)."""
    _check_n_folds(n_folds)
    y = np.asarray(labels, dtype=object).astype(str)
    if len(y) < n_folds:
        raise SplitError(f"{n_folds} folds need at least {n_folds} clips, found {len(y)}")
    folds = np.empty(len(y), dtype=np.int32)
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Rare classes with fewer clips than folds are still spread as evenly as possible.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        try:
            for f, (_, test) in enumerate(skf.split(np.zeros(len(y)), y)):
                folds[test] = f
        except ValueError as exc:
            raise SplitError(f"stratified {n_folds}-fold split impossible: {exc}") from exc
    return folds


def split_names(folds: np.ndarray, fold: int, n_folds: int) -> np.ndarray:
    """'test' / 'val' / 'train' per clip when `fold` is the test fold."""
    if not 0 <= fold < n_folds:
        raise SplitError(f"fold {fold} out of range: this corpus has folds 0..{n_folds - 1}")
    folds = np.asarray(folds)
    out = np.full(folds.shape, "train", dtype=object)
    out[folds == (fold + 1) % n_folds] = "val"
    out[folds == fold] = "test"
    return out
