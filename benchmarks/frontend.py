"""Batched spectrogram frontend (ser_core.features) vs librosa one file at a time.

Why: ser-search computes log-Mel / log-STFT features in torch, batched, on the trial's device,
instead of with librosa per file as SER training scripts usually do. This script shows what
that buys, on the same WAV files on disk (synthetic speech written at 48 kHz, 16-bit PCM) and
with the same settings (16 kHz, 40 ms Hamming window, 10 ms hop, 64 Mel bins, top_db 80).

Four timings per feature kind, each the median of --repeats passes over all clips, after one
warm-up call per path:

  A  conventional, full per-file path: librosa.load (decode + resample to 16 kHz), cut/pad to
     the segment, melspectrogram (or stft) and power_to_db, one file at a time.
  B  conventional, features only: the same librosa calls on already-decoded segments.
  C  ser-search steady state: the torch frontend on the in-memory (clips, samples) float32
     tensor in batches of --batch, written into one (clips, bins, frames) tensor as fit's
     feature cache is. A prepared corpus is decoded once, so this is what every trial pays.
  D  ser-search including decoding: ser_core.audio.decode_audio per file (soundfile + soxr,
     what `prepare` does once) into one array, then C.

On a CPU, C is also timed with torch limited to one thread (C1): librosa works in one
process, so C1/B is the per-core comparison and C/B the per-process one. A and B run first
for every kind; C, C1 and D then run with the allocator setting fit makes on a CPU
(ser_core.fastpath.keep_freed_memory), which is process-wide.

Ratios printed: C/B (features from decoded audio, like for like), C/A (ser-search's steady state
against the conventional full path, what a training epoch sees), D/A (decoding on both sides).
The target on CPU is C/B >= 5x. C and B are checked to agree (max |dB difference|).

    python benchmarks/frontend.py [--clips 320] [--device cpu|cuda] [--kinds mel stft]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (  # noqa: E402
    MIN_CLIPS, default_workdir, librosa_features, librosa_load, machine_summary, rate_line,
    resolve_device, sync, synthetic_wav_corpus)
from ser_core.audio import decode_audio, fix_length, segment_length  # noqa: E402
from ser_core.fastpath import keep_freed_memory  # noqa: E402
from ser_core.features import FrontendConfig, build_frontend  # noqa: E402
from ser_core.train import SplitFeatures  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=320, help="WAV files to process (default 320)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device of the torch frontend")
    p.add_argument("--kinds", nargs="+", choices=("mel", "stft"), default=["mel", "stft"])
    p.add_argument("--batch", type=int, default=None,
                   help="clips per frontend batch (default: what fit uses, 16 on CPU, 128 on CUDA)")
    p.add_argument("--seconds", type=float, default=3.5, help="segment length in seconds (default 3.5)")
    p.add_argument("--repeats", type=int, default=7,
                   help="timed passes per path; the median is kept (default 7: a pass of C takes ~0.1 s on a CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--workdir", type=Path, default=default_workdir(), help="where the WAV files are kept")
    args = p.parse_args(argv)
    if args.clips < MIN_CLIPS:
        p.error(f"--clips must be at least {MIN_CLIPS} (8 synthetic speakers x 8 emotions)")
    if args.batch is None:
        args.batch = 128 if args.device == "cuda" else 16
    if args.batch < 1 or args.repeats < 1 or args.seconds <= 0:
        p.error("--batch and --repeats must be >= 1 and --seconds > 0")
    return args


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of `repeats` calls, each ended by a device sync."""
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def torch_features(frontend: torch.nn.Module, waves: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """Path C: the in-memory corpus on the device through fit's own feature path (SplitFeatures:
    batch by batch into one preallocated tensor, as fit fills its feature cache); the host copy
    is the caller's business."""
    return SplitFeatures(waves.to(device, non_blocking=True), frontend, None, batch=batch).spectrograms()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    root, files = synthetic_wav_corpus(args.workdir / f"wav48k-{args.clips}", args.clips)
    files = files[:args.clips]
    n = len(files)
    sr = 16000
    length = segment_length(sr, args.seconds)

    print(f"frontend benchmark: {n} WAV files (48 kHz 16-bit, synthetic speech) under {root}")
    print(f"  machine: {machine_summary(device)}")
    print(f"  segment {args.seconds} s at {sr} Hz, torch batch {args.batch}, median of {args.repeats} passes")

    # Decoded segments for B and C, produced the way each side produces them.
    decoded_np = np.stack([librosa_load(f, sr, length) for f in files])

    def ours_decode() -> np.ndarray:
        return np.stack([fix_length(decode_audio(f, sr, max_seconds=None).wave, length) for f in files])

    waves_host = torch.from_numpy(ours_decode())
    if device.type == "cuda":
        waves_host = waves_host.pin_memory()

    # The conventional paths first, for every kind: ser-search's side then sets the allocator
    # as fit does on a CPU (ser_core.fastpath.keep_freed_memory, process-wide), so librosa keeps
    # glibc's defaults.
    configs = {kind: FrontendConfig(kind=kind, sample_rate=sr) for kind in args.kinds}
    conventional: dict[str, tuple[float, float]] = {}
    for kind, cfg in configs.items():
        librosa_features(librosa_load(files[0], sr, length), cfg)  # warm-up: numba, FFT plans
        t_a = median_seconds(lambda cfg=cfg: [librosa_features(librosa_load(f, sr, length), cfg) for f in files],
                             args.repeats, device)
        t_b = median_seconds(lambda cfg=cfg: [librosa_features(y, cfg) for y in decoded_np], args.repeats, device)
        conventional[kind] = (t_a, t_b)
    if device.type == "cpu":
        keep_freed_memory()

    for kind, cfg in configs.items():
        t_a, t_b = conventional[kind]
        frontend = build_frontend(cfg).to(device)
        torch_features(frontend, waves_host[: args.batch], args.batch, device)  # warm-up: kernels
        t_c = median_seconds(lambda frontend=frontend: torch_features(frontend, waves_host, args.batch, device),
                             args.repeats, device)
        t_c1 = None
        if device.type == "cpu" and torch.get_num_threads() > 1:  # per core: librosa here uses one
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            t_c1 = median_seconds(lambda frontend=frontend: torch_features(frontend, waves_host, args.batch, device),
                                  args.repeats, device)
            torch.set_num_threads(threads)
        t_d = median_seconds(lambda frontend=frontend: torch_features(frontend, torch.from_numpy(ours_decode()),
                                                                      args.batch, device),
                             args.repeats, device)

        # Same output? (ours on our decode vs librosa on librosa's decode of the same files)
        ours = torch_features(frontend, waves_host, args.batch, device).float().cpu().numpy()
        ref = np.stack([librosa_features(y, cfg) for y in decoded_np])
        max_diff = float(np.max(np.abs(ours - ref)))

        label = {"mel": f"log-Mel ({cfg.n_mels} bins)", "stft": f"log-power STFT ({cfg.n_features} bins)"}[kind]
        print(f"\n{label}, n_fft {cfg.n_fft_resolved}, hop {cfg.hop_length}, {cfg.window} window; "
              f"max |ours - librosa| = {max_diff:.4f} dB")
        print(rate_line("A conventional per file: librosa.load + features", n, t_a))
        print(rate_line("B conventional per file: features from decoded audio", n, t_b))
        print(rate_line(f"C ser-search batched ({device.type}): features from in-memory tensor", n, t_c))
        if t_c1 is not None:
            print(rate_line("C1 the same, torch limited to 1 thread (per-core comparison)", n, t_c1))
        print(rate_line("D ser-search: decode_audio per file + batched features", n, t_d))
        ratios = [("C/B  features only, decoded audio on both sides (target >= 5x)", t_b / t_c)]
        if t_c1 is not None:
            ratios.append(("C1/B the same per core (1 torch thread vs librosa's 1 process)", t_b / t_c1))
        ratios += [("C/A  ser-search steady state vs conventional full path", t_a / t_c),
                   ("D/A  both including decoding", t_a / t_d)]
        for name, value in ratios:
            print(f"  ratio {name:<64} {value:5.1f}x")


if __name__ == "__main__":
    main()
