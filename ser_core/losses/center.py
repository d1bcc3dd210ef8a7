"""Center loss: cross-entropy plus a pull of each embedding to its class's center, the
centers trained by their own optimizer."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import LossFamily, LossParam


class CenterLoss(LossFamily):
    """Cross-entropy + center loss (Wen et al. 2016; for SER: Dai et al. 2019).

    loss = CE + λ · (1/2) · mean_i ||z_i - c_{y_i}||²  (mean over the batch, as in the
    common PyTorch implementations; Wen et al. write the sum over the mini-batch).

    The centers are an ``nn.Parameter`` (C, D), initialised to zeros (deterministic,
    independent of the global RNG; at α = 0.5 they reach the class means within a few
    steps). They have their own plain SGD (lr = α, no momentum, no weight decay).
    ``before_center_step`` multiplies their gradient by 1/λ, so λ weighs the term for
    the network without changing how fast the centers move. After one step

        c_j <- c_j - α · (n_j / B) · (c_j - mean of class-j z in the batch)

    where n_j is the count of class j in a batch of B (classes absent from the batch
    don't move). This differs from Wen et al.'s update Δc_j = Σ(c_j - z_i)/(1 + n_j)
    by the per-class normalisation; it is what KaiyangZhou/pytorch-center-loss does.
    Stable while α · n_j / B < 2, so any α in (0, 1] is safe.

    Defaults: α = 0.5 as in Wen et al. and the reference implementation. λ = 0.01:
    the Dai et al. summary gives no value; face-recognition references use λ ≈ 0.003-0.01
    on unnormalised embeddings. We take the upper end as the default; the documented
    range is [0, 1] so the λ = 0 ablation passes config validation (a log-uniform
    sweep needs its own positive floor, e.g. 1e-4), since the best λ depends on the
    embedding's scale.
    λ = 0 is allowed: the term is skipped (pure CE) and the centers do not move.
    """

    name = "center"
    uses_centers = True
    uses_embedding = True
    params = {
        "center_lambda": LossParam(0.01, 0.0, 1.0, minimum=0.0, label="center-loss λ"),
        "center_lr": LossParam(0.5, 0.01, 1.0, minimum=0.0, strict=True, label="center lr α"),
    }

    def __init__(self, *, num_classes: int, embed_dim: int, **params: float) -> None:
        super().__init__(num_classes=num_classes, embed_dim=embed_dim, **params)
        self.center_lambda = self.hparams["center_lambda"]
        self.center_lr = self.hparams["center_lr"]
        self.centers = nn.Parameter(torch.zeros(num_classes, embed_dim))
        self._center_opt = torch.optim.SGD(
            [self.centers], lr=self.center_lr, momentum=0.0, weight_decay=0.0
        )

    def center_optimizer(self) -> torch.optim.Optimizer:
        return self._center_opt

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202 - nn.Module's own signature
        # A move to the trial's device may replace the Parameter instead of moving its data
        # (the meta device, or torch.__future__'s overwrite-on-conversion): the centers' SGD,
        # built with the loss, must step the live centers, not a stale copy.
        super()._apply(fn, recurse)
        for group in self._center_opt.param_groups:
            group["params"] = [self.centers]
        return self

    def before_center_step(self) -> None:
        """Undo λ on the centers' gradient (call once per backward, before the step)."""
        grad = self.centers.grad
        if grad is None or self.center_lambda == 0.0:
            return
        grad.mul_(1.0 / self.center_lambda)

    def _compute(self, logits: Tensor, z: Tensor | None, y: Tensor) -> Tensor:
        return self._with_centers(F.cross_entropy(logits, y), z, y)

    def _compute_soft(self, logits: Tensor, z: Tensor | None, y: Tensor, target: Tensor) -> Tensor:
        return self._with_centers(self._soft_ce(logits, target), z, y)  # centers: dominant labels

    def _with_centers(self, ce: Tensor, z: Tensor | None, y: Tensor) -> Tensor:
        if self.center_lambda == 0.0:
            return ce
        assert z is not None
        diff = z - self.centers.to(z.dtype)[y]
        return ce + self.center_lambda * 0.5 * diff.pow(2).sum(dim=1).mean()
