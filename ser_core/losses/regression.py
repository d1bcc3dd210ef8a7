"""L1 and SmoothL1 on softmax probabilities against one-hot targets (the CNN-Transformer
paper's regression-style losses): together because they differ only in the distance."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import OneHotLoss


class L1Loss(OneHotLoss):
    """mean |softmax(logits) - one_hot(y)| over all B·C entries (nn.L1Loss default).

    Softmax first so predictions live on the same [0, 1] scale as the targets.
    """

    name = "l1"

    def _compute(self, logits: Tensor, z: Tensor | None, y: Tensor) -> Tensor:
        return F.l1_loss(F.softmax(logits, dim=1), self._one_hot(logits, y))

    def _compute_soft(self, logits: Tensor, z: Tensor | None, y: Tensor, target: Tensor) -> Tensor:
        per_row = F.l1_loss(F.softmax(logits, dim=1), self._smoothed(target), reduction="none").mean(dim=1)
        return self._weighted_mean(per_row, target)


class SmoothL1Loss(OneHotLoss):
    """SmoothL1(softmax(logits), one_hot(y)), β = 1, mean over all B·C entries.

    β = 1 is PyTorch's default, which the paper presumably used. Since both sides
    lie in [0, 1], |diff| <= 1 and the loss is always in its quadratic branch,
    i.e. 0.5 · mean squared error on probabilities.
    """

    name = "smooth_l1"

    def _compute(self, logits: Tensor, z: Tensor | None, y: Tensor) -> Tensor:
        return F.smooth_l1_loss(F.softmax(logits, dim=1), self._one_hot(logits, y), beta=1.0)

    def _compute_soft(self, logits: Tensor, z: Tensor | None, y: Tensor, target: Tensor) -> Tensor:
        per_row = F.smooth_l1_loss(F.softmax(logits, dim=1), self._smoothed(target), beta=1.0,
                                   reduction="none").mean(dim=1)
        return self._weighted_mean(per_row, target)
