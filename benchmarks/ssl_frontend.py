"""What the ssl frontend costs: a frozen encoder's layer means per clip, against the Mel frontend.

Why: the ssl frontend (ser_core.features.ssl) runs a 95M-parameter transformer over every clip once
per corpus and node, where the Mel frontend runs an STFT. This script measures both on the same
clips, in the same run, and prints the ratio, so the README's cost line is measured, not guessed.

No weights can be downloaded here, and none are needed for a cost: each encoder is built from its
published configuration (WavLM Base+, HuBERT Base, wav2vec 2.0 Base: 12 layers of 768; Whisper
base's encoder: 6 layers of 512) with random weights, saved with `save_pretrained`, and loaded by
the product's own code (`clip_layer_means`), exactly as a downloaded copy would be. The arithmetic
per clip does not depend on the weights' values.

Timed: `clip_layer_means` over --clips clips of speech between 1.2 and 2.0 s at 16 kHz (as a
prepared corpus's padded segments are cut to their speech), median of --repeats passes after one
warm-up; the Mel frontend (build_frontend, batches of 16 on CPU as fit uses) on the same padded
segments. Printed per clip and per second of speech, and the ratio ssl / mel.

    python benchmarks/ssl_frontend.py [--clips 24] [--device cpu|cuda] [--encoders wavlm hubert wav2vec2 whisper]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine_summary, resolve_device, sync  # noqa: E402
from ser_core.features import FrontendConfig, build_frontend  # noqa: E402
from ser_core.features.ssl import clip_layer_means, frozen_encoder  # noqa: E402

RATE = 16000


def build_encoder(kind: str, where: Path) -> str:
    """A randomly initialised encoder of the published base size, saved as a local copy."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    path = where / kind
    if kind == "whisper":
        config = transformers.WhisperConfig(d_model=512, encoder_layers=6, encoder_attention_heads=8,
                                            encoder_ffn_dim=2048, decoder_layers=1, decoder_attention_heads=8,
                                            num_mel_bins=80)
        transformers.WhisperModel(config).save_pretrained(path)
        transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
        return str(path)
    config_cls, model_cls = {"wavlm": (transformers.WavLMConfig, transformers.WavLMModel),
                             "hubert": (transformers.HubertConfig, transformers.HubertModel),
                             "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model)}[kind]
    model_cls(config_cls()).save_pretrained(path)  # the defaults are the Base sizes
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=RATE).save_pretrained(path)
    return str(path)


def median_seconds(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up: allocations, kernels, lazy imports
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--encoders", nargs="+", choices=("wavlm", "hubert", "wav2vec2", "whisper"),
                   default=["wavlm", "hubert", "wav2vec2", "whisper"])
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    print(machine_summary(device))

    rng = np.random.default_rng(0)
    segment = 2 * RATE
    speech = rng.integers(int(1.2 * RATE), segment + 1, size=args.clips)
    waves = np.zeros((args.clips, segment), dtype=np.float32)
    for i, n in enumerate(speech):  # a voiced-like signal: harmonics of a moving F0, plus noise
        t = np.arange(n) / RATE
        f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + i)
        phase = 2 * np.pi * np.cumsum(f0) / RATE
        waves[i, :n] = 0.1 * sum(np.sin(k * phase) / k for k in range(1, 8)) + 0.01 * rng.normal(size=n)
    seconds = float(speech.sum()) / RATE

    mel = build_frontend(FrontendConfig(kind="mel")).to(device)
    batch = torch.from_numpy(waves).to(device)

    def run_mel() -> None:
        with torch.no_grad():
            for s in range(0, len(batch), 16 if device.type == "cpu" else 128):
                mel(batch[s:s + 16 if device.type == "cpu" else s + 128])

    t_mel = median_seconds(run_mel, args.repeats, device)
    print(f"mel (64 bins): {1000 * t_mel / args.clips:.2f} ms per clip, "
          f"{1000 * t_mel / seconds:.2f} ms per second of speech")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.encoders:
            path = build_encoder(kind, Path(tmp))
            t_load = time.perf_counter()
            encoder = frozen_encoder(path, device.type)
            t_load = time.perf_counter() - t_load
            params = sum(p.numel() for p in encoder.model.parameters())
            t = median_seconds(lambda path=path: clip_layer_means(path, waves, speech, RATE, device=device.type),
                               args.repeats, device)
            print(f"{kind} ({params / 1e6:.0f}M parameters, {encoder.shape.layers} x {encoder.shape.dim}, "
                  f"loaded in {t_load:.1f} s): {1000 * t / args.clips:.1f} ms per clip, "
                  f"{1000 * t / seconds:.1f} ms per second of speech, {t / t_mel:.0f}x the mel frontend")
            frozen_encoder.cache_clear()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
