"""Spectrogram frontends run on the trial's device, inside the training hot path.

The features are computed in torch (not librosa) so they run batched on the GPU next to the
model, but they are defined to equal librosa's output on the same settings: librosa is the
reference the field reports against, and the tests hold the two together. torchaudio is
deliberately not used, so core code installs anywhere torch does.

Defaults follow the center-loss paper (Dai et al. 2019): 40 ms Hamming window, 10 ms shift;
at 16 kHz that is win_length 640, hop 160, and n_fft = win_length unless given.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import librosa
import numpy as np
import scipy.fft
import torch
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from torch import Tensor, nn

FrontendKind = Literal["mel", "stft", "mfcc"]
WindowName = Literal["hamming", "hann"]
# librosa's centre-padding names; "constant" is librosa 0.11's default. Always passed
# explicitly so a changed default in another librosa release cannot shift the parity.
PadMode = Literal["constant", "reflect"]

AMIN = 1e-10  # librosa.power_to_db's floor on power before the log

# The version of what this module computes for the node's spectrogram cache: the frontends'
# maths (windows, padding, STFT, mel filters, power_to_db, the DCT) and row_moments. The cache
# (ser_core/feature_cache.py) keys its files by it, with the librosa and torch releases, so BUMP
# IT WITH ANY CHANGE TO THAT MATHS, or a persistent cache keeps serving the old code's arrays.
FEATURES_VERSION = 1


# ---------------------------------------------------------------------------- config


class FrontendConfig(BaseModel):
    """One sweepable description of a frontend; validated so a bad trial fails at once,
    naming the field, instead of deep inside torch.stft."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: FrontendKind = "mel"
    sample_rate: int = 16000
    win_ms: float = 40.0
    hop_ms: float = 10.0
    n_fft: int | None = None
    n_mels: int = 64
    n_mfcc: int = 40
    f_min: float = 0.0
    f_max: float | None = None
    top_db: float | None = 80.0
    window: WindowName = "hamming"

    # Field validators (not a model validator) so each error's loc is the offending field.
    # Fields validate in declaration order, so info.data holds the ones declared earlier.

    @field_validator("sample_rate", "n_mels", "n_mfcc")
    @classmethod
    def _positive_int(cls, v: int, info: ValidationInfo) -> int:
        if v <= 0:
            raise ValueError(f"{info.field_name} must be > 0, got {v}")
        return v

    @field_validator("win_ms", "hop_ms")
    @classmethod
    def _at_least_one_sample(cls, v: float, info: ValidationInfo) -> float:
        if not v > 0:
            raise ValueError(f"{info.field_name} must be > 0 ms, got {v}")
        sr = info.data.get("sample_rate")
        if sr is not None and _ms_to_samples(v, sr) < 1:
            raise ValueError(
                f"{info.field_name}={v} ms is less than one sample at sample_rate={sr}"
            )
        return v

    @field_validator("n_fft")
    @classmethod
    def _n_fft_covers_window(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v is None:
            return v
        if v <= 0:
            raise ValueError(f"n_fft must be > 0, got {v}")
        sr, win_ms = info.data.get("sample_rate"), info.data.get("win_ms")
        if sr is not None and win_ms is not None:
            win_length = _ms_to_samples(win_ms, sr)
            if v < win_length:
                raise ValueError(
                    f"n_fft={v} must be >= win_length={win_length} "
                    f"(win_ms={win_ms} at sample_rate={sr})"
                )
        return v

    @field_validator("n_mfcc")
    @classmethod
    def _mfcc_within_mels(cls, v: int, info: ValidationInfo) -> int:
        # Only binding for kind="mfcc": a mel sweep must not fail on an unused default.
        n_mels = info.data.get("n_mels")
        if info.data.get("kind") == "mfcc" and n_mels is not None and v > n_mels:
            raise ValueError(f"n_mfcc={v} must be <= n_mels={n_mels} for kind='mfcc'")
        return v

    @field_validator("f_min")
    @classmethod
    def _f_min_range(cls, v: float, info: ValidationInfo) -> float:
        if v < 0:
            raise ValueError(f"f_min must be >= 0 Hz, got {v}")
        sr = info.data.get("sample_rate")
        if sr is not None and v >= sr / 2:
            raise ValueError(f"f_min={v} must be below Nyquist ({sr / 2} Hz)")
        return v

    @field_validator("f_max")
    @classmethod
    def _f_max_range(cls, v: float | None, info: ValidationInfo) -> float | None:
        if v is None:
            return v
        f_min, sr = info.data.get("f_min"), info.data.get("sample_rate")
        if f_min is not None and v <= f_min:
            raise ValueError(f"f_max={v} must be > f_min={f_min}")
        if sr is not None and v > sr / 2:
            raise ValueError(f"f_max={v} must be <= sample_rate/2 = {sr / 2} Hz")
        return v

    @field_validator("top_db")
    @classmethod
    def _top_db_positive(cls, v: float | None) -> float | None:
        if v is not None and not v > 0:
            raise ValueError(f"top_db must be > 0 dB or None (no clipping), got {v}")
        return v

    @property
    def win_length(self) -> int:
        return _ms_to_samples(self.win_ms, self.sample_rate)

    @property
    def hop_length(self) -> int:
        return _ms_to_samples(self.hop_ms, self.sample_rate)

    @property
    def n_fft_resolved(self) -> int:
        return self.n_fft if self.n_fft is not None else self.win_length

    @property
    def n_features(self) -> int:
        """Output frequency rows F, so models can size their input layer from the config."""
        if self.kind == "mel":
            return self.n_mels
        if self.kind == "mfcc":
            return self.n_mfcc
        return self.n_fft_resolved // 2 + 1


def _ms_to_samples(ms: float, sample_rate: int) -> int:
    return int(round(ms * sample_rate / 1000.0))


def num_frames(cfg: FrontendConfig, n_samples: int) -> int:
    """Frames a centred STFT yields for `n_samples`: lets data code turn waveform lengths
    into feature lengths (masks, pooling) without running the frontend."""
    if n_samples < 1:
        raise ValueError(f"num_frames: n_samples must be >= 1, got {n_samples}")
    n_fft = cfg.n_fft_resolved
    return 1 + (n_samples + 2 * (n_fft // 2) - n_fft) // cfg.hop_length


# ---------------------------------------------------------------------------- dB


def power_to_db(power: Tensor, top_db: float | None = 80.0, amin: float = AMIN,
                out: Tensor | None = None) -> Tensor:
    """librosa.power_to_db(S, ref=1.0) for a batch, clipping each example at its own max.

    librosa clips one spectrogram at max - top_db; clipping at the batch max instead would
    make an example's features depend on which other clips share its batch. `out` (no
    autograd) receives the result, e.g. a slice of a split's feature cache.
    """
    if top_db is None:
        clipped = torch.clamp(power, min=amin)
    else:
        if top_db <= 0:
            raise ValueError(f"power_to_db: top_db must be > 0 or None, got {top_db}")
        # max(dB, peak dB - top_db) = dB of max(power, peak power * 10^(-top_db/10)): the floor
        # is applied to the power (the log is monotone), which saves a pass over the batch
        floor = (power.amax(dim=(-2, -1), keepdim=True) * 10.0 ** (-top_db / 10.0)).clamp_min(amin)
        clipped = torch.maximum(power, floor)
    if clipped.requires_grad:
        return torch.mul(torch.log10(clipped), 10.0, out=out)
    logs = clipped.log10_()  # no autograd: in place, no fresh buffers (page faults)
    return logs.mul_(10.0) if out is None else torch.mul(logs, 10.0, out=out)


# ---------------------------------------------------------------------------- frontends
# A change to what a frontend computes must bump FEATURES_VERSION (above): cached spectrograms are keyed by it.


class _PowerSpectrogram(nn.Module):
    """Shared centred STFT -> power, with the window as a buffer so it follows .to(device)."""

    def __init__(
        self,
        *,
        sample_rate: int,
        win_length: int,
        hop_length: int,
        n_fft: int | None,
        window: WindowName,
        pad_mode: PadMode,
        top_db: float | None,
    ) -> None:
        super().__init__()
        n_fft = win_length if n_fft is None else n_fft
        if win_length < 1 or hop_length < 1:
            raise ValueError(
                f"win_length ({win_length}) and hop_length ({hop_length}) must be >= 1"
            )
        if n_fft < win_length:
            raise ValueError(f"n_fft ({n_fft}) must be >= win_length ({win_length})")
        if pad_mode not in ("constant", "reflect"):
            raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
        if top_db is not None and top_db <= 0:
            raise ValueError(f"top_db must be > 0 or None, got {top_db}")
        self.sample_rate = sample_rate
        self.win_length = win_length
        self.hop_length = hop_length
        self.n_fft = n_fft
        self.pad_mode = pad_mode
        self.top_db = top_db
        # Periodic ("fftbins") window, as librosa.filters.get_window builds it. Kept in float64
        # and cast per call: a float32-rounded window leaks ~1e-7 of the loud bins into the
        # quiet ones, visible as ~1e-3 dB near the top_db floor. Derived from the config, so
        # not persistent: checkpoints do not carry it.
        win = librosa.filters.get_window(window, win_length, fftbins=True)
        self.register_buffer(
            "window", torch.as_tensor(win, dtype=torch.float64), persistent=False
        )

    def _power(self, wave: Tensor) -> Tensor:
        """|STFT|^2, (B, n_fft//2+1, frames), in float32 (float64 kept for reference checks)."""
        if wave.ndim != 2:
            raise ValueError(
                f"{type(self).__name__}: expected a waveform batch of shape (B, T), "
                f"got shape {tuple(wave.shape)}"
            )
        if wave.shape[-1] < 1:
            raise ValueError(f"{type(self).__name__}: empty waveforms (T=0)")
        if self.pad_mode == "reflect" and wave.shape[-1] <= self.n_fft // 2:
            raise ValueError(
                f"{type(self).__name__}: pad_mode='reflect' needs T > n_fft//2 = "
                f"{self.n_fft // 2} samples, got T={wave.shape[-1]}"
            )
        dtype = torch.float64 if wave.dtype == torch.float64 else torch.float32
        wave = wave.to(dtype)
        spec = torch.stft(
            wave,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window.to(dtype),
            center=True,
            pad_mode=self.pad_mode,
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        # re^2 + im^2: no sqrt round trip as abs()**2 has, and ~9x faster than
        # view_as_real().square().sum() (a reduction over a size-2 trailing dim). Without
        # autograd the squares are taken in place in the FFT's own buffer (one contiguous pass).
        if spec.requires_grad:
            return spec.real.square() + spec.imag.square()
        parts = torch.view_as_real(spec).square_()
        return parts[..., 0] + parts[..., 1]

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, win_length={self.win_length}, "
            f"hop_length={self.hop_length}, pad_mode={self.pad_mode!r}, top_db={self.top_db}"
        )


class LogPowerSpectrogram(_PowerSpectrogram):
    """power_to_db(|librosa.stft|^2): (B, T) -> (B, n_fft//2+1, frames) dB."""

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        win_length: int = 640,
        hop_length: int = 160,
        n_fft: int | None = None,
        window: WindowName = "hamming",
        pad_mode: PadMode = "constant",
        top_db: float | None = 80.0,
    ) -> None:
        super().__init__(
            sample_rate=sample_rate, win_length=win_length, hop_length=hop_length,
            n_fft=n_fft, window=window, pad_mode=pad_mode, top_db=top_db,
        )

    @property
    def n_features(self) -> int:
        return self.n_fft // 2 + 1

    def forward(self, wave: Tensor, out: Tensor | None = None) -> Tensor:
        # bf16 autocast would quantise dB values to ~0.25 dB near 0 and worse below: keep fp32.
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return power_to_db(self._power(wave), self.top_db, out=out)


class LogMelSpectrogram(_PowerSpectrogram):
    """power_to_db(librosa.feature.melspectrogram(power=2)): (B, T) -> (B, n_mels, frames) dB.

    Slaney mel scale and Slaney area normalisation, librosa's defaults.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        win_length: int = 640,
        hop_length: int = 160,
        n_fft: int | None = None,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
        window: WindowName = "hamming",
        pad_mode: PadMode = "constant",
        top_db: float | None = 80.0,
    ) -> None:
        super().__init__(
            sample_rate=sample_rate, win_length=win_length, hop_length=hop_length,
            n_fft=n_fft, window=window, pad_mode=pad_mode, top_db=top_db,
        )
        if n_mels <= 0:
            raise ValueError(f"n_mels must be > 0, got {n_mels}")
        self.n_mels = n_mels
        self.f_min = f_min
        self.f_max = f_max
        fb = librosa.filters.mel(
            sr=sample_rate, n_fft=self.n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max,
            htk=False, norm="slaney", dtype=np.float32,
        )
        # float32 like librosa's own default, so the float64 reference path matches exactly.
        self.register_buffer(
            "mel_basis", torch.as_tensor(fb), persistent=False
        )  # (n_mels, n_fft//2+1)

    @property
    def n_features(self) -> int:
        return self.n_mels

    def mel_power(self, wave: Tensor) -> Tensor:
        """Linear-power mel spectrogram, before dB (for callers that want their own log)."""
        power = self._power(wave)
        return torch.matmul(self.mel_basis.to(power.dtype), power)

    def forward(self, wave: Tensor, out: Tensor | None = None) -> Tensor:
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return power_to_db(self.mel_power(wave), self.top_db, out=out)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_mels={self.n_mels}, f_min={self.f_min}, f_max={self.f_max}"


class MFCC(nn.Module):
    """librosa.feature.mfcc(S=power_to_db(mel), dct_type=2, norm="ortho", lifter=0):
    (B, T) -> (B, n_mfcc, frames). The DCT is a fixed matrix buffer: one matmul per batch."""

    def __init__(self, *, n_mfcc: int = 40, mel: LogMelSpectrogram | None = None) -> None:
        super().__init__()
        self.mel = mel if mel is not None else LogMelSpectrogram()
        if not 0 < n_mfcc <= self.mel.n_mels:
            raise ValueError(f"n_mfcc ({n_mfcc}) must be in 1..n_mels ({self.mel.n_mels})")
        self.n_mfcc = n_mfcc
        # Column j is the orthonormal DCT-II of the j-th unit vector, so dct @ S == dct(S, axis=0).
        dct = scipy.fft.dct(np.eye(self.mel.n_mels), type=2, norm="ortho", axis=0)[:n_mfcc]
        # float64 and cast per call, like the window: costs nothing, keeps the reference path exact.
        self.register_buffer("dct", torch.as_tensor(dct, dtype=torch.float64), persistent=False)

    @property
    def n_features(self) -> int:
        return self.n_mfcc

    def forward(self, wave: Tensor, out: Tensor | None = None) -> Tensor:
        with torch.autocast(device_type=wave.device.type, enabled=False):
            db = self.mel(wave)
            return torch.matmul(self.dct.to(db.dtype), db, out=out)


def build_frontend(cfg: FrontendConfig, *, pad_mode: PadMode = "constant") -> nn.Module:
    """The frontend module a config describes; its output has cfg.n_features rows."""
    common = dict(
        sample_rate=cfg.sample_rate, win_length=cfg.win_length, hop_length=cfg.hop_length,
        n_fft=cfg.n_fft_resolved, window=cfg.window, pad_mode=pad_mode, top_db=cfg.top_db,
    )
    if cfg.kind == "stft":
        return LogPowerSpectrogram(**common)
    mel = LogMelSpectrogram(n_mels=cfg.n_mels, f_min=cfg.f_min, f_max=cfg.f_max, **common)
    if cfg.kind == "mel":
        return mel
    return MFCC(n_mfcc=cfg.n_mfcc, mel=mel)


# ---------------------------------------------------------------------------- normalisation


class FeatureNormalizer(nn.Module):
    """Per-frequency standardisation with statistics from the training split only.

    Fitting streams over batches, merging per-batch (count, mean, M2) in float64 (Chan et al.),
    so a whole corpus can be scanned batch by batch and the variance does not suffer the
    cancellation of sum-of-squares on dB values. mean/std/fitted are buffers, so they travel
    in the checkpoint's state_dict with the model.
    """

    def __init__(self, n_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        if n_features <= 0:
            raise ValueError(f"FeatureNormalizer: n_features must be > 0, got {n_features}")
        self.n_features = n_features
        self.eps = eps
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.register_buffer("fitted", torch.tensor(False))
        # Python mirror of `fitted`: reading the buffer in forward would sync the GPU per batch.
        self._is_fitted = False
        self.register_load_state_dict_post_hook(FeatureNormalizer._sync_fitted)

    @staticmethod
    def _sync_fitted(module: nn.Module, incompatible_keys: object) -> None:
        module._is_fitted = bool(module.fitted)

    def _check(self, feats: Tensor, where: str) -> None:
        if feats.ndim != 3 or feats.shape[1] != self.n_features:
            raise ValueError(
                f"FeatureNormalizer.{where}: expected features of shape "
                f"(B, {self.n_features}, frames), got {tuple(feats.shape)}"
            )

    @torch.no_grad()
    def fit(self, batches: Iterable[Tensor | tuple[Tensor, Tensor]]) -> FeatureNormalizer:
        """Fit on (B, F, frames) batches. An item may be (feats, n_valid_frames) with one
        frame count per example, so padding frames of variable-length batches are left out."""
        count = 0
        mean = torch.zeros(self.n_features, dtype=torch.float64)
        m2 = torch.zeros(self.n_features, dtype=torch.float64)
        for i, item in enumerate(batches):
            feats, lengths = item if isinstance(item, (tuple, list)) else (item, None)
            self._check(feats, f"fit (batch {i})")
            x = feats.detach().to(device="cpu", dtype=torch.float64)
            if lengths is None:
                cols = x.transpose(0, 1).reshape(self.n_features, -1)  # (F, B*frames)
            else:
                lengths = torch.as_tensor(lengths, device="cpu")
                if lengths.shape != (x.shape[0],) or bool(
                    ((lengths < 0) | (lengths > x.shape[2])).any()
                ):
                    raise ValueError(
                        f"FeatureNormalizer.fit (batch {i}): lengths must hold one frame count "
                        f"in 0..{x.shape[2]} per example, got {lengths.tolist()}"
                    )
                valid = torch.arange(x.shape[2]) < lengths[:, None]  # (B, frames)
                cols = x.transpose(0, 1)[:, valid]  # (F, n_valid)
            n_b = cols.shape[1]
            if n_b == 0:
                continue
            mean_b = cols.mean(dim=1)
            m2_b = (cols - mean_b[:, None]).square().sum(dim=1)
            total = count + n_b
            delta = mean_b - mean
            mean = mean + delta * (n_b / total)
            m2 = m2 + m2_b + delta.square() * (count * n_b / total)
            count = total
        if count == 0:
            raise ValueError("FeatureNormalizer.fit: no frames seen (empty iterable or all padding)")
        if not bool(torch.isfinite(mean).all() & torch.isfinite(m2).all()):
            raise ValueError("FeatureNormalizer.fit: features contain NaN or inf")
        self.mean.copy_(mean)
        self.std.copy_((m2 / count).sqrt())  # population std, as numpy's default ddof=0
        self.fitted.fill_(True)
        self._is_fitted = True
        return self

    @torch.no_grad()
    def fit_row_moments(self, n_r: Tensor, mean_r: Tensor, m2_r: Tensor) -> FeatureNormalizer:
        """Fit from the training rows' cached moments (`row_moments`): the same statistics as
        `fit` over those rows' spectrograms, without reading them."""
        mean, std, count = statistics_from_row_moments(n_r, mean_r, m2_r, torch.zeros(len(n_r), dtype=torch.long), 1)
        if float(count[0]) == 0:
            raise ValueError("FeatureNormalizer.fit_row_moments: no frames (no rows, or all padding)")
        self.mean.copy_(mean[0])
        self.std.copy_(std[0])
        self.fitted.fill_(True)
        self._is_fitted = True
        return self

    def forward(self, feats: Tensor, inplace: bool = False) -> Tensor:
        if not self._is_fitted:
            raise RuntimeError(
                "FeatureNormalizer: not fitted; call fit() on the training split "
                "or load a checkpoint's state_dict first"
            )
        self._check(feats, "forward")
        mean = self.mean.to(feats.dtype)[:, None]
        std = self.std.clamp_min(self.eps).to(feats.dtype)[:, None]
        if inplace:  # a feature cache normalised where it lies: no second copy of the split
            return feats.sub_(mean).div_(std)
        return (feats - mean) / std


@torch.no_grad()
def row_moments(feats: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Each row's (frames, mean, M2) per frequency over its real frames, in float64: the
    sufficient statistics from which any set of rows' mean and variance follow exactly
    (`merge_row_moments`). feats (B, F, frames); lengths (B,) valid frames, or None = all.
    Returns shapes (B,), (B, F), (B, F); a row with no valid frame has mean 0 and M2 0."""
    x = feats.detach().to(device="cpu", dtype=torch.float64)
    if lengths is None:
        n_r = torch.full((x.shape[0],), float(x.shape[2]), dtype=torch.float64)
    else:
        n_r = torch.as_tensor(lengths, device="cpu").to(torch.float64).clamp(0, x.shape[2])
    valid = (torch.arange(x.shape[2]) < n_r[:, None]).to(torch.float64)[:, None, :]  # (B, 1, frames)
    mean_r = (x * valid).sum(dim=2) / n_r.clamp_min(1)[:, None]
    m2_r = ((x - mean_r[:, :, None]).square() * valid).sum(dim=2)
    return n_r, mean_r, m2_r


def merge_row_moments(n_r: Tensor, mean_r: Tensor, m2_r: Tensor, groups: Tensor,
                      n_groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """Rows' moments merged into their groups (Chan et al.'s parallel formula, float64, one
    tensor op per step): (frames, mean, M2) per group, shapes (G,), (G, F), (G, F). A row of
    group -1 or without frames is left out; a group without rows has frames 0, mean 0, M2 0."""
    g = torch.as_tensor(groups, device="cpu", dtype=torch.long)
    n_r, mean_r, m2_r = (t.to(device="cpu", dtype=torch.float64) for t in (n_r, mean_r, m2_r))
    keep = (g >= 0) & (n_r > 0)
    n_r, mean_r, m2_r, g = n_r[keep], mean_r[keep], m2_r[keep], g[keep]
    n_features = mean_r.shape[1]
    n_g = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, g, n_r)
    mean_g = torch.zeros(n_groups, n_features, dtype=torch.float64).index_add_(0, g, mean_r * n_r[:, None])
    mean_g /= n_g.clamp_min(1)[:, None]
    m2_g = torch.zeros(n_groups, n_features, dtype=torch.float64).index_add_(
        0, g, m2_r + n_r[:, None] * (mean_r - mean_g[g]).square())
    return n_g, mean_g, m2_g


@torch.no_grad()
def group_statistics(batches: Iterable[tuple[Tensor, Tensor | None, Tensor]], n_groups: int,
                     n_features: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-group, per-frequency mean and population std over the real frames of each group's clips.

    Each item is (feats (B, F, frames), n_valid_frames (B,) or None, group (B,) with -1 = leave
    the row out). Per batch, each row's (count, mean, M2) is taken over its valid frames and the
    rows are merged into their groups with Chan et al.'s pairwise update in float64, all with
    tensor ops (no Python per row). Returns (mean, std, frames) of shapes (G, F), (G, F), (G,);
    a group with no frames has mean 0, std 1 and count 0.
    """
    count = torch.zeros(n_groups, dtype=torch.float64)
    mean = torch.zeros(n_groups, n_features, dtype=torch.float64)
    m2 = torch.zeros(n_groups, n_features, dtype=torch.float64)
    for i, (feats, lengths, groups) in enumerate(batches):
        if feats.ndim != 3 or feats.shape[1] != n_features:
            raise ValueError(f"group_statistics (batch {i}): expected (B, {n_features}, frames), "
                             f"got {tuple(feats.shape)}")
        # the batch's rows merged per group ...
        n_b, mean_b, m2_b = merge_row_moments(*row_moments(feats, lengths), groups, n_groups)
        # ... then into the running totals (Chan et al.)
        total = count + n_b
        delta = mean_b - mean
        w = torch.where(total > 0, n_b / total.clamp_min(1), torch.zeros_like(total))
        mean = mean + delta * w[:, None]
        m2 = m2 + m2_b + delta.square() * (count * w)[:, None]
        count = total
    return _mean_std(count, mean, m2, "group_statistics")


def statistics_from_row_moments(n_r: Tensor, mean_r: Tensor, m2_r: Tensor, groups: Tensor,
                                n_groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """What `group_statistics` returns, (mean, std, frames) per group, from rows' cached moments
    (`row_moments`) instead of their spectrograms."""
    count, mean, m2 = merge_row_moments(n_r, mean_r, m2_r, groups, n_groups)
    return _mean_std(count, mean, m2, "statistics_from_row_moments")


def _mean_std(count: Tensor, mean: Tensor, m2: Tensor, where: str) -> tuple[Tensor, Tensor, Tensor]:
    if not bool(torch.isfinite(mean).all() & torch.isfinite(m2).all()):
        raise ValueError(f"{where}: features contain NaN or inf")
    std = torch.where(count[:, None] > 0, (m2 / count.clamp_min(1)[:, None]).sqrt(), torch.ones_like(m2))
    return mean, std, count


class SpeakerNormalizer(nn.Module):
    """Per-speaker, per-frequency standardisation: each row is normalised with the statistics of
    its own speaker's clips (over their real frames), train, validation and test speakers alike.

    Why: speaker-level normalisation removes much of the between-speaker variation (vocal tract,
    recording level) that a speaker-independent SER model must otherwise learn to ignore; it is
    the usual practice in speaker-independent SER (e.g. Schuller et al., "Acoustic emotion
    recognition: a benchmark comparison of performances", ASRU 2009, per-speaker standardisation;
    Busso et al., "Iterative feature normalization for emotional speech detection", ICASSP 2011).
    It is transductive per speaker: a test speaker's features are normalised with statistics of
    that speaker's own (unlabelled) test clips — no label is read, but the statistics need several
    clips of the speaker. `group_of_row` maps a corpus row to its speaker's index.
    """

    def __init__(self, mean: Tensor, std: Tensor, group_of_row: Tensor, eps: float = 1e-5) -> None:
        super().__init__()
        if mean.ndim != 2 or mean.shape != std.shape:
            raise ValueError(f"SpeakerNormalizer: mean and std must both be (speakers, F), got "
                             f"{tuple(mean.shape)} and {tuple(std.shape)}")
        self.eps = eps
        self.register_buffer("mean", mean.to(torch.float32))
        self.register_buffer("std", std.to(torch.float32).clamp_min(eps))
        self.register_buffer("group_of_row", torch.as_tensor(group_of_row, dtype=torch.long))

    def forward(self, feats: Tensor, rows: Tensor, inplace: bool = False) -> Tensor:
        if feats.ndim != 3 or feats.shape[1] != self.mean.shape[1] or len(rows) != len(feats):
            raise ValueError(f"SpeakerNormalizer: expected (B, {self.mean.shape[1]}, frames) features and B row "
                             f"ids, got {tuple(feats.shape)} and {len(rows)} rows")
        g = self.group_of_row[rows.to(self.group_of_row.device)].to(feats.device)
        mean = self.mean.to(feats.device, feats.dtype)[g][:, :, None]  # (B, F, 1) gathered: one op per batch
        std = self.std.to(feats.device, feats.dtype)[g][:, :, None]
        if inplace:
            return feats.sub_(mean).div_(std)
        return (feats - mean) / std
