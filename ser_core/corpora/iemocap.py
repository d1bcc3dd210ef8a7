"""IEMOCAP (Busso et al. 2008), full release layout.

Labels live in `SessionN/dialog/EmoEvaluation/<dialog>.txt`, one line per utterance such as
`[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]`; the audio is
`SessionN/sentences/wav/<dialog>/<utterance>.wav`. The label files drive the scan: audio is
looked up by utterance id anywhere under the root, so re-packagings that move the wav folders
still work. The utterance id encodes session and speaker: `Ses01F_impro01_M000` is spoken by
the male actor of session 1, so speaker "Ses01M", gender male, session "Session1".

Reported in `unrecognised`: utterance wavs with no label line, wavs whose names are not
utterance ids, and labelled utterances whose wav is missing (with the path where it was
expected). Whole-dialog recordings (`dialog/wav/*.wav`) are part of the release and skipped.
When an utterance id is labelled twice, the first label file (in path order) wins.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ._scan import corpus_root, duplicate_reason, wav_entries
from .base import CorpusError, Utterance
from .label_maps import IEMOCAP, IEMOCAP_FOUR_CLASS

_CORPUS = "iemocap"
_EXAMPLE = (
    "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt with lines like "
    "'[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5, 2.5, 2.5]' and audio in "
    "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav"
)
_LINE = re.compile(r"\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(?P<utt>\S+)\s+(?P<code>\S+)\s+\[")
_UTT = re.compile(r"(?P<dialog>Ses(?P<session>\d{2})[FM]_\S+)_(?P<gender>[FM])\d{3}")
_GENDER = {"F": "female", "M": "male"}


@dataclass(frozen=True)
class _Label:
    code: str
    source: str  # "<EmoEvaluation file>:<line>" that gave it
    expected_wav: Path


def _label_files(root: Path) -> list[Path]:
    # Only the top-level EmoEvaluation/*.txt; its Categorical/, Attribute/... subfolders use other formats.
    return sorted(p for p in root.rglob("*.txt") if p.parent.name == "EmoEvaluation" and p.is_file())


def _is_dialog_recording(path: Path) -> bool:
    return path.parent.name == "wav" and path.parent.parent.name == "dialog"


class IemocapAdapter:
    name = _CORPUS

    def __init__(self) -> None:
        # (path, reason) for every file the last scan could not use; prepare reports them.
        self.unrecognised: list[tuple[Path, str]] = []

    def scan(self, root: Path, *, iemocap_four_class: bool = False) -> list[Utterance]:
        root = corpus_root(root, _CORPUS)
        self.unrecognised = []
        mapping = IEMOCAP_FOUR_CLASS if iemocap_four_class else IEMOCAP
        labels = self._read_labels(root)

        audio: dict[str, Path] = {}
        files, unusable = wav_entries(root)
        for path, why in unusable:
            self._reject(path, why)
        for path in files:
            if _is_dialog_recording(path):
                continue
            utt_id = path.stem
            if _UTT.fullmatch(utt_id) is None:
                self._reject(path, "name is not an IEMOCAP utterance id like Ses01F_impro01_F000")
            elif utt_id not in labels:
                self._reject(path, f"no label line for {utt_id} in any EmoEvaluation/*.txt")
            elif utt_id in audio:
                self._reject(path, duplicate_reason(audio[utt_id], utt_id))
            else:
                audio[utt_id] = path

        found: list[Utterance] = []
        for utt_id, lab in labels.items():
            if utt_id not in audio:
                self._reject(lab.expected_wav, f"labelled in {lab.source} but no audio file {utt_id}.wav found")
                continue
            m = _UTT.fullmatch(utt_id)
            assert m is not None  # _read_labels keeps only well-formed ids
            speaker_gender = m["gender"]
            found.append(Utterance(
                path=audio[utt_id],
                corpus=_CORPUS,
                speaker=f"Ses{m['session']}{speaker_gender}",
                gender=_GENDER[speaker_gender],
                raw_label=lab.code,
                label=mapping[lab.code],
                session=f"Session{int(m['session'])}",
                native_label=IEMOCAP_FOUR_CLASS[lab.code],  # IEMOCAP's own standard: 4 classes
            ))
        if not found:
            seen = (f"found {len(labels)} labelled utterance(s) in {len(_label_files(root))} "
                    f"EmoEvaluation file(s), {len(audio)} of them with audio")
            if self.unrecognised:
                first, why = min(self.unrecognised, key=lambda item: item[0])
                seen += f"; {len(self.unrecognised)} unusable file(s), first: {first}: {why}"
            raise CorpusError(f"{_CORPUS}: no recognisable utterance under {root}; expected {_EXAMPLE}; {seen}")
        self.unrecognised.sort(key=lambda item: item[0])
        return sorted(found, key=lambda u: u.path)

    def _reject(self, path: Path, reason: str) -> None:
        self.unrecognised.append((path, reason))

    def _read_labels(self, root: Path) -> dict[str, _Label]:
        labels: dict[str, _Label] = {}
        for txt in _label_files(root):
            session_dir = txt.parent.parent.parent  # SessionN/dialog/EmoEvaluation/<file>
            text = txt.read_text(encoding="utf-8", errors="replace")
            for line_no, line in enumerate(text.splitlines(), start=1):
                m = _LINE.match(line)
                if m is None:
                    continue  # headers, annotator lines (C-E1: ..., A-E2: ...), blank lines
                utt_id, code = m["utt"], m["code"]
                where = f"{txt}:{line_no}"
                um = _UTT.fullmatch(utt_id)
                if um is None:
                    self._reject(txt, f"line {line_no}: {utt_id!r} is not an utterance id like Ses01F_impro01_F000")
                    continue
                if code not in IEMOCAP:
                    self._reject(txt, f"line {line_no}: unknown IEMOCAP label {code!r} for {utt_id} "
                                      f"(known: {' '.join(IEMOCAP)})")
                    continue
                if utt_id not in labels:
                    expected = session_dir / "sentences" / "wav" / um["dialog"] / f"{utt_id}.wav"
                    labels[utt_id] = _Label(code=code, source=where, expected_wav=expected)
        return labels
