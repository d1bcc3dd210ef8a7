"""Learning-rate schedules, built from torch.optim.lr_scheduler and stepped after every
optimizer step (not every epoch), so a warm-up of a fraction of an epoch is as smooth as a long
one and the step counts below are exact.

With base rate η (`optim.lr`), N = epochs x steps_per_epoch optimizer steps and W =
round(warmup_epochs x steps_per_epoch) warm-up steps, optimizer step k (0-based) uses:

- ``constant``: η; with W > 0, the linear warm-up η·(k + 1)/(W + 1) for k < W, then η
  (LinearLR alone: it holds its end factor 1 after W steps);
- ``cosine`` (Loshchilov & Hutter, "SGDR", ICLR 2017, without restarts; linear warm-up as in
  Goyal et al., "Accurate, Large Minibatch SGD", 2017): the warm-up for k < W, then
  η·(1 + cos(π·(k - W)/(N - W)))/2, reaching 0 after the last step
  (SequentialLR(LinearLR, CosineAnnealingLR));
- ``step``: the warm-up for k < W, then η·γ^floor((k - W)/S) with S = step_epochs x
  steps_per_epoch: γ every `step_epochs` epochs (SequentialLR(LinearLR, StepLR));
- ``onecycle`` (Smith & Topin, "Super-Convergence", 2019; torch's OneCycleLR with its
  defaults): from η/25 up to η along a half cosine over the first W steps (W = 30 % of the run
  when warmup_epochs is 0), then down to η/(25·10⁴) along a half cosine; momentum (SGD) or
  Adam's β₁ cycles inversely between 0.95 and 0.85, as in the paper.

The center loss's own optimizer is not scheduled: its rate α is Dai et al.'s center update
speed, a loss hyperparameter, not a training-length choice.
"""
from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import (CosineAnnealingLR, LinearLR, LRScheduler, OneCycleLR, SequentialLR,
                                      StepLR)

SCHEDULES = ("constant", "cosine", "onecycle", "step")


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of `fit`: every batch of >= 2 clips (a lone tail clip is
    skipped, BatchNorm needs two)."""
    full, tail = divmod(n_train, batch_size)
    return full + (1 if tail >= 2 else 0)


def build_schedule(optimizer: Optimizer, schedule: str, *, epochs: int, steps_per_epoch: int,
                   warmup_epochs: float = 0.0, step_epochs: int = 10, step_gamma: float = 0.1) -> LRScheduler | None:
    """The scheduler for `schedule` (see the module docstring for its formula), or None for a
    constant rate without warm-up: then nothing touches the optimizer's lr, as before schedules
    existed. Call its `step()` after every `optimizer.step()`."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if steps_per_epoch < 1:
        raise ValueError(f"a schedule needs at least one optimizer step per epoch, got {steps_per_epoch}")
    total = epochs * steps_per_epoch
    warmup = round(warmup_epochs * steps_per_epoch)
    if warmup >= total:
        raise ValueError(f"warm-up of {warmup} steps does not fit a run of {total} steps")
    if schedule == "onecycle":
        lr = optimizer.param_groups[0]["lr"]
        pct = warmup / total if warmup > 0 else 0.3
        return OneCycleLR(optimizer, max_lr=lr, total_steps=total, pct_start=pct, anneal_strategy="cos")
    if schedule == "constant" and warmup == 0:
        return None
    warm = LinearLR(optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup) if warmup else None
    if schedule == "constant":
        return warm
    if schedule == "cosine":
        main: LRScheduler = CosineAnnealingLR(optimizer, T_max=total - warmup, eta_min=0.0)
    else:
        main = StepLR(optimizer, step_size=step_epochs * steps_per_epoch, gamma=step_gamma)
    if warm is None:
        return main
    return SequentialLR(optimizer, [warm, main], milestones=[warmup])
