"""Loss families, each selectable by name, so one sweep can compare them on equal terms.

Every family has the same call: ``loss_fn(logits, z, y)`` with logits (B, C), the
embedding z (B, D) the classifier head reads, and int64 class ids y (B,). Families
that do not need z ignore it. All reductions are a mean over the batch, so loss
values are comparable across batch sizes.

Mixed precision: every family disables autocast inside ``forward`` and computes in
at least float32 (float64 inputs stay float64, so ``gradcheck`` works). Under bf16
or fp16 autocast the returned loss is float32.

Center loss owns trainable state (the class centers) that must NOT go to the model
optimizer. The training loop does, per step::

    model_opt = SGD/Adam(list(model.parameters()) + loss_fn.model_parameters())
    center_opt = loss_fn.center_optimizer()          # None unless uses_centers
    ...
    loss = loss_fn(logits, z, y)
    model_opt.zero_grad(); center_opt and center_opt.zero_grad()
    loss.backward()
    model_opt.step()
    if center_opt is not None:
        loss_fn.before_center_step()                 # once per backward
        center_opt.step()

Call ``loss_fn.to(device)`` once after building: it keeps the same Parameter
objects, so the center optimizer made in ``__init__`` stays valid. With an fp16
GradScaler, call ``scaler.unscale_(center_opt)`` before ``before_center_step()``
and ``scaler.step(center_opt)`` instead of ``center_opt.step()``.

Targets beyond hard labels (the training recipe; all off by default, and then every family
computes exactly what it computed before these existed):

- ``loss_fn(logits, z, y, soft)``: ``soft`` (B, C) is a target distribution per row, e.g.
  mixup's λ'·one_hot(y_i) + (1 - λ')·one_hot(y_j) (ser_core.augment); ``y`` is then each row's
  dominant label (λ' >= 0.5). Mixup (Zhang et al., ICLR 2018) interpolates inputs and their
  one-hot targets, and the loss is taken against the interpolated target:
  CE and focal use it as a soft target, BCE / L1 / SmoothL1 regress onto it in place of the
  one-hot vector.
- **center / supcon / triplet under mixup**: their cross-entropy part uses the soft target;
  their embedding term uses the dominant label ``y``. These terms have no target vector that
  could be interpolated — their targets are class identities (which center a clip is pulled
  to, which clips are its positives) — so the mixup paper's rule has nothing to act on there.
  The dominant label is the class that makes up most of the mixed input; with the small α the
  field uses (0.2-0.4), λ' is close to 1 for most batches, so the term sees nearly clean
  clips, while a second, unmixed forward pass just for the term would double the step's cost.
  SpecAugment (Park et al., Interspeech 2019) changes only the input, never the label, so
  every family trains on masked clips with their own labels.
- ``label_smoothing`` ε: the target becomes (1 - ε)·t + ε/K on the K classes the protocol
  uses (not the label set's C: a class the corpus lacks never receives mass), for every
  family's target: the CE part of CE/focal/center/supcon/triplet, and the regression target of
  BCE/L1/SmoothL1. The embedding terms keep their hard labels.
- ``class_weights`` w (C,): each row is weighted by w of its target, Σ_c w_c·t_c, and the
  batch mean is taken over those weights (PyTorch's weighted cross-entropy mean, which this
  equals for hard labels: Σ_i w_{y_i} ℓ_i / Σ_i w_{y_i}); for CE and focal inside the sum
  over classes, for BCE/L1/SmoothL1 on each row's loss. Embedding terms are unweighted: they
  shape the geometry of z, and their batch means are over anchors, not over targets.
  ``class_balanced_weights`` gives n / (k·n_c) from the training split's counts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LossConfigError(ValueError):
    """A loss family name, hyperparameter or input does not fit the family."""


@dataclass(frozen=True)
class LossParam:
    """One hyperparameter: its default, the range the sweep may search, and its hard limit.

    ``low``/``high`` are the documented range: the trial config rejects values outside
    it and sweeps search inside it (None = unbounded on that side). ``minimum``/``strict``
    are what the maths allows (value >= minimum, or > when strict).
    """

    default: float
    low: float | None
    high: float | None
    minimum: float = 0.0
    strict: bool = False

    def check(self, family: str, name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LossConfigError(
                f"loss {family!r}: parameter {name!r} must be a number, got {value!r}"
            )
        v = float(value)
        if not math.isfinite(v):
            raise LossConfigError(f"loss {family!r}: parameter {name!r} must be finite, got {v}")
        if v < self.minimum or (self.strict and v == self.minimum):
            op = ">" if self.strict else ">="
            raise LossConfigError(
                f"loss {family!r}: parameter {name!r} must be {op} {self.minimum}, got {v}"
            )
        return v


def _at_least_f32(t: Tensor) -> Tensor:
    # bf16/fp16 -> float32; float64 stays float64 (gradcheck).
    return t.to(torch.promote_types(t.dtype, torch.float32))


class LossFamily(nn.Module):
    """Base class: validates hyperparameters and inputs, upcasts, disables autocast.

    Subclasses set the class variables and implement ``_compute`` on clean inputs.
    """

    name: ClassVar[str]
    uses_centers: ClassVar[bool] = False
    uses_embedding: ClassVar[bool]
    params: ClassVar[dict[str, LossParam]] = {}

    def __init__(self, *, num_classes: int, embed_dim: int, label_smoothing: float = 0.0,
                 class_weights: Tensor | None = None, active_classes: Tensor | None = None,
                 **params: float) -> None:
        super().__init__()
        for what, value, least in (("num_classes", num_classes, 2), ("embed_dim", embed_dim, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise LossConfigError(
                    f"loss {self.name!r}: {what} must be an int >= {least}, got {value!r}"
                )
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            valid = ", ".join(sorted(self.params)) or "none"
            raise LossConfigError(
                f"loss {self.name!r}: unknown parameter(s) {unknown}; valid parameters: {valid}"
            )
        self.hparams: dict[str, float] = {
            k: spec.check(self.name, k, params.get(k, spec.default)) for k, spec in self.params.items()
        }
        self._set_targets(label_smoothing, class_weights, active_classes)

    def _set_targets(self, label_smoothing: float, class_weights: Tensor | None,
                     active_classes: Tensor | None) -> None:
        """Smoothing and weights; buffers that are not saved (they follow from the config and the
        training split), so the state_dict is the same with and without them."""
        where = f"loss {self.name!r}"
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
                or not 0.0 <= label_smoothing < 1.0:
            raise LossConfigError(f"{where}: label_smoothing must be a number in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        c = self.num_classes
        active = torch.ones(c, dtype=torch.bool) if active_classes is None else torch.as_tensor(active_classes)
        if active.shape != (c,) or active.dtype != torch.bool or not bool(active.any()):
            raise LossConfigError(f"{where}: active_classes must be a bool mask of shape ({c},) with a class set")
        # ε/K on each of the K classes in use: what smoothing adds to a target row
        self.register_buffer("_smooth_mass", active.float() / float(active.sum()), persistent=False)
        if class_weights is not None:
            w = torch.as_tensor(class_weights, dtype=torch.float32)
            if w.shape != (c,) or not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or not bool((w > 0).any()):
                raise LossConfigError(f"{where}: class_weights must be {c} finite non-negative numbers, "
                                      f"not all 0; got {w.tolist()}")
            self.register_buffer("class_weights", w, persistent=False)
        else:
            self.class_weights = None
        # plain hard labels: the families' original code path, bit for bit
        self._plain = self.label_smoothing == 0.0 and class_weights is None

    def forward(self, logits: Tensor, z: Tensor | None, y: Tensor, soft: Tensor | None = None) -> Tensor:
        """Scalar loss. ``z`` may be None for families with ``uses_embedding = False``.
        ``soft``: per-row target distributions (B, C) such as mixup's, with ``y`` each row's
        dominant label (module docstring)."""
        self._check_inputs(logits, z, y)
        if soft is not None and (soft.shape != logits.shape or not soft.is_floating_point()):
            raise LossConfigError(f"loss {self.name!r}: soft targets must be floating point of shape "
                                  f"{tuple(logits.shape)}, got {soft.dtype} {tuple(soft.shape)}")
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits32 = _at_least_f32(logits)
            z32 = _at_least_f32(z) if (self.uses_embedding and z is not None) else None
            if soft is None and self._plain:
                return self._compute(logits32, z32, y.long())
            target = F.one_hot(y.long(), self.num_classes).to(logits32.dtype) if soft is None \
                else soft.to(logits32.dtype)
            return self._compute_soft(logits32, z32, y.long(), target)

    def _compute(self, logits: Tensor, z: Tensor | None, y: Tensor) -> Tensor:
        raise NotImplementedError

    def _compute_soft(self, logits: Tensor, z: Tensor | None, y: Tensor, target: Tensor) -> Tensor:
        """The loss against target distributions `target` (B, C) (unsmoothed: one-hot rows or
        mixup's mixtures), with label smoothing and class weights; y = the dominant labels."""
        raise NotImplementedError

    # --- shared pieces of the soft path

    def _smoothed(self, target: Tensor) -> Tensor:
        if self.label_smoothing == 0.0:
            return target
        eps = self.label_smoothing
        return target * (1.0 - eps) + self._smooth_mass.to(target.dtype) * eps

    def _row_weights(self, target: Tensor) -> Tensor | None:
        """Σ_c w_c·t_c per row (t unsmoothed), or None without class weights."""
        if self.class_weights is None:
            return None
        return target @ self.class_weights.to(target.dtype)

    def _weighted_mean(self, per_row: Tensor, target: Tensor) -> Tensor:
        w = self._row_weights(target)
        if w is None:
            return per_row.mean()
        return (per_row * w).sum() / w.sum()

    def _soft_ce(self, logits: Tensor, target: Tensor, focal_gamma: float = 0.0) -> Tensor:
        """Σ_i Σ_c w_c·t̃_ic·ℓ_ic / Σ_i Σ_c w_c·t_ic with ℓ = -(1 - p)^γ log p and t̃ the smoothed
        target: for hard labels exactly F.cross_entropy(weight=w, label_smoothing=ε) when every
        class is in use (γ = 0), and Lin et al.'s α-weighted focal loss for γ > 0."""
        logp = F.log_softmax(logits, dim=1)
        ell = -logp
        if focal_gamma:
            one_minus_p = (-torch.expm1(logp)).clamp(min=torch.finfo(logp.dtype).tiny)
            ell = one_minus_p.pow(focal_gamma) * ell
        t = self._smoothed(target)
        if self.class_weights is None:
            return (t * ell).sum(dim=1).mean()
        w = self.class_weights.to(logits.dtype)
        return (t * ell * w).sum() / (target @ w).sum()

    def center_optimizer(self) -> torch.optim.Optimizer | None:
        """The centers' own optimizer; None for families without centers."""
        return None

    def before_center_step(self) -> None:
        """Hook between ``backward()`` and the center optimizer's step (no-op here)."""

    def model_parameters(self) -> list[nn.Parameter]:
        """The loss's trainable parameters that belong in the model optimizer (centers excluded)."""
        centers = getattr(self, "centers", None)
        return [p for p in self.parameters() if p.requires_grad and p is not centers]

    def extra_repr(self) -> str:
        hp = ", ".join(f"{k}={v:g}" for k, v in self.hparams.items())
        return f"num_classes={self.num_classes}, embed_dim={self.embed_dim}" + (f", {hp}" if hp else "")

    def _check_inputs(self, logits: Tensor, z: Tensor | None, y: Tensor) -> None:
        where = f"loss {self.name!r}"
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise LossConfigError(
                f"{where}: logits must have shape (B, {self.num_classes}), got {tuple(logits.shape)}"
            )
        if not logits.is_floating_point():
            raise LossConfigError(f"{where}: logits must be floating point, got {logits.dtype}")
        b = logits.shape[0]
        if b == 0:
            raise LossConfigError(f"{where}: empty batch")
        if y.dim() != 1 or y.shape[0] != b:
            raise LossConfigError(f"{where}: y must have shape ({b},), got {tuple(y.shape)}")
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise LossConfigError(f"{where}: y must hold integer class ids, got {y.dtype}")
        # Range check only where it is free: on an accelerator it would cost a host sync
        # per step; there an out-of-range id still fails (device-side assert in CE).
        if y.device.type == "cpu" and bool(((y < 0) | (y >= self.num_classes)).any()):
            raise LossConfigError(
                f"{where}: class ids must lie in [0, {self.num_classes}), "
                f"got min {int(y.min())}, max {int(y.max())}"
            )
        if self.uses_embedding:
            if z is None:
                raise LossConfigError(f"{where}: needs the embedding z, got None")
            if z.dim() != 2 or z.shape != (b, self.embed_dim):
                raise LossConfigError(
                    f"{where}: z must have shape ({b}, {self.embed_dim}), got {tuple(z.shape)}"
                )
            if not z.is_floating_point():
                raise LossConfigError(f"{where}: z must be floating point, got {z.dtype}")


class CrossEntropyLoss(LossFamily):
    """Softmax cross-entropy: the baseline every other family is compared against."""

    name = "cross_entropy"
    uses_embedding = False

    def _compute(self, logits: Tensor, z: Tensor | None, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y)

    def _compute_soft(self, logits: Tensor, z: Tensor | None, y: Tensor, target: Tensor) -> Tensor:
        return self._soft_ce(logits, target)


class FocalLoss(LossFamily):
    """Focal loss (Lin et al. 2017), mean over batch: -(1 - p_t)^γ log p_t.

    Down-weights easy, confident samples so rare/ambiguous emotions weigh more;
    γ = 0 is exactly cross-entropy. No per-class α weights (not in the spec).
    1 - p_t is computed as -expm1(log p_t) and clamped at the smallest normal
    float, so confident samples with 0 < γ < 1 give a zero, not NaN, gradient.
    """

    name = "focal"
    uses_embedding = False
    params = {"gamma": LossParam(2.0, 0.0, 5.0, minimum=0.0)}

    def _compute(self, logits: Tensor, z: Tensor | None, y: Tensor) -> Tensor:
        logpt = F.log_softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
        one_minus_pt = (-torch.expm1(logpt)).clamp(min=torch.finfo(logpt.dtype).tiny)
        return -(one_minus_pt.pow(self.hparams["gamma"]) * logpt).mean()

    def _compute_soft(self, logits: Tensor, z: Tensor | None, y: Tensor, target: Tensor) -> Tensor:
        # Σ_c t_c (1 - p_c)^γ (-log p_c): the focal term of every class the target puts mass on
        return self._soft_ce(logits, target, focal_gamma=self.hparams["gamma"])


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
        "center_lambda": LossParam(0.01, 0.0, 1.0, minimum=0.0),
        "center_lr": LossParam(0.5, 0.01, 1.0, minimum=0.0, strict=True),
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
        "temperature": LossParam(0.1, 0.02, 1.0, minimum=0.0, strict=True),
        "supcon_weight": LossParam(0.5, 0.0, 1.0, minimum=0.0),
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
        "margin": LossParam(0.3, 0.0, 1.0, minimum=0.0),
        "triplet_weight": LossParam(0.5, 0.0, 1.0, minimum=0.0),
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


class _OneHotLoss(LossFamily):
    """Regression-style losses on one-hot targets, as compared in the CNN-Transformer paper."""

    uses_embedding = False

    def _one_hot(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.one_hot(y, self.num_classes).to(logits.dtype)


class L1Loss(_OneHotLoss):
    """mean |softmax(logits) - one_hot(y)| over all B·C entries (nn.L1Loss default).

    Softmax first so predictions live on the same [0, 1] scale as the targets.
    """

    name = "l1"

    def _compute(self, logits: Tensor, z: Tensor | None, y: Tensor) -> Tensor:
        return F.l1_loss(F.softmax(logits, dim=1), self._one_hot(logits, y))

    def _compute_soft(self, logits: Tensor, z: Tensor | None, y: Tensor, target: Tensor) -> Tensor:
        per_row = F.l1_loss(F.softmax(logits, dim=1), self._smoothed(target), reduction="none").mean(dim=1)
        return self._weighted_mean(per_row, target)


class SmoothL1Loss(_OneHotLoss):
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


class BCELoss(_OneHotLoss):
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


LOSS_FAMILIES: dict[str, type[LossFamily]] = {
    cls.name: cls
    for cls in (
        CrossEntropyLoss, FocalLoss, CenterLoss, SupConLoss,
        L1Loss, SmoothL1Loss, BCELoss, TripletLoss,
    )
}


def _family(name: str) -> type[LossFamily]:
    try:
        return LOSS_FAMILIES[name]
    except (KeyError, TypeError):
        raise LossConfigError(
            f"unknown loss family {name!r}; valid names: {', '.join(LOSS_FAMILIES)}"
        ) from None


def loss_names() -> list[str]:
    return list(LOSS_FAMILIES)


def loss_uses_centers(name: str) -> bool:
    return _family(name).uses_centers


def loss_parameters(name: str) -> dict[str, tuple[float, float | None, float | None]]:
    """param -> (default, low, high): the documented search range for the sweep config."""
    return {k: (p.default, p.low, p.high) for k, p in _family(name).params.items()}


def build_loss(name: str, *, num_classes: int, embed_dim: int, label_smoothing: float = 0.0,
               class_weights: Tensor | None = None, active_classes: Tensor | None = None,
               **params: float) -> LossFamily:
    """The named family with validated hyperparameters (missing ones take their default), label
    smoothing ε over `active_classes` (default: all) and optional class weights (module docstring)."""
    return _family(name)(num_classes=num_classes, embed_dim=embed_dim, label_smoothing=label_smoothing,
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
