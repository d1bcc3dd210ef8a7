"""The label sets a prepared corpus can use.

`shared` (the default): every corpus mapped onto one 8-class set, EMOTIONS, so corpora can be
pooled and compared; a code with no place in it (EmoDB's boredom, IEMOCAP's frustration) is
excluded and counted. `native`: each corpus keeps its own classes, as the papers that report
on one corpus use them (EmoDB's 7 with boredom, CREMA-D's 6, IEMOCAP's 4-class standard); see
ser_core.corpora.label_maps for the per-corpus lists.

One fixed order (LABEL_ORDER) so class ids mean the same thing across corpora, sweeps and
checkpoints whichever set is used: a native label set is LABEL_ORDER restricted to the classes
of the corpora prepared.
"""
from __future__ import annotations

EMOTIONS: tuple[str, ...] = (
    "neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise",
)

# IEMOCAP's customary 4-class protocol (excited merged into happy).
IEMOCAP_4: tuple[str, ...] = ("neutral", "happy", "sad", "angry")

# Classes only some corpora's own label sets have, after the shared ones (ids stay stable).
NATIVE_ONLY: tuple[str, ...] = ("boredom",)
LABEL_ORDER: tuple[str, ...] = EMOTIONS + NATIVE_ONLY

LABEL_SETS: tuple[str, ...] = ("shared", "native")


def label_index(labels: tuple[str, ...]) -> dict[str, int]:
    return {name: i for i, name in enumerate(labels)}


def ordered(labels: set[str] | frozenset[str]) -> tuple[str, ...]:
    """`labels` in LABEL_ORDER; a name outside it is an error (it would get no stable id)."""
    unknown = sorted(set(labels) - set(LABEL_ORDER))
    if unknown:
        raise ValueError(f"labels {', '.join(unknown)} are not in ser_core.labels.LABEL_ORDER")
    return tuple(l for l in LABEL_ORDER if l in labels)
