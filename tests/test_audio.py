"""ser_core.audio on real files written to disk: every odd-but-usable kind is decoded, every
unusable kind raises AudioError with its reason, and trimming/segmenting/noise do what they say."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_core.audio import (AudioError, add_noise, decode_audio, fix_length, load_audio, trim_and_segment,
                            trim_silence)

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


def test_truncated_wav_decodes_what_is_there_or_is_rejected(tmp_path: Path) -> None:
    full = write(tmp_path / "full.wav", tone(2.0, 22050), 22050, "PCM_16")
    data = full.read_bytes()
    half = tmp_path / "half.wav"
    half.write_bytes(data[: len(data) // 2])
    try:
        wave = load_audio(half, SR)
    except AudioError as exc:
        assert exc.reason
    else:
        assert 0 < len(wave) < 2 * SR
        assert np.isfinite(wave).all()
    head = tmp_path / "head.wav"  # cut inside the header: nothing to decode
    head.write_bytes(data[:30])
    with pytest.raises(AudioError, match="^unreadable: "):
        load_audio(head, SR)


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
