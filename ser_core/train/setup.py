"""Setting up one trial before its first step: the device, the seed, the model, and every
tensor it trains on (`prepare_trial`).

What prepare_trial sets up: the split, the targets, and the spectrograms. The raw spectrograms
of every clip come from the node's shared cache (ser_core.feature_cache: computed once per node
and frontend, since the waveforms, noisy copies included, are fixed; .spectrograms), the
normaliser is fitted on the training split (or per speaker; .speakers), and every batch is
gathered and normalised with tensor ops (.split_features). Nothing here trains: a reader of a
checkpoint (ser_core.predict, the dashboard's embeddings) and the cost model use this module
without the training loop.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import random
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..config import ModelConfig, TrainConfig
from ..fastpath import keep_freed_memory
from ..feature_cache import corpus_identity
from ..features import FeatureNormalizer, FrontendConfig, build_frontend, num_frames
from ..models import MODELS, UTTERANCE_MODELS, FusedClassifier
from ..protocols import EvaluationSplit
from .results import CorpusLike
from .spectrograms import functional_row_moments, shared_row_moments, shared_spectrograms, shared_utterance_vectors
from .speakers import fit_speaker_normalizer, speaker_groups, speaker_normalizer_from_moments
from .split_features import RowFeatures, SplitFeatures, use_feature_cache, valid_frames


def resolve_device(name: str) -> torch.device:
    """The torch device a config's `device` names ("auto": CUDA when there is one)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def build_model(cfg: ModelConfig, n_features: int, num_classes: int, layers: int = 1) -> nn.Module:
    """The model a config names, with the CNN-Transformer's pooling fitted to custom channels.
    `layers`: the frontend's stacked encoder layers (FrontendConfig.layers), summed with learnt
    weights by the utterance classifiers. With model.fuse_functionals the spectrogram model's
    embedding is joined with the clip's functionals (FusedClassifier)."""
    if cfg.fuse_functionals != "off":
        deep = build_model(cfg.model_copy(update={"fuse_functionals": "off"}), n_features, num_classes, layers)
        return FusedClassifier(deep, fused_functionals_config(cfg).n_features, num_classes,
                               hidden=cfg.fuse_hidden, dropout=cfg.dropout)
    if cfg.name in UTTERANCE_MODELS:  # the baselines' classifiers: dropout, and the MLP's width
        kwargs_head: dict[str, Any] = {"dropout": cfg.dropout, "layers": layers}
        if cfg.name == "mlp":
            kwargs_head["hidden"] = cfg.embed_dim
        return MODELS[cfg.name](n_features, num_classes, **kwargs_head)
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


def fused_functionals_config(cfg: ModelConfig, sample_rate: int | None = None) -> FrontendConfig:
    """The functionals frontend whose output a fused model reads beside its spectrogram."""
    return FrontendConfig.model_validate({"kind": cfg.fuse_functionals}
                                         | ({"sample_rate": sample_rate} if sample_rate else {}))


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's, numpy's and torch's global streams, and return the trial's own generator
    (the batch order and augmentation draw from it, so they do not depend on the model's draws)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


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
    feats: dict[str, SplitFeatures | RowFeatures]  # "train" / "val" / "test"
    ys: dict[str, Tensor]
    lens: dict[str, Tensor | None]       # true lengths in frames, None when fixed-length
    # model.fuse_functionals: each split's standardised functionals, read beside its spectrograms,
    # and their global standardisation (the training split's statistics: what a checkpoint keeps)
    functionals: dict[str, RowFeatures] | None = None
    functionals_normalizer: FeatureNormalizer | None = None


def fused_functionals(cfg: TrainConfig, corpus: CorpusLike, splits: dict[str, np.ndarray],
                      group_of_row: np.ndarray | None, identity: dict[str, Any] | None,
                      device: torch.device) -> tuple[dict[str, RowFeatures], FeatureNormalizer]:
    """Each split's functionals for a fused model (model.fuse_functionals), standardised as the
    functionals frontend's are: on the training split's statistics, or per speaker with
    normalization = "speaker"; and the global standardisation. From the node's cache like every
    utterance vector."""
    fcfg = fused_functionals_config(cfg.model, corpus.sample_rate)
    raw = torch.from_numpy(shared_utterance_vectors(cfg, corpus, fcfg, identity, device))
    n_rows, mean_rows, m2_rows = functional_row_moments(raw)
    rows_t = {name: torch.as_tensor(rows, dtype=torch.long) for name, rows in splits.items()}
    train = rows_t["train"]
    global_norm = FeatureNormalizer(fcfg.n_features)
    global_norm.fit_row_moments(n_rows[train], mean_rows[train], m2_rows[train])
    norm = global_norm if group_of_row is None else speaker_normalizer_from_moments(
        (n_rows, mean_rows, m2_rows), splits, corpus, group_of_row)
    norm = norm.to(device)
    return ({name: RowFeatures(raw, rows_t[name], norm, device, device.type != "cpu") for name in splits},
            global_norm)


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
        lens_cpu[name] = valid_frames(corpus, rows, frontend_cfg, cfg.variable_length)
        lens[name] = None if lens_cpu[name] is None else lens_cpu[name].to(device)
    n_frames = num_frames(frontend_cfg, corpus.waveforms.shape[1])
    nbytes = sum(len(r) for r in splits.values()) * frontend_cfg.n_features * n_frames * 4
    # Small frontend batches on CPU stay in cache (measured ~4x fewer page faults than 64).
    fbatch = 128 if device.type == "cuda" else 16
    normalizer = FeatureNormalizer(frontend_cfg.n_features).to(device)
    group_of_row = speaker_groups(corpus) if cfg.normalization == "speaker" else None
    identity = None if cfg.feature_cache == "off" else corpus_identity(corpus)

    feats: dict[str, SplitFeatures | RowFeatures]
    if identity is not None or frontend_cfg.utterance:
        # The node's raw spectrograms of every manifest row, computed once per node and mapped by
        # every trial (ser_core/feature_cache.py); each trial normalises its rows per batch.
        # Utterance vectors (openSMILE's functionals, an SSL encoder's layer means) always come this
        # way, as one frame per row (cached with an identity, else computed here): they are small,
        # and both read each clip's speech only.
        raw = torch.from_numpy(
            shared_utterance_vectors(cfg, corpus, frontend_cfg, identity, device) if frontend_cfg.utterance
            else shared_spectrograms(cfg, corpus, frontend_cfg, frontend, device, identity, fbatch))
        clock.lap("feature_cache")
        rows_t = {name: torch.as_tensor(rows, dtype=torch.long) for name, rows in splits.items()}
        # Statistics from the training split only, over each clip's real frames (not its padding),
        # merged from every row's cached moments (computed once per node, beside the spectrograms).
        n_rows, mean_rows, m2_rows = (functional_row_moments(raw) if frontend_cfg.utterance
                                      else shared_row_moments(cfg, corpus, frontend_cfg, raw, identity))
        train = rows_t["train"]
        normalizer.fit_row_moments(n_rows[train], mean_rows[train], m2_rows[train])
        norm = normalizer if group_of_row is None else speaker_normalizer_from_moments(
            (n_rows, mean_rows, m2_rows), splits, corpus, group_of_row).to(device)
        clock.lap("normalizer")
        # On a GPU the trial's rows move to the device when they fit; on a CPU the shared mapping
        # already is RAM, and a private copy would be what sharing avoids.
        on_device = device.type != "cpu" and use_feature_cache(cfg.feature_cache, nbytes, device)
        feats = {name: RowFeatures(raw, rows_t[name], norm, device, on_device) for name in splits}
        clock.lap("normalize")
    else:
        # No shared cache (feature_cache = "off", or a corpus without an identity): each split's
        # waveforms become one tensor on the device; spectrograms are computed there in batches,
        # once when they fit (then an epoch only slices them), else per batch.
        waves = {name: torch.from_numpy(np.ascontiguousarray(corpus.waveforms[rows])).to(device)
                 for name, rows in splits.items()}
        clock.lap("waveforms")
        cache = use_feature_cache(cfg.feature_cache, nbytes, device)
        split_feats = {name: SplitFeatures(waves[name], frontend, normalizer, batch=fbatch,
                                           rows=torch.as_tensor(rows, dtype=torch.long, device=device))
                       for name, rows in splits.items()}
        # Statistics from the training split only, over each clip's real frames (not its padding).
        normalizer.fit(split_feats["train"].raw_batches(lens["train"], keep=cache))
        if group_of_row is not None:
            speaker_norm = fit_speaker_normalizer(
                lambda name: split_feats[name].raw_batches_with_lengths(lens_cpu[name], cache), splits, corpus,
                group_of_row, frontend_cfg.n_features).to(device)
            for f in split_feats.values():
                f.normalizer = speaker_norm
        clock.lap("spectrograms_and_normalizer")
        for name in ("val", "test"):
            if cache:
                split_feats[name].build_cache()
        if cache:
            split_feats["train"].build_cache()
            waves.clear()
        clock.lap("normalize")
        feats = dict(split_feats)
    functionals, functionals_norm = None, None
    if cfg.model.fuse_functionals != "off":
        functionals, functionals_norm = fused_functionals(cfg, corpus, splits, group_of_row, identity, device)
        clock.lap("functionals")
    return TrialData(device=device, autocast=autocast, frontend_cfg=frontend_cfg, protocol=protocol,
                     num_classes=num_classes, class_mask=class_mask, normalizer=normalizer, feats=feats,
                     ys=ys, lens=lens, functionals=functionals, functionals_normalizer=functionals_norm)


def trained_split_features(cfg: TrainConfig, corpus: CorpusLike,
                           split: str = "test") -> tuple[SplitFeatures | RowFeatures, Tensor | None]:
    """(normalised features, frame counts or None): `trained_split_inputs` without a fused
    model's functionals."""
    feats, lengths, _ = trained_split_inputs(cfg, corpus, split)
    return feats, lengths


def trained_split_inputs(cfg: TrainConfig, corpus: CorpusLike, split: str = "test"
                         ) -> tuple[SplitFeatures | RowFeatures, Tensor | None, RowFeatures | None]:
    """(normalised features, frame counts or None, a fused model's functionals or None) of one
    split's rows, in the protocol's row order, exactly as a trial trained with `cfg` saw them, set
    up on CPU. A checkpoint stores only the global normaliser; with normalization = "speaker"
    each row was standardised by its speaker's statistics over the trial's own splits, which are
    refit here the way training fitted them (prepare_trial itself), so a reader of a checkpoint
    never re-implements that."""
    # fastpath off: its malloc tuning is for a training process, and it changes no feature maths
    data = prepare_trial(cfg.model_copy(update={"device": "cpu", "fastpath": False}), corpus)
    if split not in data.feats:
        raise ValueError(f"no split {split!r} in the trial's protocol (it has {sorted(data.feats)})")
    return data.feats[split], data.lens[split], None if data.functionals is None else data.functionals[split]
