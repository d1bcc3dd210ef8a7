"""ser_core.fastpath: each faster replacement computes what the stock module computes."""
from __future__ import annotations

import copy
import math
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from ser_core import fastpath
from ser_core.models import CNNBiRNN, CNNTransformer


def _stock_and_fast(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    return model, fastpath.accelerate(copy.deepcopy(model))


def test_dropout_mask_rate_and_scale() -> None:
    torch.manual_seed(0)
    x = torch.ones(2_000_000)
    for p in (0.1, 0.5, 0.03):
        y = fastpath.dropout(x, p, training=True)
        kept = (y != 0).float().mean().item()
        sd = math.sqrt(p * (1 - p) / x.numel())
        assert abs((1 - kept) - p) < 5 * sd + 1e-5, (p, kept)
        assert torch.all((y == 0) | torch.isclose(y, torch.tensor(1 / (1 - p))))
        assert abs(y.mean().item() - 1.0) < 0.01  # inverted dropout keeps the expectation


def test_dropout_masks_are_independent_and_seeded() -> None:
    x = torch.ones(64, 512)
    torch.manual_seed(1)
    a, b = fastpath.dropout(x, 0.1, True), fastpath.dropout(x, 0.1, True)
    torch.manual_seed(1)
    assert torch.equal(a, fastpath.dropout(x, 0.1, True))  # the torch seed decides the masks
    assert not torch.equal(a, b)
    # neighbouring elements come from one 64-bit word: they must still be uncorrelated
    torch.manual_seed(2)
    m = (fastpath.dropout(torch.ones(4_000_000), 0.5, True) != 0).float().view(-1, 4)
    corr = torch.corrcoef(m.T)
    assert (corr - torch.eye(4)).abs().max() < 0.01


def test_dropout_gradient_is_the_mask_and_eval_is_identity() -> None:
    torch.manual_seed(0)
    x = torch.randn(1000, requires_grad=True)
    y = fastpath.dropout(x, 0.2, True)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.where(y != 0, 1 / 0.8, 0.0))
    layer = fastpath.Dropout(0.2).eval()
    assert layer(x) is x
    assert fastpath.dropout(x, 0.0, True) is x
    assert torch.equal(fastpath.dropout(x.detach(), 1.0, True), torch.zeros(1000))


@pytest.mark.parametrize("masked", [False, True])
def test_encoder_layer_matches_stock_in_training(masked: bool) -> None:
    torch.manual_seed(0)
    stock = nn.TransformerEncoderLayer(64, 4, 256, dropout=0.0, activation="gelu", batch_first=True)
    fast = copy.deepcopy(stock)
    fast.__class__ = fastpath.TransformerEncoderLayer
    stock.train(), fast.train()
    x = torch.randn(6, 30, 64)
    pad = torch.arange(30)[None, :] >= torch.tensor([30, 25, 12, 30, 3, 17])[:, None] if masked else None
    xs, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    ys, yf = stock(xs, src_key_padding_mask=pad), fast(xf, src_key_padding_mask=pad)
    assert torch.allclose(ys, yf, atol=1e-5)
    (ys * torch.linspace(-1, 1, 64)).sum().backward()
    (yf * torch.linspace(-1, 1, 64)).sum().backward()
    assert torch.allclose(xs.grad, xf.grad, atol=1e-5)
    for (name, ps), pf in zip(stock.named_parameters(), fast.parameters()):
        assert torch.allclose(ps.grad, pf.grad, atol=1e-5), name


def test_encoder_layer_attention_dropout_is_applied() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.5, batch_first=True)
    layer = fastpath.accelerate(nn.Sequential(layer))[0]
    for other in (layer.dropout, layer.dropout1, layer.dropout2):
        other.p = 0.0  # only the attention weights' dropout is left to make two calls differ
    x = torch.randn(4, 20, 32)
    layer.train()
    a, b = layer(x), layer(x)
    assert not torch.allclose(a, b)  # fresh attention masks per call
    layer.eval()
    assert torch.equal(layer(x), layer(x))


def test_pool_before_relu_same_values_and_gradients() -> None:
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                          nn.MaxPool2d((2, 2), ceil_mode=True))
    stock, fast = _stock_and_fast(block)
    assert [type(m) for m in fast] == [nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.ReLU]
    x = torch.randn(4, 1, 17, 33)
    x[0, 0, :4, :4] = -5.0  # windows that are all-negative after BN: zero output, no gradient
    x.requires_grad_()  # an inner block's input: BN is not folded, so only the order differs
    ys, yf = stock(x), fast(x)
    assert torch.equal(ys, yf)
    g = torch.randn_like(ys)
    gs = torch.autograd.grad(ys, [x, *stock.parameters()], g)
    gf = torch.autograd.grad(yf, [x, *fast.parameters()], g)
    for a, b in zip(gs, gf):
        assert torch.allclose(a, b, atol=1e-6)
    assert torch.equal(stock[1].running_mean, fast[1].running_mean)


@pytest.mark.parametrize("model_cls", [CNNTransformer, CNNBiRNN])
def test_accelerated_model_is_the_same_model(model_cls) -> None:
    torch.manual_seed(0)
    # 16 channels in the first block: its BN is folded (1 x 3 x 3 <= 16)
    kwargs = dict(channels=(16, 16, 16, 16)) if model_cls is CNNTransformer else dict(channels=(16, 16))
    stock, fast = _stock_and_fast(model_cls(40, 5, dropout=0.0, **kwargs))
    assert list(stock.state_dict()) == list(fast.state_dict())
    fast.load_state_dict(stock.state_dict())  # stock checkpoints load unchanged
    x, lengths = torch.randn(6, 40, 120), torch.tensor([120, 100, 64, 120, 33, 90])
    for train in (True, False):
        stock.train(train), fast.train(train)
        (ls, zs), (lf, zf) = stock(x, lengths), fast(x, lengths)
        assert torch.allclose(ls, lf, atol=1e-5) and torch.allclose(zs, zf, atol=1e-5)
    stock.train(), fast.train()
    gs = torch.autograd.grad(stock(x, lengths)[0].square().sum(), list(stock.parameters()))
    gf = torch.autograd.grad(fast(x, lengths)[0].square().sum(), list(fast.parameters()))
    for (name, _), a, b in zip(stock.named_parameters(), gs, gf):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), name
    # idempotent, and every stock dropout was replaced; the first block folds its BN
    fastpath.accelerate(fast)
    assert not any(type(m) is nn.Dropout for m in fast.modules())
    assert type(fast.cnn[0]) is fastpath.ConvBatchNormBlock


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator setting")
def test_keep_freed_memory_stops_page_faults() -> None:
    """In a fresh process: a 64 MB tensor allocated and freed repeatedly faults its pages in
    every time with glibc's defaults, and not after keep_freed_memory() once the heap has grown."""
    script = textwrap.dedent("""
        import resource, torch
        from ser_core.fastpath import keep_freed_memory
        def faults():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(5):
                torch.ones(16_000_000)
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        default = faults()
        assert keep_freed_memory() and keep_freed_memory()
        faults(), faults()  # the heap grows to hold the freed blocks (a few rounds)
        print(default, faults())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    default, tuned = map(int, out.stdout.split())
    assert default > 5 * 15_000  # 64 MB = 15,625 pages, faulted in on each of the 5 allocations
    assert tuned < 1_000


def test_conv_batch_norm_fold_matches_stock_over_training_steps() -> None:
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                          nn.MaxPool2d((2, 2), ceil_mode=True))
    with torch.no_grad():
        block[1].weight.uniform_(0.5, 1.5), block[1].bias.uniform_(-0.5, 0.5)
    stock, fast = _stock_and_fast(block)
    assert type(fast) is fastpath.ConvBatchNormBlock
    opt_s = torch.optim.SGD(stock.parameters(), lr=0.1)
    opt_f = torch.optim.SGD(fast.parameters(), lr=0.1)
    for step in range(3):
        x = torch.randn(5, 1, 20, 37) * 3 + 2  # off-centre input: the statistics must not cancel
        ys, yf = stock(x), fast(x)
        assert torch.allclose(ys, yf, atol=1e-4, rtol=1e-4), step
        g = torch.randn_like(ys)
        for y, opt in ((ys, opt_s), (yf, opt_f)):
            opt.zero_grad()
            y.backward(g)
        for (name, a), b in zip(stock.named_parameters(), fast.parameters()):
            # float32 sums in another order: compare at the gradient's own scale
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5 * float(a.grad.abs().max()),
                                       msg=f"step {step}, {name}")
        opt_s.step(), opt_f.step()
    for name, a in stock.state_dict().items():
        b = fast.state_dict()[name]
        torch.testing.assert_close(b.float(), a.float(), rtol=1e-4, atol=1e-5 * float(a.float().abs().max()),
                                   msg=name)
    stock.eval(), fast.eval()
    fast.load_state_dict(stock.state_dict())
    x = torch.randn(2, 1, 20, 37)
    assert torch.equal(stock(x), fast(x))  # evaluation is the stock path


def test_conv_batch_norm_fold_leaves_inputs_that_need_gradients_to_the_stock_path() -> None:
    torch.manual_seed(0)
    stock, fast = _stock_and_fast(nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)))
    x = torch.randn(3, 4, 10, 10, requires_grad=True)
    assert torch.equal(stock(x), fast(x))


@pytest.mark.parametrize("conv_args", [dict(in_channels=1, out_channels=16, kernel_size=(3, 5), padding=(1, 2),
                                             stride=(2, 1)),
                                        dict(in_channels=1, out_channels=9, kernel_size=3, padding=2, dilation=2),
                                        dict(in_channels=2, out_channels=20, kernel_size=3, padding=1)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_conv_batch_norm_fold_general_convolutions(conv_args: dict, momentum, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(bias=False, **conv_args)
    stock, fast = _stock_and_fast(nn.Sequential(conv, nn.BatchNorm2d(conv.out_channels, momentum=momentum)))
    folded = []
    real = fastpath._conv_batch_norm_train
    monkeypatch.setattr(fastpath, "_conv_batch_norm_train", lambda *a: folded.append(1) or real(*a))
    for _ in range(2):  # two steps: cumulative (momentum None) running statistics too
        x = torch.randn(4, conv.in_channels, 15, 22) - 3.0
        ys, yf = stock(x), fast(x)
        torch.testing.assert_close(yf, ys, rtol=1e-4, atol=1e-4)
        g = torch.randn_like(ys)
        for a, b in zip(torch.autograd.grad(ys, list(stock.parameters()), g),
                        torch.autograd.grad(yf, list(fast.parameters()), g)):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5 * float(a.abs().max()))
    assert folded == [1, 1]
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(fast[1], name), getattr(stock[1], name), rtol=1e-5, atol=1e-5)


def test_conv_batch_norm_fold_only_where_it_is_cheaper() -> None:
    """C_in k k > C_out (an inner block): the covariance would cost more than BN; not folded."""
    inner = fastpath.accelerate(nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)))
    assert type(inner) is nn.Sequential
    one = fastpath.accelerate(nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)))
    with pytest.raises(ValueError, match="more than 1 value per channel"):  # as stock BN says
        one(torch.randn(1, 1, 1, 1))


def test_accelerate_keeps_the_train_or_eval_mode() -> None:
    torch.manual_seed(0)
    model = CNNTransformer(40, 5, channels=(8, 16, 16, 16)).eval()
    x = torch.randn(2, 40, 64)
    before = model(x)[0]
    fastpath.accelerate(model)
    assert not any(m.training for m in model.modules())
    assert torch.equal(model(x)[0], model(x)[0]) and torch.allclose(model(x)[0], before, atol=1e-5)


def test_encoder_layer_falls_back_to_stock_attention_for_masks_it_does_not_write_out() -> None:
    torch.manual_seed(0)
    stock = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True).train()
    fast = fastpath.accelerate(nn.Sequential(copy.deepcopy(stock)))[0]
    x = torch.randn(3, 7, 16)
    causal = nn.Transformer.generate_square_subsequent_mask(7)
    torch.testing.assert_close(fast(x, src_mask=causal, is_causal=True), stock(x, src_mask=causal, is_causal=True))
    per_head = torch.zeros(3 * 2, 7, 7)
    per_head[:, :, -2:] = float("-inf")
    torch.testing.assert_close(fast(x, src_mask=per_head), stock(x, src_mask=per_head))
