"""TESS (Toronto Emotional Speech Set, Dupuis & Pichora-Fuller 2010).

Official naming `<speaker>_<word>_<emotion>.wav` in per-speaker-emotion folders, e.g.
`OAF_angry/OAF_back_angry.wav` or `YAF_pleasant_surprised/YAF_back_ps.wav`. Two speakers,
both female: OAF (older, 64) and YAF (younger, 26). The file name alone carries the label
(folder names vary in case and spelling between re-packagings), so folders are not read.
Speaker and emotion are matched case-insensitively for the same reason.
"""
from __future__ import annotations

import re
from pathlib import Path

from ._scan import WavCorpusAdapter
from .base import Utterance
from .label_maps import TESS

_CORPUS = "tess"
_EXAMPLE = "OAF_angry/OAF_back_angry.wav or YAF_pleasant_surprised/YAF_back_ps.wav"
_NAME = re.compile(r"(?P<speaker>[A-Za-z]{3})_(?P<word>[A-Za-z]+)_(?P<emotion>[A-Za-z_]+)")

SPEAKERS: tuple[str, ...] = ("OAF", "YAF")  # both actresses are female


class TessAdapter(WavCorpusAdapter):
    name = _CORPUS
    example = _EXAMPLE

    def _parse(self, path: Path) -> tuple[str, Utterance] | None:
        m = _NAME.fullmatch(path.stem)
        if m is None:
            self._reject(path, f"name does not follow TESS naming <speaker>_<word>_<emotion>.wav, e.g. {_EXAMPLE}")
            return None
        speaker, word, emotion = m["speaker"].upper(), m["word"].lower(), m["emotion"].lower()
        if speaker not in SPEAKERS:
            self._reject(path, f"unknown TESS speaker {m['speaker']!r} (known: OAF YAF)")
            return None
        if emotion not in TESS:
            self._reject(path, f"unknown TESS emotion {m['emotion']!r} (known: {' '.join(TESS)})")
            return None
        return f"{speaker}_{word}_{emotion}", Utterance(
            path=path,
            corpus=_CORPUS,
            speaker=speaker,
            gender="female",
            raw_label=emotion,
            label=TESS[emotion],
            native_label=TESS[emotion],
        )
