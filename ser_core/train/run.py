"""One fold's run: the model, the loss and the optimisers of a trial, and one epoch of training.

`FoldRun` is built in the order a reader follows a trial's setup: the seed, the trial's
tensors (prepare_trial), the model, the loss, the optimisers, the schedule, the weight average,
then the resumed state. `train_epoch` is one epoch, top to bottom: the batches in the
generator's order, the step, then validation. Which epoch is best is not its decision
(`keep_best` is told): a single fold selects on its own validation UA, a cross-validated trial
(ser_core.train.folds) on the mean over its folds. The loop over epochs is ser_core.train.loop.
"""
from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..augment import BatchAugment
from ..config import TrainConfig
from ..fastpath import accelerate
from ..losses import build_loss, class_balanced_weights
from ..metrics import classification_report
from ..schedules import build_schedule, steps_per_epoch
from . import evaluation
from .results import CorpusLike, EpochReport, FitResult, NonFiniteLossError
from .setup import build_model, prepare_trial, seed_everything
from .state import BestEpoch, cpu_state, fold_state, restore_fold

_OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}


class FoldRun:
    """One fold's training, split into its state and its epoch step, so that `fit` runs one
    fold epoch by epoch and a cross-validated trial advances several in lockstep."""

    def __init__(self, cfg: TrainConfig, corpus: CorpusLike, resume: dict[str, Any] | None = None,
                 timings: dict[str, float] | None = None) -> None:
        self.cfg, self.corpus = cfg, corpus
        self.gen = seed_everything(cfg.seed)
        self.data = data = prepare_trial(cfg, corpus, timings)
        t_model = time.perf_counter()

        # channels-last convolutions: 1.2x per CPU step (max-pool stops dominating), tensor cores on GPU
        model = build_model(cfg.model, data.frontend_cfg.n_features, data.num_classes, data.frontend_cfg.layers).to(
            data.device, memory_format=torch.channels_last)
        if cfg.fastpath:  # same maths, cheaper kernels (ser_core/fastpath.py says which and why)
            accelerate(model)
        # The recipe's targets: label smoothing over the protocol's classes, class weights from the
        # training split's counts (ser_core.losses says what each family does with them).
        class_weights = (class_balanced_weights(data.ys["train"], data.num_classes)
                         if cfg.optim.class_weights == "balanced" else None)
        loss_fn = build_loss(cfg.loss.family, num_classes=data.num_classes, embed_dim=model.embed_dim,
                             label_smoothing=cfg.optim.label_smoothing, class_weights=class_weights,
                             active_classes=data.class_mask.cpu(), **cfg.loss.params()).to(data.device)
        # The loss's own parameters train with the model's; center loss's centers have their own SGD.
        self.params = list(model.parameters()) + list(loss_fn.model_parameters())
        opt_kwargs: dict[str, Any] = {"lr": cfg.optim.lr, "weight_decay": cfg.optim.weight_decay}
        if cfg.optim.name == "sgd":
            opt_kwargs["momentum"] = 0.9
        self.optimizer = _OPTIMIZERS[cfg.optim.name](self.params, **opt_kwargs)
        self.center_opt = loss_fn.center_optimizer()
        # Stepped after every optimizer step; None = constant lr, the optimizer left alone (schedules.py).
        self.scheduler = build_schedule(self.optimizer, cfg.optim.schedule, epochs=cfg.optim.epochs,
                                        steps_per_epoch=steps_per_epoch(len(data.ys["train"]), cfg.optim.batch_size),
                                        warmup_epochs=cfg.optim.warmup_epochs,
                                        step_epochs=cfg.optim.step_epochs, step_gamma=cfg.optim.step_gamma)
        # Exponential moving average of the weights (and BatchNorm statistics), updated every step:
        # what validation, model selection, test and the checkpoint use when on (Polyak & Juditsky 1992).
        self.ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema_decay), use_buffers=True)
                    if cfg.optim.ema_decay > 0 else None)
        self.model, self.loss_fn = model, loss_fn
        self.eval_model = model if self.ema is None else self.ema.module
        self.augment = BatchAugment.from_config(cfg.augment)  # training batches only; all off = never called

        self.history: list[EpochReport] = []
        self.best = BestEpoch()
        self._val_outputs: tuple[Tensor, Tensor] | None = None  # the last epoch's validation predictions, embeddings
        self.start_epoch = 1
        self.epoch = 0  # the last epoch trained
        if resume is not None:
            restore_fold(self, resume)

        if timings is not None:
            timings["model"] = timings.get("model", 0.0) + time.perf_counter() - t_model
        self.train_seconds = sum(h.seconds for h in self.history)

    def train_epoch(self, epoch: int) -> EpochReport:
        """One epoch over the training split in the generator's order, then validation: the
        epoch's own figures (best_val_ua is the caller's to set)."""
        cfg, data, gen = self.cfg, self.data, self.gen
        model, loss_fn, optimizer, center_opt = self.model, self.loss_fn, self.optimizer, self.center_opt
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
            ub = None if data.functionals is None else data.functionals["train"][idx]  # a fused model's
            with data.autocast():
                xb, yb, soft = feats["train"][idx], ys["train"][idx], None
                if self.augment.enabled:  # batched, from the trial's generator (ser_core.augment)
                    xb, lb, soft = self.augment(xb, lb, yb, data.num_classes, gen, paired=ub)
                logits, z = model(xb, lb) if ub is None else model(xb, lb, ub)
                loss = loss_fn(logits.float(), z.float(), yb, soft)
            optimizer.zero_grad(set_to_none=True)
            if center_opt is not None:
                center_opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip:
                nn.utils.clip_grad_norm_(self.params, cfg.optim.grad_clip)
            optimizer.step()
            if center_opt is not None:
                loss_fn.before_center_step()
                center_opt.step()
            if self.scheduler is not None:
                self.scheduler.step()
            if self.ema is not None:
                self.ema.update_parameters(model)
            loss_sum += loss.detach() * len(idx)
        train_loss = float(loss_sum) / n_train  # the epoch's one host sync
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(
                f"non-finite training loss ({train_loss}) in epoch {epoch} with loss family "
                f"{cfg.loss.family!r}, lr={cfg.optim.lr}; the trial was stopped"
            )
        val_sum, val_pred, val_z = evaluation.predict(self.eval_model, loss_fn, feats["val"], ys["val"], lens["val"],
                                                      256, data.autocast, data.class_mask,
                                                      evaluation.split_functionals(data, "val"))
        self._val_outputs = (val_pred, val_z)  # if keep_best keeps this epoch, the final validation figures
        val_rep = classification_report(ys["val"].cpu().numpy(), val_pred.cpu().numpy(), data.num_classes)
        seconds = time.perf_counter() - t0
        self.train_seconds += seconds
        self.epoch = epoch
        return EpochReport(epoch, train_loss, float(val_sum) / len(ys["val"]), val_rep.ua, val_rep.wa, seconds)

    def keep_best(self, epoch: int, score: float) -> None:
        """Remember the weights validation scored (the average's with optim.ema_decay) as the best
        so far; `score` is what selection compares (a cross-validated trial: the folds' mean)."""
        self.best = BestEpoch(ua=score, epoch=epoch, state=cpu_state(self.eval_model), val_outputs=self._val_outputs)

    def record(self, report: EpochReport) -> None:
        """Add an epoch's report, its best_val_ua set by the selection, to the run's history."""
        self.history.append(report)

    def checkpoint(self) -> dict[str, Any]:
        """The resumable state after the last epoch trained (ser_core.train.state)."""
        return fold_state(self)

    def final_evaluation(self) -> FitResult:
        """The best epoch's weights on validation and test (test is read only here)."""
        return evaluation.final_evaluation(cfg=self.cfg, corpus=self.corpus, data=self.data, model=self.eval_model,
                                           loss_fn=self.loss_fn, best=self.best, history=self.history,
                                           train_seconds=self.train_seconds)
