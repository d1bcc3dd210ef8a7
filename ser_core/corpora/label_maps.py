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
"""
from __future__ import annotations

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
