"""Focal loss: cross-entropy that down-weights confident samples."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import LossFamily, LossParam


class FocalLoss(LossFamily):
    """Focal loss (Lin et al. 2017), mean over batch: -(1 - p_t)^γ log p_t.

    Down-weights easy, confident samples so rare/ambiguous emotions weigh more;
    γ = 0 is exactly cross-entropy. No per-class α weights (not in the spec).
    1 - p_t is computed as -expm1(log p_t) and clamped at the smallest normal
    float, so confident samples with 0 < γ < 1 give a zero, not NaN, gradient.
    """

    name = "focal"
    uses_embedding = False
    params = {"gamma": LossParam(2.0, 0.0, 5.0, minimum=0.0, label="focal γ")}

    def _compute(self, logits: Tensor, z: Tensor | None, y: Tensor) -> Tensor:
        logpt = F.log_softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
        one_minus_pt = (-torch.expm1(logpt)).clamp(min=torch.finfo(logpt.dtype).tiny)
        return -(one_minus_pt.pow(self.hparams["gamma"]) * logpt).mean()

    def _compute_soft(self, logits: Tensor, z: Tensor | None, y: Tensor, target: Tensor) -> Tensor:
        # Σ_c t_c (1 - p_c)^γ (-log p_c): the focal term of every class the target puts mass on
        return self._soft_ce(logits, target, focal_gamma=self.hparams["gamma"])
