"""EmoDB (Berlin Database of Emotional Speech, Burkhardt et al. 2005).

Official naming `SSTTTEv.wav` (e.g. `wav/03a01Fa.wav`): SS speaker, TTT sentence code,
E emotion letter (German initial), v version. The release keeps the audio in `wav/`;
re-packagings put it flat or deeper, so the root is walked recursively.
Speaker genders are not in the file name; they come from the corpus documentation.
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import CorpusError, Utterance
from .label_maps import EMODB

_CORPUS = "emodb"
_EXAMPLE = "wav/03a01Fa.wav (speaker 03, sentence a01, emotion letter F, version a)"
_NAME = re.compile(r"(?P<speaker>\d{2})(?P<sentence>[ab]\d{2})(?P<emotion>[A-Z])(?P<version>[a-z])")

SPEAKER_GENDER: dict[str, str] = {
    **{s: "male" for s in ("03", "10", "11", "12", "15")},
    **{s: "female" for s in ("08", "09", "13", "14", "16")},
}


def _wav_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() == ".wav" and p.is_file())


class EmoDBAdapter:
    name = _CORPUS

    def __init__(self) -> None:
        # (path, reason) for every .wav the last scan could not use; prepare reports them.
        self.unrecognised: list[tuple[Path, str]] = []

    def scan(self, root: Path, *, iemocap_four_class: bool = False) -> list[Utterance]:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise CorpusError(f"{_CORPUS}: corpus root {root} does not exist or is not a directory")
        self.unrecognised = []
        found: list[Utterance] = []
        first_seen: dict[str, Path] = {}  # re-packagings often ship a second copy of the tree
        for path in _wav_files(root):
            parsed = self._parse(path)
            if parsed is None:
                continue
            key, utt = parsed
            if key in first_seen:
                self._reject(path, f"duplicate of {first_seen[key]} (same utterance {key})")
                continue
            first_seen[key] = path
            found.append(utt)
        if not found:
            seen = f"{len(self.unrecognised)} .wav file(s) seen, none recognised"
            if self.unrecognised:
                first, why = self.unrecognised[0]
                seen += f" (first: {first}: {why})"
            raise CorpusError(
                f"{_CORPUS}: no recognisable file under {root}; expected names like {_EXAMPLE}; {seen}"
            )
        return sorted(found, key=lambda u: u.path)

    def _reject(self, path: Path, reason: str) -> None:
        self.unrecognised.append((path, reason))

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
        )
