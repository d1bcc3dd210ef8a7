"""A generated emotional-speech corpus, so demos and tests can run without a downloaded corpus.

The audio comes from a small source-filter synthesiser: a glottal pulse train that follows an
F0 contour (with jitter, shimmer and aspiration noise) is shaped by a syllable envelope at the
speaking rate and filtered by the formants of each syllable's vowel; the syllables come from
ten fixed "sentences" that every speaker reads in every emotion. Emotions differ the
way acted emotional speech does (F0 level, range and contour; speaking rate; loudness; voice
quality / spectral tilt; jitter and shimmer), speakers differ in voice (gender and per-speaker
F0, vocal-tract length, timbre, recording level), and every utterance draws its own emotional
intensity and parameter noise, so classes overlap and the task is learnable but not trivial.

The result is a plain folder of 16-bit PCM WAV files (see `LAYOUT`) that the corpus adapter
`ser_core.corpora.synthetic.SyntheticAdapter` reads exactly like a real corpus, and that goes
through the same audio loading / trimming path.
"""
from __future__ import annotations

import json
import numbers
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from .labels import EMOTIONS

GENERATOR_VERSION = 1   # bump whenever the synthesis changes, so stale corpora are regenerated
README_NAME = "README.txt"
MARKER_NAME = ".complete"
MAX_SPEAKERS = 100      # two-digit speaker numbers
MAX_CLIPS = 1000        # three-digit clip numbers

LAYOUT = """\
Synthetic emotional-speech corpus (ser_core.synthetic, generator version {version}).

Layout:
    ROOT/README.txt                         this description
    ROOT/.complete                          JSON of the generation parameters; written last
    ROOT/spkNN_GENDER/EMOTION/spkNN_EMOTION_CCC.wav

    NN      speaker number, two digits (00, 01, ...); even numbers female, odd numbers male
    GENDER  "female" or "male"
    EMOTION one of ser_core.labels.EMOTIONS (neutral calm happy sad angry fear disgust surprise)
    CCC     clip number within speaker and emotion, three digits (000, 001, ...)

Audio: mono 16-bit PCM WAV at the generation sample rate, mostly 1.8-3.4 s per clip, with
0.1-0.5 s of low-level background noise (about 30-45 dB below the speech) before and after
the speech, so silence trimming matters.

Every file depends only on (seed, speaker number, emotion, clip number): the same seed gives
byte-identical files (same platform and library versions), and a smaller corpus is a subset
of a larger one with the same seed.
"""

# ---------------------------------------------------------------------------------------------
# Emotion profiles: where each emotion sits on the acoustic dimensions that carry emotion in
# speech (after Scherer 2003; Juslin & Laukka 2003). An utterance interpolates between neutral
# and its emotion by a random intensity, so weak renditions overlap with neutral and each other.


@dataclass(frozen=True)
class Prosody:
    f0_st: float      # F0 level, semitones above the speaker's neutral F0
    range_st: float   # pitch-accent excursion, semitones peak to peak
    slope_st: float   # F0 change over the utterance, semitones (negative = falling)
    final_st: float   # extra rise (+) or fall (-) on the last ~30 % of the utterance
    rate: float       # syllables per second
    gain_db: float    # loudness relative to the speaker's neutral level
    oq: float         # glottal open quotient: ~0.4 tense/pressed .. ~0.8 breathy
    tilt: float       # one-pole low-pass on the source: 0 = bright/tense .. 0.6 = dark/soft
    breath: float     # aspiration noise relative to the voiced source
    jitter: float     # cycle-to-cycle period perturbation (fraction)
    shimmer: float    # cycle-to-cycle amplitude perturbation (fraction)
    tremor_st: float  # 5-7 Hz F0 tremor depth, semitones


PROFILES: dict[str, Prosody] = {
    "neutral":  Prosody(0.0, 3.0, -2.0, 0.0, 4.5, 0.0, 0.60, 0.30, 0.05, 0.006, 0.03, 0.0),
    "calm":     Prosody(-1.0, 2.0, -1.5, 0.0, 3.8, -3.0, 0.68, 0.45, 0.10, 0.005, 0.025, 0.0),
    "happy":    Prosody(4.0, 7.0, -1.0, 1.0, 5.0, 5.0, 0.48, 0.15, 0.04, 0.008, 0.04, 0.0),
    "sad":      Prosody(-2.0, 1.5, -4.0, -1.0, 3.2, -6.0, 0.75, 0.55, 0.15, 0.012, 0.06, 0.3),
    "angry":    Prosody(5.0, 8.0, -3.0, -1.0, 5.5, 8.0, 0.40, 0.05, 0.03, 0.012, 0.06, 0.0),
    "fear":     Prosody(7.0, 5.0, 0.5, 1.0, 6.0, 0.0, 0.70, 0.40, 0.20, 0.020, 0.07, 1.0),
    "disgust":  Prosody(-1.5, 4.0, -4.0, -2.0, 3.5, 1.0, 0.50, 0.25, 0.08, 0.018, 0.06, 0.0),
    "surprise": Prosody(4.0, 9.0, 1.0, 7.0, 4.6, 3.0, 0.55, 0.25, 0.08, 0.008, 0.04, 0.0),
}

# Per-utterance random spread of each dimension (one standard deviation); with the random
# intensity below this is what makes classes overlap. Tuned with the learnability proxy test.
_SPREAD = Prosody(0.8, 1.0, 1.0, 0.8, 0.3, 1.5, 0.03, 0.04, 0.02, 0.0015, 0.008, 0.1)
_INTENSITY = (0.7, 1.0)     # uniform range of how strongly an utterance shows its emotion
_LOWER = Prosody(-12.0, 0.0, -12.0, -12.0, 2.0, -30.0, 0.30, 0.0, 0.0, 0.0, 0.0, 0.0)
_UPPER = Prosody(15.0, 15.0, 12.0, 12.0, 8.0, 20.0, 0.90, 0.80, 0.50, 0.05, 0.15, 2.0)

# Vowel formants F1-F4 (Hz) of an adult male (Peterson & Barney 1952, rounded): a, e, i, o, u.
_FORMANTS = np.array([
    [730.0, 1090.0, 2440.0, 3400.0],
    [530.0, 1840.0, 2480.0, 3500.0],
    [270.0, 2290.0, 3010.0, 3700.0],
    [570.0, 840.0, 2410.0, 3300.0],
    [300.0, 870.0, 2240.0, 3300.0],
])
_BANDWIDTHS = np.array([80.0, 100.0, 150.0, 200.0])
_SPEECH_DBFS = -29.0          # neutral speech RMS level before speaker/emotion gains


@dataclass(frozen=True)
class Sentence:
    """The "text" of an utterance: fixed per sentence, as in acted corpora where every speaker
    reads the same few sentences in every emotion (so content does not vary with the label)."""
    vowels: np.ndarray    # vowel (row of _FORMANTS) per syllable
    onset: np.ndarray     # share of each syllable taken by its onset consonant
    consonant: np.ndarray  # onset-consonant noise level per syllable (0 = none)
    accents: np.ndarray   # pitch accent per syllable in [-0.5, 0.5]; also sets syllable stress


def _make_sentences(count: int = 10) -> tuple[Sentence, ...]:
    rng = np.random.default_rng(20240611)          # fixed: the script is the same for every seed
    out = []
    for _ in range(count):
        n = int(rng.integers(7, 13))
        out.append(Sentence(
            vowels=rng.integers(0, len(_FORMANTS), n),
            onset=rng.uniform(0.2, 0.45, n),
            consonant=np.where(rng.random(n) < 0.6, rng.uniform(0.05, 0.3, n), 0.0),
            accents=rng.uniform(-0.5, 0.5, n),
        ))
    return tuple(out)


SENTENCES = _make_sentences()


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: what stays fixed across all their utterances."""
    index: int
    gender: str
    f0_hz: float          # neutral speaking F0
    vtl_scale: float      # formant scaling (shorter vocal tract -> higher formants)
    bw_scale: float       # formant bandwidth scaling (timbre)
    oq_offset: float
    tilt_offset: float
    breath_offset: float
    jitter_scale: float
    expressiveness: float  # how far this speaker moves away from neutral when emotional
    level_db: float        # recording level
    noise_dbfs: float      # background-noise floor of this speaker's "session"
    eq_hz: float           # a peaking EQ: microphone / room colouring
    eq_db: float
    eq_q: float


def speaker_dir_name(index: int, gender: str) -> str:
    return f"spk{index:02d}_{gender}"


def clip_file_name(index: int, emotion: str, clip: int) -> str:
    return f"spk{index:02d}_{emotion}_{clip:03d}.wav"


def make_voice(seed: int, index: int) -> Voice:
    """Speaker `index`'s voice; even indices female, odd male, so any prefix is balanced."""
    rng = np.random.default_rng([seed, 1, index])
    female = index % 2 == 0
    return Voice(
        index=index,
        gender="female" if female else "male",
        f0_hz=float(np.clip(rng.normal(205.0, 12.0) if female else rng.normal(115.0, 8.0),
                            175.0 if female else 95.0, 235.0 if female else 135.0)),
        vtl_scale=float(rng.uniform(1.10, 1.22) if female else rng.uniform(0.92, 1.04)),
        bw_scale=float(rng.uniform(0.85, 1.3)),
        oq_offset=float(rng.normal(0.04 if female else 0.0, 0.04)),
        tilt_offset=float(rng.normal(0.0, 0.06)),
        breath_offset=float(rng.uniform(0.0, 0.05) + (0.02 if female else 0.0)),
        jitter_scale=float(rng.uniform(0.7, 1.4)),
        expressiveness=float(rng.uniform(0.75, 1.2)),
        level_db=float(rng.normal(0.0, 1.0)),
        noise_dbfs=float(rng.uniform(-75.0, -65.0)),
        eq_hz=float(np.exp(rng.uniform(np.log(400.0), np.log(3500.0)))),
        eq_db=float(rng.uniform(-4.0, 4.0)),
        eq_q=float(rng.uniform(0.7, 2.0)),
    )


def _utterance_prosody(voice: Voice, emotion: str, rng: np.random.Generator) -> Prosody:
    neutral, target = PROFILES["neutral"], PROFILES[emotion]
    strength = rng.uniform(*_INTENSITY) * voice.expressiveness
    values = {}
    for f in fields(Prosody):
        n, t = getattr(neutral, f.name), getattr(target, f.name)
        v = n + strength * (t - n) + rng.normal(0.0, getattr(_SPREAD, f.name))
        values[f.name] = float(np.clip(v, getattr(_LOWER, f.name), getattr(_UPPER, f.name)))
    values["oq"] = float(np.clip(values["oq"] + voice.oq_offset, 0.3, 0.9))
    values["tilt"] = float(np.clip(values["tilt"] + voice.tilt_offset, 0.0, 0.85))
    values["breath"] += voice.breath_offset
    values["jitter"] *= voice.jitter_scale
    return Prosody(**values)


def _resonator_sos(freqs: np.ndarray, bws: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cascade of two-pole resonators with unity gain at DC (Klatt-style formant filter)."""
    keep = freqs < 0.45 * sample_rate          # drop formants near/above Nyquist at low rates
    r = np.exp(-np.pi * bws[keep] / sample_rate)
    c = -2.0 * r * np.cos(2.0 * np.pi * freqs[keep] / sample_rate)
    sos = np.zeros((int(keep.sum()), 6))
    sos[:, 0] = 1.0 + c + r * r
    sos[:, 3], sos[:, 4], sos[:, 5] = 1.0, c, r * r
    return sos


def _peaking_eq(f0: float, gain_db: float, q: float,
                sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ audio-EQ-cookbook peaking filter."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * min(f0, 0.45 * sample_rate) / sample_rate
    alpha = np.sin(w0) / (2.0 * q)
    b = np.array([1.0 + alpha * a, -2.0 * np.cos(w0), 1.0 - alpha * a])
    den = np.array([1.0 + alpha / a, -2.0 * np.cos(w0), 1.0 - alpha / a])
    return b / den[0], den / den[0]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x))) + 1e-12


def synthesize_utterance(voice: Voice, emotion: str, rng: np.random.Generator,
                         sample_rate: int = 16000) -> np.ndarray:
    """One utterance as float64 in [-1, 1]: silence, a 7-12 syllable phrase, silence."""
    p = _utterance_prosody(voice, emotion, rng)
    sr = float(sample_rate)

    # Syllable timing: a fixed-length "sentence" spoken at the utterance's rate.
    text = SENTENCES[int(rng.integers(len(SENTENCES)))]
    n_syl = len(text.vowels)
    durs = rng.lognormal(0.0, 0.2, n_syl) / p.rate
    starts = np.concatenate(([0.0], np.cumsum(durs)[:-1]))
    total = float(starts[-1] + durs[-1])
    n = int(total * sr)
    t = np.arange(n) / sr
    syl = np.minimum(np.searchsorted(starts, t, side="right") - 1, n_syl - 1)
    x = (t - starts[syl]) / durs[syl]                        # position within the syllable
    onset = text.onset
    xv = (x - onset[syl]) / (1.0 - onset[syl])
    vowel_env = np.where(xv > 0.0, np.sin(np.pi * np.clip(xv, 0.0, 1.0)) ** 0.6, 0.0)
    xc = np.clip(x / onset[syl], 0.0, 1.0)
    cons_env = np.where(xv <= 0.0, np.sin(np.pi * xc), 0.0) * text.consonant[syl]

    # F0 contour (semitones around the speaker's F0): level, declination/slope, pitch accents
    # on syllable nuclei, a final rise or fall, and tremor.
    accents = text.accents + rng.normal(0.0, 0.15, n_syl)     # the reading varies a little
    centres = starts + durs * (onset + 0.5 * (1.0 - onset))
    rel = t / total
    st = (p.f0_st + p.slope_st * (rel - 0.5) + p.range_st * np.interp(t, centres, accents)
          + p.final_st * np.clip((rel - 0.7) / 0.3, 0.0, 1.0) ** 2
          + p.tremor_st * np.sin(2.0 * np.pi * rng.uniform(5.0, 7.0) * t
                                 + rng.uniform(0.0, 2.0 * np.pi)))
    f0 = np.clip(voice.f0_hz * 2.0 ** (st / 12.0), 55.0, 650.0)

    # Glottal source: per-cycle jitter on the period, per-cycle shimmer on the amplitude,
    # Rosenberg flow pulse whose open quotient sets the voice quality; its derivative
    # (lip radiation) is the excitation.
    cycles0 = np.floor(np.cumsum(f0) / sr).astype(np.int64)
    jit = rng.standard_normal(cycles0[-1] + 2)
    phase = np.cumsum(f0 * (1.0 + p.jitter * jit[cycles0])) / sr
    cycle = np.floor(phase).astype(np.int64)
    frac = phase - cycle
    shim = 1.0 + p.shimmer * rng.standard_normal(cycle[-1] + 2)
    tp, tn = 0.62 * p.oq, 0.38 * p.oq
    flow = np.where(frac < tp, 0.5 * (1.0 - np.cos(np.pi * frac / tp)),
                    np.where(frac < tp + tn, np.cos(0.5 * np.pi * (frac - tp) / tn), 0.0))
    flow *= shim[cycle]
    src = np.diff(flow, prepend=0.0)
    src = signal.lfilter([1.0 - p.tilt], [1.0, -p.tilt], src)
    src /= _rms(src)
    src += p.breath * rng.standard_normal(n) * (0.4 + flow)   # aspiration, pulsed by the flow

    # Vocal tract: each syllable's excitation goes through its own vowel's formant filter, so
    # formants change between syllables without switching transients.
    stress = 0.75 + 0.5 * accents                             # accented syllables are louder
    exc = src * vowel_env * stress[syl]
    vowels = text.vowels
    speech = np.zeros(n)
    for v in np.unique(vowels):
        sos = _resonator_sos(_FORMANTS[v] * voice.vtl_scale, _BANDWIDTHS * voice.bw_scale,
                             sample_rate)
        speech += signal.sosfilt(sos, exc * (vowels[syl] == v))
    speech /= _rms(speech[vowel_env > 0.1])                  # consonant levels are relative to this
    fric_sos = signal.butter(2, min(2500.0 * voice.vtl_scale, 0.4 * sr), btype="highpass",
                             fs=sr, output="sos")
    speech += signal.sosfilt(fric_sos, rng.standard_normal(n)) * cons_env
    b, a = _peaking_eq(voice.eq_hz, voice.eq_db, voice.eq_q, sample_rate)
    speech = signal.lfilter(b, a, speech)
    level = 10.0 ** ((_SPEECH_DBFS + voice.level_db + p.gain_db) / 20.0)
    speech *= level / _rms(speech[vowel_env > 0.1])

    # Leading/trailing silence and a background-noise floor (pink-ish) under everything.
    lead, trail = (int(rng.uniform(0.1, 0.5) * sr) for _ in range(2))
    out = np.zeros(lead + n + trail)
    out[lead:lead + n] = speech
    noise = signal.lfilter([1.0], [1.0, -0.9], rng.standard_normal(out.size))
    out += noise * 10.0 ** ((voice.noise_dbfs + rng.normal(0.0, 2.0)) / 20.0) / _rms(noise)
    peak = float(np.max(np.abs(out)))
    if peak > 0.98:                                           # loud renditions: avoid clipping
        out *= 0.98 / peak
    return out


def _to_pcm16(y: np.ndarray) -> np.ndarray:
    # Explicit rounding and clipping: the file bytes must not depend on libsndfile's conversion.
    return np.round(np.clip(y, -1.0, 1.0) * 32767.0).astype(np.int16)


def _check_params(n_speakers: int, clips_per_emotion: int, emotions: Sequence[str],
                  sample_rate: int, seed: int) -> list[str]:
    for name, value, low, high in (("n_speakers", n_speakers, 1, MAX_SPEAKERS),
                                   ("clips_per_emotion", clips_per_emotion, 1, MAX_CLIPS),
                                   ("sample_rate", sample_rate, 8000, 96000),
                                   ("seed", seed, 0, None)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
                high is not None and value > high):
            bounds = f"{low}..{high}" if high is not None else f">= {low}"
            raise ValueError(f"generate_corpus: {name} must be an integer in {bounds}, "
                             f"got {value!r}")
    if isinstance(emotions, str):
        raise ValueError("generate_corpus: emotions must be a sequence of names, "
                         f"got the string {emotions!r}")
    emotions = list(emotions)
    unknown = [e for e in emotions if e not in PROFILES]
    if unknown or not emotions or len(set(emotions)) != len(emotions):
        raise ValueError(f"generate_corpus: emotions must be distinct names from {list(EMOTIONS)}, "
                         f"got {emotions}" + (f" (unknown: {unknown})" if unknown else ""))
    return emotions


def _read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None


def generate_corpus(out: Path, *, n_speakers: int = 8, clips_per_emotion: int = 20,
                    emotions: Sequence[str] = EMOTIONS, sample_rate: int = 16000, seed: int = 0,
                    progress: bool = False) -> Path:
    """Write the synthetic corpus to `out` (layout: `LAYOUT`) and return `out`.

    A corpus already complete with the same parameters is left as is (cheap re-runs). Otherwise
    it is written into a hidden sibling folder and renamed into place, so `out` never holds a
    half-written corpus; an existing synthetic corpus with other parameters is replaced. A
    non-empty `out` that is not a synthetic corpus is refused rather than deleted.
    """
    out = Path(out)
    emotions = _check_params(n_speakers, clips_per_emotion, emotions, sample_rate, seed)
    n_speakers, clips_per_emotion, sample_rate, seed = map(int, (n_speakers, clips_per_emotion,
                                                                 sample_rate, seed))
    params = {"generator_version": GENERATOR_VERSION, "n_speakers": n_speakers,
              "clips_per_emotion": clips_per_emotion, "emotions": emotions,
              "sample_rate": sample_rate, "seed": seed}
    if out.exists():
        if not out.is_dir():
            raise NotADirectoryError(f"generate_corpus: {out} exists and is not a directory")
        marker = _read_marker(out)
        if marker == params:
            return out
        if marker is None and any(out.iterdir()):
            raise FileExistsError(f"generate_corpus: {out} is not empty and has no {MARKER_NAME} "
                                  "marker of a synthetic corpus; refusing to overwrite it")

    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    jobs = [(s, e, c) for s in range(n_speakers) for e in emotions
            for c in range(clips_per_emotion)]
    try:
        voices = [make_voice(seed, s) for s in range(n_speakers)]
        if progress:
            from tqdm import tqdm
            jobs = tqdm(jobs, desc="synthetic corpus", unit="clip")
        for s, emotion, clip in jobs:
            voice = voices[s]
            folder = tmp / speaker_dir_name(s, voice.gender) / emotion
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([seed, 2, s, EMOTIONS.index(emotion), clip])
            audio = synthesize_utterance(voice, emotion, rng, sample_rate)
            sf.write(folder / clip_file_name(s, emotion, clip), _to_pcm16(audio), sample_rate,
                     subtype="PCM_16", format="WAV")
        (tmp / README_NAME).write_text(LAYOUT.format(version=GENERATOR_VERSION)
                                       + "\nParameters:\n" + json.dumps(params, indent=2) + "\n")
        (tmp / MARKER_NAME).write_text(json.dumps(params))
        if out.exists():
            if _read_marker(out) == params:               # a concurrent run finished first
                shutil.rmtree(tmp)
                return out
            shutil.rmtree(out)                            # empty, or a synthetic corpus of ours
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
