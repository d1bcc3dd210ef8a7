"""Self-supervised speech encoders as a frontend: frozen, every hidden layer, averaged per clip.

Why: frozen self-supervised encoders with a small head are the strongest speaker-independent
SER systems that need no fine-tuning (EmoBox, Ma et al., Interspeech 2024: WavLM Large 0.72 and
Whisper large v3 0.75 UA on RAVDESS's actor folds). SUPERB (Yang et al., "SUPERB: Speech
processing Universal PERformance Benchmark", Interspeech 2021) learns a softmax-weighted sum of
all the encoder's hidden layers and mean-pools it over time for emotion recognition. Mean pooling
is linear, so sum_l w_l mean_t h[l, t] = mean_t sum_l w_l h[l, t]: caching each layer's mean over
the clip's speech frames, (L, D) per clip, lets the head learn exactly that weighted sum
(ser_core.models.LayerWeightedSum) from a cache T times smaller than the frames. Downstream the
(L, D) matrix is one frame of L*D features, like the openSMILE functionals, so the cache,
normalisation, folds and loss families need nothing new.

The encoder (`frontend.ssl_model`) is a Hugging Face id (`microsoft/wavlm-base-plus`,
`facebook/hubert-base-ls960`, `facebook/wav2vec2-base`, `openai/whisper-base`: Whisper's encoder
only) or a local directory holding `config.json`, the weights and `preprocessor_config.json`,
loaded with `transformers` (the optional extra `ser-search[ssl]`). An id is looked up in the
Hugging Face cache (HF_HOME) and downloaded when it is not there and the machine can
(HF_HUB_OFFLINE=1 forbids it); a machine without internet is pointed at a local directory.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

EXTRA = "ssl"  # pip install 'ser-search[ssl]'
# What this module computes (each layer's mean over the clip's speech frames, float32, clips of
# one length batched without padding); the cache keys by it, the encoder and the transformers
# release. BUMP IT WITH ANY CHANGE.
SSL_VERSION = 1
ENCODER_RATE = 16000  # every supported encoder was trained on 16 kHz audio
MIN_SAMPLES = 400  # one receptive field of the wav2vec 2.0 family's convolutional feature encoder


class SSLEncoderError(ValueError):
    """The encoder cannot be loaded; the message says which and where it was looked for."""


def transformers_module() -> ModuleType:
    """The `transformers` package, or an SSLEncoderError naming the extra to install."""
    try:
        import transformers  # noqa: PLC0415 - optional: only the ssl frontend needs it
    except ImportError as e:
        raise SSLEncoderError(f"frontend 'ssl' needs the transformers package: pip install "
                              f"'ser-search[{EXTRA}]'") from e
    return transformers


@dataclass(frozen=True)
class EncoderShape:
    layers: int  # hidden states per clip: the input embedding and every transformer layer
    dim: int     # size of each


def _local(name: str) -> Path | None:
    path = Path(name).expanduser()
    return path if path.is_dir() else None


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or name.count("/") > 1


def _not_found(name: str) -> str:
    if _local(name) is not None:
        return f"the directory {Path(name).expanduser()} does not hold a loadable encoder"
    if _looks_like_path(name):
        return f"there is no directory {Path(name).expanduser()}"
    cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
    return (f"it is not in the Hugging Face cache ({cache}) and could not be downloaded. Point "
            f"frontend.ssl_model at a local copy (a directory with config.json, the weights and "
            f"preprocessor_config.json, e.g. from `hf download {name} --local-dir DIR` on a machine "
            f"that can) or set HF_HOME to a cache that holds it")


def resolve_encoder(name: str, base_dir: Path) -> str:
    """A local encoder directory named relative to a config file, as an absolute path (trials run
    in their own working directories): `name` when it is absolute, a hub id (no such directory
    beside the file) or already a URL-like id; ./ and ../ paths always resolve."""
    path = Path(name).expanduser()
    if path.is_absolute():
        return str(path)
    beside = (base_dir / path).resolve()
    if beside.is_dir() or name.startswith(("./", "../")):
        return str(beside)
    return name


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


_NOT_FOUND: dict[str, str] = {}  # this process's failed lookups: a results table of 1,000 rows asks once


@lru_cache(maxsize=16)
def encoder_shape(name: str) -> EncoderShape:
    """Layers and size of an encoder's hidden states, from its configuration alone (no weights):
    what a config needs to size the model before any audio is read."""
    if name in _NOT_FOUND:
        raise SSLEncoderError(_NOT_FOUND[name])
    transformers = transformers_module()
    source = str(_local(name) or name)
    try:
        config = transformers.AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as e:
        _NOT_FOUND[name] = f"cannot load the SSL encoder {name!r}: {_not_found(name)} ({_first_line(e)})"
        raise SSLEncoderError(_NOT_FOUND[name]) from None
    if getattr(config, "model_type", "") == "whisper":
        return EncoderShape(config.encoder_layers + 1, config.d_model)
    layers, dim = getattr(config, "num_hidden_layers", None), getattr(config, "hidden_size", None)
    if layers is None or dim is None:
        raise SSLEncoderError(f"{name!r} is a {config.model_type!r} model, not a speech encoder ser-search can pool "
                              f"(wav2vec 2.0, HuBERT, WavLM, data2vec-audio or Whisper)")
    return EncoderShape(int(layers) + 1, int(dim))


def ssl_missing(name: str | None) -> str | None:
    """Why a config cannot use encoder `name` here (no transformers, no such encoder), or None."""
    if not name:
        return "frontend 'ssl' needs frontend.ssl_model: a Hugging Face id or a local directory"
    try:
        encoder_shape(name)
    except SSLEncoderError as e:
        return str(e)
    return None


def _file_digest(path: Path) -> str:
    """Size and SHA-256 of a whole file: a fine-tune of the same architecture may change only
    tensors in the middle of the weights (~1 s per GB, once per process and encoder)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return f"{path.stat().st_size}:{h.hexdigest()[:16]}"


@lru_cache(maxsize=16)
def encoder_fingerprint(name: str) -> dict[str, Any]:
    """What the cache keys an encoder's features by: for a local directory its files' digests
    (hidden files and folders left out: `hf download` keeps timestamped metadata in .cache/), so
    other weights under the same path are another encoder and identical copies on two nodes are
    one; for a hub id the id, the revision it resolved to and its configuration."""
    local = _local(name)
    if local is not None:
        files = sorted(p for p in local.rglob("*")
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(local).parts))
        return {"directory": {str(p.relative_to(local)): _file_digest(p) for p in files}}
    config = transformers_module().AutoConfig.from_pretrained(name)
    revision = getattr(config, "_commit_hash", None)
    text = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return {"id": name, "revision": revision, "config": hashlib.sha256(text.encode()).hexdigest()[:16]}


def transformers_version() -> str:
    return str(transformers_module().__version__)


class FrozenEncoder:
    """A loaded encoder in eval mode without gradients, with its feature extractor."""

    def __init__(self, name: str, device: str = "cpu") -> None:
        import torch  # noqa: PLC0415

        transformers = transformers_module()
        transformers.utils.logging.disable_progress_bar()  # a trial's log is no place for a loading bar
        self.name, self.shape = name, encoder_shape(name)
        source = str(_local(name) or name)
        try:
            config = transformers.AutoConfig.from_pretrained(source)
            self.extractor = transformers.AutoFeatureExtractor.from_pretrained(source)
            self.whisper = config.model_type == "whisper"
            if self.whisper:
                model = transformers.WhisperModel.from_pretrained(source).get_encoder()
            else:
                model = transformers.AutoModel.from_pretrained(source)
        except (OSError, ValueError) as e:
            raise SSLEncoderError(f"cannot load the SSL encoder {name!r}: {_not_found(name)} "
                                  f"({_first_line(e)})") from None
        self.device = torch.device(device)
        self.model = model.eval().requires_grad_(False).to(self.device)

    def _speech_frames(self, n_samples: int, n_frames: int) -> int:
        """Frames of the output that cover `n_samples` of speech (Whisper pads to 30 s: 50 frames a second)."""
        lengths = getattr(self.model, "_get_feat_extract_output_lengths", None)
        if lengths is not None and not self.whisper:
            import torch  # noqa: PLC0415

            return int(max(1, min(n_frames, int(lengths(torch.tensor(n_samples))))))
        return int(max(1, min(n_frames, math.ceil(n_samples / 320))))

    def layer_means(self, clips: list[np.ndarray], batch_size: int = 8) -> np.ndarray:
        """Each clip's (16 kHz speech, 1-D) mean over its frames of every hidden layer: float32
        (N, L, D). Clips of one length run as one batch, so no padding or attention mask enters
        any clip's states (wav2vec 2.0 base has no attention mask: padding would change them)."""
        import torch  # noqa: PLC0415

        out = np.zeros((len(clips), self.shape.layers, self.shape.dim), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for i, c in enumerate(clips):
            by_length.setdefault(len(c), []).append(i)
        key = "input_features" if self.whisper else "input_values"
        with torch.inference_mode():
            for length, idx in by_length.items():
                for start in range(0, len(idx), batch_size):
                    batch = idx[start:start + batch_size]
                    inputs = self.extractor([clips[i] for i in batch], sampling_rate=ENCODER_RATE,
                                            return_tensors="pt")
                    hidden = self.model(inputs[key].to(self.device), output_hidden_states=True).hidden_states
                    states = torch.stack(hidden, dim=1)  # (B, L, T, D)
                    frames = self._speech_frames(length, states.shape[2])
                    out[batch] = states[:, :, :frames].float().mean(dim=2).cpu().numpy()
        if not np.isfinite(out).all():
            raise ValueError(f"the SSL encoder {self.name!r} produced non-finite hidden states")
        return out


@lru_cache(maxsize=2)
def frozen_encoder(name: str, device: str = "cpu") -> FrozenEncoder:
    """One loaded encoder per process, name and device (loading reads every weight)."""
    return FrozenEncoder(name, device)


def clip_layer_means(name: str, waves: np.ndarray, speech: np.ndarray, sample_rate: int, *,
                     device: str = "cpu") -> np.ndarray:
    """`layer_means` of rows of `waves` (N, S) at `sample_rate`, each over its first `speech[i]`
    samples (the rest is the segment's padding and is not given to the encoder), resampled to
    16 kHz with librosa: float32 (N, L, D)."""
    import librosa  # noqa: PLC0415

    clips = [np.asarray(waves[i, :max(1, int(speech[i]))], dtype=np.float32) for i in range(len(waves))]
    if sample_rate != ENCODER_RATE:
        clips = [librosa.resample(c, orig_sr=sample_rate, target_sr=ENCODER_RATE) for c in clips]
    # the convolutional feature encoders need one receptive field (400 samples, 25 ms); prepare
    # keeps no clip under 0.1 s, so this only guards a hand-made corpus
    clips = [c if len(c) >= MIN_SAMPLES else np.pad(c, (0, MIN_SAMPLES - len(c))) for c in clips]
    return frozen_encoder(name, device).layer_means(clips)


def release_encoders() -> None:
    """Drop the loaded encoders (and their GPU memory): the trial that filled the cache trains
    next, on the same device, beside other trials."""
    frozen_encoder.cache_clear()
    import torch  # noqa: PLC0415

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
