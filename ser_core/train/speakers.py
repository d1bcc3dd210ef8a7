"""Per-speaker normalisation (normalization = "speaker"): each speaker's rows standardised by
that speaker's own statistics, label-free, taken over the trial's splits.

Two ways to the same statistics: from the node's cached per-row moments (a trial on the shared
feature cache) or from a pass over the spectrograms (feature_cache = "off"). Either way a
noisy copy is normalised with its source speaker's statistics but does not shape them.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..features import SpeakerNormalizer, group_statistics, statistics_from_row_moments
from .results import CorpusLike


def speaker_groups(corpus: CorpusLike) -> np.ndarray:
    """Each manifest row's speaker as an index (manifest speakers are unique across corpora)."""
    if "speaker" not in corpus.manifest.columns:
        raise ValueError("normalization = \"speaker\" needs a 'speaker' column in the prepared manifest")
    codes, _ = pd.factorize(corpus.manifest["speaker"].astype(str), sort=True)
    return codes.astype(np.int64)


def _statistics_groups(rows: np.ndarray, corpus: CorpusLike, group_of_row: np.ndarray) -> np.ndarray:
    """Which speaker's statistics each of `rows` shapes: -1 for a noisy copy, which is normalised
    with its source speaker's statistics but does not shape them."""
    augmented = corpus.manifest["augmented"].to_numpy(dtype=bool) if "augmented" in corpus.manifest.columns \
        else np.zeros(len(corpus.manifest), dtype=bool)
    return np.where(augmented[rows], -1, group_of_row[rows])


def _n_speakers(group_of_row: np.ndarray) -> int:
    return int(group_of_row.max()) + 1 if len(group_of_row) else 0


def speaker_normalizer_from_moments(moments: tuple[Tensor, Tensor, Tensor], splits: dict[str, np.ndarray],
                                    corpus: CorpusLike, group_of_row: np.ndarray) -> SpeakerNormalizer:
    """`fit_speaker_normalizer`'s statistics (each speaker's ORIGINAL clips in the trial's splits)
    merged from the rows' cached moments."""
    rows = np.concatenate(list(splits.values()))
    groups = torch.from_numpy(_statistics_groups(rows, corpus, group_of_row))
    idx = torch.from_numpy(rows.astype(np.int64))
    mean, std, _ = statistics_from_row_moments(*(t[idx] for t in moments), groups, _n_speakers(group_of_row))
    return SpeakerNormalizer(mean, std, torch.from_numpy(group_of_row))


def fit_speaker_normalizer(batches_of: Callable[[str], Any], splits: dict[str, np.ndarray], corpus: CorpusLike,
                           group_of_row: np.ndarray, n_features: int) -> SpeakerNormalizer:
    """Per-speaker statistics over each speaker's ORIGINAL clips in this trial's splits (train,
    validation and test: no labels read); noisy copies are normalised with their source speaker's
    statistics but do not shape them, so a training speaker's statistics are taken exactly as an
    evaluation speaker's are."""

    def items():
        for name, rows in splits.items():
            groups = _statistics_groups(rows, corpus, group_of_row)
            offset = 0
            for feats, lengths in batches_of(name):
                yield feats, lengths, torch.from_numpy(groups[offset:offset + len(feats)])
                offset += len(feats)

    mean, std, _ = group_statistics(items(), _n_speakers(group_of_row), n_features)
    return SpeakerNormalizer(mean, std, torch.from_numpy(group_of_row))
