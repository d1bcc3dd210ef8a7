"""ser_core.audio on real files written to disk: every odd-but-usable kind is decoded, every
unusable kind raises AudioError with its reason, and trimming/segmenting/noise do what they say."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_core.audio import (MIN_AUDIO_SECONDS, AudioError, add_noise, decode_audio, fix_length, load_audio,
                            trim_and_segment, trim_silence, wav_truncation)

SR = 16000


def tone(seconds: float, sr: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(wave: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(len(wave), 1 / sr)[np.argmax(spectrum)])


def write(path: Path, data: np.ndarray, sr: int, subtype: str) -> Path:
    sf.write(path, data, sr, subtype=subtype)
    return path


# ------------------------------------------------------------------ handled kinds

@pytest.mark.parametrize("subtype,tol", [("PCM_U8", 2e-2), ("PCM_16", 1e-4), ("PCM_24", 1e-6), ("FLOAT", 1e-7)])
def test_sample_formats_decode_to_the_same_signal(tmp_path: Path, subtype: str, tol: float) -> None:
    x = tone(1.0, SR)
    got = decode_audio(write(tmp_path / f"{subtype}.wav", x, SR, subtype), SR)
    assert got.wave.dtype == np.float32 and got.wave.ndim == 1
    assert got.wave.shape == x.shape
    assert np.max(np.abs(got.wave - x)) < tol
    assert got.source_subtype == subtype
    assert (f"decoded {subtype}" in got.notes) == (subtype != "PCM_16")


def test_stereo_is_mixed_to_mono(tmp_path: Path) -> None:
    left, right = tone(1.0, SR, 440.0), tone(1.0, SR, 1000.0, amp=0.25)
    got = decode_audio(write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), SR, "FLOAT"), SR)
    np.testing.assert_allclose(got.wave, (left + right) / 2, atol=1e-6)
    assert got.source_channels == 2
    assert "mixed 2 channels to mono" in got.notes


@pytest.mark.parametrize("rate", [44100, 22050, 8000, 48000])
def test_other_rates_are_resampled(tmp_path: Path, rate: int) -> None:
    path = write(tmp_path / f"r{rate}.wav", tone(2.0, rate, 440.0), rate, "PCM_16")
    got = decode_audio(path, SR)
    assert abs(len(got.wave) - 2 * SR) <= 1
    assert abs(peak_frequency(got.wave, SR) - 440.0) < 2.0  # pitch preserved
    assert got.source_rate == rate
    assert f"resampled from {rate} Hz" in got.notes
    assert got.source_seconds == pytest.approx(2.0)


def test_very_long_file_decodes_only_the_prefix(tmp_path: Path) -> None:
    path = write(tmp_path / "long.wav", tone(120.0, SR), SR, "PCM_16")
    got = decode_audio(path, SR, max_seconds=60.0)
    assert len(got.wave) == 60 * SR
    assert got.source_seconds == pytest.approx(120.0)
    assert any(n.startswith("long: decoded first 60 s") for n in got.notes)
    assert len(load_audio(path, SR, max_seconds=None)) == 120 * SR


def test_truncated_wav_is_rejected_with_what_is_missing(tmp_path: Path) -> None:
    full = write(tmp_path / "full.wav", tone(2.0, 22050), 22050, "PCM_16")
    data = full.read_bytes()
    half = tmp_path / "half.wav"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match=r"^truncated: the header declares 2\.000 s \(88200 bytes\) of audio, "
                                         r"the file holds 1\.000 s \(44078 bytes\)$") as err:
        load_audio(half, SR)
    assert err.value.kind == "truncated"
    # cut right after the header: libsndfile reads the 50 samples there as if they were the clip
    after_header = tmp_path / "after_header.wav"
    after_header.write_bytes(data[:44 + 100])
    assert sf.info(str(after_header)).frames == 50
    with pytest.raises(AudioError, match=r"^truncated: .* the file holds 0\.002 s \(100 bytes\)$"):
        load_audio(after_header, SR)
    head = tmp_path / "head.wav"  # cut inside the header: nothing to decode
    head.write_bytes(data[:30])
    with pytest.raises(AudioError, match="^unreadable: "):
        load_audio(head, SR)


@pytest.mark.parametrize("subtype,frames", [("PCM_U8", 16001), ("PCM_24", 16000), ("FLOAT", 16000)])
def test_complete_wavs_are_not_taken_for_truncated(tmp_path: Path, subtype: str, frames: int) -> None:
    # odd-sized data chunks (one pad byte), extra chunks (fact, PEAK) before the data
    path = write(tmp_path / "ok.wav", tone(frames / SR, SR), SR, subtype)
    assert wav_truncation(path) is None
    assert len(load_audio(path, SR)) == frames
    # a chunk after the data (a LIST tag appended by an editor) leaves the data whole
    with_tail = tmp_path / "tail.wav"
    with_tail.write_bytes(path.read_bytes() + b"LIST" + (4).to_bytes(4, "little") + b"INFO")
    assert wav_truncation(with_tail) is None and len(load_audio(with_tail, SR)) == frames


def test_streamed_wav_with_unknown_data_size_is_read(tmp_path: Path) -> None:
    data = bytearray(write(tmp_path / "w.wav", tone(1.0, SR), SR, "PCM_16").read_bytes())
    assert data[36:40] == b"data"
    data[40:44] = (0xFFFFFFFF).to_bytes(4, "little")  # what a writer on a pipe puts there
    (tmp_path / "streamed.wav").write_bytes(bytes(data))
    assert wav_truncation(tmp_path / "streamed.wav") is None
    assert len(load_audio(tmp_path / "streamed.wav", SR)) == SR


def test_big_endian_rifx_truncation_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "be.wav"
    sf.write(path, tone(1.0, SR), SR, subtype="PCM_16", endian="BIG")
    data = path.read_bytes()
    assert data[:4] == b"RIFX"
    path.write_bytes(data[: len(data) // 4])
    cut = wav_truncation(path)
    assert cut is not None and cut.declared_bytes == 2 * SR and cut.bytes_per_second == 2 * SR


# ------------------------------------------------------------------ rejected kinds

def test_zero_byte_file_is_empty(tmp_path: Path) -> None:
    (tmp_path / "zero.wav").write_bytes(b"")
    with pytest.raises(AudioError) as err:
        load_audio(tmp_path / "zero.wav", SR)
    assert err.value.kind == "empty"


def test_zero_length_wav_is_empty(tmp_path: Path) -> None:
    path = write(tmp_path / "nolen.wav", np.zeros(0, np.float32), SR, "PCM_16")
    assert path.stat().st_size > 0  # a valid header, no frames
    with pytest.raises(AudioError) as err:
        load_audio(path, SR)
    assert err.value.kind == "empty"


def test_all_zero_wav_is_all_silent(tmp_path: Path) -> None:
    path = write(tmp_path / "silent.wav", np.zeros(SR, np.float32), SR, "PCM_16")
    with pytest.raises(AudioError, match=r"all-silent \(peak -inf dBFS\)") as err:
        load_audio(path, SR)
    assert err.value.kind == "all-silent"


def test_near_silent_wav_is_all_silent(tmp_path: Path) -> None:
    path = write(tmp_path / "hush.wav", tone(1.0, SR, amp=1e-5), SR, "FLOAT")  # -100 dBFS
    with pytest.raises(AudioError, match=r"all-silent \(peak -100\.0 dBFS\)"):
        load_audio(path, SR)


def test_nan_samples_are_rejected(tmp_path: Path) -> None:
    x = tone(1.0, SR)
    x[123] = np.nan
    with pytest.raises(AudioError, match="non-finite samples"):
        load_audio(write(tmp_path / "nan.wav", x, SR, "FLOAT"), SR)


def test_text_file_named_wav_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioError, match="^unreadable: ") as err:
        load_audio(path, SR)
    assert err.value.kind == "unreadable"
    assert "notes.wav" not in err.value.reason  # the path is the caller's column, not in the reason


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="^unreadable: "):
        load_audio(tmp_path / "nope.wav", SR)


# ------------------------------------------------------------------ trim / segment / noise

def test_segment_starts_at_the_speech() -> None:
    silence = np.zeros(SR, np.float32)
    x = np.concatenate([silence, tone(1.0, SR), silence[: SR // 2]])
    seg, valid = trim_and_segment(x, SR, segment_seconds=3.5, top_db=30.0)
    assert seg.shape == (56000,) and seg.dtype == np.float32
    onset = int(np.flatnonzero(np.abs(seg) > 1e-3)[0])
    assert onset <= 2048  # within one analysis frame of the tone's start
    offset = int(np.flatnonzero(np.abs(seg) > 1e-3)[-1])
    assert SR - 2048 <= offset - onset <= SR + 2048  # the 1 s tone, then trailing silence dropped
    assert not seg[offset + 2048:].any()  # zero padding after it
    assert offset < valid <= offset + 2048 and not seg[valid:].any()  # valid = speech before the padding
    start = SR + 1 - onset  # x[SR + 1] is the tone's first sample above 1e-3
    np.testing.assert_array_equal(seg[:SR], x[start:start + SR])  # the source itself, not a copy of it


def test_segment_is_cut_when_speech_is_longer() -> None:
    x = np.concatenate([np.zeros(SR, np.float32), tone(5.0, SR)])
    seg, valid = trim_and_segment(x, SR, segment_seconds=3.5, top_db=30.0)
    assert seg.shape == (56000,) and valid == 56000
    # Starts near the tone's onset, and the tone fills the rest: no padding needed.
    assert np.flatnonzero(np.abs(seg) > 1e-3)[0] <= 2048
    assert np.abs(seg[-SR:]).max() > 0.4


def test_trimming_can_be_disabled() -> None:
    x = np.concatenate([np.zeros(SR, np.float32), tone(1.0, SR)])
    np.testing.assert_array_equal(trim_silence(x, top_db=None), x)
    seg, valid = trim_and_segment(x, SR, segment_seconds=3.5, top_db=None)
    assert not seg[: SR - 1].any() and np.abs(seg[SR:2 * SR]).max() > 0.4 and valid == 2 * SR


def test_segment_length_in_samples_overrides_seconds() -> None:
    seg, valid = trim_and_segment(tone(1.0, SR), SR, segment_seconds=3.5, segment_samples=12345)
    assert seg.shape == (12345,) and valid == 12345


def test_too_little_audio_after_trimming_is_rejected() -> None:
    assert MIN_AUDIO_SECONDS == 0.1
    short = int(0.09 * SR)  # a 90 ms clip: shorter than the minimum
    with pytest.raises(AudioError, match=r"^too short: 0\.090 s of non-silent audio after trimming "
                                         r"\(minimum 0\.1 s\)$") as err:
        trim_and_segment(tone(short / SR, SR), SR, segment_seconds=3.5)
    assert err.value.kind == "too short"
    # trimming is what counts: 2 s of silence around 90 ms of tone is no longer
    padded = np.concatenate([np.zeros(SR, np.float32), tone(short / SR, SR), np.zeros(SR, np.float32)])
    with pytest.raises(AudioError, match="too short"):
        trim_and_segment(padded, SR, segment_seconds=3.5, top_db=None, min_seconds=2.5)
    seg, valid = trim_and_segment(tone(0.1, SR), SR, segment_seconds=3.5)
    assert valid == int(0.1 * SR) and seg.shape == (56000,)
    # a segment shorter than the minimum only needs to be filled
    seg, valid = trim_and_segment(tone(0.05, SR), SR, segment_samples=400)
    assert valid == 400


def test_fix_length_pads_and_cuts() -> None:
    x = tone(0.5, SR)
    padded = fix_length(x, SR)
    np.testing.assert_array_equal(padded[: len(x)], x)
    assert not padded[len(x):].any()
    np.testing.assert_array_equal(fix_length(x, 100), x[:100])
    with pytest.raises(ValueError, match="segment length"):
        fix_length(x, 0)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0, 30.0])
def test_added_noise_has_the_requested_snr(snr_db: float) -> None:
    x = tone(3.5, SR, amp=0.3)
    y = add_noise(x, snr_db, np.random.default_rng(1))
    noise = y.astype(np.float64) - x
    measured = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum(noise ** 2))
    assert measured == pytest.approx(snr_db, abs=0.2)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert abs(noise.mean()) < 0.01 * noise.std() * 10  # zero-mean Gaussian


def test_noise_is_seeded_and_leaves_the_input_alone() -> None:
    x = tone(1.0, SR)
    before = x.copy()
    a = add_noise(x, 20.0, np.random.default_rng(7))
    b = add_noise(x, 20.0, np.random.default_rng(7))
    c = add_noise(x, 20.0, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(add_noise(np.zeros(10, np.float32), 20.0, np.random.default_rng(0)), 0)
