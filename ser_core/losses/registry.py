"""The loss families by name, and their parameters across families.

A family is selected by name (a trial config's `loss.family`, a sweep's `loss_family` axis),
so this module is the one list of names. Each family declares its own parameters
(`LossFamily.params`); `loss_param_specs` gathers them across families, and the trial config
(ser_core.config.LossConfig) builds its fields from that, so a parameter is declared in one
place: on the family that uses it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .base import LossConfigError, LossFamily, LossParam
from .bce import BCELoss
from .center import CenterLoss
from .cross_entropy import CrossEntropyLoss
from .focal import FocalLoss
from .regression import L1Loss, SmoothL1Loss
from .supcon import SupConLoss
from .triplet import TripletLoss

LOSS_FAMILIES: dict[str, type[LossFamily]] = {
    cls.name: cls
    for cls in (
        CrossEntropyLoss, FocalLoss, CenterLoss, SupConLoss,
        L1Loss, SmoothL1Loss, BCELoss, TripletLoss,
    )
}

# The order of the parameters in loss_param_specs, and so in the trial config and the results'
# columns: the families whose parameters the results schema first held, in its column order.
# Results files are read by column name, so the order is a convention, not a contract; it is
# kept so that new files list their columns as the old ones do. A family missing here (a new
# one) has its parameters placed after these, in LOSS_FAMILIES order: nothing to edit here.
_PARAMETER_ORDER: tuple[type[LossFamily], ...] = (CenterLoss, FocalLoss, SupConLoss, TripletLoss)


def loss_family(name: str) -> type[LossFamily]:
    """The family class registered as `name`; an unknown name lists the valid ones."""
    try:
        return LOSS_FAMILIES[name]
    except (KeyError, TypeError):
        raise LossConfigError(
            f"unknown loss family {name!r}; valid names: {', '.join(LOSS_FAMILIES)}"
        ) from None


def loss_names() -> list[str]:
    return list(LOSS_FAMILIES)


def loss_uses_centers(name: str) -> bool:
    return loss_family(name).uses_centers


def loss_parameters(name: str) -> dict[str, tuple[float, float | None, float | None]]:
    """param -> (default, low, high): the documented search range for the sweep config."""
    return {k: (p.default, p.low, p.high) for k, p in loss_family(name).params.items()}


@dataclass(frozen=True)
class LossParamSpec:
    """One loss parameter across the families that declare it: what a config field, a results
    column or a table's heading needs to know without naming a family."""

    name: str
    label: str
    families: tuple[str, ...]  # in LOSS_FAMILIES order
    default: float
    low: float | None
    high: float | None


def loss_param_specs() -> tuple[LossParamSpec, ...]:
    """Every family's parameters, each once, in the results' column order (_PARAMETER_ORDER):
    center_lambda, center_lr, gamma, temperature, supcon_weight, margin, triplet_weight today.

    A name two families share must be declared alike by both (one config field and one column
    hold it for either family); a difference is a declaration error, raised here."""
    order = [*_PARAMETER_ORDER, *(cls for cls in LOSS_FAMILIES.values() if cls not in _PARAMETER_ORDER)]
    declared: dict[str, LossParam] = {}
    for cls in order:
        for name, param in cls.params.items():
            first = declared.setdefault(name, param)
            if (first.default, first.low, first.high, first.label) != (param.default, param.low, param.high,
                                                                      param.label):
                raise LossConfigError(f"loss parameter {name!r} is declared differently by the families "
                                      f"that use it: {first} and {param}")
    return tuple(
        LossParamSpec(name=name, label=p.label, default=p.default, low=p.low, high=p.high,
                      families=tuple(f for f, cls in LOSS_FAMILIES.items() if name in cls.params))
        for name, p in declared.items())


def build_loss(name: str, *, num_classes: int, embed_dim: int, label_smoothing: float = 0.0,
               class_weights: Tensor | None = None, active_classes: Tensor | None = None,
               **params: float) -> LossFamily:
    """The named family with validated hyperparameters (missing ones take their default), label
    smoothing ε over `active_classes` (default: all) and optional class weights (what each does:
    ser_core.losses.base's docstring)."""
    return loss_family(name)(num_classes=num_classes, embed_dim=embed_dim, label_smoothing=label_smoothing,
                             class_weights=class_weights, active_classes=active_classes, **params)


def class_balanced_weights(train_labels: np.ndarray | Tensor, num_classes: int) -> Tensor:
    """Inverse-frequency weights n / (k·n_c) over the k classes present in the training labels
    (scikit-learn's "balanced" class_weight, King & Zeng 2001): every class then carries the
    same total weight, so a rare emotion counts as much as a frequent one, as UA scores them.
    A class absent from training gets weight 0: it is never a target there."""
    from sklearn.utils.class_weight import compute_class_weight

    y = np.asarray(train_labels.cpu() if isinstance(train_labels, Tensor) else train_labels).astype(np.int64)
    if y.ndim != 1 or len(y) == 0:
        raise LossConfigError("class_balanced_weights: needs a non-empty 1-D array of training labels")
    if y.min() < 0 or y.max() >= num_classes:
        raise LossConfigError(f"class_balanced_weights: labels must lie in [0, {num_classes}), "
                              f"got min {y.min()}, max {y.max()}")
    present = np.unique(y)
    w = np.zeros(num_classes)
    w[present] = compute_class_weight("balanced", classes=present, y=y)
    return torch.as_tensor(w, dtype=torch.float32)
