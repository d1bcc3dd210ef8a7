"""EmoDB (Berlin Database of Emotional Speech, Burkhardt et al. 2005).

Official naming `SSTTTEv.wav` (e.g. `wav/03a01Fa.wav`): SS speaker, TTT sentence code,
E emotion letter (German initial), v version. The release keeps the audio in `wav/`;
re-packagings put it flat or deeper, so the root is walked recursively.
Speaker genders are not in the file name; they come from the corpus documentation.
"""
from __future__ import annotations

import re
from pathlib import Path

from ._scan import WavCorpusAdapter
from .base import Utterance
from .label_maps import EMODB, EMODB_NATIVE

_CORPUS = "emodb"
_EXAMPLE = "wav/03a01Fa.wav (speaker 03, sentence a01, emotion letter F, version a)"
_NAME = re.compile(r"(?P<speaker>\d{2})(?P<sentence>[ab]\d{2})(?P<emotion>[A-Z])(?P<version>[a-z])")

SPEAKER_GENDER: dict[str, str] = {
    **{s: "male" for s in ("03", "10", "11", "12", "15")},
    **{s: "female" for s in ("08", "09", "13", "14", "16")},
}


class EmoDBAdapter(WavCorpusAdapter):
    name = _CORPUS
    example = _EXAMPLE

    def _parse(self, path: Path) -> tuple[str, Utterance] | None:
        m = _NAME.fullmatch(path.stem)
        if m is None:
            self._reject(path, f"name does not follow EmoDB naming SSTTTEv.wav, e.g. {_EXAMPLE}")
            return None
        speaker, letter = m["speaker"], m["emotion"]
        if speaker not in SPEAKER_GENDER:
            known = " ".join(sorted(SPEAKER_GENDER))
            self._reject(path, f"unknown EmoDB speaker {speaker!r} (known: {known})")
            return None
        if letter not in EMODB:
            known = " ".join(EMODB)
            self._reject(path, f"unknown EmoDB emotion letter {letter!r} (known: {known})")
            return None
        return path.stem, Utterance(
            path=path,
            corpus=_CORPUS,
            speaker=speaker,
            gender=SPEAKER_GENDER[speaker],
            raw_label=letter,
            label=EMODB[letter],
            native_label=EMODB_NATIVE[letter],
        )
