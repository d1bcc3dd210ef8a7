"""Per-class binary cross-entropy against one-hot targets: each class an independent yes/no."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import OneHotLoss


class BCELoss(OneHotLoss):
    """Per-class binary cross-entropy of sigmoid(logits) vs one_hot(y), mean over B·C.

    Uses ``binary_cross_entropy_with_logits`` (stable, autocast-safe) rather than
    softmax probabilities: each class is an independent yes/no, as in the paper's BCE.
    """

    name = "bce"

    def _compute(self, logits: Tensor, z: Tensor | None, y: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, self._one_hot(logits, y))

    def _compute_soft(self, logits: Tensor, z: Tensor | None, y: Tensor, target: Tensor) -> Tensor:
        per_row = F.binary_cross_entropy_with_logits(logits, self._smoothed(target), reduction="none").mean(dim=1)
        return self._weighted_mean(per_row, target)
