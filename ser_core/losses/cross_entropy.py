"""Softmax cross-entropy, the baseline family."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import LossFamily


class CrossEntropyLoss(LossFamily):
    """Softmax cross-entropy: the baseline every other family is compared against."""

    name = "cross_entropy"
    uses_embedding = False

    def _compute(self, logits: Tensor, z: Tensor | None, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y)

    def _compute_soft(self, logits: Tensor, z: Tensor | None, y: Tensor, target: Tensor) -> Tensor:
        return self._soft_ce(logits, target)
