"""SAVEE (Surrey Audio-Visual Expressed Emotion, Haq & Jackson 2009).

Four male speakers (DC, JE, JK, KL). Official audio layout `AudioData/<speaker>/<code><nn>.wav`
(e.g. `AudioData/DC/a01.wav`); the common re-packaging puts everything flat as
`ALL/<speaker>_<code><nn>.wav` (e.g. `ALL/DC_a01.wav`). Both are accepted; a clip present
in both layouts is kept once (the other copy is reported as a duplicate).
Emotion codes: a, d, f, h, n, sa, su.
"""
from __future__ import annotations

import re
from pathlib import Path

from ._scan import WavCorpusAdapter
from .base import Utterance
from .label_maps import SAVEE

_CORPUS = "savee"
_EXAMPLE = "ALL/DC_a01.wav or AudioData/DC/a01.wav (speaker, emotion code, take number)"
_CLIP = r"(?P<emotion>[a-z]{1,2})(?P<take>\d{2})"
_FLAT = re.compile(r"(?P<speaker>[A-Z]{2})_" + _CLIP)
_NESTED = re.compile(_CLIP)

SPEAKERS: tuple[str, ...] = ("DC", "JE", "JK", "KL")  # all male


class SaveeAdapter(WavCorpusAdapter):
    name = _CORPUS
    example = _EXAMPLE

    def _parse(self, path: Path) -> tuple[str, Utterance] | None:
        m = _FLAT.fullmatch(path.stem)
        if m is not None:
            speaker = m["speaker"]
        else:
            # nested layout: the speaker is the folder name
            m = _NESTED.fullmatch(path.stem)
            speaker = path.parent.name
            if m is None:
                self._reject(path, f"name does not follow SAVEE naming, e.g. {_EXAMPLE}")
                return None
        if speaker not in SPEAKERS:
            where = "prefix" if m.re is _FLAT else "folder"
            self._reject(path, f"unknown SAVEE speaker {speaker!r} ({where}; known: {' '.join(SPEAKERS)})")
            return None
        emotion = m["emotion"]
        if emotion not in SAVEE:
            self._reject(path, f"unknown SAVEE emotion code {emotion!r} (known: {' '.join(SAVEE)})")
            return None
        return f"{speaker}_{emotion}{m['take']}", Utterance(
            path=path,
            corpus=_CORPUS,
            speaker=speaker,
            gender="male",
            raw_label=emotion,
            label=SAVEE[emotion],
            native_label=SAVEE[emotion],
        )
