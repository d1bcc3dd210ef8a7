"""Loss families, each selectable by name, so one sweep can compare them on equal terms.

Read in this order: `base` (the call every family answers, the targets beyond hard labels,
how a parameter is declared), one module per family (`cross_entropy`, `focal`, `center`,
`supcon`, `triplet`, `regression` for L1 and SmoothL1, `bce`), then `registry` (the names, the
parameters across families, `build_loss`). Every name is re-exported here, so
`from ser_core.losses import build_loss` reads as it always has.
"""
from __future__ import annotations

from .base import LossConfigError, LossFamily, LossParam, OneHotLoss
from .bce import BCELoss
from .center import CenterLoss
from .cross_entropy import CrossEntropyLoss
from .focal import FocalLoss
from .regression import L1Loss, SmoothL1Loss
from .registry import (LOSS_FAMILIES, LossParamSpec, build_loss, class_balanced_weights, loss_family,
                       loss_names, loss_param_specs, loss_parameters, loss_uses_centers)
from .supcon import SupConLoss
from .triplet import TripletLoss

__all__ = [
    "LOSS_FAMILIES", "BCELoss", "CenterLoss", "CrossEntropyLoss", "FocalLoss", "L1Loss", "LossConfigError",
    "LossFamily", "LossParam", "LossParamSpec", "OneHotLoss", "SmoothL1Loss", "SupConLoss", "TripletLoss",
    "build_loss", "class_balanced_weights", "loss_family", "loss_names", "loss_param_specs", "loss_parameters",
    "loss_uses_centers",
]
