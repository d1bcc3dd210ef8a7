"""Per-row and per-group feature moments (frames, mean, M2), merged exactly in float64.

Why a module of its own: these sufficient statistics are what the node's feature cache stores
beside the spectrograms (ser_core/feature_cache.py), and what both normalisers are fitted from,
so a trial merges cached moments instead of reading its training spectrograms again. A change to
row_moments changes cached arrays: bump FEATURES_VERSION (ser_core/features/__init__.py).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


@torch.no_grad()
def row_moments(feats: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Each row's (frames, mean, M2) per frequency over its real frames, in float64: the
    sufficient statistics from which any set of rows' mean and variance follow exactly
    (`merge_row_moments`). feats (B, F, frames); lengths (B,) valid frames, or None = all.
    Returns shapes (B,), (B, F), (B, F); a row with no valid frame has mean 0 and M2 0."""
    x = feats.detach().to(device="cpu", dtype=torch.float64)
    if lengths is None:
        n_r = torch.full((x.shape[0],), float(x.shape[2]), dtype=torch.float64)
    else:
        n_r = torch.as_tensor(lengths, device="cpu").to(torch.float64).clamp(0, x.shape[2])
    valid = (torch.arange(x.shape[2]) < n_r[:, None]).to(torch.float64)[:, None, :]  # (B, 1, frames)
    mean_r = (x * valid).sum(dim=2) / n_r.clamp_min(1)[:, None]
    m2_r = ((x - mean_r[:, :, None]).square() * valid).sum(dim=2)
    return n_r, mean_r, m2_r


def merge_row_moments(n_r: Tensor, mean_r: Tensor, m2_r: Tensor, groups: Tensor,
                      n_groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """Rows' moments merged into their groups (Chan et al.'s parallel formula, float64, one
    tensor op per step): (frames, mean, M2) per group, shapes (G,), (G, F), (G, F). A row of
    group -1 or without frames is left out; a group without rows has frames 0, mean 0, M2 0."""
    g = torch.as_tensor(groups, device="cpu", dtype=torch.long)
    n_r, mean_r, m2_r = (t.to(device="cpu", dtype=torch.float64) for t in (n_r, mean_r, m2_r))
    keep = (g >= 0) & (n_r > 0)
    n_r, mean_r, m2_r, g = n_r[keep], mean_r[keep], m2_r[keep], g[keep]
    n_features = mean_r.shape[1]
    n_g = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, g, n_r)
    mean_g = torch.zeros(n_groups, n_features, dtype=torch.float64).index_add_(0, g, mean_r * n_r[:, None])
    mean_g /= n_g.clamp_min(1)[:, None]
    m2_g = torch.zeros(n_groups, n_features, dtype=torch.float64).index_add_(
        0, g, m2_r + n_r[:, None] * (mean_r - mean_g[g]).square())
    return n_g, mean_g, m2_g


@torch.no_grad()
def group_statistics(batches: Iterable[tuple[Tensor, Tensor | None, Tensor]], n_groups: int,
                     n_features: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-group, per-frequency mean and population std over the real frames of each group's clips.

    Each item is (feats (B, F, frames), n_valid_frames (B,) or None, group (B,) with -1 = leave
    the row out). Per batch, each row's (count, mean, M2) is taken over its valid frames and the
    rows are merged into their groups with Chan et al.'s pairwise update in float64, all with
    tensor ops (no Python per row). Returns (mean, std, frames) of shapes (G, F), (G, F), (G,);
    a group with no frames has mean 0, std 1 and count 0.
    """
    count = torch.zeros(n_groups, dtype=torch.float64)
    mean = torch.zeros(n_groups, n_features, dtype=torch.float64)
    m2 = torch.zeros(n_groups, n_features, dtype=torch.float64)
    for i, (feats, lengths, groups) in enumerate(batches):
        if feats.ndim != 3 or feats.shape[1] != n_features:
            raise ValueError(f"group_statistics (batch {i}): expected (B, {n_features}, frames), "
                             f"got {tuple(feats.shape)}")
        # the batch's rows merged per group ...
        n_b, mean_b, m2_b = merge_row_moments(*row_moments(feats, lengths), groups, n_groups)
        # ... then into the running totals (Chan et al.)
        total = count + n_b
        delta = mean_b - mean
        w = torch.where(total > 0, n_b / total.clamp_min(1), torch.zeros_like(total))
        mean = mean + delta * w[:, None]
        m2 = m2 + m2_b + delta.square() * (count * w)[:, None]
        count = total
    return _mean_std(count, mean, m2, "group_statistics")


def statistics_from_row_moments(n_r: Tensor, mean_r: Tensor, m2_r: Tensor, groups: Tensor,
                                n_groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """What `group_statistics` returns, (mean, std, frames) per group, from rows' cached moments
    (`row_moments`) instead of their spectrograms."""
    count, mean, m2 = merge_row_moments(n_r, mean_r, m2_r, groups, n_groups)
    return _mean_std(count, mean, m2, "statistics_from_row_moments")


def _mean_std(count: Tensor, mean: Tensor, m2: Tensor, where: str) -> tuple[Tensor, Tensor, Tensor]:
    if not bool(torch.isfinite(mean).all() & torch.isfinite(m2).all()):
        raise ValueError(f"{where}: features contain NaN or inf")
    std = torch.where(count[:, None] > 0, (m2 / count.clamp_min(1)[:, None]).sqrt(), torch.ones_like(m2))
    return mean, std, count
