"""Training-batch augmentation: each transform changes the batch exactly as specified, is
reproducible from the generator's seed, and does nothing (not even a random draw) when off."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from ser_core.augment import BatchAugment, mixup, mixup_lambda, spec_augment, time_crop, time_shift


def _batch(b: int = 16, f: int = 12, t: int = 40, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, f, t, generator=g) + 5.0  # no cell is 0 before augmentation
    lengths = torch.randint(5, t + 1, (b,), generator=g)
    lengths[0] = t  # one full-length clip
    return x, lengths


def gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_frequency_masks_zero_whole_bands_of_bins():
    x, lengths = _batch()
    out = spec_augment(x, lengths, gen(), freq_masks=2, freq_mask_width=4, time_masks=0, time_mask_width=0)
    masked = out == 0
    assert torch.equal(out[~masked], x[~masked])  # what is not masked is untouched
    rows = masked.all(dim=2)  # (B, F): a masked bin is masked at every frame
    assert torch.equal(masked, rows[:, :, None].expand_as(masked))
    per_clip = rows.sum(dim=1)
    assert int(per_clip.max()) <= 2 * 4 and int(per_clip.sum()) > 0
    for r in rows:  # the union of at most 2 contiguous bands
        edges = torch.diff(torch.cat([torch.zeros(1), r.float(), torch.zeros(1)])).abs().sum()
        assert edges <= 4


def test_time_masks_fall_inside_each_clips_valid_frames():
    x, lengths = _batch(b=64)
    out = spec_augment(x, lengths, gen(), freq_masks=0, freq_mask_width=0, time_masks=3, time_mask_width=10)
    masked = out == 0
    cols = masked.all(dim=1)  # (B, T): whole frames
    assert torch.equal(masked, cols[:, None, :].expand_as(masked))
    frames = torch.arange(x.shape[-1])[None, :]
    assert not bool((cols & (frames >= lengths[:, None])).any())  # never in the padding
    assert int(cols.sum(dim=1).max()) <= 30 and int(cols.sum()) > 0
    short = lengths.argmin()
    assert int(cols[short].sum()) <= int(lengths[short])  # a width is capped at the clip's length


def test_time_shift_rolls_each_clip_within_its_valid_frames():
    x, lengths = _batch(b=32)
    s = 0.3
    out = time_shift(x, lengths, gen(), max_fraction=s)
    moved = 0
    for i in range(len(x)):
        n = int(lengths[i])
        assert torch.equal(out[i, :, n:], x[i, :, n:])  # padding stays
        matches = [o for o in range(-n, n + 1) if torch.equal(out[i, :, :n], torch.roll(x[i, :, :n], -o, dims=1))]
        assert matches, f"clip {i} is not a circular shift of itself"
        assert any(abs(o) <= round(s * n) for o in matches)  # by at most s·L frames
        moved += not torch.equal(out[i], x[i])
    assert moved > len(x) // 2


def test_time_crop_keeps_a_window_and_shortens_the_clip():
    x, lengths = _batch(b=32)
    c = 0.4
    out, new_len = time_crop(x, lengths, gen(), max_fraction=c)
    assert bool((new_len <= lengths).all()) and bool((new_len >= torch.ceil(lengths * (1 - c)) - 1).all())
    assert bool((new_len < lengths).any())
    for i in range(len(x)):
        k, n = int(new_len[i]), int(lengths[i])
        assert bool((out[i, :, k:] == 0).all())
        starts = [s for s in range(n - k + 1) if torch.equal(out[i, :, :k], x[i, :, s:s + k])]
        assert starts, f"clip {i}: the kept frames are not a window of the clip"


def test_mixup_mixes_pairs_and_targets_with_one_lambda_and_targets_sum_to_one():
    b = 10
    x, lengths = _batch(b=b)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    mixed, new_len, soft = mixup(x, lengths, y, 5, 1.0, gen(5))
    assert soft.shape == (b, 5) and torch.allclose(soft.sum(dim=1), torch.ones(b))
    # the same generator's draws: one λ' per batch, then the pairing
    g = gen(5)
    lam = mixup_lambda(1.0, g)
    pair = torch.randperm(b, generator=g)
    assert 0.5 <= lam < 0.95 and not torch.equal(pair, torch.arange(b))  # a case that shows the mixing
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[pair])
    one_hot = torch.nn.functional.one_hot(y, 5).float()
    assert torch.allclose(soft, lam * one_hot + (1 - lam) * one_hot[pair])
    assert torch.equal(new_len, torch.maximum(lengths, lengths[pair]))
    assert bool((soft.argmax(dim=1) == y).all())  # y stays each row's dominant label


def test_mixup_lambda_follows_the_folded_beta_distribution():
    """λ' = max(λ, 1-λ) with λ ~ Beta(α, α): P(λ' <= x) = 2·I_x(α, α) - 1 for x >= 1/2."""
    alpha = 0.4
    g = gen(0)
    draws = np.array([mixup_lambda(alpha, g) for _ in range(2000)])
    assert draws.min() >= 0.5 and draws.max() <= 1.0
    cdf = lambda v: np.clip(2 * scipy.stats.beta.cdf(v, alpha, alpha) - 1, 0, 1)  # noqa: E731
    assert scipy.stats.kstest(draws, cdf).pvalue > 1e-3
    # a wrong α is detected by the same test
    assert scipy.stats.kstest(np.array([mixup_lambda(2.0, g) for _ in range(2000)]), cdf).pvalue < 1e-6


def test_everything_is_reproducible_from_the_seed():
    x, lengths = _batch()
    y = torch.arange(len(x)) % 4
    aug = BatchAugment(freq_masks=2, freq_mask_width=3, time_masks=2, time_mask_width=6, time_shift=0.2,
                       time_crop=0.2, mixup_alpha=0.3)
    a = aug(x, lengths, y, 4, gen(7))
    b = aug(x, lengths, y, 4, gen(7))
    c = aug(x, lengths, y, 4, gen(8))
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], x)


def test_off_means_untouched_and_no_random_draws():
    """With every setting 0 the batch is returned as it is and the generator is not advanced,
    so a run without augmentation trains exactly as before augmentation existed."""
    x, lengths = _batch()
    y = torch.zeros(len(x), dtype=torch.long)
    g = gen(5)
    before = g.get_state()
    aug = BatchAugment(freq_mask_width=8, time_mask_width=20)  # widths alone (count 0) do nothing
    assert not aug.enabled
    out, out_len, soft = aug(x, lengths, y, 4, g)
    assert out is x and out_len is lengths and soft is None
    assert torch.equal(g.get_state(), before)


def test_without_lengths_every_frame_counts_as_valid():
    x, _ = _batch()
    out = spec_augment(x, None, gen(), freq_masks=0, freq_mask_width=0, time_masks=1, time_mask_width=39)
    assert bool((out == 0).any())
    cropped, lengths = time_crop(x, None, gen(), max_fraction=0.5)
    assert lengths is None and bool((cropped == 0).any())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_batch_device_with_the_same_draws():
    device = "cuda"
    x, lengths = _batch()
    y = torch.arange(len(x)) % 4
    aug = BatchAugment(freq_masks=2, freq_mask_width=3, time_masks=2, time_mask_width=6, time_shift=0.2,
                       mixup_alpha=0.3)
    cpu = aug(x, lengths, y, 4, gen(2))
    dev = aug(x.to(device), lengths.to(device), y.to(device), 4, gen(2))
    assert dev[0].device.type == "cuda"
    for u, v in zip(cpu, dev):
        assert torch.allclose(u, v.cpu())
