"""What every corpus adapter produces: a list of utterances read from a corpus's own
directory layout and file naming. Audio is not touched here (see ser_core.audio)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class CorpusError(ValueError):
    """A corpus path is missing or holds no file the adapter recognises."""


@dataclass(frozen=True)
class Utterance:
    path: Path
    corpus: str
    speaker: str            # unique within the corpus; prepare prefixes it with the corpus name
    gender: str | None      # "female" / "male" / None when the corpus does not say
    raw_label: str          # the corpus's own label, as written in its files
    label: str | None       # mapped onto ser_core.labels.EMOTIONS; None = unmappable (excluded, counted)
    session: str | None = None  # IEMOCAP session (leave-one-session-out); None elsewhere
    # The corpus's own class (label_maps.NATIVE_MAPS), used by `prepare --labels native`;
    # None = not one of the corpus's native classes (excluded, counted).
    native_label: str | None = None


class CorpusAdapter(Protocol):
    name: str

    def scan(self, root: Path, *, iemocap_four_class: bool = False) -> list[Utterance]:
        """Every utterance under `root`, unmappable labels included (label=None).

        Raises CorpusError when `root` does not exist or holds no recognisable file.
        """
        ...
