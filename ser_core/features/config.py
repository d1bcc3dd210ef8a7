"""The frontend's configuration: one validated, sweepable description of a spectrogram frontend.

Kept apart from the torch modules so configs (sweep spaces, checkpoints, cost models) can be
built, validated and turned into frame counts without touching the signal-processing code.

Defaults follow the center-loss paper (Dai et al. 2019): 40 ms Hamming window, 10 ms shift;
at 16 kHz that is win_length 640, hop 160, and n_fft = win_length unless given.

`kind = "egemaps"` / `"compare"` are openSMILE's utterance-level functionals
(ser_core.features.functionals): one vector per clip, seen downstream as a spectrogram of one
frame; only `kind` and `sample_rate` (the corpus's, resampled to 16 kHz for openSMILE) apply to them.
`kind = "ssl"` is a frozen self-supervised encoder named by `ssl_model` (ser_core.features.ssl):
each hidden layer's mean over the clip, one frame of layers x size features.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from .functionals import FUNCTIONAL_SETS, is_functionals, opensmile_missing
from .ssl import EncoderShape, encoder_shape, ssl_missing

FrontendKind = Literal["mel", "stft", "mfcc", "egemaps", "compare", "ssl"]
WindowName = Literal["hamming", "hann"]
# librosa's centre-padding names; "constant" is librosa 0.11's default. Always passed
# explicitly so a changed default in another librosa release cannot shift the parity.
PadMode = Literal["constant", "reflect"]


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
    # kind "ssl": the frozen encoder, a Hugging Face id or a local directory (ser_core.features.ssl)
    ssl_model: str | None = None

    # Field validators (not a model validator) so each error's loc is the offending field.
    # Fields validate in declaration order, so info.data holds the ones declared earlier.

    @field_validator("kind")
    @classmethod
    def _opensmile_installed(cls, v: str) -> str:
        # At validation, so a sweep file or a trial that asks for functionals without the optional
        # extra fails before Ray starts (or at the trial's start), naming the extra to install.
        problem = opensmile_missing(v) if is_functionals(v) else None
        if problem:
            raise ValueError(problem)
        return v

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

    @model_validator(mode="before")
    @classmethod
    def _ssl_model_only_for_ssl(cls, data: object) -> object:
        # Like n_mfcc for a mel frontend: a sweep whose [base] names an encoder and whose [space]
        # also tries "mel" must not fail on the unused setting, nor make it part of mel's identity.
        if isinstance(data, dict) and data.get("kind", "mel") != "ssl" and "ssl_model" in data:
            data = {k: v for k, v in data.items() if k != "ssl_model"}
        return data

    @model_validator(mode="after")
    def _ssl_encoder_found(self) -> "FrontendConfig":
        # At validation, like openSMILE's check: a sweep naming an encoder this machine cannot
        # load fails before Ray starts, saying where it looked (only its config.json is read).
        if self.kind == "ssl":
            problem = ssl_missing(self.ssl_model)
            if problem:
                raise ValueError(problem)
        return self

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
    def functionals(self) -> bool:
        """One vector of openSMILE functionals per clip (egemaps, compare), not a spectrogram."""
        return is_functionals(self.kind)

    @property
    def utterance(self) -> bool:
        """One vector per clip (openSMILE functionals, an SSL encoder's layer means), not frames."""
        return self.functionals or self.kind == "ssl"

    @property
    def ssl_shape(self) -> EncoderShape | None:
        """The encoder's hidden layers and size (kind "ssl"), from its configuration."""
        return encoder_shape(self.ssl_model) if self.kind == "ssl" and self.ssl_model else None

    @property
    def layers(self) -> int:
        """Stacked layers in a clip's feature vector: the encoder's hidden states for "ssl", else 1."""
        shape = self.ssl_shape
        return shape.layers if shape is not None else 1

    @property
    def n_features(self) -> int:
        """Output frequency rows F (functionals: the set's size; ssl: layers x size), so models
        can size their input layer from the config."""
        if self.functionals:
            return FUNCTIONAL_SETS[self.kind].n_features
        shape = self.ssl_shape
        if shape is not None:
            return shape.layers * shape.dim
        if self.kind == "mel":
            return self.n_mels
        if self.kind == "mfcc":
            return self.n_mfcc
        return self.n_fft_resolved // 2 + 1


def _ms_to_samples(ms: float, sample_rate: int) -> int:
    return int(round(ms * sample_rate / 1000.0))


def num_frames(cfg: FrontendConfig, n_samples: int) -> int:
    """Frames a centred STFT yields for `n_samples`: lets data code turn waveform lengths
    into feature lengths (masks, pooling) without running the frontend. Functionals, ssl: 1."""
    if n_samples < 1:
        raise ValueError(f"num_frames: n_samples must be >= 1, got {n_samples}")
    if cfg.utterance:
        return 1
    n_fft = cfg.n_fft_resolved
    return 1 + (n_samples + 2 * (n_fft // 2) - n_fft) // cfg.hop_length
