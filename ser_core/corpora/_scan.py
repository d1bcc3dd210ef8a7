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


# Every reason for an entry with an audio name that is not a file starts with this (prepare
# counts them under it).
NOT_A_FILE = "not a readable file"


def not_a_file_reason(path: Path) -> str | None:
    """Why an entry named like audio cannot be read as a file (a directory, a dangling or
    looping symlink, a FIFO, a socket, a device), or None for a regular file (a symlink to one
    included). Such entries are listed as rejects, never skipped without a word."""
    if path.is_file():
        return None
    if path.is_symlink():
        if path.is_dir():
            return f"{NOT_A_FILE}: a symbolic link to a directory"
        try:
            target = path.readlink()
        except OSError:
            target = None
        return f"{NOT_A_FILE}: a dangling or looping symbolic link" + (f" (to {target})" if target else "")
    if path.is_dir():
        return f"{NOT_A_FILE}: a directory"
    if path.is_fifo():
        return f"{NOT_A_FILE}: a named pipe"
    if path.is_socket():
        return f"{NOT_A_FILE}: a socket"
    if path.is_block_device() or path.is_char_device():
        return f"{NOT_A_FILE}: a device"
    return f"{NOT_A_FILE}: not a regular file"


def wav_entries(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(files, unusable) for every entry under `root` named *.wav, any depth, any suffix case
    (re-packagings write .WAV), in path order: the regular files, and (entry, reason) for the
    entries with a .wav name that are not (see `not_a_file_reason`)."""
    files: list[Path] = []
    unusable: list[tuple[Path, str]] = []
    for p in sorted(q for q in root.rglob("*") if q.suffix.lower() == ".wav"):
        why = not_a_file_reason(p)
        if why is None:
            files.append(p)
        else:
            unusable.append((p, why))
    return files, unusable


def wav_files(root: Path) -> list[Path]:
    """Every regular .wav file under `root` (see `wav_entries`, which also says what else was there)."""
    return wav_entries(root)[0]


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
        files, unusable = wav_entries(root)
        for path, why in unusable:
            self._reject(path, why)
        for path in files:
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
