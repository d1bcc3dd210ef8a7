"""Utterance-level openSMILE functionals: the field's standard baseline features, one vector per clip.

Why: a speech-emotion model is only interesting next to what the field's cheapest standard
baseline reaches on the same speakers, and that baseline is a linear classifier on openSMILE's
functionals (statistics of low-level descriptors over the whole utterance):

- `egemaps`: the extended Geneva Minimalistic Acoustic Parameter Set, eGeMAPS v02, 88 functionals
  (Eyben et al., "The Geneva Minimalistic Acoustic Parameter Set (GeMAPS) for Voice Research and
  Affective Computing", IEEE Transactions on Affective Computing 7(2), 2016);
- `compare`: the ComParE 2016 set, 6,373 functionals (Schuller et al., "The INTERSPEECH 2016
  Computational Paralinguistics Challenge: Deception, Sincerity & Native Language",
  Interspeech 2016).

They are computed with audEERING's `opensmile` Python package, whose binaries come under
audEERING's research licence (free for research and teaching, not for commercial use): it is the
optional extra `ser-search[baselines]`, imported only when a functionals frontend is asked for,
and a config that asks without it fails at validation with `missing_opensmile_message`.

What they are computed from: the same prepared waveform every other frontend reads, over the
clip's speech only (its `valid_samples`; the zero padding that makes every segment one length is
not part of the utterance), at openSMILE's reference rate of 16 kHz. A corpus prepared at another
rate is resampled to 16 kHz by openSMILE's own resampler (`Smile(sampling_rate=16000,
resample=True)`). Given a 22.05 kHz signal without that, openSMILE analyses it at 22.05 kHz: its
frames are defined in seconds, but pitch, formant and spectral-slope functionals move (on the
shared EmoDB copy several eGeMAPS F0 and bandwidth statistics changed by a factor of 2-3), so
features would depend on the rate a corpus was prepared at.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

import numpy as np

OPENSMILE_RATE = 16000  # the rate openSMILE analyses at: other rates are resampled to it
EXTRA = "baselines"  # pip install 'ser-search[baselines]'
# The version of what this module computes for the node's functionals cache (which speech, which
# rate, the float32 cast); the cache keys by it and by the opensmile release. BUMP IT WITH ANY CHANGE.
FUNCTIONALS_VERSION = 1


@dataclass(frozen=True)
class FunctionalSet:
    """One openSMILE feature set as a frontend: its `opensmile.FeatureSet` member and size."""

    kind: str
    feature_set: str
    n_features: int
    reference: str


FUNCTIONAL_SETS: dict[str, FunctionalSet] = {
    "egemaps": FunctionalSet("egemaps", "eGeMAPSv02", 88, "Eyben et al. 2016"),
    "compare": FunctionalSet("compare", "ComParE_2016", 6373, "Schuller et al. 2016"),
}


def is_functionals(kind: str) -> bool:
    """Whether a frontend kind gives one vector of functionals per clip (no frames)."""
    return kind in FUNCTIONAL_SETS


def missing_opensmile_message(kind: str) -> str:
    return (f"frontend {kind!r} needs the openSMILE package: pip install 'ser-search[{EXTRA}]' "
            f"(audEERING's research licence: free for research and teaching, not for commercial use)")


def opensmile_module(kind: str) -> ModuleType:
    """The `opensmile` package, or an ImportError that names the extra to install."""
    try:
        import opensmile  # noqa: PLC0415 - optional: only functionals frontends need it
    except ImportError as e:
        raise ImportError(missing_opensmile_message(kind)) from e
    return opensmile


def opensmile_missing(kind: str) -> str | None:
    """The message for a config that asks for functionals `kind` where opensmile cannot be
    imported, or None when it can (what FrontendConfig's validation reports)."""
    try:
        opensmile_module(kind)
    except ImportError as e:
        return str(e)
    return None


def opensmile_version() -> str:
    return str(opensmile_module("functionals").__version__)


@lru_cache(maxsize=4)
def smile(kind: str) -> Any:
    """openSMILE's extractor of the set `kind` at utterance level, resampling to 16 kHz. One per
    process and set: building one parses its configuration (~0.1 s)."""
    opensmile = opensmile_module(kind)
    return opensmile.Smile(feature_set=opensmile.FeatureSet[FUNCTIONAL_SETS[kind].feature_set],
                           feature_level=opensmile.FeatureLevel.Functionals,
                           sampling_rate=OPENSMILE_RATE, resample=True)


def clip_functionals(kind: str, wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """openSMILE's functionals of one clip (1-D float samples at `sample_rate`), float32 (F,).

    Raises ValueError when openSMILE returns non-finite values: it fills a segment too short
    for its analysis windows (under ~1,000 samples at 16 kHz) with NaN, and prepare keeps no
    clip under 0.1 s of speech, so this is a clip that should not be there."""
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Segment too short")  # reported below, with the clip
        values = smile(kind).process_signal(wave, sample_rate).to_numpy(dtype=np.float32)[0]
    if not np.isfinite(values).all():
        raise ValueError(f"openSMILE {kind} functionals of a {len(wave) / sample_rate:.3f} s clip are not finite "
                         f"(too short for its analysis windows)")
    return values


def speech_lengths(wave: np.ndarray) -> np.ndarray:
    """Each row's samples up to its last non-zero one: a zero-padded segment's speech, for callers
    that do not pass the manifest's valid_samples (at least 1 per row)."""
    w = np.asarray(wave)
    nonzero = w != 0
    last = w.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
    return np.where(nonzero.any(axis=1), last, w.shape[1]).clip(min=1)
