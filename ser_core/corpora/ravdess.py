"""RAVDESS (Livingstone & Russo 2018), audio-only release.

Official naming `MM-VV-EE-II-SS-RR-AA.wav` under `Actor_NN/` (e.g. `Actor_01/03-01-05-01-02-01-01.wav`):
modality (03 = audio-only), vocal channel (01 speech, 02 song), emotion, intensity,
statement, repetition, actor. Odd actors are male, even actors female.

Song files are returned with label=None and raw_label "song:<emotion code>" rather than
skipped, so preparation can exclude *and count* them like any other unmappable clip.
The root is walked recursively, so an extra top folder (e.g. `Audio_Speech_Actors_01-24/`) is fine.
"""
from __future__ import annotations

import re
from pathlib import Path

from ._scan import WavCorpusAdapter
from .base import Utterance
from .label_maps import RAVDESS

_CORPUS = "ravdess"
_EXAMPLE = "Actor_01/03-01-05-01-02-01-01.wav (modality-channel-emotion-intensity-statement-repetition-actor)"
_NAME = re.compile(r"(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})")

_AUDIO_ONLY = "03"
_SPEECH, _SONG = "01", "02"
_BINARY = ("01", "02")  # intensity, statement and repetition each take one of two values


class RavdessAdapter(WavCorpusAdapter):
    name = _CORPUS
    example = _EXAMPLE

    def _parse(self, path: Path) -> tuple[str, Utterance] | None:
        m = _NAME.fullmatch(path.stem)
        if m is None:
            self._reject(path, f"name does not follow RAVDESS naming, e.g. {_EXAMPLE}")
            return None
        modality, channel, emotion, intensity, statement, repetition, actor = m.groups()
        if modality != _AUDIO_ONLY:
            # 01/02 are the video releases; a .wav with those codes duplicates an audio-only file.
            self._reject(path, f"modality {modality} is not audio-only (03)")
            return None
        if channel not in (_SPEECH, _SONG):
            self._reject(path, f"vocal channel {channel} is neither 01 (speech) nor 02 (song)")
            return None
        if emotion not in RAVDESS:
            self._reject(path, f"unknown RAVDESS emotion code {emotion} (known: 01-08)")
            return None
        for field, value in (("intensity", intensity), ("statement", statement), ("repetition", repetition)):
            if value not in _BINARY:
                self._reject(path, f"{field} code {value} is neither 01 nor 02")
                return None
        actor_no = int(actor)
        if not 1 <= actor_no <= 24:
            self._reject(path, f"actor {actor} is outside 01-24")
            return None
        speech = channel == _SPEECH
        return path.stem, Utterance(
            path=path,
            corpus=_CORPUS,
            speaker=f"Actor_{actor}",
            gender="male" if actor_no % 2 else "female",
            raw_label=emotion if speech else f"song:{emotion}",
            label=RAVDESS[emotion] if speech else None,
            native_label=RAVDESS[emotion] if speech else None,
        )
