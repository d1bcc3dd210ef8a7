"""Feature standardisation modules: global (training-split statistics) and per-speaker.

Kept apart from the frontends because they are fitted state (buffers that travel in the
checkpoint's state_dict), not fixed signal processing; their statistics come from
ser_core.features.moments.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from .moments import statistics_from_row_moments


class FeatureNormalizer(nn.Module):
    """Per-frequency standardisation with statistics from the training split only.

    Fitting streams over batches, merging per-batch (count, mean, M2) in float64 (Chan et al.),
    so a whole corpus can be scanned batch by batch and the variance does not suffer the
    cancellation of sum-of-squares on dB values. mean/std/fitted are buffers, so they travel
    in the checkpoint's state_dict with the model.
    """

    def __init__(self, n_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        if n_features <= 0:
            raise ValueError(f"FeatureNormalizer: n_features must be > 0, got {n_features}")
        self.n_features = n_features
        self.eps = eps
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.register_buffer("fitted", torch.tensor(False))
        # Python mirror of `fitted`: reading the buffer in forward would sync the GPU per batch.
        self._is_fitted = False
        self.register_load_state_dict_post_hook(FeatureNormalizer._sync_fitted)

    @staticmethod
    def _sync_fitted(module: nn.Module, incompatible_keys: object) -> None:
        module._is_fitted = bool(module.fitted)

    def _check(self, feats: Tensor, where: str) -> None:
        if feats.ndim != 3 or feats.shape[1] != self.n_features:
            raise ValueError(
                f"FeatureNormalizer.{where}: expected features of shape "
                f"(B, {self.n_features}, frames), got {tuple(feats.shape)}"
            )

    @torch.no_grad()
    def fit(self, batches: Iterable[Tensor | tuple[Tensor, Tensor]]) -> FeatureNormalizer:
        """Fit on (B, F, frames) batches. An item may be (feats, n_valid_frames) with one
        frame count per example, so padding frames of variable-length batches are left out."""
        count = 0
        mean = torch.zeros(self.n_features, dtype=torch.float64)
        m2 = torch.zeros(self.n_features, dtype=torch.float64)
        for i, item in enumerate(batches):
            feats, lengths = item if isinstance(item, (tuple, list)) else (item, None)
            self._check(feats, f"fit (batch {i})")
            x = feats.detach().to(device="cpu", dtype=torch.float64)
            if lengths is None:
                cols = x.transpose(0, 1).reshape(self.n_features, -1)  # (F, B*frames)
            else:
                lengths = torch.as_tensor(lengths, device="cpu")
                if lengths.shape != (x.shape[0],) or bool(
                    ((lengths < 0) | (lengths > x.shape[2])).any()
                ):
                    raise ValueError(
                        f"FeatureNormalizer.fit (batch {i}): lengths must hold one frame count "
                        f"in 0..{x.shape[2]} per example, got {lengths.tolist()}"
                    )
                valid = torch.arange(x.shape[2]) < lengths[:, None]  # (B, frames)
                cols = x.transpose(0, 1)[:, valid]  # (F, n_valid)
            n_b = cols.shape[1]
            if n_b == 0:
                continue
            mean_b = cols.mean(dim=1)
            m2_b = (cols - mean_b[:, None]).square().sum(dim=1)
            total = count + n_b
            delta = mean_b - mean
            mean = mean + delta * (n_b / total)
            m2 = m2 + m2_b + delta.square() * (count * n_b / total)
            count = total
        if count == 0:
            raise ValueError("FeatureNormalizer.fit: no frames seen (empty iterable or all padding)")
        if not bool(torch.isfinite(mean).all() & torch.isfinite(m2).all()):
            raise ValueError("FeatureNormalizer.fit: features contain NaN or inf")
        self.mean.copy_(mean)
        self.std.copy_((m2 / count).sqrt())  # population std, as numpy's default ddof=0
        self.fitted.fill_(True)
        self._is_fitted = True
        return self

    @torch.no_grad()
    def fit_row_moments(self, n_r: Tensor, mean_r: Tensor, m2_r: Tensor) -> FeatureNormalizer:
        """Fit from the training rows' cached moments (`row_moments`): the same statistics as
        `fit` over those rows' spectrograms, without reading them."""
        mean, std, count = statistics_from_row_moments(n_r, mean_r, m2_r, torch.zeros(len(n_r), dtype=torch.long), 1)
        if float(count[0]) == 0:
            raise ValueError("FeatureNormalizer.fit_row_moments: no frames (no rows, or all padding)")
        self.mean.copy_(mean[0])
        self.std.copy_(std[0])
        self.fitted.fill_(True)
        self._is_fitted = True
        return self

    def forward(self, feats: Tensor, inplace: bool = False) -> Tensor:
        if not self._is_fitted:
            raise RuntimeError(
                "FeatureNormalizer: not fitted; call fit() on the training split "
                "or load a checkpoint's state_dict first"
            )
        self._check(feats, "forward")
        mean = self.mean.to(feats.dtype)[:, None]
        std = self.std.clamp_min(self.eps).to(feats.dtype)[:, None]
        if inplace:  # a feature cache normalised where it lies: no second copy of the split
            return feats.sub_(mean).div_(std)
        return (feats - mean) / std


class SpeakerNormalizer(nn.Module):
    """Per-speaker, per-frequency standardisation: each row is normalised with the statistics of
    its own speaker's clips (over their real frames), train, validation and test speakers alike.

    Why: speaker-level normalisation removes much of the between-speaker variation (vocal tract,
    recording level) that a speaker-independent SER model must otherwise learn to ignore; it is
    the usual practice in speaker-independent SER (e.g. Schuller et al., "Acoustic emotion
    recognition: a benchmark comparison of performances", ASRU 2009, per-speaker standardisation;
    Busso et al., "Iterative feature normalization for emotional speech detection", ICASSP 2011).
    It is transductive per speaker: a test speaker's features are normalised with statistics of
    that speaker's own (unlabelled) test clips — no label is read, but the statistics need several
    clips of the speaker. `group_of_row` maps a corpus row to its speaker's index.
    """

    def __init__(self, mean: Tensor, std: Tensor, group_of_row: Tensor, eps: float = 1e-5) -> None:
        super().__init__()
        if mean.ndim != 2 or mean.shape != std.shape:
            raise ValueError(f"SpeakerNormalizer: mean and std must both be (speakers, F), got "
                             f"{tuple(mean.shape)} and {tuple(std.shape)}")
        self.eps = eps
        self.register_buffer("mean", mean.to(torch.float32))
        self.register_buffer("std", std.to(torch.float32).clamp_min(eps))
        self.register_buffer("group_of_row", torch.as_tensor(group_of_row, dtype=torch.long))

    def forward(self, feats: Tensor, rows: Tensor, inplace: bool = False) -> Tensor:
        if feats.ndim != 3 or feats.shape[1] != self.mean.shape[1] or len(rows) != len(feats):
            raise ValueError(f"SpeakerNormalizer: expected (B, {self.mean.shape[1]}, frames) features and B row "
                             f"ids, got {tuple(feats.shape)} and {len(rows)} rows")
        g = self.group_of_row[rows.to(self.group_of_row.device)].to(feats.device)
        mean = self.mean.to(feats.device, feats.dtype)[g][:, :, None]  # (B, F, 1) gathered: one op per batch
        std = self.std.to(feats.device, feats.dtype)[g][:, :, None]
        if inplace:
            return feats.sub_(mean).div_(std)
        return (feats - mean) / std
