"""Training and evaluating one trial, top to bottom.

`fit` is the whole story of a trial: load the prepared corpus as one tensor, turn it into
spectrograms in batches on the trial's device (once: the waveforms are fixed, noisy copies
included, so the features are too), fit the per-frequency normaliser on the training split,
then train with index slices of that tensor — no per-sample Python in an epoch. A callback
receives every epoch's metrics and can ask for a resumable checkpoint, so the same loop runs
under Ray Tune, in a test or from the CLI.
"""
from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Protocol

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .config import ModelConfig, TrainConfig
from .fastpath import accelerate, keep_freed_memory
from .features import FeatureNormalizer, build_frontend, num_frames
from .losses import LossFamily, build_loss
from .metrics import ClassificationReport, classification_report, compactness
from .models import MODELS
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
                         leave_out=None) -> EvaluationSplit: ...


@dataclass
class EpochReport:
    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_ua: float
    val_wa: float
    seconds: float
    best_val_ua: float = float("nan")  # best so far, what schedulers should compare
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

    def __init__(self, waves: Tensor, frontend: nn.Module, normalizer: FeatureNormalizer | None,
                 batch: int = 128) -> None:
        self.waves, self.frontend, self.normalizer, self.batch = waves, frontend, normalizer, batch
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

    @torch.no_grad()
    def build_cache(self) -> None:
        self.cache = self.normalizer(self.spectrograms(), inplace=True)
        self._raw, self.waves = None, None

    def __getitem__(self, idx: Tensor | slice) -> Tensor:
        if self.cache is not None:
            return self.cache[idx]
        with torch.no_grad():
            return self.normalizer(self.frontend(self.waves[idx]))


def _use_feature_cache(setting: str, nbytes: int, device: torch.device) -> bool:
    if setting != "auto":
        return setting == "on"
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes < 0.25 * free  # packed trials share the GPU
    return nbytes < 2 * 1024**3


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


def fit(cfg: TrainConfig, corpus: CorpusLike, on_epoch: EpochCallback | None = None,
        resume: dict[str, Any] | None = None) -> FitResult:
    """Train one configuration; the best epoch by validation UA is evaluated on test."""
    gen = seed_everything(cfg.seed)
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

    # Each split's waveforms become one tensor on the device; spectrograms are computed there in
    # batches, once when they fit (then an epoch only slices them), else per batch.
    frontend = build_frontend(frontend_cfg).to(device)
    ys, lens, waves = {}, {}, {}
    for name, rows in splits.items():
        waves[name] = torch.from_numpy(np.ascontiguousarray(corpus.waveforms[rows])).to(device)
        ys[name] = targets[rows].to(device)
        lf = _valid_frames(corpus, rows, frontend_cfg, cfg.variable_length)
        lens[name] = None if lf is None else lf.to(device)
    n_frames = num_frames(frontend_cfg, corpus.waveforms.shape[1])
    cache = _use_feature_cache(cfg.feature_cache, sum(len(r) for r in splits.values()) * frontend_cfg.n_features
                               * n_frames * 4, device)
    normalizer = FeatureNormalizer(frontend_cfg.n_features).to(device)
    # Small frontend batches on CPU stay in cache (measured ~4x fewer page faults than 64).
    fbatch = 128 if device.type == "cuda" else 16
    feats = {name: SplitFeatures(waves[name], frontend, normalizer, batch=fbatch) for name in splits}
    # Statistics from the training split only, over each clip's real frames (not its padding).
    normalizer.fit(feats["train"].raw_batches(lens["train"], keep=cache))
    for name in ("val", "test"):
        if cache:
            feats[name].build_cache()
    if cache:
        feats["train"].build_cache()
        waves.clear()

    # channels-last convolutions: 1.2x per CPU step (max-pool stops dominating), tensor cores on GPU
    model = build_model(cfg.model, frontend_cfg.n_features, num_classes).to(device, memory_format=torch.channels_last)
    if cfg.fastpath:  # same maths, cheaper kernels (ser_core/fastpath.py says which and why)
        accelerate(model)
    loss_fn = build_loss(cfg.loss.family, num_classes=num_classes, embed_dim=model.embed_dim,
                         **cfg.loss.params()).to(device)
    params = list(model.parameters()) + list(loss_fn.model_parameters())
    opt_cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}[cfg.optim.name]
    opt_kwargs: dict[str, Any] = {"lr": cfg.optim.lr, "weight_decay": cfg.optim.weight_decay}
    if cfg.optim.name == "sgd":
        opt_kwargs["momentum"] = 0.9
    optimizer = opt_cls(params, **opt_kwargs)
    center_opt = loss_fn.center_optimizer()

    history: list[EpochReport] = []
    best = {"ua": -1.0, "epoch": 0, "state": None}
    start_epoch = 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        loss_fn.load_state_dict(resume["loss"])
        optimizer.load_state_dict(resume["optimizer"])
        if center_opt is not None and resume.get("center_optimizer") is not None:
            center_opt.load_state_dict(resume["center_optimizer"])
        history = [EpochReport(**h) for h in resume["history"]]
        best = {"ua": resume["best_ua"], "epoch": resume["best_epoch"], "state": resume["best_state"]}
        gen.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])
        start_epoch = resume["epoch"] + 1

    bs = cfg.optim.batch_size
    n_train = len(ys["train"])
    train_seconds = sum(h.seconds for h in history)
    for epoch in range(start_epoch, cfg.optim.epochs + 1):
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
                logits, z = model(feats["train"][idx], lb)
                loss = loss_fn(logits.float(), z.float(), ys["train"][idx])
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
            loss_sum += loss.detach() * len(idx)
        train_loss = float(loss_sum) / n_train  # the epoch's one host sync
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(
                f"non-finite training loss ({train_loss}) in epoch {epoch} with loss family "
                f"{cfg.loss.family!r}, lr={cfg.optim.lr}; the trial was stopped"
            )
        val_sum, val_pred, _ = _predict(model, loss_fn, feats["val"], ys["val"], lens["val"], 256, autocast,
                                           class_mask)
        val_rep = classification_report(ys["val"].cpu().numpy(), val_pred.cpu().numpy(), num_classes)
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        if val_rep.ua > best["ua"]:
            best = {"ua": val_rep.ua, "epoch": epoch, "state": _cpu_state(model)}
        report = EpochReport(epoch, train_loss, float(val_sum) / len(ys["val"]), val_rep.ua, val_rep.wa,
                             seconds, best_val_ua=best["ua"])
        history.append(report)

        def checkpoint(epoch: int = epoch) -> dict[str, Any]:
            return {
                "epoch": epoch, "model": _cpu_state(model), "loss": _cpu_state(loss_fn),
                # deep copies: optimizer state dicts alias the live moment tensors
                "optimizer": copy.deepcopy(optimizer.state_dict()),
                "center_optimizer": None if center_opt is None else copy.deepcopy(center_opt.state_dict()),
                "history": [_history_row(h) for h in history], "best_ua": best["ua"],
                "best_epoch": best["epoch"], "best_state": best["state"],
                "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
            }

        if epoch == cfg.optim.epochs:
            report.final = _final_evaluation(cfg, corpus, frontend_cfg, model, loss_fn, normalizer, best,
                                             feats, ys, lens, history, train_seconds, autocast, protocol,
                                             class_mask)
        if on_epoch is not None:
            on_epoch(report, checkpoint)

    if not history or history[-1].final is None:
        raise RuntimeError(f"nothing to train: resumed at epoch {start_epoch} of {cfg.optim.epochs}")
    return history[-1].final


def _history_row(h: EpochReport) -> dict[str, Any]:
    return {f.name: getattr(h, f.name) for f in fields(h) if f.name != "final"}


def _final_evaluation(cfg, corpus, frontend_cfg, model, loss_fn, normalizer, best, feats, ys, lens,
                      history, train_seconds, autocast, protocol: EvaluationSplit, class_mask: Tensor) -> FitResult:
    """Evaluate the best epoch's weights on validation and test (test is read only here)."""
    num_classes = len(corpus.labels)
    model.load_state_dict(best["state"])
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
