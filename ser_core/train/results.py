"""What a trial hands to whoever runs it: the per-epoch report, the final result, the error
that stops a trial, and what the loop needs of a corpus.

These are the contracts other packages read (search's trainable turns an EpochReport into a
Tune report and a FitResult into a row of results), so they sit apart from the code that fills
them: a reader of results needs none of the training loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import pandas as pd

from ..metrics import ClassificationReport
from ..protocols import EvaluationSplit


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


# Called after every epoch with the epoch's report and a function that returns the resumable
# checkpoint: a function, so that a caller that keeps no checkpoint this epoch pays for none.
EpochCallback = Callable[[EpochReport, Callable[[], dict[str, Any]]], None]


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
    # mean over folds of n_test / n_train clips: the folds' training sets overlap (Nadeau & Bengio
    # 2003); None = not known (a result built by hand), the uncorrected interval
    test_train_ratio: float | None = None

    def test_ua_interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """Nadeau & Bengio's corrected resampled t interval of the mean test UA over folds
        (df = folds - 1): se = sd * sqrt(1/k + n_test/n_train), not sd / sqrt(k), because every
        two folds' training sets share most of their speakers, so the k fold UAs are correlated
        and the plain t interval is too narrow (Nadeau & Bengio, "Inference for the generalization
        error", Machine Learning 52, 2003; Dietterich 1998). search's claims statistics
        (design_interval) use the same correction. (nan, nan) when there is no spread to build an
        interval on: fewer than two folds, or folds whose test UAs are all equal (up to rounding),
        which is a test set's granularity, not certainty (t_interval there answers the same case
        the same way); trials.parquet then holds nulls."""
        from scipy import stats  # noqa: PLC0415 - only cross-validated trials need it

        values = np.array([r.test.ua for r in self.per_fold], dtype=np.float64)
        if len(values) < 2:
            return math.nan, math.nan
        mean, sd = float(values.mean()), float(values.std(ddof=1))
        if sd <= 1e-12 * max(1.0, abs(mean)):  # all equal up to rounding (0.1 + 0.2 != 0.3)
            return math.nan, math.nan
        ratio = self.test_train_ratio or 0.0
        half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * sd * math.sqrt(1.0 / len(values) + ratio)
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
