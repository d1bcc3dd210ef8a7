"""Supervised contrastive loss: cross-entropy plus a pull of same-class embeddings together."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import LossFamily, LossParam


class SupConLoss(LossFamily):
    """Cross-entropy + supervised contrastive loss (Khosla et al. 2020, L_out form).

    loss = CE + w · SupCon. On L2-normalised z with temperature τ, anchor i with
    positives P(i) (same class, i excluded) contributes
    -1/|P(i)| Σ_{p∈P(i)} log( exp(z_i·z_p/τ) / Σ_{a≠i} exp(z_i·z_a/τ) ),
    averaged over anchors that have at least one positive. Anchors whose class has a
    single sample in the batch are skipped (not NaN); a batch with no positive pair
    contributes 0. No projection head: the model's embedding is used directly.
    """

    name = "supcon"
    uses_embedding = True
    params = {
        "temperature": LossParam(0.1, 0.02, 1.0, minimum=0.0, strict=True, label="SupCon temperature τ"),
        "supcon_weight": LossParam(0.5, 0.0, 1.0, minimum=0.0, label="SupCon weight w"),
    }

    def _compute(self, logits: Tensor, z: Tensor | None, y: Tensor) -> Tensor:
        return self._with_supcon(F.cross_entropy(logits, y), z, y)

    def _compute_soft(self, logits: Tensor, z: Tensor | None, y: Tensor, target: Tensor) -> Tensor:
        return self._with_supcon(self._soft_ce(logits, target), z, y)  # positives: dominant labels

    def _with_supcon(self, ce: Tensor, z: Tensor | None, y: Tensor) -> Tensor:
        assert z is not None
        zn = F.normalize(z, dim=1)
        sim = zn @ zn.T / self.hparams["temperature"]
        eye = torch.eye(len(y), dtype=torch.bool, device=y.device)
        pos = (y[:, None] == y[None, :]) & ~eye
        n_pos = pos.sum(dim=1)
        has_pos = n_pos > 0
        # The diagonal is masked with the most negative finite float, not -inf, so a
        # B = 1 row's logsumexp stays finite and cannot leak inf/NaN into the gradient.
        # No data-dependent branching: no host sync per step.
        log_denom = torch.logsumexp(sim.masked_fill(eye, torch.finfo(sim.dtype).min), dim=1, keepdim=True)
        log_prob = torch.where(pos, sim - log_denom, torch.zeros_like(sim))
        per_anchor = -log_prob.sum(dim=1) / n_pos.clamp(min=1)
        supcon = per_anchor.sum() / has_pos.sum().clamp(min=1)  # anchors without positives add 0
        return ce + self.hparams["supcon_weight"] * supcon
