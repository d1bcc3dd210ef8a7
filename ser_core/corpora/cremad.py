"""CREMA-D (Cao et al. 2014), audio release.

Official naming `AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav`, e.g.
`AudioWAV/1001_DFA_ANG_XX.wav`: actor 1001-1091, one of 12 sentence codes, emotion code,
intensity level (LO, MD, HI, XX = unspecified). The file name says nothing about gender:
it comes from the corpus's `VideoDemographics.csv` (columns ActorID, Sex) when one is found
under the root, or beside it when the root is `AudioWAV/` itself; otherwise gender is None.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from ._scan import WavCorpusAdapter
from .base import CorpusError, Utterance
from .label_maps import CREMAD

_CORPUS = "cremad"
_EXAMPLE = "AudioWAV/1001_DFA_ANG_XX.wav (actor, sentence, emotion, level)"
_NAME = re.compile(r"(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})")
_DEMOGRAPHICS = "videodemographics.csv"

SENTENCES: frozenset[str] = frozenset(
    {"IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI"}
)
LEVELS: frozenset[str] = frozenset({"LO", "MD", "HI", "XX"})


def find_demographics(root: Path) -> Path | None:
    """The corpus's VideoDemographics.csv: under `root`, else beside it (root = AudioWAV/)."""
    under = sorted(p for p in root.rglob("*.csv") if p.name.lower() == _DEMOGRAPHICS)
    if under:
        return under[0]
    beside = sorted(p for p in root.parent.glob("*.csv") if p.name.lower() == _DEMOGRAPHICS)
    return beside[0] if beside else None


def read_genders(csv_path: Path) -> dict[str, str | None]:
    """ActorID -> "female"/"male" (None for any other Sex value) from VideoDemographics.csv."""
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        if "ActorID" not in columns or "Sex" not in columns:
            raise CorpusError(
                f"{_CORPUS}: {csv_path} lacks the ActorID and Sex columns (found: {', '.join(columns) or 'none'})"
            )
        genders: dict[str, str | None] = {}
        for row in reader:
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            sex = row["Sex"].lower()
            genders[row["ActorID"]] = sex if sex in ("female", "male") else None
    return genders


class CremaDAdapter(WavCorpusAdapter):
    name = _CORPUS
    example = _EXAMPLE

    def __init__(self) -> None:
        super().__init__()
        # ActorID -> gender from the demographics file found by the last scan (empty: unknown).
        self.demographics: Path | None = None
        self._genders: dict[str, str | None] = {}

    def _begin_scan(self, root: Path) -> None:
        self.demographics = find_demographics(root)
        self._genders = read_genders(self.demographics) if self.demographics else {}

    def _parse(self, path: Path) -> tuple[str, Utterance] | None:
        m = _NAME.fullmatch(path.stem)
        if m is None:
            self._reject(path, f"name does not follow CREMA-D naming, e.g. {_EXAMPLE}")
            return None
        actor, sentence, emotion, level = m["actor"], m["sentence"], m["emotion"], m["level"]
        if not 1001 <= int(actor) <= 1091:
            self._reject(path, f"actor {actor} is outside CREMA-D's 1001-1091")
            return None
        if sentence not in SENTENCES:
            self._reject(path, f"unknown CREMA-D sentence code {sentence!r} (known: {' '.join(sorted(SENTENCES))})")
            return None
        if emotion not in CREMAD:
            self._reject(path, f"unknown CREMA-D emotion code {emotion!r} (known: {' '.join(CREMAD)})")
            return None
        if level not in LEVELS:
            self._reject(path, f"unknown CREMA-D intensity level {level!r} (known: {' '.join(sorted(LEVELS))})")
            return None
        return path.stem, Utterance(
            path=path,
            corpus=_CORPUS,
            speaker=actor,
            gender=self._genders.get(actor),
            raw_label=emotion,
            label=CREMAD[emotion],
            native_label=CREMAD[emotion],
        )
