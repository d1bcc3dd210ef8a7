"""Training-time augmentation of normalised spectrogram batches, on the trial's device.

Every function here takes a whole batch (B, F, T) with its valid frame counts (B,) (None: every
frame is valid) and the trial's `torch.Generator`, draws the batch's random numbers as a few
small tensors from that generator (on the CPU, so one seed gives the same draws on any device)
and builds the masks and gathers on the batch's device: no per-sample Python, and a run is
reproducible from its seed. `fit` applies them to training batches only; validation and test
batches never pass through this module.

- **SpecAugment** (Park et al., "SpecAugment: A Simple Data Augmentation Method for Automatic
  Speech Recognition", Interspeech 2019): `freq_masks` masks of width f ~ U{0..F} bins starting
  at f0 ~ U{0..n_bins - f}, and `time_masks` masks of width t ~ U{0..T} frames at t0 ~
  U{0..L - t} inside the clip's L valid frames (the width is capped at L, Park et al.'s upper
  bound p = 1). Masked cells are set to 0: the features are standardised per frequency on the
  training split, so 0 is the training mean, which is what Park et al. mask with.
- **Time shift**: each clip is rolled circularly inside its own valid frames by an offset
  drawn uniformly from [-s·L, s·L]. The content moves in time but keeps every frame and its
  length, so the models' padding masks (which count valid frames from frame 0) stay right.
- **Random crop**: each clip keeps a random window of k ~ U[(1 - c)·L, L] of its valid
  frames, moved to the start of the segment, with the rest of the segment set to 0 and its
  frame count shortened to k (the models then mask the rest as padding).
- **Mixup** (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018): one
  λ ~ Beta(α, α) per batch, as in the paper's reference code, and a random pairing of the
  batch with itself; inputs and one-hot targets are mixed with the same λ. We use
  λ' = max(λ, 1 - λ) so the first clip of every pair dominates: Beta(α, α) is symmetric and
  the pairing is a random permutation, so the distribution of mixed pairs is unchanged, and
  the dominant label of each mixed clip is its own label `y` (what the embedding terms of
  center/supcon/triplet use, see ser_core.losses). A mixed clip is valid over the longer of
  its two clips' frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import scipy.special
import torch
from torch import Tensor

# Frame positions beyond a clip's valid length are set to this value by the crop: the
# training mean of standardised features (what SpecAugment's masks use too).
FILL_VALUE = 0.0


def _uniform(shape: tuple[int, ...], gen: torch.Generator, device: torch.device) -> Tensor:
    """U[0, 1) draws from the trial's (CPU) generator, moved to the batch's device."""
    return torch.rand(shape, generator=gen).to(device)


def _valid_lengths(x: Tensor, lengths: Tensor | None) -> Tensor:
    if lengths is None:
        return torch.full((x.shape[0],), x.shape[-1], dtype=torch.long, device=x.device)
    return lengths.clamp(1, x.shape[-1])


def _band_mask(n_masks: int, max_width: int, size: Tensor, extent: int, gen: torch.Generator,
               device: torch.device) -> Tensor:
    """(B, extent) bool: the union of `n_masks` bands per row, each of width U{0..max_width}
    (capped at the row's `size`) starting at U{0..size - width}."""
    b = size.shape[0]
    u = _uniform((2, b, n_masks), gen, device)
    size = size[:, None]
    width = torch.minimum((u[0] * (max_width + 1)).long(), size)
    start = (u[1] * (size - width + 1).to(u.dtype)).long()
    pos = torch.arange(extent, device=device)[None, None, :]
    return ((pos >= start[..., None]) & (pos < (start + width)[..., None])).any(dim=1)


def spec_augment(x: Tensor, lengths: Tensor | None, gen: torch.Generator, *, freq_masks: int,
                 freq_mask_width: int, time_masks: int, time_mask_width: int) -> Tensor:
    """SpecAugment's frequency and time masks (Park et al. 2019) on a (B, F, T) batch; time
    masks fall inside each clip's valid frames. Returns a new tensor."""
    out = x
    b, n_bins, n_frames = x.shape
    if freq_masks > 0 and freq_mask_width > 0:
        bins = torch.full((b,), n_bins, dtype=torch.long, device=x.device)
        mask = _band_mask(freq_masks, freq_mask_width, bins, n_bins, gen, x.device)
        out = out.masked_fill(mask[:, :, None], FILL_VALUE)
    if time_masks > 0 and time_mask_width > 0:
        mask = _band_mask(time_masks, time_mask_width, _valid_lengths(x, lengths), n_frames, gen, x.device)
        out = out.masked_fill(mask[:, None, :], FILL_VALUE)
    return out


def _gather_frames(x: Tensor, idx: Tensor) -> Tensor:
    return x.gather(2, idx[:, None, :].expand(-1, x.shape[1], -1))


def time_shift(x: Tensor, lengths: Tensor | None, gen: torch.Generator, *, max_fraction: float) -> Tensor:
    """Roll each clip circularly within its L valid frames by U[-max_fraction·L, max_fraction·L]
    frames (rounded); padding frames stay where they are."""
    if max_fraction <= 0:
        return x
    n_frames = x.shape[-1]
    valid = _valid_lengths(x, lengths)
    u = _uniform((x.shape[0],), gen, x.device)
    offset = torch.round((2.0 * u - 1.0) * max_fraction * valid.to(u.dtype)).long()
    t = torch.arange(n_frames, device=x.device)[None, :]
    rolled = torch.remainder(t + offset[:, None], valid[:, None])
    return _gather_frames(x, torch.where(t < valid[:, None], rolled, t))


def time_crop(x: Tensor, lengths: Tensor | None, gen: torch.Generator, *,
              max_fraction: float) -> tuple[Tensor, Tensor | None]:
    """Keep a random window of k ~ U[(1 - max_fraction)·L, L] valid frames per clip, moved to
    frame 0; frames from k on are set to FILL_VALUE and the frame counts become k (None stays
    None: then the model sees the filled tail as content)."""
    if max_fraction <= 0:
        return x, lengths
    n_frames = x.shape[-1]
    valid = _valid_lengths(x, lengths)
    u = _uniform((2, x.shape[0]), gen, x.device)
    vf = valid.to(u.dtype)
    kept = torch.ceil(vf * (1.0 - max_fraction * u[0])).long().clamp(1, n_frames)
    kept = torch.minimum(kept, valid)
    start = (u[1] * (valid - kept + 1).to(u.dtype)).long()
    t = torch.arange(n_frames, device=x.device)[None, :]
    inside = t < kept[:, None]
    idx = torch.where(inside, start[:, None] + t, t)
    out = _gather_frames(x, idx).masked_fill(~inside[:, None, :], FILL_VALUE)
    return out, (None if lengths is None else kept)


def mixup_lambda(alpha: float, gen: torch.Generator) -> float:
    """max(λ, 1 - λ) for λ ~ Beta(α, α), by inverting the Beta CDF at a uniform draw of the
    trial's generator (torch's Beta sampler takes no generator, so it would not be seeded)."""
    u = float(torch.rand((), generator=gen, dtype=torch.float64))
    lam = float(scipy.special.betaincinv(alpha, alpha, u))
    return max(lam, 1.0 - lam)


def mixup(x: Tensor, lengths: Tensor | None, y: Tensor, num_classes: int, alpha: float,
          gen: torch.Generator, paired: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor]:
    """Mixup (Zhang et al. 2018) of a batch with a random pairing of itself.

    Returns the mixed inputs, their frame counts (the longer of each pair) and the soft
    targets (B, num_classes): λ'·one_hot(y) + (1 - λ')·one_hot(y[pair]), each row summing to
    one, with λ' = max(λ, 1 - λ) >= 0.5 so `y` stays each row's dominant label. `paired`: a
    second input of the same clips (a fused model's functionals), mixed in place with the same
    pairs and λ'."""
    lam = mixup_lambda(alpha, gen)
    pair = torch.randperm(x.shape[0], generator=gen).to(x.device)
    mixed = x * lam + x[pair] * (1.0 - lam)
    if paired is not None:
        paired.copy_(paired * lam + paired[pair] * (1.0 - lam))
    one_hot = torch.nn.functional.one_hot(y, num_classes).to(x.dtype if x.is_floating_point() else torch.float32)
    soft = one_hot * lam + one_hot[pair] * (1.0 - lam)
    new_lengths = None if lengths is None else torch.maximum(lengths, lengths[pair])
    return mixed, new_lengths, soft


@dataclass(frozen=True)
class BatchAugment:
    """The training batches' augmentation, in the order crop -> shift -> masks -> mixup (masks
    after the crop and shift so they land on the frames the model sees; mixup last so it mixes
    the augmented clips, as SpecAugment + mixup recipes do). Built from the `[augment]` config
    section; everything 0 = off, and then it draws no random numbers at all, so a run without
    augmentation consumes the generator exactly as before this module existed."""

    freq_masks: int = 0
    freq_mask_width: int = 0
    time_masks: int = 0
    time_mask_width: int = 0
    time_shift: float = 0.0
    time_crop: float = 0.0
    mixup_alpha: float = 0.0

    @classmethod
    def from_config(cls, cfg) -> "BatchAugment":
        return cls(**{f: getattr(cfg, f) for f in cls.__dataclass_fields__})

    @property
    def enabled(self) -> bool:
        return self.masks_on or self.time_shift > 0 or self.time_crop > 0 or self.mixup_alpha > 0

    @property
    def masks_on(self) -> bool:
        return (self.freq_masks > 0 and self.freq_mask_width > 0) or (self.time_masks > 0 and self.time_mask_width > 0)

    def __call__(self, x: Tensor, lengths: Tensor | None, y: Tensor, num_classes: int,
                 gen: torch.Generator, paired: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(inputs, frame counts, soft targets or None when mixup is off) for one training batch.
        `paired`: a second input of the same clips (a fused model's functionals, a batch of its
        own): mixup mixes it in place with the same pairs; crop, shift and masks leave it alone."""
        x, lengths = time_crop(x, lengths, gen, max_fraction=self.time_crop)
        x = time_shift(x, lengths, gen, max_fraction=self.time_shift)
        if self.masks_on:
            x = spec_augment(x, lengths, gen, freq_masks=self.freq_masks, freq_mask_width=self.freq_mask_width,
                             time_masks=self.time_masks, time_mask_width=self.time_mask_width)
        soft = None
        if self.mixup_alpha > 0:
            x, lengths, soft = mixup(x, lengths, y, num_classes, self.mixup_alpha, gen, paired)
        return x, lengths, soft
