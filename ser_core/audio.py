"""Decoding and shaping of one audio file, shared by `prepare` (whole corpora) and `predict`
(arbitrary user files), so a clip is turned into model input the same way in both.

Every way a file can be unusable surfaces as an `AudioError` with a short reason, so callers
can list it instead of crashing; every way a file is odd but usable (a rate other than the
target, stereo, 8/24-bit or float samples, a very long recording) is handled and noted.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

# Below this peak a clip holds no usable signal (16-bit quantisation noise sits near -96 dBFS).
SILENCE_FLOOR_DBFS = -90.0
# A clip needs at least this much audio left after silence trimming (the trimmed length, in
# librosa's 512-sample hops). Less is a click or a cut file, not an utterance: padded to the
# segment it would be almost all zeros, yet count as a full example of its label.
MIN_AUDIO_SECONDS = 0.1
# A data-chunk size of 0xFFFFFFFF means "unknown" (written while streaming), not a length.
_UNKNOWN_RIFF_SIZE = 0xFFFFFFFF


class AudioError(ValueError):
    """A file that cannot become model input. `reason` is the full text (for rejects lists),
    `kind` the reason without file-specific detail (for counting)."""

    def __init__(self, reason: str, *, kind: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind or reason


@dataclass(frozen=True)
class DecodedAudio:
    wave: np.ndarray            # float32 mono at `sample_rate`
    sample_rate: int
    source_rate: int
    source_channels: int
    source_subtype: str
    source_seconds: float       # length of the whole source file (not just the decoded part)
    notes: tuple[str, ...]      # what had to be handled to get here, e.g. "resampled from 44100 Hz"


@dataclass(frozen=True)
class WavTruncation:
    declared_bytes: int         # the data chunk's size in the header
    present_bytes: int          # what the file holds after the chunk's header
    bytes_per_second: int       # from the fmt chunk (0 when it gives none)

    def reason(self) -> str:
        def amount(n: int) -> str:
            return f"{n / self.bytes_per_second:.3f} s ({n} bytes)" if self.bytes_per_second else f"{n} bytes"
        return (f"truncated: the header declares {amount(self.declared_bytes)} of audio, the file holds "
                f"{amount(self.present_bytes)}")


def wav_truncation(path: str | Path) -> WavTruncation | None:
    """How a RIFF/RIFX WAVE file's data chunk falls short of the size its header declares, or
    None when it does not (or the file is not such a WAVE, or the size is the streaming
    placeholder). libsndfile silently reads what is there, so a copy cut after its header would
    otherwise pass as a few-millisecond clip.

    Walks the chunk list with `struct` (RIFF: little-endian; RIFX: big-endian); chunk bodies
    are padded to an even size."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        order = "<" if head[:4] == b"RIFF" else ">"
        pos, bytes_per_second = 12, 0
        while pos + 8 <= size:
            fh.seek(pos)
            chunk, length = struct.unpack(order + "4sI", fh.read(8))
            if chunk == b"fmt ":
                fmt = fh.read(12)
                if len(fmt) == 12:
                    bytes_per_second = struct.unpack(order + "HHII", fmt)[3]
            elif chunk == b"data":
                present = size - pos - 8
                if length == _UNKNOWN_RIFF_SIZE or present >= length:
                    return None
                return WavTruncation(length, present, bytes_per_second)
            pos += 8 + length + (length & 1)
    return None


def decode_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = 60.0) -> DecodedAudio:
    """Decode `path` to float32 mono at `sample_rate`, reading at most `max_seconds` of it.

    Only the needed prefix of a long file is read (soundfile `frames=`), so a stray hour-long
    recording costs no more than `max_seconds` of decoding.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive or None, got {max_seconds}")
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise AudioError("empty (0-byte file)", kind="empty")
        info = sf.info(str(path))
    except AudioError:
        raise
    except sf.LibsndfileError as exc:
        raise AudioError(f"unreadable: {exc.error_string}", kind="unreadable") from exc
    except (sf.SoundFileError, OSError, RuntimeError, ValueError) as exc:
        raise AudioError(f"unreadable: {exc}", kind="unreadable") from exc
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioError(f"unreadable: header says {info.samplerate} Hz, {info.channels} channels",
                         kind="unreadable")
    if info.frames <= 0:
        raise AudioError("empty (no audio frames)", kind="empty")
    try:
        cut = wav_truncation(path)
    except OSError as exc:
        raise AudioError(f"unreadable: {exc.strerror or exc}", kind="unreadable") from exc
    if cut is not None:
        raise AudioError(cut.reason(), kind="truncated")

    notes: list[str] = []
    frames = info.frames
    if max_seconds is not None and info.frames > math.ceil(max_seconds * info.samplerate):
        frames = math.ceil(max_seconds * info.samplerate)
        notes.append(f"long: decoded first {max_seconds:g} s")
    try:
        data, rate = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        raise AudioError(f"unreadable: {exc.error_string}", kind="unreadable") from exc
    except (sf.SoundFileError, OSError, RuntimeError, ValueError) as exc:
        raise AudioError(f"unreadable: {exc}", kind="unreadable") from exc
    if data.shape[0] == 0:
        raise AudioError("empty (no audio frames)", kind="empty")
    if data.shape[0] < frames:
        notes.append("short read: decoded what the file holds")
    source_seconds = (info.frames if data.shape[0] >= frames else data.shape[0]) / info.samplerate

    if not np.isfinite(data).all():
        raise AudioError("non-finite samples")
    if data.shape[1] > 1:
        notes.append(f"mixed {data.shape[1]} channels to mono")
    wave = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if info.subtype not in ("PCM_16",):
        notes.append(f"decoded {info.subtype}")

    peak = float(np.max(np.abs(wave)))
    peak_db = 20.0 * math.log10(peak) if peak > 0 else -math.inf
    if peak_db < SILENCE_FLOOR_DBFS:
        raise AudioError(f"all-silent (peak {peak_db:.1f} dBFS)", kind="all-silent")

    if rate != sample_rate:
        wave = librosa.resample(wave, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
        notes.append(f"resampled from {rate} Hz")
    return DecodedAudio(
        wave=np.ascontiguousarray(wave, dtype=np.float32),
        sample_rate=sample_rate,
        source_rate=int(rate),
        source_channels=int(data.shape[1]),
        source_subtype=str(info.subtype),
        source_seconds=float(source_seconds),
        notes=tuple(notes),
    )


def load_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = 60.0) -> np.ndarray:
    """float32 mono samples of `path` at `sample_rate`; raises AudioError(reason) when unusable."""
    return decode_audio(path, sample_rate, max_seconds).wave


def trim_silence(wave: np.ndarray, *, top_db: float | None = 30.0) -> np.ndarray:
    """Leading and trailing silence removed (librosa's energy trim, `top_db` below the peak).

    Corpora differ in how much silence surrounds the speech; trimming makes the fixed-length
    segment start at the speech. `top_db=None` disables trimming.
    """
    if top_db is None or wave.size == 0 or not np.any(wave):
        return wave
    trimmed, _ = librosa.effects.trim(y=wave, top_db=top_db)
    return trimmed


def fix_length(wave: np.ndarray, length: int) -> np.ndarray:
    """The first `length` samples of `wave`, zero-padded at the end when it is shorter."""
    if length <= 0:
        raise ValueError(f"segment length must be positive, got {length}")
    return librosa.util.fix_length(data=np.asarray(wave, dtype=np.float32), size=length).astype(np.float32, copy=False)


def segment_length(sample_rate: int, segment_seconds: float) -> int:
    """Samples in a segment of `segment_seconds` at `sample_rate`."""
    return int(round(segment_seconds * sample_rate))


def trim_and_segment(wave: np.ndarray, sample_rate: int, *, segment_seconds: float = 3.5,
                     segment_samples: int | None = None, top_db: float | None = 30.0,
                     min_seconds: float = MIN_AUDIO_SECONDS) -> tuple[np.ndarray, int]:
    """A fixed-length segment starting at the first non-silent frame, zero-padded when the
    speech is shorter (the CNN-Transformer paper's preprocessing), and how many of its samples
    are speech rather than padding. `segment_samples`, when given, overrides `segment_seconds`
    (a checkpoint records the exact length its model was trained on).

    Raises AudioError (kind "too short") when less than `min_seconds` (or the whole segment,
    if that is shorter) is left after trimming."""
    length = segment_samples if segment_samples is not None else segment_length(sample_rate, segment_seconds)
    speech = trim_silence(wave, top_db=top_db)[:length]
    needed = min(length, math.ceil(min_seconds * sample_rate))
    if speech.size < needed:
        raise AudioError(f"too short: {speech.size / sample_rate:.3f} s of non-silent audio after trimming "
                         f"(minimum {min_seconds:g} s)", kind="too short")
    return fix_length(speech, length), int(speech.size)


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """`wave` plus white Gaussian noise at `snr_db` relative to the wave's mean power.

    Pass the unpadded speech: zero padding would lower the measured power and make the noise
    louder than asked for.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.size == 0:
        return wave.copy()
    power = float(np.mean(np.square(wave, dtype=np.float64)))
    if power == 0.0:
        return wave.copy()  # nothing to measure the noise against; silence stays silence
    noise_std = math.sqrt(power / (10.0 ** (snr_db / 10.0)))
    return (wave + rng.normal(0.0, noise_std, size=wave.shape)).astype(np.float32)
