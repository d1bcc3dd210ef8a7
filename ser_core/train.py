"""Training and evaluating one trial, top to bottom.

`prepare_trial` sets up what a trial trains on: the split, the targets, and the spectrograms —
the raw spectrograms of every clip come from the node's shared cache (ser_core.feature_cache:
computed once per node and frontend, since the waveforms, noisy copies included, are fixed), the
normaliser is fitted on the training split (or per speaker), and every batch is gathered and
normalised with tensor ops. `fit` reads top to bottom: a FoldRun (the model, the loss, the
optimisers) and its epochs over index slices — no per-sample Python in an epoch. A callback
receives every epoch's metrics and can ask for a resumable checkpoint, so the same loop runs
under Ray Tune, in a test or from the CLI. `fit_folds` (data.folds) steps one FoldRun per fold
in lockstep and reports the folds' mean: cross-validated selection inside one trial.
"""
from __future__ import annotations

import contextlib
import copy
import ctypes
import ctypes.util
import gc
import math
import random
import sys
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Protocol

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .config import ModelConfig, TrainConfig
from .fastpath import accelerate, keep_freed_memory
from .feature_cache import cache_dir, cache_key, corpus_identity, open_or_build
from .features import (FeatureNormalizer, SpeakerNormalizer, build_frontend, group_statistics, num_frames,
                       row_moments, statistics_from_row_moments)
from .losses import LossFamily, build_loss, class_balanced_weights
from .metrics import ClassificationReport, classification_report, compactness, improves
from .models import MODELS
from .augment import BatchAugment
from .schedules import build_schedule, steps_per_epoch
from .protocols import EvaluationSplit


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the trial stops instead of training on garbage."""


class CorpusLike(Protocol):
    """What fit needs of a corpus: ser_core.corpus.PreparedCorpus, or the same arrays
    handed over by a scheduler (e.g. from a shared object store)."""

    waveforms: np.ndarray
    manifest: pd.DataFrame
    labels: tuple[str, ...]
    sample_rate: int

    def evaluation_split(self, fold: int = 0, *, train_corpora=None, eval_corpora=None,
                         leave_out=None, test_folds=None) -> EvaluationSplit: ...


@dataclass
class EpochReport:
    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_ua: float
    val_wa: float
    seconds: float
    best_val_ua: float = float("nan")  # best so far, what schedulers should compare
    val_ua_folds: tuple[float, ...] = ()  # a cross-validated trial (fit_folds): each fold's; val_ua is their mean
    final: "FitResult | None" = field(default=None, repr=False)  # set on the last epoch only


@dataclass
class FitResult:
    labels: tuple[str, ...]
    best_epoch: int
    epochs_run: int
    val: ClassificationReport
    test: ClassificationReport
    compactness_val: float
    compactness_test: float
    train_seconds: float
    history: list[EpochReport]
    checkpoint: dict[str, Any] = field(repr=False)  # best weights + everything predict needs
    train_corpora: tuple[str, ...] = ()
    eval_corpora: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()                 # the labels trained and scored on
    classes_dropped: dict[str, str] = field(default_factory=dict)  # cross-corpus: label -> why

    def metrics(self) -> dict[str, float]:
        out = {"best_epoch": self.best_epoch, "epochs_run": self.epochs_run,
               "compactness_val": self.compactness_val, "compactness_test": self.compactness_test,
               "train_seconds": self.train_seconds}
        out.update(self.val.as_dict("val"))
        out.update(self.test.as_dict("test"))
        return out

    def fold_metrics(self) -> dict[str, list]:
        """Per-fold values of a cross-validated trial (FoldsResult); none for one fold."""
        return {}


EpochCallback = Callable[[EpochReport, Callable[[], dict[str, Any]]], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def build_model(cfg: ModelConfig, n_features: int, num_classes: int) -> nn.Module:
    if cfg.name == "cnn_transformer":
        kwargs: dict[str, Any] = dict(d_model=cfg.d_model, n_heads=cfg.n_heads, n_layers=cfg.n_layers,
                                      ff_dim=cfg.ff_dim, dropout=cfg.dropout)
    else:
        kwargs = dict(rnn=cfg.rnn, rnn_hidden=cfg.rnn_hidden, rnn_layers=cfg.rnn_layers,
                      embed_dim=cfg.embed_dim, dropout=cfg.dropout)
    if cfg.channels is not None:
        kwargs["channels"] = tuple(cfg.channels)
        if cfg.name == "cnn_transformer":
            kwargs["pools"] = ((2, 2, 2, 4) + (2,) * 8)[: len(cfg.channels)]
    return MODELS[cfg.name](n_features, num_classes, **kwargs)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _valid_frames(corpus: CorpusLike, rows: np.ndarray, frontend_cfg, enabled: bool) -> Tensor | None:
    """True (unpadded) length in frames per row, when the manifest records it."""
    if not enabled or "valid_samples" not in corpus.manifest.columns:
        return None
    samples = corpus.manifest["valid_samples"].to_numpy()[rows]
    frames = [num_frames(frontend_cfg, int(s)) for s in samples]
    return torch.as_tensor(frames, dtype=torch.long)


class SplitFeatures:
    """One split's normalised spectrograms, indexable by a batch of positions.

    Cached: computed once on the device (the waveforms, noisy copies included, never change,
    so neither do their spectrograms) and sliced every epoch. Not cached: computed per batch
    from the split's waveform tensor, for corpora whose spectrograms would not fit."""

    def __init__(self, waves: Tensor, frontend: nn.Module, normalizer: "FeatureNormalizer | SpeakerNormalizer | None",
                 batch: int = 128, rows: Tensor | None = None) -> None:
        self.waves, self.frontend, self.normalizer, self.batch = waves, frontend, normalizer, batch
        self.rows = rows  # corpus row of each position: what a SpeakerNormalizer looks speakers up by
        self._raw: Tensor | None = None
        self.cache: Tensor | None = None

    def __len__(self) -> int:
        return len(self.waves) if self.cache is None else len(self.cache)

    @torch.no_grad()
    def raw_batches(self, lengths: Tensor | None, keep: bool):
        """Unnormalised spectrogram batches (with frame counts). With `keep`, the frontend writes
        each batch straight into one preallocated tensor for the cache: no list of batches to
        concatenate, so one copy of the split's features in memory, not three."""
        raw: Tensor | None = None
        for s in range(0, len(self.waves), self.batch):
            wave = self.waves[s:s + self.batch]
            if raw is None:
                f = self.frontend(wave)
                if keep:
                    raw = f.new_empty((len(self.waves), *f.shape[1:]))
                    f = raw[:len(f)].copy_(f)
            else:
                f = self.frontend(wave, out=raw[s:s + len(wave)])
            yield f if lengths is None else (f, lengths[s:s + self.batch])
        self._raw = raw

    @torch.no_grad()
    def spectrograms(self) -> Tensor:
        """Every row's unnormalised spectrogram in one tensor: what `raw_batches(keep=True)`
        filled, or filled now."""
        if self._raw is None:
            for _ in self.raw_batches(None, keep=True):
                pass
        return self._raw

    def _normalize(self, feats: Tensor, idx: Tensor | slice, inplace: bool = False) -> Tensor:
        if isinstance(self.normalizer, SpeakerNormalizer):
            return self.normalizer(feats, self.rows[idx], inplace=inplace)
        return self.normalizer(feats, inplace=inplace)

    @torch.no_grad()
    def build_cache(self) -> None:
        self.cache = self._normalize(self.spectrograms(), slice(None), inplace=True)
        self._raw, self.waves = None, None

    def __getitem__(self, idx: Tensor | slice) -> Tensor:
        if self.cache is not None:
            return self.cache[idx]
        with torch.no_grad():
            return self._normalize(self.frontend(self.waves[idx]), idx)


class RowFeatures:
    """One split's rows of the node's shared raw spectrograms (ser_core.feature_cache), normalised
    per batch: a gathered batch minus a mean vector, over a std vector (per speaker: the rows'
    speakers' vectors, gathered) — tensor ops on the batch, nothing per sample. With `on_device`
    the split's rows are copied to the device once and normalised there in place (a GPU trial
    whose features fit); otherwise every batch is gathered from the mapping, so the trials of a
    node share one copy of the features in the page cache."""

    def __init__(self, raw: Tensor, rows: Tensor, normalizer: "FeatureNormalizer | SpeakerNormalizer",
                 device: torch.device, on_device: bool, chunk: int = 256) -> None:
        self.raw, self.rows, self.normalizer, self.device = raw, rows, normalizer, device
        self.cache: Tensor | None = None
        if on_device:
            n_frames = raw.shape[1:]
            self.cache = torch.empty((len(rows), *n_frames), dtype=raw.dtype, device=device)
            for s in range(0, len(rows), chunk):
                part = self.cache[s:s + chunk]
                part.copy_(raw.index_select(0, rows[s:s + chunk]), non_blocking=False)
                self._normalize(part, rows[s:s + chunk], inplace=True)
            self.raw = None

    def _normalize(self, feats: Tensor, rows: Tensor, inplace: bool) -> Tensor:
        if isinstance(self.normalizer, SpeakerNormalizer):
            return self.normalizer(feats, rows, inplace=inplace)
        return self.normalizer(feats, inplace=inplace)

    def __len__(self) -> int:
        return len(self.rows)

    @torch.no_grad()
    def __getitem__(self, idx: Tensor | slice) -> Tensor:
        if self.cache is not None:
            return self.cache[idx]
        rows = self.rows[idx.cpu() if isinstance(idx, Tensor) else idx]
        batch = self.raw.index_select(0, rows)  # a fresh tensor: normalised in place
        if self.device.type != "cpu":
            batch = batch.to(self.device, non_blocking=True)
        return self._normalize(batch, rows, inplace=True)


def keep_on_device(setting: str, nbytes: int, device_type: str, free_bytes: int | None,
                   share: float = 0.25, cpu_limit: int = 2 * 1024**3) -> bool:
    """Whether a trial keeps its normalised features (`nbytes`) on its device for the whole run.

    A pure function of the setting, the sizes and the device's free memory (`free_bytes`, e.g.
    torch.cuda.mem_get_info's first value; None on CPU), so the CUDA decision is tested on CPU.
    "on"/"off" decide outright; "auto" keeps them on a GPU when they take under `share` of its
    free memory (packed trials share the GPU, and the model and activations need the rest), and
    in RAM on a CPU under `cpu_limit`."""
    if setting != "auto":
        return setting == "on"
    if device_type == "cuda":
        return free_bytes is not None and nbytes < share * free_bytes
    return nbytes < cpu_limit


def _use_feature_cache(setting: str, nbytes: int, device: torch.device) -> bool:
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" and setting == "auto" else None
    return keep_on_device(setting, nbytes, device.type, free)


@torch.no_grad()
def _predict(model: nn.Module, loss_fn: LossFamily, x: "SplitFeatures", y: Tensor, lengths: Tensor | None,
             batch: int, autocast, class_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(summed loss, predictions, embeddings) over a whole split."""
    model.eval()
    total, preds, embs = torch.zeros((), device=y.device), [], []
    for s in range(0, len(x), batch):
        lb = None if lengths is None else lengths[s:s + batch]
        with autocast():
            logits, z = model(x[s:s + batch], lb)
            loss = loss_fn(logits.float(), z.float(), y[s:s + batch])
        total += loss.detach() * len(logits)
        preds.append(logits.float().masked_fill(~class_mask, -math.inf).argmax(dim=1))
        embs.append(z.float())
    return total, torch.cat(preds), torch.cat(embs)


def _release_earlier_trials() -> None:
    """Give back what an earlier trial in this process left: a reused Ray actor runs trial after
    trial, and fastpath.keep_freed_memory makes glibc keep up to 1 GiB of freed heap (measured: a
    reused CPU actor's private memory grew 0.7 -> 2.3 GB over five trials without this). Objects
    in reference cycles are collected first, then the free heap is returned (malloc_trim)."""
    gc.collect()
    if sys.platform == "linux":
        try:
            ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


class _PhaseClock:
    """Seconds per setup phase into a caller's dict (nothing when it passed none)."""

    def __init__(self, into: dict[str, float] | None) -> None:
        self.into, self.t = into, time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        if self.into is not None:
            self.into[phase] = self.into.get(phase, 0.0) + now - self.t
        self.t = now


@dataclass
class TrialData:
    """Everything a trial trains on, ready on its device: what `prepare_trial` sets up before the
    first step (device, frontend, split, targets, class mask, spectrograms, normaliser, lengths)."""

    device: torch.device
    autocast: Callable[[], Any]          # bf16 autocast on CUDA when amp, a no-op context otherwise
    frontend_cfg: Any                    # the frontend config with the corpus's sample rate
    protocol: EvaluationSplit
    num_classes: int
    class_mask: Tensor                   # classes the protocol scores (cross-corpus: the shared ones)
    normalizer: FeatureNormalizer
    feats: dict[str, SplitFeatures]      # "train" / "val" / "test"
    ys: dict[str, Tensor]
    lens: dict[str, Tensor | None]       # true lengths in frames, None when fixed-length


def prepare_trial(cfg: TrainConfig, corpus: CorpusLike, timings: dict[str, float] | None = None) -> TrialData:
    """Set up one trial's tensors on its device; call after seeding (model init draws after it).
    `timings`, when given, receives each phase's seconds (what a trial pays before its first step)."""
    clock = _PhaseClock(timings)
    _release_earlier_trials()
    device = resolve_device(cfg.device)
    if cfg.fastpath and device.type == "cpu":
        keep_freed_memory()  # before the first large tensor: no page faults per step (fastpath.py)
    use_amp = cfg.amp and device.type == "cuda"
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp)  # noqa: E731

    frontend_cfg = cfg.frontend
    if "sample_rate" not in frontend_cfg.model_fields_set:
        frontend_cfg = type(frontend_cfg).model_validate(
            {**frontend_cfg.model_dump(), "sample_rate": corpus.sample_rate})
    elif frontend_cfg.sample_rate != corpus.sample_rate:
        raise ValueError(f"frontend.sample_rate={frontend_cfg.sample_rate} but the prepared corpus "
                         f"is at {corpus.sample_rate} Hz")

    protocol = corpus.evaluation_split(cfg.data.fold, **cfg.data.protocol_args())
    splits = dict(protocol.rows)
    if cfg.data.max_train_clips and len(splits["train"]) > cfg.data.max_train_clips:
        rng = np.random.default_rng(cfg.seed)
        splits["train"] = np.sort(rng.choice(splits["train"], cfg.data.max_train_clips, replace=False))
    targets = torch.as_tensor(corpus.manifest["label_id"].to_numpy(copy=True), dtype=torch.long)
    num_classes = len(corpus.labels)
    # Predictions are restricted to the classes the protocol uses (cross-corpus: the shared ones).
    class_mask = torch.as_tensor([lab in protocol.classes for lab in corpus.labels], device=device)
    clock.lap("protocol")

    frontend = build_frontend(frontend_cfg).to(device)
    ys, lens, lens_cpu = {}, {}, {}
    for name, rows in splits.items():
        ys[name] = targets[rows].to(device)
        lens_cpu[name] = _valid_frames(corpus, rows, frontend_cfg, cfg.variable_length)
        lens[name] = None if lens_cpu[name] is None else lens_cpu[name].to(device)
    n_frames = num_frames(frontend_cfg, corpus.waveforms.shape[1])
    nbytes = sum(len(r) for r in splits.values()) * frontend_cfg.n_features * n_frames * 4
    # Small frontend batches on CPU stay in cache (measured ~4x fewer page faults than 64).
    fbatch = 128 if device.type == "cuda" else 16
    normalizer = FeatureNormalizer(frontend_cfg.n_features).to(device)
    group_of_row = _speaker_groups(corpus) if cfg.normalization == "speaker" else None
    identity = None if cfg.feature_cache == "off" else corpus_identity(corpus)

    if identity is not None:
        # The node's raw spectrograms of every manifest row, computed once per node and mapped by
        # every trial (ser_core/feature_cache.py); each trial normalises its rows per batch.
        raw = torch.from_numpy(_shared_spectrograms(cfg, corpus, frontend_cfg, frontend, device, identity, fbatch))
        clock.lap("feature_cache")
        rows_t = {name: torch.as_tensor(rows, dtype=torch.long) for name, rows in splits.items()}
        # Statistics from the training split only, over each clip's real frames (not its padding),
        # merged from every row's cached moments (computed once per node, beside the spectrograms).
        n_rows, mean_rows, m2_rows = _shared_row_moments(cfg, corpus, frontend_cfg, raw, identity)
        train = rows_t["train"]
        normalizer.fit_row_moments(n_rows[train], mean_rows[train], m2_rows[train])
        norm = normalizer if group_of_row is None else _speaker_normalizer_from_moments(
            (n_rows, mean_rows, m2_rows), splits, corpus, group_of_row).to(device)
        clock.lap("normalizer")
        # On a GPU the trial's rows move to the device when they fit; on a CPU the shared mapping
        # already is RAM, and a private copy would be what sharing avoids.
        on_device = device.type != "cpu" and _use_feature_cache(cfg.feature_cache, nbytes, device)
        feats = {name: RowFeatures(raw, rows_t[name], norm, device, on_device) for name in splits}
        clock.lap("normalize")
    else:
        # No shared cache (feature_cache = "off", or a corpus without an identity): each split's
        # waveforms become one tensor on the device; spectrograms are computed there in batches,
        # once when they fit (then an epoch only slices them), else per batch.
        waves = {name: torch.from_numpy(np.ascontiguousarray(corpus.waveforms[rows])).to(device)
                 for name, rows in splits.items()}
        clock.lap("waveforms")
        cache = _use_feature_cache(cfg.feature_cache, nbytes, device)
        feats = {name: SplitFeatures(waves[name], frontend, normalizer, batch=fbatch,
                                     rows=torch.as_tensor(rows, dtype=torch.long, device=device))
                 for name, rows in splits.items()}
        # Statistics from the training split only, over each clip's real frames (not its padding).
        normalizer.fit(feats["train"].raw_batches(lens["train"], keep=cache))
        if group_of_row is not None:
            speaker_norm = _fit_speaker_normalizer(
                lambda name: _split_raw_batches(feats[name], lens_cpu[name], cache), splits, corpus, group_of_row,
                frontend_cfg.n_features).to(device)
            for f in feats.values():
                f.normalizer = speaker_norm
        clock.lap("spectrograms_and_normalizer")
        for name in ("val", "test"):
            if cache:
                feats[name].build_cache()
        if cache:
            feats["train"].build_cache()
            waves.clear()
        clock.lap("normalize")
    return TrialData(device=device, autocast=autocast, frontend_cfg=frontend_cfg, protocol=protocol,
                     num_classes=num_classes, class_mask=class_mask, normalizer=normalizer, feats=feats,
                     ys=ys, lens=lens)


def trained_split_features(cfg: TrainConfig, corpus: CorpusLike,
                           split: str = "test") -> tuple[SplitFeatures | RowFeatures, Tensor | None]:
    """(normalised features, frame counts or None) of one split's rows, in the protocol's row
    order, exactly as a trial trained with `cfg` saw them, set up on CPU. A checkpoint stores only
    the global normaliser; with normalization = "speaker" each row was standardised by its
    speaker's statistics over the trial's own splits, which are refit here the way training
    fitted them (prepare_trial itself), so a reader of a checkpoint never re-implements that."""
    # fastpath off: its malloc tuning is for a training process, and it changes no feature maths
    data = prepare_trial(cfg.model_copy(update={"device": "cpu", "fastpath": False}), corpus)
    if split not in data.feats:
        raise ValueError(f"no split {split!r} in the trial's protocol (it has {sorted(data.feats)})")
    return data.feats[split], data.lens[split]


def _shared_spectrograms(cfg: TrainConfig, corpus: CorpusLike, frontend_cfg, frontend: nn.Module,
                         device: torch.device, identity: dict[str, Any], batch: int) -> np.ndarray:
    """Every manifest row's raw spectrogram from the node's cache, computed here (on this trial's
    device, batch by batch into the cache file) when no trial on this node has yet."""
    waves = corpus.waveforms
    shape = (len(waves), frontend_cfg.n_features, num_frames(frontend_cfg, waves.shape[1]))

    @torch.no_grad()
    def fill(out: np.ndarray) -> None:
        for s in range(0, len(waves), batch):
            wave = torch.from_numpy(np.array(waves[s:s + batch], dtype=np.float32)).to(device)  # a copy: mapped read-only
            if device.type == "cpu":
                frontend(wave, out=torch.from_numpy(out[s:s + len(wave)]))
            else:
                out[s:s + len(wave)] = frontend(wave).float().cpu().numpy()

    key = cache_key(frontend_cfg.model_dump(mode="json"), identity)
    arr, _ = open_or_build(cache_dir(getattr(corpus, "root", None), cfg.feature_cache_dir), key, shape, fill)
    return arr


def _shared_row_moments(cfg: TrainConfig, corpus: CorpusLike, frontend_cfg, raw: Tensor,
                        identity: dict[str, Any], batch: int = 64) -> tuple[Tensor, Tensor, Tensor]:
    """Every manifest row's (frames, mean, M2) over its real frames, from the node's cache beside
    the spectrograms (ser_core/feature_cache.py), computed here from `raw` when no trial on this
    node has yet. The frames are this config's (variable_length), so they are part of the key."""
    n_all = len(raw)
    lengths = _valid_frames(corpus, np.arange(n_all), frontend_cfg, cfg.variable_length)
    n_rows = (torch.full((n_all,), float(raw.shape[2]), dtype=torch.float64) if lengths is None
              else lengths.to(torch.float64).clamp(0, raw.shape[2]))

    def fill(out: np.ndarray) -> None:
        for s in range(0, n_all, batch):
            _, mean_r, m2_r = row_moments(raw[s:s + batch], n_rows[s:s + batch])
            out[s:s + len(mean_r), 0] = mean_r.numpy()
            out[s:s + len(mean_r), 1] = m2_r.numpy()

    key = {**cache_key(frontend_cfg.model_dump(mode="json"), identity), "row_moments": "real frames" if
           lengths is not None else "all frames"}
    arr, _ = open_or_build(cache_dir(getattr(corpus, "root", None), cfg.feature_cache_dir), key,
                           (n_all, 2, raw.shape[1]), fill, dtype=np.float64)
    moments = torch.from_numpy(arr)
    return n_rows, moments[:, 0], moments[:, 1]


def _speaker_normalizer_from_moments(moments: tuple[Tensor, Tensor, Tensor], splits: dict[str, np.ndarray],
                                     corpus: CorpusLike, group_of_row: np.ndarray) -> SpeakerNormalizer:
    """`_fit_speaker_normalizer`'s statistics (each speaker's ORIGINAL clips in the trial's splits)
    merged from the rows' cached moments."""
    rows = np.concatenate(list(splits.values()))
    groups = torch.from_numpy(_statistics_groups(rows, corpus, group_of_row))
    idx = torch.from_numpy(rows.astype(np.int64))
    mean, std, _ = statistics_from_row_moments(*(t[idx] for t in moments), groups, _n_speakers(group_of_row))
    return SpeakerNormalizer(mean, std, torch.from_numpy(group_of_row))


def _statistics_groups(rows: np.ndarray, corpus: CorpusLike, group_of_row: np.ndarray) -> np.ndarray:
    """Which speaker's statistics each of `rows` shapes: -1 for a noisy copy, which is normalised
    with its source speaker's statistics but does not shape them."""
    augmented = corpus.manifest["augmented"].to_numpy(dtype=bool) if "augmented" in corpus.manifest.columns \
        else np.zeros(len(corpus.manifest), dtype=bool)
    return np.where(augmented[rows], -1, group_of_row[rows])


def _n_speakers(group_of_row: np.ndarray) -> int:
    return int(group_of_row.max()) + 1 if len(group_of_row) else 0


def _split_raw_batches(feats: SplitFeatures, lengths: Tensor | None, keep: bool):
    """A split's raw spectrogram batches with frame counts: slices of what a kept pass already
    computed, else a pass of the frontend (kept when the split's features are cached)."""
    if feats._raw is not None:
        for s in range(0, len(feats._raw), feats.batch):
            yield feats._raw[s:s + feats.batch], None if lengths is None else lengths[s:s + feats.batch]
        return
    for item in feats.raw_batches(lengths, keep=keep):
        yield item if lengths is not None else (item, None)


def _speaker_groups(corpus: CorpusLike) -> np.ndarray:
    """Each manifest row's speaker as an index (manifest speakers are unique across corpora)."""
    if "speaker" not in corpus.manifest.columns:
        raise ValueError("normalization = \"speaker\" needs a 'speaker' column in the prepared manifest")
    codes, _ = pd.factorize(corpus.manifest["speaker"].astype(str), sort=True)
    return codes.astype(np.int64)


def _fit_speaker_normalizer(batches_of: Callable[[str], Any], splits: dict[str, np.ndarray], corpus: CorpusLike,
                            group_of_row: np.ndarray, n_features: int) -> SpeakerNormalizer:
    """Per-speaker statistics over each speaker's ORIGINAL clips in this trial's splits (train,
    validation and test: no labels read); noisy copies are normalised with their source speaker's
    statistics but do not shape them, so a training speaker's statistics are taken exactly as an
    evaluation speaker's are."""

    def items():
        for name, rows in splits.items():
            groups = _statistics_groups(rows, corpus, group_of_row)
            offset = 0
            for feats, lengths in batches_of(name):
                yield feats, lengths, torch.from_numpy(groups[offset:offset + len(feats)])
                offset += len(feats)

    mean, std, _ = group_statistics(items(), _n_speakers(group_of_row), n_features)
    return SpeakerNormalizer(mean, std, torch.from_numpy(group_of_row))


def fit(cfg: TrainConfig, corpus: CorpusLike, on_epoch: EpochCallback | None = None,
        resume: dict[str, Any] | None = None, timings: dict[str, float] | None = None) -> FitResult:
    """Train one configuration; the best epoch by validation UA is evaluated on test.
    `timings` receives the seconds of each setup phase before the first epoch (prepare_trial's,
    then "model": model, loss, optimisers and the resumed state). With `data.folds` the trial is
    cross-validated: `fit_folds` trains every listed fold and returns a FoldsResult."""
    if cfg.data.folds:
        return fit_folds(cfg, corpus, on_epoch, resume, timings)
    run = FoldRun(cfg, corpus, resume, timings)
    for epoch in range(run.start_epoch, cfg.optim.epochs + 1):
        report = run.train_epoch(epoch)
        if improves(report.val_ua, run.best["ua"]):
            run.keep_best(epoch, report.val_ua)
        report.best_val_ua = run.best["ua"]
        run.history.append(report)
        if epoch == cfg.optim.epochs:
            report.final = run.final_evaluation()
        if on_epoch is not None:
            on_epoch(report, run.checkpoint)
    return run.result(cfg.optim.epochs, start_epoch=run.start_epoch)


class FoldRun:
    """One fold's training, split into its state and its epoch step, so that `fit` runs one
    fold epoch by epoch and `fit_folds` advances several in lockstep inside one trial.

    The constructor is the setup, in the order a reader follows it: the seed, the trial's tensors
    (prepare_trial), the model, the loss, the optimisers, the schedule, the weight average, then
    the resumed state. `train_epoch` trains one epoch and validates; which epoch is best is the
    caller's decision (`keep_best`): a single fold selects on its own validation UA, a
    cross-validated trial on the mean over its folds."""

    def __init__(self, cfg: TrainConfig, corpus: CorpusLike, resume: dict[str, Any] | None = None,
                 timings: dict[str, float] | None = None) -> None:
        self.cfg, self.corpus = cfg, corpus
        self.gen = gen = seed_everything(cfg.seed)
        self.data = data = prepare_trial(cfg, corpus, timings)
        t_model = time.perf_counter()
        device, frontend_cfg, class_mask = data.device, data.frontend_cfg, data.class_mask
        num_classes, ys = data.num_classes, data.ys

        # channels-last convolutions: 1.2x per CPU step (max-pool stops dominating), tensor cores on GPU
        model = build_model(cfg.model, frontend_cfg.n_features, num_classes).to(device, memory_format=torch.channels_last)
        if cfg.fastpath:  # same maths, cheaper kernels (ser_core/fastpath.py says which and why)
            accelerate(model)
        # The recipe's targets: label smoothing over the protocol's classes, class weights from the
        # training split's counts (ser_core.losses says what each family does with them).
        class_weights = (class_balanced_weights(ys["train"], num_classes) if cfg.optim.class_weights == "balanced"
                         else None)
        loss_fn = build_loss(cfg.loss.family, num_classes=num_classes, embed_dim=model.embed_dim,
                             label_smoothing=cfg.optim.label_smoothing, class_weights=class_weights,
                             active_classes=class_mask.cpu(), **cfg.loss.params()).to(device)
        params = list(model.parameters()) + list(loss_fn.model_parameters())
        opt_cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}[cfg.optim.name]
        opt_kwargs: dict[str, Any] = {"lr": cfg.optim.lr, "weight_decay": cfg.optim.weight_decay}
        if cfg.optim.name == "sgd":
            opt_kwargs["momentum"] = 0.9
        optimizer = opt_cls(params, **opt_kwargs)
        center_opt = loss_fn.center_optimizer()
        n_train = len(ys["train"])
        # Stepped after every optimizer step; None = constant lr, the optimizer left alone (schedules.py).
        scheduler = build_schedule(optimizer, cfg.optim.schedule, epochs=cfg.optim.epochs,
                                   steps_per_epoch=steps_per_epoch(n_train, cfg.optim.batch_size),
                                   warmup_epochs=cfg.optim.warmup_epochs,
                                   step_epochs=cfg.optim.step_epochs, step_gamma=cfg.optim.step_gamma)
        # Exponential moving average of the weights (and BatchNorm statistics), updated every step:
        # what validation, model selection, test and the checkpoint use when on (Polyak & Juditsky 1992).
        ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema_decay), use_buffers=True)
               if cfg.optim.ema_decay > 0 else None)
        self.model, self.loss_fn, self.params, self.optimizer, self.center_opt = model, loss_fn, params, optimizer, center_opt
        self.scheduler, self.ema = scheduler, ema
        self.eval_model = model if ema is None else ema.module
        self.augment = BatchAugment.from_config(cfg.augment)  # training batches only; all off = never called

        self.history: list[EpochReport] = []
        self.best: dict[str, Any] = {"ua": -1.0, "epoch": 0, "state": None}
        self._val_outputs: tuple[Tensor, Tensor] | None = None  # the last epoch's validation predictions, embeddings
        self.start_epoch = 1
        self.epoch = 0  # the last epoch trained
        if resume is not None:
            model.load_state_dict(resume["model"])
            loss_fn.load_state_dict(resume["loss"])
            optimizer.load_state_dict(resume["optimizer"])
            if center_opt is not None and resume.get("center_optimizer") is not None:
                center_opt.load_state_dict(resume["center_optimizer"])
            for what, live in (("scheduler", scheduler), ("ema", ema)):
                if live is not None:
                    if resume.get(what) is None:
                        raise ValueError(f"cannot resume: the checkpoint of epoch {resume['epoch']} has no {what} "
                                         f"state, but the config uses one (optim.schedule / optim.ema_decay)")
                    live.load_state_dict(resume[what])
            self.history = [EpochReport(**h) for h in resume["history"]]
            self.best = {"ua": resume["best_ua"], "epoch": resume["best_epoch"], "state": resume["best_state"]}
            gen.set_state(resume["generator"])
            # torch's global streams (dropout): the CPU's and, on a GPU, the device's own; a
            # checkpoint written before the device's was kept has only "torch_rng"
            _set_rng_state(resume.get("rng") or {"torch": resume["torch_rng"]}, device)
            self.start_epoch = resume["epoch"] + 1
            self.epoch = resume["epoch"]

        if timings is not None:
            timings["model"] = timings.get("model", 0.0) + time.perf_counter() - t_model
        self.train_seconds = sum(h.seconds for h in self.history)

    def train_epoch(self, epoch: int) -> EpochReport:
        """One epoch over the training split in the generator's order, then validation: the
        epoch's own figures (best_val_ua is the caller's to set)."""
        cfg, data, gen = self.cfg, self.data, self.gen
        model, loss_fn, params, optimizer, center_opt = self.model, self.loss_fn, self.params, self.optimizer, self.center_opt
        scheduler, ema, augment, autocast = self.scheduler, self.ema, self.augment, data.autocast
        feats, ys, lens, device = data.feats, data.ys, data.lens, data.device
        bs, n_train = cfg.optim.batch_size, len(ys["train"])
        t0 = time.perf_counter()
        model.train()
        loss_fn.train()
        perm = torch.randperm(n_train, generator=gen).to(device)
        loss_sum = torch.zeros((), device=device)
        for s in range(0, n_train, bs):
            idx = perm[s:s + bs]
            if len(idx) < 2:  # BatchNorm needs two samples; a lone tail sample waits for next epoch
                continue
            lb = None if lens["train"] is None else lens["train"][idx]
            with autocast():
                xb, yb, soft = feats["train"][idx], ys["train"][idx], None
                if augment.enabled:  # batched, from the trial's generator (ser_core.augment)
                    xb, lb, soft = augment(xb, lb, yb, data.num_classes, gen)
                logits, z = model(xb, lb)
                loss = loss_fn(logits.float(), z.float(), yb, soft)
            optimizer.zero_grad(set_to_none=True)
            if center_opt is not None:
                center_opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip:
                nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            optimizer.step()
            if center_opt is not None:
                loss_fn.before_center_step()
                center_opt.step()
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            loss_sum += loss.detach() * len(idx)
        train_loss = float(loss_sum) / n_train  # the epoch's one host sync
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(
                f"non-finite training loss ({train_loss}) in epoch {epoch} with loss family "
                f"{cfg.loss.family!r}, lr={cfg.optim.lr}; the trial was stopped"
            )
        val_sum, val_pred, val_z = _predict(self.eval_model, loss_fn, feats["val"], ys["val"], lens["val"], 256,
                                            autocast, data.class_mask)
        self._val_outputs = (val_pred, val_z)  # if keep_best keeps this epoch, the final validation figures
        val_rep = classification_report(ys["val"].cpu().numpy(), val_pred.cpu().numpy(), data.num_classes)
        seconds = time.perf_counter() - t0
        self.train_seconds += seconds
        self.epoch = epoch
        return EpochReport(epoch, train_loss, float(val_sum) / len(ys["val"]), val_rep.ua, val_rep.wa, seconds)

    def keep_best(self, epoch: int, score: float) -> None:
        """Remember the weights validation scored (the average's with optim.ema_decay) as the best
        so far; `score` is what selection compares (a cross-validated trial: the folds' mean)."""
        self.best = {"ua": score, "epoch": epoch, "state": _cpu_state(self.eval_model),
                     "val_outputs": self._val_outputs}

    def checkpoint(self) -> dict[str, Any]:
        """The resumable state after the last epoch trained."""
        model, loss_fn, optimizer, center_opt = self.model, self.loss_fn, self.optimizer, self.center_opt
        return {
            "epoch": self.epoch, "model": _cpu_state(model), "loss": _cpu_state(loss_fn),
            # deep copies: optimizer state dicts alias the live moment tensors
            "optimizer": copy.deepcopy(optimizer.state_dict()),
            "center_optimizer": None if center_opt is None else copy.deepcopy(center_opt.state_dict()),
            "history": [_history_row(h) for h in self.history], "best_ua": self.best["ua"],
            "best_epoch": self.best["epoch"], "best_state": self.best["state"],
            "generator": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
            "rng": _rng_state(self.data.device),  # with the device's generator (CUDA dropout draws from it)
            "scheduler": None if self.scheduler is None else copy.deepcopy(self.scheduler.state_dict()),
            "ema": None if self.ema is None else _cpu_state(self.ema),
        }

    def final_evaluation(self) -> FitResult:
        """The best epoch's weights on validation and test (test is read only here)."""
        d = self.data
        return _final_evaluation(self.cfg, self.corpus, d.frontend_cfg, self.eval_model, self.loss_fn, d.normalizer,
                                 self.best, d.feats, d.ys, d.lens, self.history, self.train_seconds, d.autocast,
                                 d.protocol, d.class_mask)

    def result(self, epochs: int, start_epoch: int) -> FitResult:
        if not self.history or self.history[-1].final is None:
            raise RuntimeError(f"nothing to train: resumed at epoch {start_epoch} of {epochs}")
        return self.history[-1].final


# ---------------------------------------------------------------- cross-validated selection

@dataclass
class FoldsResult(FitResult):
    """A cross-validated trial (data.folds): every fold's own FitResult in `per_fold`, each
    evaluated at the one epoch selection chose for all of them. The inherited figures are the
    means over folds (val/test: each metric's mean, the confusion matrices summed, since the
    folds' test sets are disjoint, and so are their validation sets); `checkpoint` is the first
    fold's best weights (a model `predict` can load; each fold's is in `per_fold`)."""

    folds: tuple[int, ...] = ()
    per_fold: list[FitResult] = field(default_factory=list, repr=False)
    # data.test_folds: every fold's run tested on the same held-out folds, so the per-fold test
    # figures are k models on one test set (no fold-level interval), not k test sets
    test_folds: tuple[int, ...] | None = None

    def test_ua_interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """Student t interval of the mean test UA over folds (df = folds - 1): how far the
        k folds' speakers let the estimate move. (nan, nan) when there is no spread to build an
        interval on: fewer than two folds, or folds whose test UAs are all equal (up to rounding),
        which is a test set's granularity, not certainty (search/claims/stats.py::t_interval
        answers the same case the same way); trials.parquet then holds nulls."""
        from scipy import stats  # noqa: PLC0415 - only cross-validated trials need it

        values = np.array([r.test.ua for r in self.per_fold], dtype=np.float64)
        if len(values) < 2:
            return math.nan, math.nan
        mean, sd = float(values.mean()), float(values.std(ddof=1))
        if sd <= 1e-12 * max(1.0, abs(mean)):  # all equal up to rounding (0.1 + 0.2 != 0.3)
            return math.nan, math.nan
        half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * sd / math.sqrt(len(values))
        return float(mean - half), float(mean + half)

    def metrics(self) -> dict[str, float]:
        if self.test_folds is not None:  # one held-out test set: its speakers give no fold-level interval
            return super().metrics() | {"test_ua_ci95_low": math.nan, "test_ua_ci95_high": math.nan}
        low, high = self.test_ua_interval()
        return super().metrics() | {"test_ua_ci95_low": low, "test_ua_ci95_high": high}

    def fold_metrics(self) -> dict[str, list]:
        """Each fold's run's figures, in `folds` order: what the claims pair fold by fold."""
        per = self.per_fold
        return {"folds": list(self.folds), "val_ua_folds": [r.val.ua for r in per],
                "test_ua_folds": [r.test.ua for r in per], "test_wa_folds": [r.test.wa for r in per],
                "test_f1_macro_folds": [r.test.f1_macro for r in per],
                "test_precision_macro_folds": [r.test.precision_macro for r in per],
                "test_recall_macro_folds": [r.test.recall_macro for r in per],
                "compactness_test_folds": [r.compactness_test for r in per]}


def _mean_report(reports: list[ClassificationReport]) -> ClassificationReport:
    return ClassificationReport(
        **{k: float(np.mean([getattr(r, k) for r in reports]))
           for k in ("ua", "wa", "precision_macro", "recall_macro", "f1_macro")},
        confusion=np.sum([r.confusion for r in reports], axis=0))


def _rng_state(device: torch.device) -> dict[str, Tensor | None]:
    """torch's global random state: the CPU generator's and, on a CUDA device, that device's
    (dropout and randn on the GPU draw from the device's generator, not the CPU's)."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _set_rng_state(state: dict[str, Tensor | None], device: torch.device) -> None:
    """Restore what `_rng_state` returned. A CUDA state is restored only on a CUDA device: a
    trial moved to the CPU keeps its CPU stream, and its GPU draws are not comparable anyway."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


class _FoldRandomness:
    """Each fold's own stream of torch's global random numbers (dropout, initialisation), so k
    folds stepped in turn draw what k separate `fit` calls would: a fold's state is swapped in
    before its work and saved after it."""

    def __init__(self, n: int) -> None:
        self.states: list[dict[str, Tensor | None] | None] = [None] * n

    @contextlib.contextmanager
    def of(self, i: int, device: torch.device):
        outside = _rng_state(device)
        if self.states[i] is not None:
            _set_rng_state(self.states[i], device)
        try:
            yield
        finally:
            self.states[i] = _rng_state(device)
            _set_rng_state(outside, device)


def fit_folds(cfg: TrainConfig, corpus: CorpusLike, on_epoch: EpochCallback | None = None,
              resume: dict[str, Any] | None = None, timings: dict[str, float] | None = None) -> FoldsResult:
    """Train one configuration once per fold of `cfg.data.folds`, the folds in lockstep: every
    fold trains epoch e, then `on_epoch` gets epoch e's MEAN over folds (train and validation
    loss, validation UA and WA; each fold's validation UA in `val_ua_folds`; seconds summed), which
    is what ASHA and TPE see. Each fold trains exactly as `fit` would with `data.fold` = that fold
    and the same seed (its own generator and its own stream of torch's random numbers).

    The best epoch is the epoch with the best mean validation UA, the same epoch for every fold:
    that is what selection saw. Each fold's weights at that epoch are evaluated once on its own
    test fold; the result holds the per-fold figures and their means (FoldsResult). The
    resumable checkpoint holds every fold's state, so a resumed trial continues exactly.

    With `data.test_folds` (nested selection) the listed folds are validation folds: fold f's
    run validates on f, trains on every fold that is neither f nor held out, and is tested on
    the held-out folds, which no run ever trains or validates on."""
    folds = tuple(cfg.data.folds)
    for f in folds:  # every fold must form a split before any fold trains
        corpus.evaluation_split(f, **cfg.data.protocol_args())
    if resume is not None and tuple(resume.get("folds", ())) != folds:
        raise ValueError(f"cannot resume: the checkpoint is of folds {list(resume.get('folds', ()))}, "
                         f"the config lists data.folds = {list(folds)}")
    fold_cfgs = [cfg.model_copy(update={"data": cfg.data.model_copy(update={"fold": f, "folds": None})})
                 for f in folds]
    device = resolve_device(cfg.device)
    rng = _FoldRandomness(len(folds))
    runs: list[FoldRun] = []
    for i, fold_cfg in enumerate(fold_cfgs):
        with rng.of(i, device):
            runs.append(FoldRun(fold_cfg, corpus, None if resume is None else resume["fold_states"][i], timings))
            if resume is not None and resume["cuda_rng"][i] is not None and device.type == "cuda":
                torch.cuda.set_rng_state(resume["cuda_rng"][i], device)

    history = [] if resume is None else [EpochReport(**h) for h in resume["history"]]
    best = {"ua": -1.0, "epoch": 0} if resume is None else {"ua": resume["best_ua"], "epoch": resume["best_epoch"]}
    start_epoch = 1 if resume is None else resume["epoch"] + 1
    for epoch in range(start_epoch, cfg.optim.epochs + 1):
        reports = []
        for i, run in enumerate(runs):
            with rng.of(i, device):
                reports.append(run.train_epoch(epoch))
        mean_ua = float(np.mean([r.val_ua for r in reports]))
        if improves(mean_ua, best["ua"]):
            best = {"ua": mean_ua, "epoch": epoch}
            for run in runs:
                run.keep_best(epoch, mean_ua)
        for run, r in zip(runs, reports):
            r.best_val_ua = best["ua"]  # in a fold's own history: the selection's (mean) score
            run.history.append(r)
        report = EpochReport(epoch, float(np.mean([r.train_loss for r in reports])),
                             float(np.mean([r.val_loss for r in reports])), mean_ua,
                             float(np.mean([r.val_wa for r in reports])), float(sum(r.seconds for r in reports)),
                             best_val_ua=best["ua"], val_ua_folds=tuple(r.val_ua for r in reports))
        history.append(report)

        def checkpoint(epoch: int = epoch, best: dict[str, Any] = best) -> dict[str, Any]:
            states = []
            for i, run in enumerate(runs):
                with rng.of(i, device):
                    states.append(run.checkpoint())
            return {"epoch": epoch, "folds": list(folds), "fold_states": states,
                    "cuda_rng": [s["cuda"] for s in rng.states],
                    "history": [_history_row(h) for h in history], "best_ua": best["ua"], "best_epoch": best["epoch"]}

        if epoch == cfg.optim.epochs:
            report.final = _folds_result(folds, [run.final_evaluation() for run in runs], history,
                                         None if cfg.data.test_folds is None else tuple(cfg.data.test_folds))
        if on_epoch is not None:
            on_epoch(report, checkpoint)
    if not history or history[-1].final is None:
        raise RuntimeError(f"nothing to train: resumed at epoch {start_epoch} of {cfg.optim.epochs}")
    return history[-1].final


def _folds_result(folds: tuple[int, ...], per_fold: list[FitResult], history: list[EpochReport],
                  test_folds: tuple[int, ...] | None = None) -> FoldsResult:
    first = per_fold[0]
    return FoldsResult(
        labels=first.labels, best_epoch=first.best_epoch, epochs_run=len(history),
        val=_mean_report([r.val for r in per_fold]), test=_mean_report([r.test for r in per_fold]),
        compactness_val=float(np.mean([r.compactness_val for r in per_fold])),
        compactness_test=float(np.mean([r.compactness_test for r in per_fold])),
        train_seconds=float(sum(r.train_seconds for r in per_fold)), history=list(history),
        checkpoint=first.checkpoint, train_corpora=first.train_corpora, eval_corpora=first.eval_corpora,
        classes=first.classes, classes_dropped=first.classes_dropped, folds=folds, per_fold=per_fold,
        test_folds=test_folds)


def _history_row(h: EpochReport) -> dict[str, Any]:
    return {f.name: getattr(h, f.name) for f in fields(h) if f.name != "final"}


def _final_evaluation(cfg, corpus, frontend_cfg, model, loss_fn, normalizer, best, feats, ys, lens,
                      history, train_seconds, autocast, protocol: EvaluationSplit, class_mask: Tensor) -> FitResult:
    """Evaluate the best epoch's weights on validation and test (test is read only here); with
    optim.ema_decay those are the moving average's weights, which `model` is then."""
    num_classes = len(corpus.labels)
    model.load_state_dict(best["state"])
    if best.get("val_outputs") is not None:  # the best epoch's own validation pass, on these same weights
        val_pred, val_z = best["val_outputs"]
    else:  # a best epoch from a resumed checkpoint: its outputs were not kept
        _, val_pred, val_z = _predict(model, loss_fn, feats["val"], ys["val"], lens["val"], 256, autocast, class_mask)
    _, test_pred, test_z = _predict(model, loss_fn, feats["test"], ys["test"], lens["test"], 256, autocast,
                                    class_mask)
    yv, yt = ys["val"].cpu().numpy(), ys["test"].cpu().numpy()
    return FitResult(
        labels=tuple(corpus.labels),
        best_epoch=best["epoch"],
        epochs_run=len(history),
        val=classification_report(yv, val_pred.cpu().numpy(), num_classes),
        test=classification_report(yt, test_pred.cpu().numpy(), num_classes),
        compactness_val=compactness(val_z.cpu().numpy(), yv),
        compactness_test=compactness(test_z.cpu().numpy(), yt),
        train_seconds=train_seconds,
        history=list(history),
        checkpoint={
            "format": 1,
            "config": cfg.model_dump(mode="json"),
            "frontend": frontend_cfg.model_dump(mode="json"),
            "labels": list(corpus.labels),
            "classes": list(protocol.classes),
            "model": best["state"],
            "normalizer": _cpu_state(normalizer),
            "segment_samples": int(corpus.waveforms.shape[1]),
            "best_epoch": best["epoch"],
        },
        train_corpora=protocol.train_corpora,
        eval_corpora=protocol.eval_corpora,
        classes=protocol.classes,
        classes_dropped=dict(protocol.dropped),
    )


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def save_checkpoint(state: dict[str, Any], path) -> None:
    torch.save(state, path)


def load_checkpoint(path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)
