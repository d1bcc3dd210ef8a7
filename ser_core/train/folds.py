"""Cross-validated selection inside one trial (data.folds): k fold runs in lockstep, selected
on the mean over them.

`FoldsRun` answers the same calls as one `FoldRun` (train an epoch, keep the best, record,
checkpoint, evaluate), so the one epoch loop (ser_core.train.loop) runs either: every fold
trains epoch e, the loop sees epoch e's MEAN over folds (train and validation loss, validation
UA and WA; each fold's validation UA in `val_ua_folds`; seconds summed), which is what ASHA and
TPE see. Each fold trains exactly as a single-fold trial would with `data.fold` = that fold and
the same seed: its own generator and its own stream of torch's random numbers (FoldRandomness).

The best epoch is the epoch with the best mean validation UA, the same epoch for every fold:
that is what selection saw. Each fold's weights at that epoch are evaluated once on its own
test fold; the result holds the per-fold figures and their means (FoldsResult). The resumable
checkpoint holds every fold's state, so a resumed trial continues exactly.

With `data.test_folds` (nested selection) the listed folds are validation folds: fold f's
run validates on f, trains on every fold that is neither f nor held out, and is tested on
the held-out folds, which no run ever trains or validates on.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from ..config import TrainConfig
from ..metrics import ClassificationReport
from .results import CorpusLike, EpochReport, FitResult, FoldsResult
from .run import FoldRun
from .setup import resolve_device
from .state import (BestEpoch, check_folds_state, fold_of_folds_state, folds_state, restore_fold_device_rng,
                    restore_folds_progress, rng_state, set_rng_state)


class FoldRandomness:
    """Each fold's own stream of torch's global random numbers (dropout, initialisation), so k
    folds stepped in turn draw what k separate `fit` calls would: a fold's state is swapped in
    before its work and saved after it."""

    def __init__(self, n: int) -> None:
        self.states: list[dict[str, Tensor | None] | None] = [None] * n

    @contextlib.contextmanager
    def of(self, i: int, device: torch.device) -> Iterator[None]:
        outside = rng_state(device)
        if self.states[i] is not None:
            set_rng_state(self.states[i], device)
        try:
            yield
        finally:
            self.states[i] = rng_state(device)
            set_rng_state(outside, device)


class FoldsRun:
    """The folds of `cfg.data.folds`, one FoldRun each, stepped in lockstep (module docstring)."""

    def __init__(self, cfg: TrainConfig, corpus: CorpusLike, resume: dict[str, Any] | None = None,
                 timings: dict[str, float] | None = None) -> None:
        self.folds = folds = tuple(cfg.data.folds)
        ratios = []
        for f in folds:  # every fold must form a split before any fold trains
            rows = corpus.evaluation_split(f, **cfg.data.protocol_args()).rows
            ratios.append(len(rows["test"]) / max(1, _original_clips(corpus, rows["train"])))
        self.test_train_ratio = float(np.mean(ratios))  # the interval's overlap correction (FoldsResult)
        check_folds_state(resume, folds)
        self.test_folds = None if cfg.data.test_folds is None else tuple(cfg.data.test_folds)
        self.device = device = resolve_device(cfg.device)
        self.rng = FoldRandomness(len(folds))
        self.runs: list[FoldRun] = []
        for i, f in enumerate(folds):
            fold_cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"fold": f, "folds": None})})
            with self.rng.of(i, device):
                self.runs.append(FoldRun(fold_cfg, corpus, fold_of_folds_state(resume, i), timings))
                restore_fold_device_rng(resume, i, device)
        self.history: list[EpochReport] = []  # the folds' means, epoch by epoch
        self.best = BestEpoch()
        self.start_epoch = 1
        if resume is not None:
            self.history, self.best, self.start_epoch = restore_folds_progress(resume)
        self.epoch = self.start_epoch - 1  # the last epoch trained
        self._fold_reports: list[EpochReport] = []

    def train_epoch(self, epoch: int) -> EpochReport:
        """Every fold's epoch, each in its own random stream; the report is their mean."""
        reports = []
        for i, run in enumerate(self.runs):
            with self.rng.of(i, self.device):
                reports.append(run.train_epoch(epoch))
        self._fold_reports, self.epoch = reports, epoch
        return EpochReport(epoch, float(np.mean([r.train_loss for r in reports])),
                           float(np.mean([r.val_loss for r in reports])), float(np.mean([r.val_ua for r in reports])),
                           float(np.mean([r.val_wa for r in reports])), float(sum(r.seconds for r in reports)),
                           val_ua_folds=tuple(r.val_ua for r in reports))

    def keep_best(self, epoch: int, score: float) -> None:
        """The mean's best epoch is every fold's: each keeps its weights of this epoch."""
        self.best = BestEpoch(ua=score, epoch=epoch)
        for run in self.runs:
            run.keep_best(epoch, score)

    def record(self, report: EpochReport) -> None:
        """The mean's report into this history, and each fold's own report into its run's, with
        the selection's (mean) best_val_ua."""
        for run, r in zip(self.runs, self._fold_reports):
            r.best_val_ua = report.best_val_ua
            run.record(r)
        self.history.append(report)

    def checkpoint(self) -> dict[str, Any]:
        """Every fold's resumable state, each taken in its own random stream (ser_core.train.state)."""
        states = []
        for i, run in enumerate(self.runs):
            with self.rng.of(i, self.device):
                states.append(run.checkpoint())
        return folds_state(self.epoch, self.folds, states, self.rng.states, self.history, self.best)

    def final_evaluation(self) -> FoldsResult:
        """Each fold's best weights on its own test fold, and their means."""
        return folds_result(self.folds, [run.final_evaluation() for run in self.runs], self.history, self.test_folds,
                            self.test_train_ratio)


def _original_clips(corpus: CorpusLike, rows: np.ndarray) -> int:
    """Training rows that are recorded clips, not the prepared corpus's noisy copies of them."""
    if "augmented" not in corpus.manifest.columns:
        return len(rows)
    return int((~corpus.manifest["augmented"].to_numpy(dtype=bool)[rows]).sum())


def mean_report(reports: list[ClassificationReport]) -> ClassificationReport:
    """Each metric's mean over folds, the confusion matrices summed (the folds' sets are disjoint)."""
    return ClassificationReport(
        **{k: float(np.mean([getattr(r, k) for r in reports]))
           for k in ("ua", "wa", "precision_macro", "recall_macro", "f1_macro")},
        confusion=np.sum([r.confusion for r in reports], axis=0))


def folds_result(folds: tuple[int, ...], per_fold: list[FitResult], history: list[EpochReport],
                 test_folds: tuple[int, ...] | None = None, test_train_ratio: float | None = None) -> FoldsResult:
    """The cross-validated trial's result from its folds' own (FoldsResult says what each field is)."""
    first = per_fold[0]
    return FoldsResult(
        labels=first.labels, best_epoch=first.best_epoch, epochs_run=len(history),
        val=mean_report([r.val for r in per_fold]), test=mean_report([r.test for r in per_fold]),
        compactness_val=float(np.mean([r.compactness_val for r in per_fold])),
        compactness_test=float(np.mean([r.compactness_test for r in per_fold])),
        train_seconds=float(sum(r.train_seconds for r in per_fold)), history=list(history),
        checkpoint=first.checkpoint, train_corpora=first.train_corpora, eval_corpora=first.eval_corpora,
        classes=first.classes, classes_dropped=first.classes_dropped, folds=folds, per_fold=per_fold,
        test_folds=test_folds, test_train_ratio=test_train_ratio)
