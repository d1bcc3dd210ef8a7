"""Fold lists from a benchmark's metadata, so that a prepared corpus uses exactly the folds of a
published table (`prepare --folds-from`).

The format read is EmoBox's (Ma et al., "EmoBox: Multilingual Multi-corpus Speech Emotion
Recognition Toolkit and Benchmark", Interspeech 2024; github.com/emo-box/EmoBox, `data/`):
one folder per corpus, `data/<corpus>/fold_<N>/<corpus>_test_fold_<N>.jsonl` (N from 1), one
JSON object per line such as

    {"key": "emodb-03a02Wb", "dataset": "emodb", "wav": "downloads/emodb/wav/03a02Wb.wav",
     "type": "raw", "sample_rate": 16000, "num_frame": 33978.0, "task": "category",
     "length": 2.123625, "emo": "anger", "channel": 1}

Older EmoBox files (`<corpus>_test_fold<N>.jsonl`) name the path `audio` instead of `wav`; both
are read. Only the *test* lists are needed: in EmoBox every clip is in exactly one of them and
each train list is the rest of the corpus, so a clip's fold is the test list that holds it
(EmoBox fold N = ser-search fold N-1). Validation follows ser-search's rule (the next fold),
where EmoBox's loader draws a random 20 % of the training list.

Entries are matched to clips by file name (the stem, case-insensitive; a clip is also known as
`<folder>_<stem>`, which is how SAVEE's `AudioData/DC/a01.wav` appears as `DC_a01.wav` in
EmoBox), within the corpus the entry's `dataset` names. Nothing is dropped silently: entries
with no clip and clips in no list are returned with the reason, and `prepare` reports both.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .splits import MIN_FOLDS, SplitError

_FOLD_DIR = re.compile(r"fold_(\d+)")
_TEST_FILE = re.compile(r".*_test_fold_(\d+)\.jsonl")          # what EmoBox's loader reads
_TEST_FILE_OLD = re.compile(r".*_test_fold(\d+)\.jsonl")        # the older name, `audio` key
_TRAIN_FILE = re.compile(r".*_(train|valid)_fold_?\d+\.jsonl")
PATH_KEYS = ("wav", "audio")  # the entry's audio path, current EmoBox key first


@dataclass(frozen=True)
class FoldEntry:
    fold: int            # 0-based: EmoBox fold N is fold N-1
    wav: str             # the path as written in the list
    dataset: str | None  # the entry's corpus name, normalised like adapter names; None = not given
    source: str          # "file:line" that listed it

    @property
    def name(self) -> str:
        """The file stem the entry is matched on (case-insensitive)."""
        return PurePosixPath(self.wav.replace("\\", "/")).stem.lower()


@dataclass
class FoldMatch:
    """Which clip is in which fold, and what did not match."""

    fold_of: dict[int, int]                    # clip index -> fold
    n_folds: int
    sources: list[str]                          # the list files read
    n_entries: int
    entries_without_clip: list[tuple[FoldEntry, str]] = field(default_factory=list)  # (entry, why)
    clips_in_no_fold: list[int] = field(default_factory=list)                          # clip indices


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


def _test_lists(path: Path) -> list[tuple[int, Path]]:
    """(EmoBox fold number, test list) for a corpus folder with fold_N/ subfolders or one test list."""
    if path.is_file():
        m = _TEST_FILE.fullmatch(path.name) or _TEST_FILE_OLD.fullmatch(path.name)
        if m is None:
            what = "a train/valid list" if _TRAIN_FILE.fullmatch(path.name) else "not an EmoBox test list"
            raise SplitError(f"--folds-from {path}: {what}; give EmoBox test lists (<corpus>_test_fold_<N>.jsonl) "
                             "or the corpus folder holding fold_<N>/ (each clip's fold is the test list holding it)")
        return [(int(m.group(1)), path)]
    if not path.is_dir():
        raise SplitError(f"--folds-from {path}: no such file or directory")
    found: list[tuple[int, Path]] = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and _FOLD_DIR.fullmatch(p.name)):
        n = int(_FOLD_DIR.fullmatch(sub.name).group(1))  # type: ignore[union-attr]
        for pattern in (_TEST_FILE, _TEST_FILE_OLD):
            hits = sorted(p for p in sub.iterdir() if p.is_file() and (m := pattern.fullmatch(p.name))
                          and int(m.group(1)) == n)
            if len(hits) > 1:
                raise SplitError(f"--folds-from {path}: {sub.name} holds several test lists "
                                 f"({', '.join(h.name for h in hits)}); pass the one to use")
            if hits:
                found.append((n, hits[0]))
                break
        else:
            raise SplitError(f"--folds-from {path}: {sub} holds no test list named <corpus>_test_fold_{n}.jsonl")
    if not found:
        raise SplitError(f"--folds-from {path}: no fold_<N>/ folder with a <corpus>_test_fold_<N>.jsonl "
                         "(expected EmoBox's data/<corpus>/ layout)")
    return found


def _read_list(fold: int, path: Path) -> list[FoldEntry]:
    entries: list[FoldEntry] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SplitError(f"--folds-from {path}: unreadable ({exc})") from exc
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SplitError(f"--folds-from {where}: not a JSON object ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise SplitError(f"--folds-from {where}: expected a JSON object per line, got {type(obj).__name__}")
        wav = next((obj[k] for k in PATH_KEYS if isinstance(obj.get(k), str) and obj[k].strip()), None)
        if wav is None:
            raise SplitError(f"--folds-from {where}: entry has no audio path (key {' or '.join(PATH_KEYS)})")
        dataset = obj.get("dataset")
        entries.append(FoldEntry(fold, wav, _normalise(dataset) if isinstance(dataset, str) and dataset.strip()
                                 else None, where))
    return entries


def read_fold_lists(paths: Sequence[Path]) -> tuple[list[FoldEntry], int, list[str]]:
    """(entries, n_folds, list files read) from EmoBox corpus folders or test lists.

    Fold numbers must run 1..K with K >= 3 (test, validation and training folds); an entry
    listed twice is an error naming both lines."""
    lists: dict[int, list[Path]] = defaultdict(list)
    for p in paths:
        for n, f in _test_lists(Path(p).expanduser()):
            lists[n].append(f)
    numbers = sorted(lists)
    if numbers != list(range(1, len(numbers) + 1)):
        raise SplitError(f"--folds-from: test folds must be numbered 1..K without gaps, found {numbers}")
    if len(numbers) < MIN_FOLDS:
        raise SplitError(f"--folds-from: {len(numbers)} test fold(s) found; at least {MIN_FOLDS} are needed "
                         "(ser-search validates on the next fold and trains on the rest)")
    entries: list[FoldEntry] = []
    seen: dict[tuple[str | None, str], FoldEntry] = {}
    for n in numbers:
        for f in lists[n]:
            for e in _read_list(n - 1, f):
                key = (e.dataset, e.name)
                if key in seen:
                    raise SplitError(f"--folds-from: {e.wav} is listed twice ({seen[key].source} and {e.source})")
                seen[key] = e
                entries.append(e)
    return entries, len(numbers), [str(f) for n in numbers for f in lists[n]]


def clip_names(path: Path) -> tuple[str, ...]:
    """The names a clip is matched under: its stem and `<folder>_<stem>`, lower case."""
    p = Path(path)
    return (p.stem.lower(), f"{p.parent.name}_{p.stem}".lower())


def match_folds(paths: Sequence[Path], corpora: Sequence[str], list_paths: Sequence[Path],
                rejected: Sequence[tuple[Path, str, str]] = ()) -> FoldMatch:
    """Assign each clip (`paths[i]` of corpus `corpora[i]`) the fold of the test list naming it.

    `rejected` (path, corpus, reason) are files preparation already excluded: an entry naming
    one is reported with that reason rather than as missing. An entry naming two clips is
    ambiguous: neither gets a fold from it, and both are reported."""
    entries, n_folds, sources = read_fold_lists(list_paths)
    prepared = {_normalise(c): c for c in corpora}
    index: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (p, c) in enumerate(zip(paths, corpora)):
        for name in clip_names(p):
            index[(c, name)].append(i)
    gone: dict[tuple[str, str], str] = {}
    for p, c, why in rejected:
        for name in clip_names(p):
            gone.setdefault((c, name), why)

    match = FoldMatch(fold_of={}, n_folds=n_folds, sources=sources, n_entries=len(entries))
    claimed: dict[int, str] = {}  # clip index -> the entry that gave its fold
    for e in entries:
        if e.dataset is not None and e.dataset not in prepared:
            match.entries_without_clip.append(
                (e, f"dataset {e.dataset!r} is not among the prepared corpora ({', '.join(sorted(corpora))})"))
            continue
        targets = [prepared[e.dataset]] if e.dataset is not None else sorted(set(corpora))
        hits = sorted({i for c in targets for i in index.get((c, e.name), [])})
        if len(hits) == 1 and hits[0] in claimed:
            match.entries_without_clip.append((e, f"its clip {paths[hits[0]]} is already listed by {claimed[hits[0]]}"))
        elif len(hits) == 1:
            match.fold_of[hits[0]] = e.fold
            claimed[hits[0]] = e.source
        elif len(hits) > 1:
            match.entries_without_clip.append(
                (e, f"ambiguous: {len(hits)} clips are named {e.name} ({', '.join(str(paths[i]) for i in hits[:3])})"))
        else:
            why = next((gone[(c, e.name)] for c in targets if (c, e.name) in gone), None)
            match.entries_without_clip.append(
                (e, f"clip rejected: {why}" if why else f"no clip named {e.name} in {', '.join(targets)}"))
    match.clips_in_no_fold = [i for i in range(len(paths)) if i not in match.fold_of]
    return match
