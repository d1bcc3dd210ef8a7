"""One training epoch of ser-search vs the conventional SER training pipeline.

Why: the claim is that a sweep trial spends its time training the model, not re-reading audio.
Both sides train the CNN-Transformer of the paper (ser_core.models.CNNTransformer, its default
size: 4 conv blocks 16-64 channels, 4 Transformer layers d 64, ff 512) with Adam (lr 1e-3), batch
32, float32, on 64-bin log-Mel features of 3.5 s clips at 16 kHz, on the same WAV files on disk
(synthetic speech written at 48 kHz, 16-bit PCM) and the same split: 80/10/10 stratified
(the paper's), the training clips tripled by two Gaussian-noise copies at 20 dB SNR.

  ser-search    ser_core.train.fit on a corpus prepared once (decode, resample, trim, noisy
                copies: `prepare`); fit computes all spectrograms on the device once and an epoch
                slices batches from that tensor, training with ser_core.fastpath's equivalents of
                the stock modules. Prepare time and feature-caching time are one-time setup,
                reported separately and excluded from the epoch.
  stock modules the same fit with `fastpath = false`: the stock PyTorch modules and allocator,
                so the ratio splits into what the data path gives and what the fast path gives.
  conventional  a torch Dataset that per item loads the WAV with librosa (decode + resample),
                trims silence, cuts/pads to 3.5 s, adds the noise for augmented copies and
                computes the log-Mel with librosa; a DataLoader with 2 worker processes, each
                limited to one BLAS thread (without that they oversubscribe the cores and the
                baseline gets slower: --naive-workers); the same model class, batch size and
                optimiser; every epoch pays all of it again.

An epoch on both sides = one pass over the training rows + scoring the validation clips (fit's
epoch does both, so the conventional loop does both too). Printed: seconds per epoch,
training clips per second and the ratio. fit's final test evaluation is not part of an epoch.
Order: conventional, stock modules, ser-search, all in this process; the fast path's allocator
setting is process-wide, so it runs last and the other two keep glibc's defaults.

    python benchmarks/epoch.py [--clips 320] [--seconds 3.5] [--device cpu|cuda] [--epochs 1]
    python benchmarks/epoch.py --full     # the paper's corpus size: 4,720 clips x 3 (long on a CPU)
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (  # noqa: E402
    PAPER_CLIPS, default_workdir, librosa_features, machine_summary, resolve_device, sync,
    synthetic_wav_corpus, timer)
from ser_core.audio import add_noise, segment_length  # noqa: E402
from ser_core.config import TrainConfig  # noqa: E402
from ser_core.corpus import PreparedCorpus  # noqa: E402
from ser_core.features import FrontendConfig, build_frontend, num_frames  # noqa: E402
from ser_core.labels import EMOTIONS  # noqa: E402
from ser_core.metrics import classification_report  # noqa: E402
from ser_core.models import CNNTransformer  # noqa: E402
from ser_core.prepare import PrepareOptions, prepare_corpora  # noqa: E402
from ser_core.train import EpochReport, fit  # noqa: E402

SAMPLE_RATE = 16000
TRIM_TOP_DB = 30.0
SNR_DB = 20.0
LR = 1e-3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=320, help="source WAV files (default 320)")
    p.add_argument("--full", action="store_true", help=f"the paper's corpus size: --clips {PAPER_CLIPS}")
    p.add_argument("--seconds", type=float, default=3.5, help="segment length in seconds (default 3.5)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--epochs", type=int, default=1, help="timed epochs per pipeline (default 1)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--amp", action="store_true",
                   help="let ser-search use its bf16 autocast on CUDA (default: fp32 on both sides)")
    p.add_argument("--workers", type=int, default=2, help="conventional DataLoader workers (default 2)")
    p.add_argument("--naive-workers", action="store_true",
                   help="leave the workers' BLAS thread pools at their default size (oversubscribes the cores; "
                        "by default each worker is limited to one BLAS thread, the stronger baseline)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=default_workdir(),
                   help="where WAV files and the prepared corpus are kept")
    args = p.parse_args(argv)
    if args.full:
        args.clips = PAPER_CLIPS
    if args.clips < 10 * len(EMOTIONS):
        p.error(f"--clips must be at least {10 * len(EMOTIONS)}: the 80/10/10 split needs 10 clips per emotion")
    if args.epochs < 1 or args.batch < 2 or args.workers < 0 or args.seconds <= 0:
        p.error("--epochs must be >= 1, --batch >= 2, --workers >= 0, --seconds > 0")
    return args


# ----------------------------------------------------------------------------- conventional side


class LibrosaClips(Dataset):
    """The conventional per-item pipeline: every __getitem__ reads and processes one file."""

    def __init__(self, paths: list[str], labels: np.ndarray, noisy: np.ndarray, segment_samples: int,
                 frontend: FrontendConfig) -> None:
        self.paths, self.labels, self.noisy = paths, labels, noisy
        self.segment_samples = segment_samples
        self.frontend = frontend

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        y, _ = librosa.load(self.paths[i], sr=SAMPLE_RATE, mono=True)
        y, _ = librosa.effects.trim(y=y, top_db=TRIM_TOP_DB)
        y = y[: self.segment_samples]
        if self.noisy[i]:
            y = add_noise(y, SNR_DB, np.random.default_rng())
        y = librosa.util.fix_length(data=y, size=self.segment_samples)
        db = librosa_features(y, self.frontend)
        # Per-utterance standardisation per Mel bin, the usual choice without a fitted normaliser.
        db = (db - db.mean(axis=1, keepdims=True)) / (db.std(axis=1, keepdims=True) + 1e-5)
        return torch.from_numpy(db.astype(np.float32)), int(self.labels[i])


def one_blas_thread(_worker_id: int) -> None:
    """DataLoader workers already run torch single-threaded; numpy/scipy's OpenBLAS pools do
    not, and 2 workers x 2 BLAS threads + the training process oversubscribe 2 cores
    (measured: the conventional epoch runs ~1.3x faster with this limit)."""
    threadpool_limits(1)


def clips_of(corpus: PreparedCorpus, rows: np.ndarray, segment_samples: int, frontend: FrontendConfig) -> LibrosaClips:
    """The same rows fit trains on, as (source file, label, noisy copy?) items."""
    m = corpus.manifest.iloc[rows]
    return LibrosaClips(m["path"].tolist(), m["label_id"].to_numpy(), m["augmented"].to_numpy(dtype=bool),
                        segment_samples, frontend)


def conventional_epochs(args: argparse.Namespace, corpus: PreparedCorpus, device: torch.device,
                        frontend: FrontendConfig) -> tuple[list[tuple[float, float]], float]:
    """[(train seconds, val seconds)] per epoch and the last epoch's validation UA."""
    torch.manual_seed(args.seed)
    splits = corpus.split_indices(0)
    length = segment_length(SAMPLE_RATE, args.seconds)
    train_ds = clips_of(corpus, splits["train"], length, frontend)
    val_ds = clips_of(corpus, splits["val"], length, frontend)
    train_ds[0]  # warm-up in the parent (imports, caches); forked workers inherit it
    loader = dict(batch_size=args.batch, num_workers=args.workers, pin_memory=device.type == "cuda",
                  worker_init_fn=None if args.naive_workers else one_blas_thread)
    train_dl = DataLoader(train_ds, shuffle=True, **loader)
    val_dl = DataLoader(val_ds, shuffle=False, **loader)

    model = CNNTransformer(frontend.n_features, corpus.num_classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    times, ua = [], float("nan")
    for _ in range(args.epochs):
        model.train()
        with timer() as t_train:
            for x, y in train_dl:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                logits, _ = model(x)
                loss = F.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sync(device)
        model.eval()
        preds, truth = [], []
        with timer() as t_val, torch.no_grad():
            for x, y in val_dl:
                preds.append(model(x.to(device))[0].argmax(dim=1).cpu())
                truth.append(y)
            sync(device)
        times.append((t_train(), t_val()))
        ua = classification_report(torch.cat(truth).numpy(), torch.cat(preds).numpy(), corpus.num_classes).ua
    return times, ua


# ----------------------------------------------------------------------------- ser-search side


def ours_epochs(args: argparse.Namespace, prepared: Path, corpus: PreparedCorpus,
                fastpath: bool = True) -> tuple[list[float], float, float]:
    """fit's per-epoch seconds, the rest of fit's wall time (one-time work: features cached on the
    device, normaliser, model build, final val/test evaluation) and the last validation UA."""
    cfg = TrainConfig.model_validate({
        "data": {"prepared": str(prepared)},
        "frontend": {"kind": "mel", "n_mels": 64},
        "model": {"name": "cnn_transformer"},
        "loss": {"family": "cross_entropy"},
        "optim": {"name": "adam", "lr": LR, "weight_decay": 0.0, "batch_size": args.batch,
                  "epochs": args.epochs, "grad_clip": None},
        "device": args.device, "seed": args.seed, "amp": args.amp, "fastpath": fastpath,
    })
    reports: list[EpochReport] = []
    with timer() as total:
        fit(cfg, corpus, on_epoch=lambda report, _state: reports.append(report))
    epochs = [r.seconds for r in reports]
    return epochs, total() - sum(epochs), reports[-1].val_ua


def feature_caching_seconds(corpus: PreparedCorpus, frontend: FrontendConfig, device: torch.device) -> float:
    """What fit's setup spends on spectrograms: the frontend over every row, in fit's batches."""
    module = build_frontend(frontend).to(device)
    with timer() as t, torch.inference_mode():
        for s in range(0, len(corpus), 64):
            module(torch.from_numpy(np.array(corpus.waveforms[s:s + 64])).to(device))
        sync(device)
    return t()


def warm_up_kernels(device: torch.device, n_features: int, num_classes: int, batch: int, frames: int) -> None:
    """Two untimed training steps of a throwaway stock model of the benchmark's shapes, so that
    the conventional side, which trains first, does not pay for oneDNN's first builds of the
    convolution kernels for all three. The fast path's own kernels are not warmed here, which
    counts against ser-search."""
    model = CNNTransformer(n_features, num_classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = torch.randn(batch, n_features, frames, device=device), torch.arange(batch, device=device) % num_classes
    for _ in range(2):
        loss = F.cross_entropy(model(x)[0], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    frontend = FrontendConfig(kind="mel", n_mels=64, sample_rate=SAMPLE_RATE)

    with timer() as t_gen:
        root, files = synthetic_wav_corpus(args.workdir / f"wav48k-{args.clips}", args.clips, seed=args.seed)
    prepared = args.workdir / f"prepared-{len(files)}-{args.seconds:g}s"
    with timer() as t_prep:
        prepare_corpora({"synthetic": root}, prepared,
                        PrepareOptions(sample_rate=SAMPLE_RATE, segment_seconds=args.seconds, trim_top_db=TRIM_TOP_DB,
                                       protocol="utterance", augment_copies=2, augment_snr_db=SNR_DB, seed=args.seed),
                        progress=False, overwrite=True)
    corpus = PreparedCorpus.load(prepared)
    splits = corpus.split_indices(0)
    n_train, n_val = len(splits["train"]), len(splits["val"])
    n_params = sum(p.numel() for p in CNNTransformer(frontend.n_features, corpus.num_classes).parameters())

    print(f"epoch benchmark: {len(files)} WAV files (48 kHz 16-bit synthetic speech, {root}; "
          f"generated/reused in {t_gen():.1f} s)")
    print(f"  machine: {machine_summary(device)}")
    precision = "bf16 autocast for ser-search" if args.amp and device.type == "cuda" else "fp32"
    print(f"  per epoch: {n_train} training rows ({n_train // 3} clips + 2 noisy copies each), "
          f"{n_val} validation clips; {args.seconds} s at {SAMPLE_RATE} Hz, 64-bin log-Mel, batch {args.batch}, "
          f"CNNTransformer ({n_params / 1e3:.0f} k parameters), Adam, {precision}, {args.epochs} epoch(s) each")

    warm_up_kernels(device, frontend.n_features, corpus.num_classes, args.batch,
                    num_frames(frontend, corpus.waveforms.shape[1]))
    conv, conv_ua = conventional_epochs(args, corpus, device, frontend)
    stock, _, stock_ua = ours_epochs(args, prepared, corpus, fastpath=False)
    epochs, fit_rest, ours_ua = ours_epochs(args, prepared, corpus)
    caching = feature_caching_seconds(corpus, frontend, device)

    ours_s, stock_s = statistics.mean(epochs), statistics.mean(stock)
    conv_s = statistics.mean(tr + va for tr, va in conv)
    conv_train = statistics.mean(tr for tr, _ in conv)
    print("\none-time setup of ser-search (not in the epoch figures):")
    print(f"  prepare: decode + resample + trim + noisy copies, {len(files)} files -> {len(corpus)} rows"
          f"{t_prep():9.1f} s")
    print(f"  feature caching: log-Mel of all {len(corpus)} rows on {device.type}, batches as fit does"
          f"{caching:9.1f} s")
    print(f"  all of fit outside its epochs: feature caching, normaliser, model, final val + test"
          f"{fit_rest:9.1f} s")
    print(f"\nper epoch = the training rows + scoring the validation clips, mean of {args.epochs} epoch(s):")
    print(f"  {'':<46}{'s/epoch':>9}{'train clips/s':>15}{'val UA':>8}")
    star = "" if args.naive_workers else "*"
    for name, sec, ua in (("ser-search: fit on the prepared corpus", ours_s, ours_ua),
                          ("ser-search with stock modules (fastpath off)", stock_s, stock_ua),
                          (f"conventional: librosa Dataset, {args.workers} workers{star}", conv_s, conv_ua)):
        print(f"  {name:<46}{sec:9.1f}{n_train / sec:15.1f}{ua:8.3f}")
    if args.epochs > 1:
        print(f"  epochs (s): ser-search {', '.join(f'{e:.1f}' for e in epochs)}; "
              f"stock modules {', '.join(f'{e:.1f}' for e in stock)}; "
              f"conventional {', '.join(f'{tr + va:.1f}' for tr, va in conv)}")
    print(f"  (conventional training pass alone: {n_train / conv_train:.1f} clips/s)")
    if star:
        print("  * each worker limited to one BLAS thread (threadpoolctl); --naive-workers leaves the defaults")
    print(f"  of which: data path (stock modules / conventional) {conv_s / stock_s:.2f}x, "
          f"fast path (ser-search / stock modules) {stock_s / ours_s:.2f}x")
    print(f"  ratio ser-search / conventional (epoch time): {conv_s / ours_s:.2f}x")


if __name__ == "__main__":
    main()
