"""Batch-hard triplet loss: cross-entropy plus a margin between a clip's farthest positive
and nearest negative."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import LossFamily, LossParam


class TripletLoss(LossFamily):
    """Cross-entropy + batch-hard triplet loss (Hermans et al. 2017).

    loss = CE + w · mean_i max(0, max_{p∈P(i)} d(i,p) - min_{n∈N(i)} d(i,n) + margin),
    with Euclidean d on L2-normalised z (so the margin has a fixed scale in [0, 2] and
    the network cannot satisfy it by inflating the embedding norm). Only anchors with
    at least one positive and one negative in the batch count; none -> term is 0.
    """

    name = "triplet"
    uses_embedding = True
    params = {
        "margin": LossParam(0.3, 0.0, 1.0, minimum=0.0, label="triplet margin"),
        "triplet_weight": LossParam(0.5, 0.0, 1.0, minimum=0.0, label="triplet weight w"),
    }

    def _compute(self, logits: Tensor, z: Tensor | None, y: Tensor) -> Tensor:
        return self._with_triplet(F.cross_entropy(logits, y), z, y)

    def _compute_soft(self, logits: Tensor, z: Tensor | None, y: Tensor, target: Tensor) -> Tensor:
        return self._with_triplet(self._soft_ce(logits, target), z, y)  # triplets: dominant labels

    def _with_triplet(self, ce: Tensor, z: Tensor | None, y: Tensor) -> Tensor:
        assert z is not None
        zn = F.normalize(z, dim=1)
        # |a-b|² = 2 - 2 a·b for unit vectors; clamp keeps sqrt's gradient finite at 0.
        dist = (2.0 - 2.0 * (zn @ zn.T)).clamp(min=1e-12).sqrt()
        same = y[:, None] == y[None, :]
        eye = torch.eye(len(y), dtype=torch.bool, device=y.device)
        pos, neg = same & ~eye, ~same
        valid = pos.any(dim=1) & neg.any(dim=1)
        # Invalid rows get -inf / +inf here, so their hinge is relu(-inf) = 0 with a zero
        # gradient; no data-dependent branching, so no host sync per step.
        hardest_pos = dist.masked_fill(~pos, float("-inf")).amax(dim=1)
        hardest_neg = dist.masked_fill(~neg, float("inf")).amin(dim=1)
        hinge = F.relu(hardest_pos - hardest_neg + self.hparams["margin"])
        hinge = torch.where(valid, hinge, torch.zeros_like(hinge))
        triplet = hinge.sum() / valid.sum().clamp(min=1)
        return ce + self.hparams["triplet_weight"] * triplet
