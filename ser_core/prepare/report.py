"""What a preparation run returns: PrepareReport, the counts behind the one-screen summary.

Its own module because the summary is read by people (the CLI prints it) and its wording, the
--folds-from lines included, is independent of how the corpus was made.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..corpus import PROTOCOL_FILE, REJECTS_FILE


@dataclass
class PrepareReport:
    out: Path
    found: int                          # utterances the adapters recognised
    prepared: int                       # original clips in the manifest
    augmented: int                      # noisy copies in the manifest
    rejected: dict[str, int]            # reason kind -> files
    handled: dict[str, int]             # what was handled on the way, e.g. "resampled from 44100 Hz"
    labels: tuple[str, ...]
    class_counts: dict[str, int]        # originals per label
    protocol: str
    n_folds: int
    split_counts: dict[str, int]        # originals per subset for fold 0
    found_by_corpus: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    label_set: str = "shared"           # "shared" (EMOTIONS) or "native" (each corpus's own classes)
    fold_assignment: str = ""           # how the folds were made (PrepareOptions.fold_assignment)
    fold_lists: dict | None = None      # --folds-from: what matched and what did not (protocol.json)

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected.values())

    def summary(self) -> str:
        corpora = ", ".join(f"{n} {c}" for c, n in self.found_by_corpus.items())
        lines = [
            f"prepared {self.prepared} clips (+{self.augmented} noisy copies) from {self.found} found "
            f"({corpora}) in {self.seconds:.1f} s -> {self.out}",
            f"  labels ({len(self.labels)}, {self.label_set}): "
            + ", ".join(f"{l} {self.class_counts.get(l, 0)}" for l in self.labels),
            f"  protocol {self.protocol}" + (f" ({self.fold_assignment})" if self.fold_assignment else "")
            + f", {self.n_folds} folds; fold 0: "
            + ", ".join(f"{k} {self.split_counts.get(k, 0)}" for k in ("train", "val", "test"))
            + " clips (before augmentation)",
            f"  rejected {self.n_rejected}" + (": " + ", ".join(f"{k} {v}" for k, v in self.rejected.items())
                                               if self.rejected else "") + f" (see {REJECTS_FILE})",
        ]
        if self.handled:
            lines.append("  handled: " + ", ".join(f"{k} {v}" for k, v in self.handled.items()))
        if self.fold_lists is not None:
            lines.extend(_fold_list_lines(self.fold_lists))
        return "\n".join(lines)


def _fold_list_lines(info: dict, show: int = 5) -> list[str]:
    """The --folds-from part of the summary: counts, then the first few of each kind of miss."""
    missing, unlisted = info["entries_without_clip"], info["clips_in_no_fold"]
    lines = [f"  folds from {len(info['sources'])} list(s): {info['entries']} entries, {info['matched']} matched "
             f"to clips; {len(missing)} entries without a clip, {len(unlisted)} clips in no fold (rejected); "
             f"full lists in {PROTOCOL_FILE} (fold_lists)"]
    lines += [f"    entry {m['wav']} ({m['source']}): {m['reason']}" for m in missing[:show]]
    lines += [f"    clip {c}: in no listed fold" for c in unlisted[:show]]
    if len(missing) > show or len(unlisted) > show:
        lines.append("    ...")
    return lines
