"""The shared emotion label set every corpus adapter maps onto.

One fixed order so class ids mean the same thing across corpora, sweeps and checkpoints.
"""
from __future__ import annotations

EMOTIONS: tuple[str, ...] = (
    "neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise",
)

# IEMOCAP's customary 4-class protocol (excited merged into happy).
IEMOCAP_4: tuple[str, ...] = ("neutral", "happy", "sad", "angry")


def label_index(labels: tuple[str, ...]) -> dict[str, int]:
    return {name: i for i, name in enumerate(labels)}
