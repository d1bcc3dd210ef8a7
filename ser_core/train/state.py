"""A trial's resumable state: what a checkpoint holds, written and read back side by side.

A trial is resumed from the checkpoint its epoch callback took (Ray Tune restarts it after a
failure, or a restored sweep continues it), and a resumed trial must continue exactly as the
uninterrupted one would: the same weights, optimiser moments, schedule, weight average, best
epoch so far, and random streams. Each `*_state` function below has its `restore_*` beside
it, so a key written is a key read. The shapes are those of every checkpoint written so far
(a fold's, and a cross-validated trial's that holds its folds'), so old checkpoints resume.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from .results import EpochReport
from .setup import TrialData


def cpu_state(module: nn.Module) -> dict[str, Tensor]:
    """A detached CPU copy of a module's state: what stays valid while the module trains on."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def history_row(h: EpochReport) -> dict[str, Any]:
    """An epoch's report as a checkpoint keeps it (EpochReport(**row) reads it back)."""
    return {f.name: getattr(h, f.name) for f in fields(h) if f.name != "final"}


# ---------------------------------------------------------------- torch's global random streams

def rng_state(device: torch.device) -> dict[str, Tensor | None]:
    """torch's global random state: the CPU generator's and, on a CUDA device, that device's
    (dropout and randn on the GPU draw from the device's generator, not the CPU's)."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def set_rng_state(state: dict[str, Tensor | None], device: torch.device) -> None:
    """Restore what `rng_state` returned. A CUDA state is restored only on a CUDA device: a
    trial moved to the CPU keeps its CPU stream, and its GPU draws are not comparable anyway."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


# ---------------------------------------------------------------- one fold's run

@dataclass
class BestEpoch:
    """What selection has kept so far: the score it compares, the epoch, and (for a fold's run)
    the weights validation scored and that epoch's validation outputs, which the final
    evaluation reuses (None after a resume: a checkpoint does not keep them)."""

    ua: float = -1.0
    epoch: int = 0
    state: dict[str, Tensor] | None = None
    val_outputs: tuple[Tensor, Tensor] | None = None


class Resumable(Protocol):
    """What a fold's checkpoint is taken from and restored into (ser_core.train.run.FoldRun)."""

    data: TrialData
    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    center_opt: torch.optim.Optimizer | None
    scheduler: Any
    ema: nn.Module | None
    gen: torch.Generator
    history: list[EpochReport]
    best: BestEpoch
    start_epoch: int
    epoch: int


def fold_state(run: Resumable) -> dict[str, Any]:
    """The resumable state of one fold's run after the last epoch it trained."""
    model, loss_fn, optimizer, center_opt = run.model, run.loss_fn, run.optimizer, run.center_opt
    return {
        "epoch": run.epoch, "model": cpu_state(model), "loss": cpu_state(loss_fn),
        # deep copies: optimizer state dicts alias the live moment tensors
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "center_optimizer": None if center_opt is None else copy.deepcopy(center_opt.state_dict()),
        "history": [history_row(h) for h in run.history], "best_ua": run.best.ua,
        "best_epoch": run.best.epoch, "best_state": run.best.state,
        "generator": run.gen.get_state(), "torch_rng": torch.get_rng_state(),
        "rng": rng_state(run.data.device),  # with the device's generator (CUDA dropout draws from it)
        "scheduler": None if run.scheduler is None else copy.deepcopy(run.scheduler.state_dict()),
        "ema": None if run.ema is None else cpu_state(run.ema),
    }


def restore_fold(run: Resumable, state: dict[str, Any]) -> None:
    """Put `fold_state`'s dict back into a freshly built run (same config): weights, optimisers,
    schedule, average, history, best epoch and random streams; the next epoch is the one after."""
    run.model.load_state_dict(state["model"])
    run.loss_fn.load_state_dict(state["loss"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.center_opt is not None and state.get("center_optimizer") is not None:
        run.center_opt.load_state_dict(state["center_optimizer"])
    for what, live in (("scheduler", run.scheduler), ("ema", run.ema)):
        if live is not None:
            if state.get(what) is None:
                raise ValueError(f"cannot resume: the checkpoint of epoch {state['epoch']} has no {what} "
                                 f"state, but the config uses one (optim.schedule / optim.ema_decay)")
            live.load_state_dict(state[what])
    run.history = [EpochReport(**h) for h in state["history"]]
    run.best = BestEpoch(ua=state["best_ua"], epoch=state["best_epoch"], state=state["best_state"])
    run.gen.set_state(state["generator"])
    # torch's global streams (dropout): the CPU's and, on a GPU, the device's own; a
    # checkpoint written before the device's was kept has only "torch_rng"
    set_rng_state(state.get("rng") or {"torch": state["torch_rng"]}, run.data.device)
    run.start_epoch = state["epoch"] + 1
    run.epoch = state["epoch"]


# ---------------------------------------------------------------- a cross-validated trial's runs

def folds_state(epoch: int, folds: tuple[int, ...], fold_states: list[dict[str, Any]],
                fold_rngs: list[dict[str, Tensor | None] | None], history: list[EpochReport],
                best: BestEpoch) -> dict[str, Any]:
    """A cross-validated trial's checkpoint: each fold's own (`fold_state`, taken in the fold's
    random stream), each fold's device stream, and the selection over the folds' mean."""
    return {"epoch": epoch, "folds": list(folds), "fold_states": fold_states,
            "cuda_rng": [None if s is None else s["cuda"] for s in fold_rngs],
            "history": [history_row(h) for h in history], "best_ua": best.ua, "best_epoch": best.epoch}


def check_folds_state(state: dict[str, Any] | None, folds: tuple[int, ...]) -> None:
    """A checkpoint resumes only the folds it was taken of."""
    if state is not None and tuple(state.get("folds", ())) != folds:
        raise ValueError(f"cannot resume: the checkpoint is of folds {list(state.get('folds', ()))}, "
                         f"the config lists data.folds = {list(folds)}")


def fold_of_folds_state(state: dict[str, Any] | None, i: int) -> dict[str, Any] | None:
    """Fold i's own checkpoint inside `folds_state`'s dict (None: a fresh start)."""
    return None if state is None else state["fold_states"][i]


def restore_fold_device_rng(state: dict[str, Any] | None, i: int, device: torch.device) -> None:
    """Fold i's device stream from `folds_state`'s dict; call in that fold's random stream."""
    if state is not None and state["cuda_rng"][i] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"][i], device)


def restore_folds_progress(state: dict[str, Any]) -> tuple[list[EpochReport], BestEpoch, int]:
    """(history of the folds' means, the selection so far, the next epoch) from `folds_state`'s dict."""
    return ([EpochReport(**h) for h in state["history"]], BestEpoch(ua=state["best_ua"], epoch=state["best_epoch"]),
            state["epoch"] + 1)


# ---------------------------------------------------------------- files

def save_checkpoint(state: dict[str, Any], path) -> None:
    torch.save(state, path)


def load_checkpoint(path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)
