"""The scan every file-name-driven corpus adapter shares, so that walking the root, rejecting,
de-duplicating and the "nothing recognised" error read the same for every corpus and the
adapters keep only what is specific to their corpus: how a file name maps onto an utterance.
"""
from __future__ import annotations

from pathlib import Path
from .base import CorpusError, Utterance


def corpus_root(root: Path, corpus: str) -> Path:
    """`root` with `~` expanded; a missing root (or a file) is an error naming the corpus."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise CorpusError(f"{corpus}: corpus root {root} does not exist or is not a directory")
    return root


def wav_files(root: Path) -> list[Path]:
    """Every .wav under `root`, any depth, any suffix case (re-packagings write .WAV), in path order."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() == ".wav" and p.is_file())


def duplicate_reason(first: Path, key: str) -> str:
    """Why a second copy of an utterance is rejected; one wording for every corpus."""
    return f"duplicate of {first} (same utterance {key})"


class WavCorpusAdapter:
    """A corpus whose file names alone (plus an optional side file) identify each utterance.

    Subclasses set `name` and `example` and implement `_parse`; `_begin_scan` is the hook for
    anything read once per scan (e.g. CREMA-D's demographics file).
    """

    # Plain annotations, not ClassVar, so subclasses still satisfy the CorpusAdapter protocol's `name: str`.
    name: str
    example: str  # an expected file name, quoted when nothing under the root is recognised

    def __init__(self) -> None:
        # (path, reason) for every .wav the last scan could not use; prepare reports them.
        self.unrecognised: list[tuple[Path, str]] = []

    def scan(self, root: Path, *, iemocap_four_class: bool = False) -> list[Utterance]:
        root = corpus_root(root, self.name)
        self.unrecognised = []
        self._begin_scan(root)
        found: list[Utterance] = []
        first_seen: dict[str, Path] = {}  # re-packagings often ship a second copy of the tree
        for path in wav_files(root):
            parsed = self._parse(path)
            if parsed is None:
                continue
            key, utt = parsed
            if key in first_seen:
                self._reject(path, duplicate_reason(first_seen[key], key))
                continue
            first_seen[key] = path
            found.append(utt)
        if not found:
            seen = f"{len(self.unrecognised)} .wav file(s) seen, none recognised"
            if self.unrecognised:
                first, why = self.unrecognised[0]
                seen += f" (first: {first}: {why})"
            raise CorpusError(
                f"{self.name}: no recognisable file under {root}; expected names like {self.example}; {seen}"
            )
        return sorted(found, key=lambda u: u.path)

    def _begin_scan(self, root: Path) -> None:
        """Called once per scan, after the root is checked and before any file is parsed."""

    def _reject(self, path: Path, reason: str) -> None:
        self.unrecognised.append((path, reason))

    def _parse(self, path: Path) -> tuple[str, Utterance] | None:
        """(duplicate key, utterance) for a recognised file; otherwise `_reject` it and return None.

        The key names the utterance independently of where the file lies, so a second copy
        of the tree is caught.
        """
        raise NotImplementedError
