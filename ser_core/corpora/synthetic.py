"""Adapter for the generated corpus of `ser_core.synthetic`, read from disk like any real corpus
so the synthetic data exercises the same scan -> audio -> prepare path.

Layout (see `ser_core.synthetic.LAYOUT`): ROOT/spkNN_GENDER/EMOTION/spkNN_EMOTION_CCC.wav
"""
from __future__ import annotations

import re
from pathlib import Path

from ..labels import EMOTIONS
from ..synthetic import MARKER_NAME, README_NAME
from ._scan import not_a_file_reason
from .base import CorpusError, Utterance

_SPEAKER_DIR = re.compile(r"spk(\d{2})_(female|male)")
_EMOTION_DIR = re.compile(r"[a-z]+")
_FILE = re.compile(r"spk(\d{2})_([a-z]+)_(\d{3})\.(?i:wav)")


class SyntheticAdapter:
    name = "synthetic"

    def __init__(self) -> None:
        # Files under the root that do not follow the layout, with the reason (for reports).
        self.unrecognised: list[tuple[Path, str]] = []

    def scan(self, root: Path, *, iemocap_four_class: bool = False) -> list[Utterance]:
        """Every clip under `root`. `iemocap_four_class` has no effect: the labels are already
        the shared emotion names (a folder outside EMOTIONS gets label None)."""
        root = Path(root)
        if not root.is_dir():
            raise CorpusError(f"synthetic corpus: {root} does not exist or is not a directory")
        self.unrecognised = []
        utterances: list[Utterance] = []
        for path in sorted(root.rglob("*")):
            if not path.is_file():
                # folders are the layout; anything else named like a clip is listed, not skipped
                why = not_a_file_reason(path) if path.suffix.lower() == ".wav" else None
                if why is not None:
                    self.unrecognised.append((path, why))
                continue
            rel = path.relative_to(root)
            if rel.parts in ((README_NAME,), (MARKER_NAME,)):
                continue
            parsed = self._parse(rel)
            if isinstance(parsed, str):
                self.unrecognised.append((path, parsed))
                continue
            speaker, gender, emotion = parsed
            utterances.append(Utterance(
                path=path, corpus=self.name, speaker=speaker, gender=gender,
                raw_label=emotion, label=emotion if emotion in EMOTIONS else None,
                native_label=emotion if emotion in EMOTIONS else None,  # its own classes are the shared ones
            ))
        if not utterances:
            raise CorpusError(
                f"synthetic corpus: no clip matching spkNN_GENDER/EMOTION/spkNN_EMOTION_CCC.wav "
                f"under {root} ({len(self.unrecognised)} other file(s)); "
                "generate one with ser_core.synthetic.generate_corpus")
        return utterances

    @staticmethod
    def _parse(rel: Path) -> tuple[str, str, str] | str:
        """(speaker, gender, emotion) of a clip path relative to the root, or why it is not one."""
        if len(rel.parts) != 3:
            return f"expected spkNN_GENDER/EMOTION/FILE.wav, found {len(rel.parts)} path level(s)"
        speaker_dir, emotion_dir, file_name = rel.parts
        spk = _SPEAKER_DIR.fullmatch(speaker_dir)
        if spk is None:
            return f"speaker folder {speaker_dir!r} does not match spkNN_female / spkNN_male"
        if _EMOTION_DIR.fullmatch(emotion_dir) is None:
            return f"emotion folder {emotion_dir!r} is not a lower-case emotion name"
        clip = _FILE.fullmatch(file_name)
        if clip is None:
            return f"file name {file_name!r} does not match spkNN_EMOTION_CCC.wav"
        if clip.group(1) != spk.group(1):
            return f"file speaker spk{clip.group(1)} differs from folder {speaker_dir!r}"
        if clip.group(2) != emotion_dir:
            return f"file emotion {clip.group(2)!r} differs from folder {emotion_dir!r}"
        return f"spk{spk.group(1)}", spk.group(2), emotion_dir
