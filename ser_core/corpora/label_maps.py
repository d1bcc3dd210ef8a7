"""Every corpus's own emotion codes mapped onto the shared label set (ser_core.labels.EMOTIONS).

This is the project's one documented mapping; adapters import these dicts and nothing else
decides what a code means. `None` marks a code with no place in the shared set: the utterance
is still returned (label=None) so preparation can exclude *and count* it.

| corpus   | code (as written in the corpus)               | label      |
|----------|-----------------------------------------------|------------|
| RAVDESS  | 01                                            | neutral    |
| RAVDESS  | 02                                            | calm       |
| RAVDESS  | 03                                            | happy      |
| RAVDESS  | 04                                            | sad        |
| RAVDESS  | 05                                            | angry      |
| RAVDESS  | 06 (fearful)                                  | fear       |
| RAVDESS  | 07                                            | disgust    |
| RAVDESS  | 08 (surprised)                                | surprise   |
| RAVDESS  | song files (vocal channel 02), "song:<code>"  | None       |
| TESS     | angry                                         | angry      |
| TESS     | disgust                                       | disgust    |
| TESS     | fear                                          | fear       |
| TESS     | happy                                         | happy      |
| TESS     | neutral                                       | neutral    |
| TESS     | sad                                           | sad        |
| TESS     | ps / pleasant_surprise / pleasant_surprised   | surprise   |
| SAVEE    | a                                             | angry      |
| SAVEE    | d                                             | disgust    |
| SAVEE    | f                                             | fear       |
| SAVEE    | h                                             | happy      |
| SAVEE    | n                                             | neutral    |
| SAVEE    | sa                                            | sad        |
| SAVEE    | su                                            | surprise   |
| CREMA-D  | ANG                                           | angry      |
| CREMA-D  | DIS                                           | disgust    |
| CREMA-D  | FEA                                           | fear       |
| CREMA-D  | HAP                                           | happy      |
| CREMA-D  | NEU                                           | neutral    |
| CREMA-D  | SAD                                           | sad        |
| EmoDB    | W (Wut)                                       | angry      |
| EmoDB    | L (Langeweile, boredom)                       | None       |
| EmoDB    | E (Ekel)                                      | disgust    |
| EmoDB    | A (Angst)                                     | fear       |
| EmoDB    | F (Freude)                                    | happy      |
| EmoDB    | T (Trauer)                                    | sad        |
| EmoDB    | N                                             | neutral    |
| IEMOCAP  | neu                                           | neutral    |
| IEMOCAP  | hap                                           | happy      |
| IEMOCAP  | exc (excited; merged into happy, the usual protocol) | happy |
| IEMOCAP  | sad                                           | sad        |
| IEMOCAP  | ang                                           | angry      |
| IEMOCAP  | fea                                           | fear       |
| IEMOCAP  | dis                                           | disgust    |
| IEMOCAP  | sur                                           | surprise   |
| IEMOCAP  | fru (frustrated), oth (other), xxx (no agreement) | None   |

IEMOCAP with `iemocap_four_class=True` (labels ser_core.labels.IEMOCAP_4): neu → neutral,
hap and exc → happy, sad → sad, ang → angry; every other code (fea, dis, sur, fru, oth, xxx) → None.

A code that is in none of these tables is not a label at all: the adapter reports the file in
`adapter.unrecognised` instead of guessing.

**Native label sets** (`prepare --labels native`): each corpus keeps its own classes, named as
in the shared set where they coincide so that cross-corpus runs still match classes by name.
They differ from the shared mapping in two places only:

| corpus    | native classes                                                   | differs from shared |
|-----------|------------------------------------------------------------------|---------------------|
| RAVDESS   | neutral calm happy sad angry fear disgust surprise (8)           | no                  |
| TESS      | neutral happy sad angry fear disgust surprise (7)                | no                  |
| SAVEE     | neutral happy sad angry fear disgust surprise (7)                | no                  |
| CREMA-D   | neutral happy sad angry fear disgust (6)                         | no                  |
| EmoDB     | neutral happy sad angry fear disgust boredom (7)                 | L → boredom         |
| IEMOCAP   | neutral happy sad angry (4; hap + exc → happy)                   | the 4-class standard: fea, dis, sur → None |
| synthetic | the generator's emotions (ser_core.labels.EMOTIONS)              | no                  |

RAVDESS song files and IEMOCAP's fru/oth/xxx stay None (excluded and counted) in both sets.
"""
from __future__ import annotations

from ..labels import EMOTIONS, ordered

RAVDESS: dict[str, str | None] = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}

TESS: dict[str, str | None] = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "ps": "surprise",
    "pleasant_surprise": "surprise",
    "pleasant_surprised": "surprise",
}

SAVEE: dict[str, str | None] = {
    "a": "angry",
    "d": "disgust",
    "f": "fear",
    "h": "happy",
    "n": "neutral",
    "sa": "sad",
    "su": "surprise",
}

CREMAD: dict[str, str | None] = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}

EMODB: dict[str, str | None] = {
    "W": "angry",
    "L": None,  # boredom: no place in the shared set
    "E": "disgust",
    "A": "fear",
    "F": "happy",
    "T": "sad",
    "N": "neutral",
}

IEMOCAP: dict[str, str | None] = {
    "neu": "neutral",
    "hap": "happy",
    "exc": "happy",  # excited merged into happy, as in most IEMOCAP papers
    "sad": "sad",
    "ang": "angry",
    "fea": "fear",
    "dis": "disgust",
    "sur": "surprise",
    "fru": None,
    "oth": None,
    "xxx": None,
}

IEMOCAP_FOUR_CLASS: dict[str, str | None] = {
    code: (label if label in ("neutral", "happy", "sad", "angry") else None)
    for code, label in IEMOCAP.items()
}


# ---------------------------------------------------------------- native label sets

EMODB_NATIVE: dict[str, str | None] = {**EMODB, "L": "boredom"}  # Langeweile: EmoDB's 7th class

# Native = shared for every other corpus but IEMOCAP, whose own standard is the 4-class one.
NATIVE_MAPS: dict[str, dict[str, str | None]] = {
    "ravdess": RAVDESS,
    "tess": TESS,
    "savee": SAVEE,
    "cremad": CREMAD,
    "emodb": EMODB_NATIVE,
    "iemocap": IEMOCAP_FOUR_CLASS,
}

# corpus -> its native classes, in ser_core.labels.LABEL_ORDER.
NATIVE_LABELS: dict[str, tuple[str, ...]] = {
    **{name: ordered({v for v in mapping.values() if v is not None}) for name, mapping in NATIVE_MAPS.items()},
    "synthetic": EMOTIONS,
}
