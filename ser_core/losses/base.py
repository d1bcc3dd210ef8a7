"""What every loss family shares: the call, the hyperparameter declaration, the targets.

Loss families, each selectable by name, so one sweep can compare them on equal terms; each
family is its own module beside this one, and ser_core.losses.registry names them.

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
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LossConfigError(ValueError):
    """A loss family name, hyperparameter or input does not fit the family."""


@dataclass(frozen=True)
class LossParam:
    """One hyperparameter: its default, the range the sweep may search, its hard limit and the
    label a person reads. Declared once, on the family that uses it (``LossFamily.params``): the
    trial config's fields, the results' columns and the sweep's checks all come from here
    (ser_core.losses.registry.loss_param_specs).

    ``low``/``high`` are the documented range: the trial config rejects values outside
    it and sweeps search inside it (None = unbounded on that side). ``minimum``/``strict``
    are what the maths allows (value >= minimum, or > when strict). ``label`` names it for a
    person (tables, axes), with the symbol the family's docstring uses.
    """

    default: float
    low: float | None
    high: float | None
    minimum: float = 0.0
    strict: bool = False
    label: str = field(default="", kw_only=True)

    def __post_init__(self) -> None:
        # A declaration error surfaces at import, not in the first trial that reads it.
        if not self.label:
            raise LossConfigError(f"a loss parameter with default {self.default} has no label")
        if (self.low is not None and self.default < self.low) or (self.high is not None and self.default > self.high):
            raise LossConfigError(f"{self.label}: default {self.default} lies outside its range "
                                  f"[{self.low}, {self.high}]")

    def check(self, family: str, name: str, value: Any) -> float:
        """The value as a float, if the maths allows it (what building a loss checks)."""
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

    def check_range(self, family: str, name: str, value: Any) -> float:
        """The value as a float, if it lies in the documented range [low, high] (and the maths
        allows it): what a trial config may set. The one place that range is checked; the trial
        config (ser_core.config.LossConfig) and every sweep check built on it call this."""
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (
                (self.low is not None and value < self.low) or (self.high is not None and value > self.high)):
            raise LossConfigError(f"loss.{name}={value} is out of range [{self.low}, {self.high}] for {family!r}")
        return self.check(family, name, value)


def _at_least_f32(t: Tensor) -> Tensor:
    # bf16/fp16 -> float32; float64 stays float64 (gradcheck).
    return t.to(torch.promote_types(t.dtype, torch.float32))


class LossFamily(nn.Module):
    """Base class: validates hyperparameters and inputs, upcasts, disables autocast.

    Subclasses set the class variables and implement ``_compute`` on clean inputs.
    ``params`` is where a family's hyperparameters are declared, the only place: adding one
    there adds the trial config's field and the results' column (ser_core.losses.registry).
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


class OneHotLoss(LossFamily):
    """Regression-style losses on one-hot targets, as compared in the CNN-Transformer paper
    (l1, smooth_l1, bce): the families that score the whole target vector, not a class id."""

    uses_embedding = False

    def _one_hot(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.one_hot(y, self.num_classes).to(logits.dtype)
