"""Scoring a model on a split (`predict`, what every validation pass runs) and the final
evaluation: the selected epoch's weights on validation and test, where test is read for the
first and only time, and the checkpoint `predict` loads.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..config import TrainConfig
from ..metrics import classification_report, compactness
from .results import CorpusLike, EpochReport, FitResult
from .setup import TrialData
from .split_features import RowFeatures, SplitFeatures
from .state import BestEpoch, cpu_state


def split_functionals(data: TrialData, split: str) -> RowFeatures | None:
    """A fused model's functionals of one split (model.fuse_functionals), else None."""
    return None if data.functionals is None else data.functionals[split]


@torch.no_grad()
def predict(model: nn.Module, loss_fn: Callable[..., Tensor], x: SplitFeatures | RowFeatures | Tensor, y: Tensor,
            lengths: Tensor | None, batch: int, autocast: Callable[[], Any],
            class_mask: Tensor, functionals: RowFeatures | Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(summed loss, predictions, embeddings) over a whole split. Predictions are among the
    classes of `class_mask` only: a class the protocol dropped is never predicted. `functionals`:
    the split's functionals, read by a fused model beside the spectrograms."""
    model.eval()
    total, preds, embs = torch.zeros((), device=y.device), [], []
    for s in range(0, len(x), batch):
        lb = None if lengths is None else lengths[s:s + batch]
        with autocast():
            logits, z = (model(x[s:s + batch], lb) if functionals is None
                         else model(x[s:s + batch], lb, functionals[s:s + batch]))
            loss = loss_fn(logits.float(), z.float(), y[s:s + batch])
        total += loss.detach() * len(logits)
        preds.append(logits.float().masked_fill(~class_mask, -math.inf).argmax(dim=1))
        embs.append(z.float())
    return total, torch.cat(preds), torch.cat(embs)


def final_evaluation(*, cfg: TrainConfig, corpus: CorpusLike, data: TrialData, model: nn.Module,
                     loss_fn: nn.Module, best: BestEpoch, history: list[EpochReport],
                     train_seconds: float) -> FitResult:
    """Evaluate the best epoch's weights on validation and test (test is read only here); with
    optim.ema_decay those are the moving average's weights, which `model` is then. `model`
    is loaded with the best weights (the run ends here). The validation figures are the best
    epoch's own validation pass when it was kept, so validation is not run twice."""
    num_classes = len(corpus.labels)
    feats, ys, lens = data.feats, data.ys, data.lens
    model.load_state_dict(best.state)
    if best.val_outputs is not None:  # the best epoch's own validation pass, on these same weights
        val_pred, val_z = best.val_outputs
    else:  # a best epoch from a resumed checkpoint: its outputs were not kept
        _, val_pred, val_z = predict(model, loss_fn, feats["val"], ys["val"], lens["val"], 256, data.autocast,
                                     data.class_mask, split_functionals(data, "val"))
    _, test_pred, test_z = predict(model, loss_fn, feats["test"], ys["test"], lens["test"], 256, data.autocast,
                                   data.class_mask, split_functionals(data, "test"))
    yv, yt = ys["val"].cpu().numpy(), ys["test"].cpu().numpy()
    protocol = data.protocol
    return FitResult(
        labels=tuple(corpus.labels),
        best_epoch=best.epoch,
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
            "frontend": data.frontend_cfg.model_dump(mode="json"),
            "labels": list(corpus.labels),
            "classes": list(protocol.classes),
            "model": best.state,
            "normalizer": cpu_state(data.normalizer),
            # a fused model's functionals standardisation (global statistics of the training split)
            **({"functionals_normalizer": cpu_state(data.functionals_normalizer)}
               if data.functionals_normalizer is not None else {}),
            "segment_samples": int(corpus.waveforms.shape[1]),
            "best_epoch": best.epoch,
        },
        train_corpora=protocol.train_corpora,
        eval_corpora=protocol.eval_corpora,
        classes=protocol.classes,
        classes_dropped=dict(protocol.dropped),
    )
