"""Spectrogram frontends against librosa (the reference), on WAV files read from disk."""
from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
from pydantic import ValidationError

from ser_core.features import (
    MFCC,
    FeatureNormalizer,
    FrontendConfig,
    LogMelSpectrogram,
    LogPowerSpectrogram,
    build_frontend,
    num_frames,
    power_to_db,
)

SR = 16000
EMODB_CLIP = Path("/work/shared/data/emodb/03a01Fa.wav")
# Observed on librosa 0.11 / torch 2.13 CPU: float64 paths agree to ~1e-11 dB, float32 to
# ~3e-3 dB (worst case: STFT bins just above the top_db floor). Bounds leave headroom only.
TOL_F64_DB = 1e-6
TOL_F32_DB = 1e-2


def _vowel(seconds: float, f0: float, level: float, seed: int) -> np.ndarray:
    """Harmonic source with vibrato, shaped by three formants, plus -35 dB noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))) / SR
    sig = np.zeros_like(t)
    for k in range(1, int(SR / 2 / (f0 * 1.03))):
        gain = sum(np.exp(-(((k * f0) - fc) / bw) ** 2) for fc, bw in ((700, 130), (1200, 150), (2600, 250)))
        sig += (gain + 0.01) / k * np.sin(k * phase)
    sig *= np.hanning(len(t)) ** 0.3
    sig = sig / np.abs(sig).max()
    sig += 10 ** (-35 / 20) * rng.standard_normal(len(t))
    return (level * sig / np.abs(sig).max()).astype(np.float32)


@pytest.fixture(scope="module")
def vowel_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "vowel.wav"
    sf.write(path, _vowel(1.3, 140.0, 0.5, seed=0), SR, subtype="PCM_16")
    return path


@pytest.fixture(scope="module", params=["vowel", "emodb"])
def clip(request: pytest.FixtureRequest, vowel_wav: Path) -> np.ndarray:
    if request.param == "vowel":
        path = vowel_wav
    else:
        if not EMODB_CLIP.exists():
            pytest.skip(f"EmoDB clip not available at {EMODB_CLIP}")
        path = EMODB_CLIP
    y, _ = librosa.load(path, sr=SR)  # EmoDB's 22.05 kHz copy is resampled here
    return y


def _librosa_power(y: np.ndarray, cfg: FrontendConfig, pad_mode: str = "constant") -> np.ndarray:
    kw = dict(
        n_fft=cfg.n_fft_resolved, hop_length=cfg.hop_length, win_length=cfg.win_length,
        window=cfg.window, center=True, pad_mode=pad_mode,
    )
    if cfg.kind == "stft":
        return np.abs(librosa.stft(y=y, **kw)) ** 2
    return librosa.feature.melspectrogram(
        y=y, sr=cfg.sample_rate, power=2.0, n_mels=cfg.n_mels, fmin=cfg.f_min,
        fmax=cfg.f_max, **kw,
    )


def _librosa_features(y: np.ndarray, cfg: FrontendConfig, pad_mode: str = "constant") -> np.ndarray:
    db = librosa.power_to_db(_librosa_power(y, cfg, pad_mode), ref=1.0, amin=1e-10, top_db=cfg.top_db)
    if cfg.kind == "mfcc":
        return librosa.feature.mfcc(S=db, n_mfcc=cfg.n_mfcc, dct_type=2, norm="ortho")
    return db


def _run(frontend: torch.nn.Module, y: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return frontend(torch.from_numpy(y)[None])[0].numpy()


CONFIGS = [
    FrontendConfig(kind="mel"),
    FrontendConfig(kind="mel", n_fft=1024, n_mels=40, f_min=50.0, f_max=7600.0, window="hann"),
    FrontendConfig(kind="stft"),
    FrontendConfig(kind="stft", n_fft=1024, top_db=60.0),
    FrontendConfig(kind="mfcc"),
    FrontendConfig(kind="mfcc", n_mels=40, n_mfcc=13, n_fft=800),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.kind}-{c.n_fft}-{c.window}")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_librosa(clip: np.ndarray, cfg: FrontendConfig, dtype: type) -> None:
    y = clip.astype(dtype)
    ours = _run(build_frontend(cfg), y)
    ref = _librosa_features(y, cfg)
    assert ours.shape == ref.shape == (cfg.n_features, num_frames(cfg, len(y)))
    assert ours.dtype == dtype
    tol = TOL_F64_DB if dtype == np.float64 else TOL_F32_DB
    assert np.abs(ours - ref).max() < tol


def test_reflect_padding_matches_librosa(vowel_wav: Path) -> None:
    y, _ = librosa.load(vowel_wav, sr=SR, dtype=np.float64)
    cfg = FrontendConfig(kind="mel")
    ours = _run(build_frontend(cfg, pad_mode="reflect"), y)
    ref = _librosa_features(y, cfg, pad_mode="reflect")
    assert np.abs(ours - ref).max() < TOL_F64_DB
    # And the pad mode really matters at the edges, so the parity above is not vacuous.
    assert np.abs(ours[:, 0] - _librosa_features(y, cfg, pad_mode="constant")[:, 0]).max() > 0.1


def test_no_clipping_when_top_db_none(vowel_wav: Path) -> None:
    y, _ = librosa.load(vowel_wav, sr=SR, dtype=np.float64)
    y[: SR // 4] = 0.0  # digital silence: power 0 -> amin -> -100 dB without clipping
    cfg = FrontendConfig(kind="stft", top_db=None)
    ours = _run(build_frontend(cfg), y)
    assert ours.min() == pytest.approx(-100.0)
    assert np.abs(ours - _librosa_features(y, cfg)).max() < TOL_F64_DB


def test_top_db_is_per_example_and_batch_matches_single(vowel_wav: Path) -> None:
    base, _ = librosa.load(vowel_wav, sr=SR)
    n = 12000
    batch = np.stack([
        base[:n],
        1e-3 * base[3000 : 3000 + n],  # 60 dB quieter: a batch-wide clip would flatten it
        _vowel(n / SR, 220.0, 0.2, seed=1),
    ]).astype(np.float32)
    batch[:, :2400] = 0.0  # leading digital silence, so every example reaches its clip floor
    for cfg in (FrontendConfig(kind="mel"), FrontendConfig(kind="stft"), FrontendConfig(kind="mfcc")):
        frontend = build_frontend(cfg)
        with torch.no_grad():
            batched = frontend(torch.from_numpy(batch)).numpy()
        for i, y in enumerate(batch):
            single = _run(frontend, y)
            np.testing.assert_allclose(batched[i], single, atol=1e-4, rtol=0)
            assert np.abs(batched[i] - _librosa_features(y, cfg)).max() < TOL_F32_DB
        if cfg.kind != "mfcc":
            # Own peak minus top_db, unless amin's -100 dB floor is higher (the quiet example).
            floor = np.maximum(batched.max(axis=(1, 2)) - cfg.top_db, -100.0)
            np.testing.assert_allclose(batched.min(axis=(1, 2)), floor, atol=1e-3)


@pytest.mark.parametrize("n_fft", [None, 641])
@pytest.mark.parametrize("n_samples", [1, 159, 160, 161, 4000, 16037])
def test_num_frames_matches_output_and_librosa(n_fft: int | None, n_samples: int) -> None:
    cfg = FrontendConfig(kind="stft", n_fft=n_fft)
    y = np.random.default_rng(n_samples).standard_normal(n_samples).astype(np.float32)
    out = build_frontend(cfg)(torch.from_numpy(y)[None])
    expected = num_frames(cfg, n_samples)
    assert out.shape == (1, cfg.n_features, expected)
    if n_samples >= cfg.n_fft_resolved:  # librosa warns on shorter input; frame count still checked above
        assert librosa.stft(y=y, n_fft=cfg.n_fft_resolved, hop_length=cfg.hop_length).shape[-1] == expected


def test_autocast_keeps_float32(vowel_wav: Path) -> None:
    y, _ = librosa.load(vowel_wav, sr=SR)
    x = torch.from_numpy(np.stack([y, 0.1 * y]))
    for cfg in (FrontendConfig(kind="mel"), FrontendConfig(kind="mfcc")):
        frontend = build_frontend(cfg)
        plain = frontend(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = frontend(x)
            from_bf16 = frontend(x.to(torch.bfloat16))
        assert auto.dtype == from_bf16.dtype == torch.float32
        torch.testing.assert_close(auto, plain, atol=1e-4, rtol=0)
        assert from_bf16.shape == plain.shape


@pytest.mark.gpu
def test_cuda_matches_cpu_under_autocast(vowel_wav: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    y, _ = librosa.load(vowel_wav, sr=SR)
    x = torch.from_numpy(np.stack([y, 0.01 * y]))
    for cfg in (FrontendConfig(kind="mel"), FrontendConfig(kind="stft"), FrontendConfig(kind="mfcc")):
        frontend = build_frontend(cfg)
        cpu = frontend(x)
        gpu_frontend = build_frontend(cfg).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            gpu = gpu_frontend(x.cuda())
        assert gpu.dtype == torch.float32 and gpu.device.type == "cuda"
        assert (gpu.cpu() - cpu).abs().max().item() < 0.05


def test_torchaudio_agrees(vowel_wav: Path) -> None:
    torchaudio = pytest.importorskip("torchaudio")
    y, _ = librosa.load(vowel_wav, sr=SR)
    x = torch.from_numpy(np.stack([y, 1e-3 * y]))
    cfg = FrontendConfig(kind="mel", f_min=20.0, f_max=8000.0)
    ours = build_frontend(cfg)
    ta_mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=SR, n_fft=cfg.n_fft_resolved, win_length=cfg.win_length,
        hop_length=cfg.hop_length, f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels,
        window_fn=torch.hamming_window, power=2.0, center=True, pad_mode="constant",
        norm="slaney", mel_scale="slaney",
    )
    to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=cfg.top_db)
    with torch.no_grad():
        mine = ours(x)
        # AmplitudeToDB clips a 3-D input at the max over all of it; feed examples one by one.
        theirs = torch.stack([to_db(m) for m in ta_mel(x)])
    assert (mine - theirs).abs().max().item() < TOL_F32_DB


def test_rejects_bad_waveform_shape() -> None:
    frontend = LogMelSpectrogram()
    with pytest.raises(ValueError, match=r"\(B, T\).*\(16000,\)"):
        frontend(torch.zeros(16000))
    with pytest.raises(ValueError, match="reflect"):
        LogPowerSpectrogram(pad_mode="reflect")(torch.zeros(1, 100))


# ---------------------------------------------------------------------------- config


def test_config_defaults_follow_the_paper() -> None:
    cfg = FrontendConfig()
    assert (cfg.win_length, cfg.hop_length, cfg.n_fft_resolved) == (640, 160, 640)
    assert cfg.n_features == 64 and cfg.window == "hamming" and cfg.top_db == 80.0
    assert FrontendConfig(kind="stft").n_features == 321
    assert FrontendConfig(kind="stft", n_fft=1024).n_features == 513
    assert FrontendConfig(kind="mfcc").n_features == 40
    assert FrontendConfig(sample_rate=8000).win_length == 320
    assert isinstance(build_frontend(FrontendConfig(kind="mfcc")), MFCC)
    assert isinstance(build_frontend(FrontendConfig(kind="stft")), LogPowerSpectrogram)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sample_rate": 0}, "sample_rate"),
        ({"win_ms": 0.0}, "win_ms"),
        ({"hop_ms": -10.0}, "hop_ms"),
        ({"hop_ms": 0.01}, "hop_ms"),  # under one sample at 16 kHz
        ({"n_fft": 512}, "n_fft"),  # shorter than the 640-sample window
        ({"n_mels": 0}, "n_mels"),
        ({"kind": "mfcc", "n_mels": 20, "n_mfcc": 40}, "n_mfcc"),
        ({"f_min": -1.0}, "f_min"),
        ({"f_min": 300.0, "f_max": 200.0}, "f_max"),
        ({"f_max": 9000.0}, "f_max"),  # above Nyquist at 16 kHz
        ({"top_db": 0.0}, "top_db"),
        ({"top_db": float("nan")}, "top_db"),
        ({"window": "blackman"}, "window"),
        ({"kind": "cqt"}, "kind"),
        ({"n_melz": 64}, "n_melz"),  # extra="forbid"
    ],
)
def test_config_errors_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        FrontendConfig(**kwargs)
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [(field,)]
    assert field in str(info.value)


def test_mel_sweep_ignores_unused_n_mfcc() -> None:
    assert FrontendConfig(kind="mel", n_mels=20, n_mfcc=40).n_features == 20


# ---------------------------------------------------------------------------- normaliser


def _feature_batches(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    scale = np.linspace(1.0, 12.0, 8)[None, :, None]
    offset = np.linspace(-70.0, -10.0, 8)[None, :, None]
    return [
        (offset + scale * rng.standard_normal((b, 8, t))).astype(np.float32)
        for b, t in ((3, 50), (5, 17))
    ]


def test_normalizer_fit_equals_numpy_over_concatenation() -> None:
    batches = _feature_batches(0)
    norm = FeatureNormalizer(8).fit(torch.from_numpy(b) for b in batches)  # a one-shot generator
    flat = np.concatenate([b.transpose(1, 0, 2).reshape(8, -1) for b in batches], axis=1)
    flat = flat.astype(np.float64)
    np.testing.assert_allclose(norm.mean.numpy(), flat.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(norm.std.numpy(), flat.std(axis=1), rtol=1e-6)
    out = torch.cat([norm(torch.from_numpy(b)).transpose(0, 1).reshape(8, -1) for b in batches], 1)
    np.testing.assert_allclose(out.mean(1).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(1, unbiased=False).numpy(), 1.0, atol=1e-5)


def test_normalizer_skips_padding_frames() -> None:
    batches = _feature_batches(1)
    lengths = [np.array([50, 20, 7]), np.array([17, 1, 0, 9, 17])]
    padded = []
    for b, n in zip(batches, lengths):
        b = b.copy()
        for i, k in enumerate(n):
            b[i, :, k:] = -80.0  # what a clipped, zero-padded tail looks like
        padded.append(b)
    norm = FeatureNormalizer(8).fit((torch.from_numpy(b), torch.from_numpy(n)) for b, n in zip(padded, lengths))
    valid = np.concatenate(
        [b[i, :, :k] for b, n in zip(padded, lengths) for i, k in enumerate(n)], axis=1
    ).astype(np.float64)
    np.testing.assert_allclose(norm.mean.numpy(), valid.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(norm.std.numpy(), valid.std(axis=1), rtol=1e-6)


def test_normalizer_state_round_trips_through_state_dict(tmp_path: Path) -> None:
    batches = [torch.from_numpy(b) for b in _feature_batches(2)]
    fitted = FeatureNormalizer(8).fit(batches)
    torch.save(fitted.state_dict(), tmp_path / "norm.pt")
    restored = FeatureNormalizer(8)
    with pytest.raises(RuntimeError, match="not fitted"):
        restored(batches[0])
    restored.load_state_dict(torch.load(tmp_path / "norm.pt"))
    assert set(fitted.state_dict()) == {"mean", "std", "fitted"}
    torch.testing.assert_close(restored(batches[1]), fitted(batches[1]))


def test_normalizer_rejects_bad_input() -> None:
    norm = FeatureNormalizer(8)
    with pytest.raises(ValueError, match=r"batch 1.*\(B, 8, frames\)"):
        norm.fit([torch.zeros(2, 8, 5), torch.zeros(2, 9, 5)])
    with pytest.raises(ValueError, match="no frames"):
        norm.fit([])
    with pytest.raises(ValueError, match="lengths"):
        norm.fit([(torch.zeros(2, 8, 5), torch.tensor([5, 6]))])


def test_normalizer_on_frontend_output(vowel_wav: Path) -> None:
    y, _ = librosa.load(vowel_wav, sr=SR)
    frontend = build_frontend(FrontendConfig())
    feats = frontend(torch.from_numpy(np.stack([y, 0.3 * y])))
    norm = FeatureNormalizer(frontend.n_features).fit([feats])
    out = norm(feats)
    assert out.shape == feats.shape and out.dtype == torch.float32
    torch.testing.assert_close(out.mean(dim=(0, 2)), torch.zeros(64), atol=1e-4, rtol=0)


def test_power_to_db_with_autograd_equals_the_in_place_path() -> None:
    """power_to_db works in place only when no gradient is asked for; both paths agree."""
    torch.manual_seed(0)
    power = torch.rand(2, 5, 7, dtype=torch.float64) * 10.0 ** torch.randint(-12, 2, (2, 5, 7))
    for top_db in (80.0, 20.0, None):
        leaf = power.clone().requires_grad_()
        with_grad = power_to_db(leaf, top_db)
        with torch.no_grad():
            without = power_to_db(power.clone(), top_db)
        assert torch.allclose(with_grad.detach(), without)
        ref = 10.0 * np.log10(np.maximum(power.numpy(), 1e-10))
        if top_db is not None:
            ref = np.maximum(ref, ref.max(axis=(1, 2), keepdims=True) - top_db)
        np.testing.assert_allclose(without.numpy(), ref, atol=1e-9)
        with_grad.sum().backward()
        assert torch.isfinite(leaf.grad).all() and (leaf.grad >= 0).all()


@pytest.mark.parametrize("kind", ["mel", "stft", "mfcc"])
def test_frontend_writes_into_out_as_it_returns(kind: str) -> None:
    """`out=` (fit's feature cache) holds exactly what the frontend returns, in any layout."""
    frontend = build_frontend(FrontendConfig(kind=kind))
    wave = torch.from_numpy(np.stack([_vowel(0.5, 150.0 + 40 * i, 0.3, seed=i) for i in range(3)]).astype(np.float32))
    with torch.no_grad():
        expected = frontend(wave)
        cache = torch.full((5, *expected.shape[1:]), float("nan"))
        got = frontend(wave, out=cache[1:4])
    assert got.data_ptr() == cache[1].data_ptr()
    assert torch.equal(cache[1:4], expected)
    assert torch.isnan(cache[0]).all() and torch.isnan(cache[4]).all()


def test_group_statistics_equal_numpy_per_group_over_real_frames() -> None:
    """Per-speaker statistics (normalization = "speaker"): each group's mean/std over its rows'
    valid frames, rows marked -1 left out, merged across batches that split a group."""
    from ser_core.features import SpeakerNormalizer, group_statistics

    rng = np.random.default_rng(4)
    feats = [(rng.normal(3.0, 2.0, (4, 8, 12)) + np.arange(4)[:, None, None]).astype(np.float32),
             rng.normal(-1.0, 0.5, (3, 8, 12)).astype(np.float32)]
    lengths = [np.array([12, 5, 0, 9]), np.array([3, 12, 7])]
    groups = [np.array([0, 1, 0, -1]), np.array([1, 2, 0])]
    mean, std, count = group_statistics(
        ((torch.from_numpy(f), torch.from_numpy(n), torch.from_numpy(g)) for f, n, g in zip(feats, lengths, groups)),
        n_groups=4, n_features=8)
    for g in range(3):
        cols = np.concatenate([f[i, :, :n[i]] for f, n, gs in zip(feats, lengths, groups)
                               for i in range(len(gs)) if gs[i] == g], axis=1).astype(np.float64)
        np.testing.assert_allclose(mean[g].numpy(), cols.mean(axis=1), rtol=1e-9)
        np.testing.assert_allclose(std[g].numpy(), cols.std(axis=1), rtol=1e-9)
        assert count[g] == cols.shape[1]
    assert count[3] == 0 and torch.all(std[3] == 1) and torch.all(mean[3] == 0)  # a group with no frames
    # the normaliser applies each row's own group's vectors, gathered for the batch
    norm = SpeakerNormalizer(mean, std, group_of_row=torch.tensor([2, 0, 1]))
    x = torch.from_numpy(feats[1])
    out = norm(x, torch.tensor([0, 2, 1]))
    expected = (x - mean[[2, 1, 0]].float()[:, :, None]) / std[[2, 1, 0]].float()[:, :, None]
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="group_statistics"):
        group_statistics([(torch.zeros(2, 7, 3), None, torch.tensor([0, 1]))], n_groups=2, n_features=8)


def test_statistics_from_cached_row_moments_equal_those_from_the_spectrograms() -> None:
    """What a trial merges from the node's cached row moments is what it would compute from the
    rows' spectrograms: per group (speaker normalisation) and for one set of rows (the global
    normaliser), over real frames only, with a row of 0 frames and rows left out (-1)."""
    from ser_core.features import (FeatureNormalizer, group_statistics, row_moments,
                                   statistics_from_row_moments)

    rng = np.random.default_rng(7)
    x = torch.from_numpy((rng.normal(2.0, 3.0, (9, 6, 14)) + np.arange(9)[:, None, None]).astype(np.float32))
    lengths = torch.tensor([14, 3, 0, 9, 14, 1, 7, 12, 5])
    groups = torch.tensor([0, 1, 0, 2, -1, 1, 0, 2, 1])
    n_r, mean_r, m2_r = row_moments(x, lengths)
    assert n_r.tolist() == lengths.tolist() and torch.all(mean_r[2] == 0) and torch.all(m2_r[2] == 0)
    got = statistics_from_row_moments(n_r, mean_r, m2_r, groups, 4)
    batches = [(x[s:s + 4], lengths[s:s + 4], groups[s:s + 4]) for s in range(0, 9, 4)]  # groups split over batches
    want = group_statistics(batches, n_groups=4, n_features=6)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert got[2][3] == 0 and torch.all(got[1][3] == 1)  # a group with no rows: no frames, std 1

    train = torch.tensor([0, 1, 3, 5, 8])
    streamed = FeatureNormalizer(6).fit([(x[train[:2]], lengths[train[:2]]), (x[train[2:]], lengths[train[2:]])])
    merged = FeatureNormalizer(6).fit_row_moments(n_r[train], mean_r[train], m2_r[train])
    torch.testing.assert_close(merged.mean, streamed.mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(merged.std, streamed.std, rtol=1e-6, atol=1e-6)
    cols = torch.cat([x[i, :, :int(lengths[i])] for i in train.tolist()], dim=1).double()
    torch.testing.assert_close(merged.mean, cols.mean(dim=1).float(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="no frames"):
        FeatureNormalizer(6).fit_row_moments(n_r[[2]], mean_r[[2]], m2_r[[2]])
