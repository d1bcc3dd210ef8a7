"""Faster implementations of the same maths, swapped into a built model for training.

Why: on a CPU an epoch is the model step (benchmarks/RESULTS.md, "Where the time goes"), and
much of that step is work the maths does not ask for:
- every dropout mask is drawn by PyTorch's serial per-element Bernoulli sampler (10 ns per
  element here: 16 ms for one feed-forward activation of the CNN-Transformer), including the
  attention-weight dropout hidden inside `scaled_dot_product_attention`;
- ReLU and its backward run over the full-resolution map of every conv block although the
  max-pool right after it keeps a quarter of it (ReLU is monotone, so ReLU-then-max-pool and
  max-pool-then-ReLU are the same function with the same gradient);
- glibc gives every freed block above 32 MB back to the kernel, so each first-block activation
  of every step page-faults its memory in again (~20 k faults per step at batch 32).

Each replacement computes the same function with the same parameters: a model's state_dict,
checkpoints and `predict` are unchanged, and `TrainConfig.fastpath = false` trains with the stock
PyTorch modules. Off the CPU the stock kernels are kept (CUDA's dropout and attention are already
fused); only the ReLU/max-pool order, which saves work everywhere, applies on every device.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import platform
import sys

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_INT16_SPAN = 65536


def dropout_keep_scale(shape: torch.Size, p: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    """A dropout mask already scaled by 1/(1-p), drawn 4 elements per 64-bit random word.

    One `random_()` draw of an int64 gives four 16-bit uniforms, so the serial generator runs a
    quarter as often as `bernoulli_` (which draws a double per element). The drop probability
    is p rounded to a multiple of 1/65536 (|error| <= 7.6e-6; 0.1 becomes 0.1000061), and the
    scale is 1/(1 - that p), so the mask's mean is exactly 1.
    """
    n = math.prod(shape)
    # from=-2**63, to=None is PyTorch's full 64-bit range; plain random_() leaves the sign bit 0
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    uniform16 = words.view(torch.int16)[:n].view(shape)  # each value in [-32768, 32767], uniform
    dropped = round(p * _INT16_SPAN)  # of 65536 equally likely values: P(drop) = the rounded p
    keep = uniform16 >= dropped - _INT16_SPAN // 2
    return keep.to(dtype).mul_(_INT16_SPAN / (_INT16_SPAN - dropped))  # E[mask] is exactly 1


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """F.dropout with the cheap CPU mask above (the stock kernel elsewhere)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    if p >= 1.0:
        return x * 0.0
    return x * dropout_keep_scale(x.shape, p, x.device, x.dtype)


class Dropout(nn.Dropout):
    """nn.Dropout drawing its CPU masks with `dropout_keep_scale`."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


class TransformerEncoderLayer(nn.TransformerEncoderLayer):
    """nn.TransformerEncoderLayer whose self-attention, when training on a CPU, is written out
    (scores, softmax, dropout, weighted sum) so the attention-weight dropout uses the cheap
    mask; SDPA's math path computes the same steps. Same parameters and buffers as the stock
    layer: `accelerate` swaps the class of a built layer in place. Evaluation and other devices
    use the stock path."""

    def _sa_block(self, x: Tensor, attn_mask: Tensor | None, key_padding_mask: Tensor | None,
                  is_causal: bool = False) -> Tensor:
        attn = self.self_attn
        if not (attn.training and x.device.type == "cpu" and attn.batch_first and not is_causal
                and (attn_mask is None or attn_mask.dim() == 2)
                and attn._qkv_same_embed_dim and attn.bias_k is None and not attn.add_zero_attn):
            return super()._sa_block(x, attn_mask, key_padding_mask, is_causal)
        batch, steps, dim = x.shape
        heads = attn.num_heads
        qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = qkv.view(batch, steps, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        scores = (q * (dim // heads) ** -0.5) @ k.transpose(-2, -1)  # (B, heads, T, T)
        if attn_mask is not None:  # (T, T); forward() hands over float masks (-inf = blocked)
            scores = _apply_mask(scores, attn_mask)
        if key_padding_mask is not None:
            scores = _apply_mask(scores, key_padding_mask[:, None, None, :])
        weights = dropout(scores.softmax(dim=-1), attn.dropout, True)
        out = (weights @ v).transpose(1, 2).reshape(batch, steps, dim)
        return self.dropout1(F.linear(out, attn.out_proj.weight, attn.out_proj.bias))


def _apply_mask(scores: Tensor, mask: Tensor) -> Tensor:
    return scores.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else scores + mask


def _pool_before_relu(block: nn.Sequential) -> None:
    """conv, BN, ReLU, max-pool -> conv, BN, max-pool, ReLU: the same values and gradients
    (ReLU is monotone; a window whose maximum is <= 0 passes no gradient either way), with
    ReLU on the pooled map. Parameter-free modules only move, so state_dict keys stay."""
    mods = list(block._modules.items())
    for i in range(len(mods) - 1):
        (k_relu, relu), (k_pool, pool) = mods[i], mods[i + 1]
        if type(relu) is nn.ReLU and type(pool) is nn.MaxPool2d and not pool.return_indices:
            block._modules[k_relu], block._modules[k_pool] = pool, relu
            return


class ConvBatchNormBlock(nn.Sequential):
    """A conv block (Conv2d, BatchNorm2d, ...) that, when training on a CPU on an input that
    needs no gradient (the spectrogram entering the first block), folds batch normalisation
    into the convolution.

    Batch statistics of a convolution's output are a function of the weights and of its input
    patches' mean and covariance: mean_c = w_c . mu, var_c = w_c' Sigma w_c. So the block
    computes mu and Sigma over the input patches (9 x 9 for a 3x3 conv of one channel), folds
    gamma / sqrt(var + eps) and the shift into the convolution's weights and a bias, and runs
    one convolution: the same output, the same gradients for the conv weights,
    gamma and beta (they flow through the statistics as in BN's backward) and the same running
    statistics, without BN's two passes forward and two backward over the block's largest
    activation. Same children as the stock block: state_dict keys are unchanged."""

    def forward(self, x: Tensor) -> Tensor:
        conv, bn = self[0], self[1]
        if not (self.training and x.device.type == "cpu" and not x.requires_grad and _foldable(conv, bn)
                and x.shape[0] * math.prod(_output_size(x, conv)) > 1):  # BN itself refuses one value
            return super().forward(x)
        y = _conv_batch_norm_train(x, conv, bn)
        for module in list(self)[2:]:
            y = module(y)
        return y


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    """A plain conv + BN pair whose patches are small: the covariance costs (C_in k k)^2 per
    position, cheaper than BN's passes only while C_in k k <= C_out (the first block: 9 <= 16)."""
    return (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and conv.bias is None and conv.groups == 1
            and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple) and bn.affine
            and bn.track_running_stats and bn.num_features == conv.out_channels
            and conv.in_channels * math.prod(conv.kernel_size) <= conv.out_channels)


def _output_size(x: Tensor, conv: nn.Conv2d) -> tuple[int, int]:
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = conv.kernel_size, conv.stride, conv.dilation, conv.padding
    return ((x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1,
            (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1)


def _patch_moments(x: Tensor, conv: nn.Conv2d) -> tuple[Tensor, Tensor, int]:
    """Mean and covariance of the convolution's input patches over every output position
    (what BN averages over), and the number of positions. The patches are strided views of
    the padded input stacked once (4x cheaper than F.unfold here); the input is shifted by its
    channel means first, which leaves the covariance alone and keeps E[pp'] - mu mu' from
    cancelling on inputs far from zero."""
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = conv.kernel_size, conv.stride, conv.dilation, conv.padding
    batch = x.shape[0]
    out_h, out_w = _output_size(x, conv)
    shift = x.mean(dim=(0, 2, 3))
    padded = F.pad(x, (pw, pw, ph, ph)) - shift[None, :, None, None]  # padding shifts with it
    windows = [padded[:, :, i * dh: i * dh + sh * (out_h - 1) + 1: sh, j * dw: j * dw + sw * (out_w - 1) + 1: sw]
               for i in range(kh) for j in range(kw)]
    cols = torch.stack(windows, dim=2).reshape(batch, -1, out_h * out_w)  # (B, C_in k k), as weights flatten
    n = batch * out_h * out_w
    mu_shifted = cols.sum(dim=(0, 2)) / n
    sigma = torch.bmm(cols, cols.transpose(1, 2)).sum(dim=0) / n - torch.outer(mu_shifted, mu_shifted)
    return mu_shifted + shift.repeat_interleave(kh * kw), sigma, n


def _conv_batch_norm_train(x: Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Tensor:
    mu, sigma, n = _patch_moments(x, conv)
    w = conv.weight.reshape(conv.out_channels, -1)
    mean = w @ mu
    var = ((w @ sigma) * w).sum(dim=1).clamp_min(0.0)  # biased, as BN normalises with
    scale = bn.weight * torch.rsqrt(var + bn.eps)
    with torch.no_grad():  # BN's running statistics (unbiased variance), as the stock module
        bn.num_batches_tracked.add_(1)
        m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        bn.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
        bn.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
    return F.conv2d(x, conv.weight * scale[:, None, None, None], bn.bias - mean * scale,
                    conv.stride, conv.padding, conv.dilation)


def accelerate(model: nn.Module) -> nn.Module:
    """Swap the faster equivalents into `model` in place (idempotent) and return it."""
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            _pool_before_relu(module)
            if type(module) is nn.Sequential and len(module) >= 2 and _foldable(module[0], module[1]):
                module.__class__ = ConvBatchNormBlock  # adds no state: same children
        if type(module) is nn.TransformerEncoderLayer:
            module.__class__ = TransformerEncoderLayer  # adds no state: same parameters and buffers
        for child in module.children():
            if type(child) is nn.Dropout:
                child.__class__ = Dropout  # adds no state: p, inplace and train/eval mode stay
    return model


_allocator_tuned = False


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory in the process instead of unmapping it (CPU training).

    glibc serves blocks above its mmap threshold (at most 32 MB) with mmap and unmaps them on
    free, so a 46 MB activation is faulted in page by page on every step. M_MMAP_MAX = 0 serves
    every block from the heap, and a 1 GiB trim threshold keeps freed heap memory for reuse
    (measured on the CPU step: ~21,700 minor faults per step -> ~1, 1.05-1.1x). The cost: the
    process keeps its peak heap size, which suits a training process. Process-wide, once;
    returns whether it applies (glibc on Linux only)."""
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    m_trim_threshold, m_mmap_max = -1, -4  # from <malloc.h>
    _allocator_tuned = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    return _allocator_tuned
