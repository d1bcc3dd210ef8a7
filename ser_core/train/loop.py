"""`fit`: one trial, from its configuration to its result, epoch by epoch.

The loop reads top to bottom: set the run up (one fold, or the folds of a cross-validated
trial: ser_core.train.run, .folds), then per epoch train, select, record, evaluate at the end,
and hand the epoch to the callback. The callback receives every epoch's metrics and can ask
for a resumable checkpoint, so the same loop runs under Ray Tune, in a test or from the CLI.
"""
from __future__ import annotations

from typing import Any, Protocol

from ..config import TrainConfig
from ..metrics import improves
from .folds import FoldsRun
from .results import CorpusLike, EpochCallback, EpochReport, FitResult, FoldsResult
from .run import FoldRun
from .state import BestEpoch


class EpochRun(Protocol):
    """What the loop steps: a FoldRun, or a FoldsRun that steps k of them in lockstep."""

    start_epoch: int
    best: BestEpoch
    history: list[EpochReport]

    def train_epoch(self, epoch: int) -> EpochReport: ...
    def keep_best(self, epoch: int, score: float) -> None: ...
    def record(self, report: EpochReport) -> None: ...
    def checkpoint(self) -> dict[str, Any]: ...
    def final_evaluation(self) -> FitResult: ...


def fit(cfg: TrainConfig, corpus: CorpusLike, on_epoch: EpochCallback | None = None,
        resume: dict[str, Any] | None = None, timings: dict[str, float] | None = None) -> FitResult:
    """Train one configuration; the best epoch by validation UA is evaluated on test.
    `timings` receives the seconds of each setup phase before the first epoch (prepare_trial's,
    then "model": model, loss, optimisers and the resumed state). With `data.folds` the trial is
    cross-validated (ser_core.train.folds) and returns a FoldsResult."""
    run: EpochRun = (FoldsRun if cfg.data.folds else FoldRun)(cfg, corpus, resume, timings)
    return run_epochs(run, cfg.optim.epochs, on_epoch)


def fit_folds(cfg: TrainConfig, corpus: CorpusLike, on_epoch: EpochCallback | None = None,
              resume: dict[str, Any] | None = None, timings: dict[str, float] | None = None) -> FoldsResult:
    """`fit` of a cross-validated configuration (data.folds), which `fit` itself dispatches to."""
    if not cfg.data.folds:
        raise ValueError("fit_folds needs data.folds (at least two folds); fit trains a single fold")
    result = run_epochs(FoldsRun(cfg, corpus, resume, timings), cfg.optim.epochs, on_epoch)
    assert isinstance(result, FoldsResult)
    return result


def run_epochs(run: EpochRun, epochs: int, on_epoch: EpochCallback | None = None) -> FitResult:
    """The epochs from where `run` starts (1, or after a resumed checkpoint) to `epochs`: a later
    epoch is kept only when it scores better (ser_core.metrics.improves: ties keep the earlier),
    and the best epoch's weights are evaluated after the last."""
    for epoch in range(run.start_epoch, epochs + 1):
        report = run.train_epoch(epoch)
        if improves(report.val_ua, run.best.ua):
            run.keep_best(epoch, report.val_ua)
        report.best_val_ua = run.best.ua
        run.record(report)
        if epoch == epochs:
            report.final = run.final_evaluation()
        if on_epoch is not None:
            on_epoch(report, run.checkpoint)
    if not run.history or run.history[-1].final is None:
        raise RuntimeError(f"nothing to train: resumed at epoch {run.start_epoch} of {epochs}")
    return run.history[-1].final
