"""Fold assignment for evaluation protocols.

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
