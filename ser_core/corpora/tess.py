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

from .base import CorpusError, Utterance
from .label_maps import TESS

_CORPUS = "tess"
_EXAMPLE = "OAF_angry/OAF_back_angry.wav or YAF_pleasant_surprised/YAF_back_ps.wav"
_NAME = re.compile(r"(?P<speaker>[A-Za-z]{3})_(?P<word>[A-Za-z]+)_(?P<emotion>[A-Za-z_]+)")

SPEAKERS: tuple[str, ...] = ("OAF", "YAF")  # both actresses are female


def _wav_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() == ".wav" and p.is_file())


class TessAdapter:
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
        )
