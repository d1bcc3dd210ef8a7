"""Which utterances are candidates for decoding: the adapters' scan and the label filter.

Every file left out here is recorded as a Reject with its reason, so the rejects table lists it
like any file that fails to decode later.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..corpora import NOT_A_FILE, CorpusError, Utterance, get_adapter
from ..corpora.label_maps import NATIVE_LABELS
from ..labels import EMOTIONS, IEMOCAP_4, ordered
from .options import PrepareOptions


@dataclass
class Reject:
    path: str
    corpus: str
    reason: str
    kind: str


def scan(corpora: dict[str, Path], four_class: bool) -> tuple[list[Utterance], list[Reject], dict[str, int]]:
    utterances: list[Utterance] = []
    rejects: list[Reject] = []
    found: dict[str, int] = {}
    for name, root in corpora.items():
        adapter = get_adapter(name)
        try:
            utts = adapter.scan(Path(root), iemocap_four_class=four_class)
        except CorpusError as exc:
            msg = str(exc)
            if str(root) in msg and name.lower() in msg.lower():
                raise
            raise CorpusError(f"corpus {name}={root}: {msg}") from exc
        found[name] = len(utts)
        utterances.extend(utts)
        for path, why in getattr(adapter, "unrecognised", []):
            kind = ("duplicate" if why.lower().startswith("duplicate") else
                    NOT_A_FILE if why.startswith(NOT_A_FILE) else "unrecognised file name")
            rejects.append(Reject(os.path.abspath(path), name, why, kind))
    return utterances, rejects, found


def label_filter(utterances: list[Utterance], base: tuple[str, ...],
                  rejects: list[Reject]) -> list[Utterance]:
    kept: list[Utterance] = []
    seen_paths: dict[str, str] = {}
    for u in utterances:
        path = os.path.abspath(u.path)
        if u.label is None:
            rejects.append(Reject(path, u.corpus, f"unmappable label {u.raw_label!r}", "unmappable label"))
        elif u.label not in base:
            rejects.append(Reject(path, u.corpus, f"label {u.label!r} (raw {u.raw_label!r}) not in the "
                                   f"label set {', '.join(base)}", "label outside the label set"))
        elif path in seen_paths:
            rejects.append(Reject(path, u.corpus, f"same file already listed by corpus {seen_paths[path]}",
                                   "duplicate"))
        else:
            seen_paths[path] = u.corpus
            kept.append(u)
    return kept


def label_base(options: PrepareOptions, corpora: set[str]) -> tuple[str, ...]:
    """The label set clips are kept in: the shared 8 (or IEMOCAP's 4 for every corpus, the old
    --iemocap-four-class), or the union of the corpora's native classes in LABEL_ORDER."""
    if options.labels == "native":
        return ordered({label for name in corpora for label in NATIVE_LABELS[name]})
    return IEMOCAP_4 if options.iemocap_four_class else EMOTIONS
