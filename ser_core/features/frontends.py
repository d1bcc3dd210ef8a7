"""The spectrogram frontends themselves: torch modules run on the trial's device, in the hot path.

The features are computed in torch (not librosa) so they run batched on the GPU next to the
model, but they are defined to equal librosa's output on the same settings: librosa is the
reference the field reports against, and the tests hold the two together. torchaudio is
deliberately not used, so core code installs anywhere torch does. The one exception is
OpenSmileFunctionals, openSMILE's utterance functionals (ser_core.features.functionals) wrapped
as a frontend of one frame: it runs on the CPU, and training reads its cached output instead.
"""
from __future__ import annotations

import librosa
import numpy as np
import scipy.fft
import torch
from torch import Tensor, nn

from .config import FrontendConfig, PadMode, WindowName
from .decibels import power_to_db
from .functionals import FUNCTIONAL_SETS, clip_functionals, is_functionals, opensmile_module, speech_lengths
from .ssl import clip_layer_means, encoder_shape, release_encoders

# A change to what a frontend computes must bump FEATURES_VERSION (ser_core/features/__init__.py):
# cached spectrograms are keyed by it.


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


class UtteranceFrontend(nn.Module):
    """A frontend that gives one vector per clip, taken over the clip's speech: (B, T) waveforms ->
    (B, n_features, 1), one "frame", so every spectrogram path (normalisers, models, checkpoints,
    `ser-search predict`) takes it unchanged. Training reads the node's cache of every clip's
    vector instead, filled by the same `vectors` (ser_core.train.spectrograms). `lengths` are
    samples of speech per clip; without them a clip's trailing zeros are taken as padding
    (`speech_lengths`)."""

    n_features: int
    block_rows = 64  # manifest rows per call when the cache is filled

    def vectors(self, samples: np.ndarray, lengths: np.ndarray, device: str = "cpu",
                first_row: int = 0, rows: str = "row") -> np.ndarray:
        """(B, n_features) float32 vectors of `samples` (B, T), each over its first `lengths[i]`
        samples; an error names the clip as f"{rows} {first_row + i}"."""
        raise NotImplementedError

    def release(self) -> None:
        """Give back what computing the vectors held (nothing, unless a subclass says otherwise)."""

    @torch.no_grad()
    def forward(self, wave: Tensor, out: Tensor | None = None, lengths: Tensor | None = None) -> Tensor:
        if wave.ndim != 2:
            raise ValueError(f"{type(self).__name__}: expected a waveform batch (B, T), got {tuple(wave.shape)}")
        samples = wave.detach().float().cpu().numpy()
        n = speech_lengths(samples) if lengths is None else np.asarray(lengths.cpu() if isinstance(lengths, Tensor)
                                                                        else lengths)
        device = str(wave.device) if wave.device.type == "cuda" else "cpu"
        result = torch.from_numpy(self.vectors(samples, n, device))[:, :, None].to(wave.device)
        if out is not None:
            return out.copy_(result)
        return result


class OpenSmileFunctionals(UtteranceFrontend):
    """openSMILE's functionals (ser_core.features.functionals) as an utterance frontend. Runs on
    the CPU, clip by clip."""

    def __init__(self, kind: str, sample_rate: int) -> None:
        super().__init__()
        if not is_functionals(kind):
            raise ValueError(f"{kind!r} is not a functionals frontend ({', '.join(FUNCTIONAL_SETS)})")
        opensmile_module(kind)  # fail here, naming the extra, not at the first batch
        self.kind, self.sample_rate = kind, sample_rate
        self.n_features = FUNCTIONAL_SETS[kind].n_features

    def vectors(self, samples: np.ndarray, lengths: np.ndarray, device: str = "cpu",
                first_row: int = 0, rows: str = "row") -> np.ndarray:
        out = np.empty((len(samples), self.n_features), dtype=np.float32)
        for i, (row, n) in enumerate(zip(samples, lengths)):
            try:
                out[i] = clip_functionals(self.kind, row[:max(int(n), 1)], self.sample_rate)
            except ValueError as e:
                raise ValueError(f"{rows} {first_row + i}: {e}") from None
        return out

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, sample_rate={self.sample_rate}, n_features={self.n_features}"


class SSLLayerMeans(UtteranceFrontend):
    """The ssl frontend as an utterance frontend: each hidden layer of the frozen encoder averaged
    over the clip's speech (ser_core.features.ssl), layer-major, layers * size features; on the
    GPU when the batch is there."""

    block_rows = 256

    def __init__(self, model: str, sample_rate: int) -> None:
        super().__init__()
        self.model_name, self.sample_rate = model, sample_rate
        shape = encoder_shape(model)  # fails here, naming the encoder, not at the first batch
        self.n_features = shape.layers * shape.dim

    def vectors(self, samples: np.ndarray, lengths: np.ndarray, device: str = "cpu",
                first_row: int = 0, rows: str = "row") -> np.ndarray:
        means = clip_layer_means(self.model_name, samples, lengths, self.sample_rate, device=device)
        return means.reshape(len(samples), -1)

    def release(self) -> None:
        release_encoders()  # the trial that filled the cache trains next, beside other trials

    def extra_repr(self) -> str:
        return f"model={self.model_name!r}, sample_rate={self.sample_rate}, n_features={self.n_features}"


def build_frontend(cfg: FrontendConfig, *, pad_mode: PadMode = "constant") -> nn.Module:
    """The frontend module a config describes; its output has cfg.n_features rows (an
    UtteranceFrontend for cfg.utterance)."""
    if cfg.functionals:
        return OpenSmileFunctionals(cfg.kind, cfg.sample_rate)
    if cfg.kind == "ssl":
        return SSLLayerMeans(str(cfg.ssl_model), cfg.sample_rate)
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
