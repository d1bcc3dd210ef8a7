"""Loss families: known values (by hand / numpy loops), gradients, the center update,
error messages and mixed precision."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ser_core.losses import (
    LOSS_FAMILIES,
    LossConfigError,
    LossFamily,
    build_loss,
    loss_names,
    loss_parameters,
    loss_uses_centers,
)

ALL = ["cross_entropy", "focal", "center", "supcon", "l1", "smooth_l1", "bce", "triplet"]
EMBEDDING = {"center", "supcon", "triplet"}

LOGITS = np.array([[2.0, 1.0, 0.0], [0.5, 0.5, 3.0], [-1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
Y = np.array([0, 2, 0, 1])


# ---------------------------------------------------------------- numpy references

def np_log_softmax(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for i, row in enumerate(x):
        m = row.max()
        out[i] = row - m - math.log(sum(math.exp(v - m) for v in row))
    return out


def np_ce(x: np.ndarray, y: np.ndarray) -> float:
    ls = np_log_softmax(x)
    return float(np.mean([-ls[i, y[i]] for i in range(len(y))]))


def np_one_hot(y: np.ndarray, c: int) -> np.ndarray:
    t = np.zeros((len(y), c))
    t[np.arange(len(y)), y] = 1.0
    return t


def np_unit(z: np.ndarray) -> np.ndarray:
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def np_supcon(z: np.ndarray, y: np.ndarray, tau: float) -> float:
    zn = np_unit(z)
    terms = []
    for i in range(len(y)):
        positives = [p for p in range(len(y)) if p != i and y[p] == y[i]]
        if not positives:
            continue
        denom = sum(math.exp(zn[i] @ zn[a] / tau) for a in range(len(y)) if a != i)
        terms.append(-np.mean([math.log(math.exp(zn[i] @ zn[p] / tau) / denom) for p in positives]))
    return float(np.mean(terms)) if terms else 0.0


def np_batch_hard(z: np.ndarray, y: np.ndarray, margin: float) -> float:
    zn = np_unit(z)
    terms = []
    for i in range(len(y)):
        dp = [np.linalg.norm(zn[i] - zn[p]) for p in range(len(y)) if p != i and y[p] == y[i]]
        dn = [np.linalg.norm(zn[i] - zn[n]) for n in range(len(y)) if y[n] != y[i]]
        if dp and dn:
            terms.append(max(0.0, max(dp) - min(dn) + margin))
    return float(np.mean(terms)) if terms else 0.0


def t64(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def ty(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.int64)


def random_batch(b: int = 8, c: int = 4, d: int = 5, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, generator=g, dtype=dtype)
    z = torch.randn(b, d, generator=g, dtype=dtype)
    y = torch.tensor([i % c for i in range(b)], dtype=torch.int64)
    return logits, z, y


# ---------------------------------------------------------------- registry

def test_registry_names_and_flags() -> None:
    assert loss_names() == ALL
    assert set(LOSS_FAMILIES) == set(ALL)
    for name in ALL:
        cls = LOSS_FAMILIES[name]
        assert issubclass(cls, LossFamily) and cls.name == name
        assert cls.uses_embedding == (name in EMBEDDING)
        assert loss_uses_centers(name) == (name == "center")


def test_loss_parameters_defaults_inside_ranges() -> None:
    assert loss_parameters("cross_entropy") == {}
    assert loss_parameters("focal")["gamma"][0] == 2.0
    assert loss_parameters("center")["center_lr"][0] == 0.5
    assert set(loss_parameters("supcon")) == {"temperature", "supcon_weight"}
    assert set(loss_parameters("triplet")) == {"margin", "triplet_weight"}
    # λ = 0 (the pure-CE ablation) must lie inside the documented range the config checks
    assert loss_parameters("center")["center_lambda"][1] == 0.0
    for name in ALL:
        for param, (default, low, high) in loss_parameters(name).items():
            assert low is not None and high is not None and low <= default <= high, (name, param)
            # every documented range endpoint must itself be a valid value
            build_loss(name, num_classes=3, embed_dim=2, **{param: low})
            build_loss(name, num_classes=3, embed_dim=2, **{param: high})
        loss = build_loss(name, num_classes=3, embed_dim=2)
        assert loss.hparams == {k: v[0] for k, v in loss_parameters(name).items()}


# ---------------------------------------------------------------- known values

def test_cross_entropy_known_value() -> None:
    # Hand: row [0,0,0] with y=1 -> log 3.
    loss = build_loss("cross_entropy", num_classes=3, embed_dim=2)
    one = loss(t64(np.zeros((1, 3))), None, ty(np.array([1])))
    assert one.item() == pytest.approx(math.log(3.0), abs=1e-12)
    assert loss(t64(LOGITS), None, ty(Y)).item() == pytest.approx(np_ce(LOGITS, Y), abs=1e-12)


def test_focal_known_value() -> None:
    gamma = 2.0
    ls = np_log_softmax(LOGITS)
    expected = np.mean([-(1 - math.exp(ls[i, Y[i]])) ** gamma * ls[i, Y[i]] for i in range(len(Y))])
    loss = build_loss("focal", num_classes=3, embed_dim=2, gamma=gamma)
    assert loss(t64(LOGITS), None, ty(Y)).item() == pytest.approx(expected, abs=1e-12)
    # Hand: uniform over 3 classes, p_t = 1/3 -> (2/3)^2 * log 3.
    one = loss(t64(np.zeros((1, 3))), None, ty(np.array([1])))
    assert one.item() == pytest.approx((2 / 3) ** 2 * math.log(3), abs=1e-12)


def test_focal_gamma_zero_equals_cross_entropy() -> None:
    logits, _, y = random_batch(b=16, c=6, seed=3)
    focal = build_loss("focal", num_classes=6, embed_dim=5, gamma=0.0)(logits, None, y)
    ce = build_loss("cross_entropy", num_classes=6, embed_dim=5)(logits, None, y)
    assert focal.item() == pytest.approx(ce.item(), abs=1e-12)
    assert focal.item() == pytest.approx(np_ce(logits.numpy(), y.numpy()), abs=1e-12)


def test_focal_saturated_sample_with_fractional_gamma_has_finite_grad() -> None:
    logits = torch.tensor([[60.0, 0.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True)
    loss = build_loss("focal", num_classes=3, embed_dim=2, gamma=0.5)(logits, None, torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_center_known_value() -> None:
    z = np.array([[1.0, 2.0], [3.0, -1.0], [0.0, 0.5], [2.0, 2.0]])
    centers = np.array([[1.0, 1.0], [0.0, 0.0], [2.0, -2.0]])
    lam = 0.1
    loss = build_loss("center", num_classes=3, embed_dim=2, center_lambda=lam)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor(centers))
    # Hand: squared distances to own centers: y=0:(0,1)->1; y=2:(1,1)->2; y=0:(-1,-0.5)->1.25; y=1:(2,2)->8.
    sq = (1.0 + 2.0 + 1.25 + 8.0) / 4
    expected = np_ce(LOGITS, Y) + lam * 0.5 * sq
    assert loss(t64(LOGITS), t64(z), ty(Y)).item() == pytest.approx(expected, abs=1e-12)


def test_supcon_known_values() -> None:
    # Hand: z = e1, e1, e2 with y = 0, 0, 1, τ = 1. Anchors 0 and 1 each have one positive
    # at cosine 1 and one negative at cosine 0 -> -log(e / (e + 1)) = log(1 + 1/e);
    # anchor 2 has no positive and is skipped.
    z = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    logits = np.zeros((3, 2))
    y = np.array([0, 0, 1])
    loss = build_loss("supcon", num_classes=2, embed_dim=2, temperature=1.0, supcon_weight=1.0)
    got = loss(t64(logits), t64(z), ty(y)).item()
    assert got == pytest.approx(math.log(2) + math.log(1 + math.exp(-1)), abs=1e-12)

    logits, z, y = random_batch(b=7, c=3, d=4, seed=5)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 0])
    loss = build_loss("supcon", num_classes=3, embed_dim=4, temperature=0.2, supcon_weight=0.7)
    expected = np_ce(logits.numpy(), y.numpy()) + 0.7 * np_supcon(z.numpy(), y.numpy(), 0.2)
    assert loss(logits, z, y).item() == pytest.approx(expected, abs=1e-10)


def test_supcon_singleton_class_and_no_pairs_stay_finite() -> None:
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    loss_fn = build_loss("supcon", num_classes=3, embed_dim=3)
    for y in (torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 2, 1]), torch.tensor([0, 1, 2, 0])):
        z.grad = logits.grad = None
        loss = loss_fn(logits, z, y)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z.grad).all() and torch.isfinite(logits.grad).all()
    # Every class a singleton: no positive pair at all -> CE alone, z gets a zero gradient.
    z.grad = None
    y = torch.tensor([0, 1, 2])
    loss = loss_fn(logits[:3], z[:3], y)
    loss.backward()
    assert loss.item() == pytest.approx(np_ce(logits[:3].detach().numpy(), y.numpy()), abs=1e-12)
    assert torch.count_nonzero(z.grad) == 0


@pytest.mark.parametrize("name", ["supcon", "triplet"])
@pytest.mark.parametrize("labels", [[0], [0, 1, 2], [1, 1, 1]])
def test_pair_losses_without_any_valid_anchor_fall_back_to_ce(name: str, labels: list[int]) -> None:
    # One sample, all singletons, or (triplet) no negatives: the extra term is 0, grads finite.
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(len(labels), 3, generator=g, dtype=torch.float64, requires_grad=True)
    z = torch.randn(len(labels), 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(labels)
    loss = build_loss(name, num_classes=3, embed_dim=4)(logits, z, y)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(z.grad).all()
    if name == "triplet" or len(set(labels)) == len(labels):
        assert loss.item() == pytest.approx(np_ce(logits.detach().numpy(), y.numpy()), abs=1e-12)
        assert torch.count_nonzero(z.grad) == 0


def test_triplet_known_values() -> None:
    # Hand (margin 1): unit vectors a=(1,0), b=(.8,.6) [class 0]; c=(0,1), d=(-1,0) [class 1].
    # d(a,b)=√.4, d(a,c)=√2, d(a,d)=2, d(b,c)=√.8, d(b,d)=√3.6, d(c,d)=√2.
    z = np.array([[2.0, 0.0], [0.8, 0.6], [0.0, 5.0], [-1.0, 0.0]])
    y = np.array([0, 0, 1, 1])
    hinge = [
        math.sqrt(0.4) - math.sqrt(2) + 1,
        math.sqrt(0.4) - math.sqrt(0.8) + 1,
        math.sqrt(2) - math.sqrt(0.8) + 1,
        math.sqrt(2) - math.sqrt(3.6) + 1,
    ]
    logits = np.zeros((4, 2))
    loss = build_loss("triplet", num_classes=2, embed_dim=2, margin=1.0, triplet_weight=1.0)
    got = loss(t64(logits), t64(z), ty(y)).item()
    assert got == pytest.approx(math.log(2) + np.mean(hinge), abs=1e-9)

    logits, z, _ = random_batch(b=9, c=4, d=4, seed=11)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 3, 2])  # class 3 alone: that anchor is skipped
    loss = build_loss("triplet", num_classes=4, embed_dim=4, margin=0.3, triplet_weight=0.5)
    expected = np_ce(logits.numpy(), y.numpy()) + 0.5 * np_batch_hard(z.numpy(), y.numpy(), 0.3)
    assert loss(logits, z, y).item() == pytest.approx(expected, abs=1e-9)


def test_one_hot_families_known_values() -> None:
    # Hand: zero logits, C=4 -> softmax 1/4; |p - t| = 3/4 once and 1/4 three times
    # -> L1 mean 1.5/4; SmoothL1 (β=1, all |d|<1) = mean 0.5 d² = 0.5 (9/16 + 3/16)/4;
    # BCE: sigmoid(0)=1/2 everywhere -> log 2.
    zeros = t64(np.zeros((2, 4)))
    y = ty(np.array([1, 3]))
    assert build_loss("l1", num_classes=4, embed_dim=1)(zeros, None, y).item() == pytest.approx(0.375)
    assert build_loss("smooth_l1", num_classes=4, embed_dim=1)(zeros, None, y).item() == pytest.approx(
        0.5 * (12 / 16) / 4
    )
    assert build_loss("bce", num_classes=4, embed_dim=1)(zeros, None, y).item() == pytest.approx(math.log(2))

    p = np.exp(np_log_softmax(LOGITS))
    t = np_one_hot(Y, 3)
    d = np.abs(p - t)
    sig = 1 / (1 + np.exp(-LOGITS))
    expected = {
        "l1": d.mean(),
        "smooth_l1": np.where(d < 1, 0.5 * d**2, d - 0.5).mean(),
        "bce": -(t * np.log(sig) + (1 - t) * np.log(1 - sig)).mean(),
    }
    for name, value in expected.items():
        got = build_loss(name, num_classes=3, embed_dim=1)(t64(LOGITS), None, ty(Y)).item()
        assert got == pytest.approx(value, abs=1e-12), name


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("name", ALL)
def test_gradcheck_float64(name: str) -> None:
    logits, z, y = random_batch(b=8, c=4, d=5, seed=7)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 0])
    # fractional γ exercises pow's gradient; λ = 0.3 makes the center term matter numerically
    params = {"focal": {"gamma": 1.5}, "center": {"center_lambda": 0.3}}.get(name, {})
    loss_fn = build_loss(name, num_classes=4, embed_dim=5, **params)
    if name == "center":
        with torch.no_grad():
            loss_fn.centers.copy_(torch.randn(4, 5, generator=torch.Generator().manual_seed(1)))
    logits.requires_grad_(True)
    if name in EMBEDDING:
        z.requires_grad_(True)
        assert torch.autograd.gradcheck(lambda a, b: loss_fn(a, b, y), (logits, z))
    else:
        assert torch.autograd.gradcheck(lambda a: loss_fn(a, None, y), (logits,))


# ---------------------------------------------------------------- center update

Z_STEP = np.array([[1.0, 2.0], [3.0, 0.0], [2.0, 4.0], [-4.0, 1.0]])
Y_STEP = np.array([0, 0, 0, 1])  # class 0: n=3, class 1: n=1, class 2 absent
C_START = np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])


def one_center_step(lam: float, alpha: float) -> tuple[float, np.ndarray]:
    loss_fn = build_loss("center", num_classes=3, embed_dim=2, center_lambda=lam, center_lr=alpha)
    with torch.no_grad():
        loss_fn.centers.copy_(torch.tensor(C_START))
    opt = loss_fn.center_optimizer()
    opt.zero_grad()
    logits = torch.zeros(4, 3, requires_grad=True)  # as if from a model head
    loss = loss_fn(logits, torch.tensor(Z_STEP, dtype=torch.float32), ty(Y_STEP))
    loss.backward()
    loss_fn.before_center_step()
    opt.step()
    return loss.item(), loss_fn.centers.detach().numpy().copy()


def test_center_optimizer_is_separate_plain_sgd() -> None:
    loss_fn = build_loss("center", num_classes=3, embed_dim=2, center_lr=0.25)
    opt = loss_fn.center_optimizer()
    assert isinstance(opt, torch.optim.SGD) and opt is loss_fn.center_optimizer()
    (group,) = opt.param_groups
    assert group["params"] == [loss_fn.centers] and loss_fn.centers.shape == (3, 2)
    assert group["lr"] == 0.25 and group["momentum"] == 0 and group["weight_decay"] == 0
    assert all(p is not loss_fn.centers for p in loss_fn.model_parameters())
    for name in ALL:
        other = build_loss(name, num_classes=3, embed_dim=2)
        if name != "center":
            assert other.center_optimizer() is None
            other.before_center_step()  # no-op, must not fail
        assert other.model_parameters() == []


def test_center_step_exact_positions() -> None:
    alpha, b = 0.5, 4
    _, got = one_center_step(lam=0.01, alpha=alpha)
    mean0 = Z_STEP[:3].mean(axis=0)  # (2, 2)
    mean1 = Z_STEP[3]
    expected = C_START.copy()
    expected[0] = C_START[0] - alpha * (3 / b) * (C_START[0] - mean0)  # -> (0.75, 0.75)
    expected[1] = C_START[1] - alpha * (1 / b) * (C_START[1] - mean1)  # -> (0.375, 1.0)
    np.testing.assert_allclose(expected[0], [0.75, 0.75])
    np.testing.assert_allclose(expected[1], [0.375, 1.0])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_array_equal(got[2], C_START[2])  # absent class does not move


def test_lambda_changes_loss_not_center_step() -> None:
    loss_a, centers_a = one_center_step(lam=0.01, alpha=0.5)
    loss_b, centers_b = one_center_step(lam=0.5, alpha=0.5)
    np.testing.assert_allclose(centers_a, centers_b, atol=1e-6)
    sq = np.mean([np.sum((Z_STEP[i] - C_START[Y_STEP[i]]) ** 2) for i in range(4)])
    ce = math.log(3)  # zero logits
    assert loss_a == pytest.approx(ce + 0.01 * 0.5 * sq, rel=1e-6)
    assert loss_b == pytest.approx(ce + 0.5 * 0.5 * sq, rel=1e-6)
    # α, by contrast, does scale the step.
    _, centers_c = one_center_step(lam=0.01, alpha=0.25)
    np.testing.assert_allclose(C_START[0] - centers_c[0], 0.5 * (C_START[0] - centers_a[0]), atol=1e-6)


def test_lambda_zero_is_cross_entropy_and_centers_stay() -> None:
    loss, centers = one_center_step(lam=0.0, alpha=0.5)
    assert loss == pytest.approx(math.log(3), rel=1e-6)
    np.testing.assert_array_equal(centers, C_START)


def test_centers_converge_to_class_means_on_fixed_batch() -> None:
    loss_fn = build_loss("center", num_classes=3, embed_dim=2, center_lambda=0.05, center_lr=0.5)
    opt = loss_fn.center_optimizer()
    z = torch.tensor(Z_STEP, dtype=torch.float32)
    for _ in range(200):
        opt.zero_grad()
        loss_fn(torch.zeros(4, 3), z, ty(Y_STEP)).backward()
        loss_fn.before_center_step()
        opt.step()
    c = loss_fn.centers.detach().numpy()
    np.testing.assert_allclose(c[0], Z_STEP[:3].mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(c[1], Z_STEP[3], atol=1e-5)
    np.testing.assert_array_equal(c[2], [0.0, 0.0])  # never seen: stays at its zero init


def test_training_loop_with_model_optimizer_excluding_centers() -> None:
    torch.manual_seed(0)
    embed = torch.nn.Linear(3, 4)
    head = torch.nn.Linear(4, 2)
    loss_fn = build_loss("center", num_classes=2, embed_dim=4, center_lambda=0.1)
    model_params = list(embed.parameters()) + list(head.parameters()) + loss_fn.model_parameters()
    model_opt = torch.optim.SGD(model_params, lr=0.1)
    center_opt = loss_fn.center_optimizer()
    x = torch.randn(16, 3)
    y = (x[:, 0] > 0).long()
    first = last = None
    for _ in range(30):
        z = embed(x)
        loss = loss_fn(head(z), z, y)
        model_opt.zero_grad()
        center_opt.zero_grad()
        loss.backward()
        model_opt.step()
        loss_fn.before_center_step()
        center_opt.step()
        first = loss.item() if first is None else first
        last = loss.item()
    assert last < first
    assert torch.count_nonzero(loss_fn.centers) > 0


# ---------------------------------------------------------------- errors

def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(LossConfigError, match=r"'arcface'.*cross_entropy.*triplet"):
        build_loss("arcface", num_classes=4, embed_dim=8)
    for fn in (loss_uses_centers, loss_parameters):
        with pytest.raises(LossConfigError, match="arcface"):
            fn("arcface")


@pytest.mark.parametrize(
    ("name", "params", "pattern"),
    [
        ("center", {"center_lambda": -0.1}, r"'center_lambda' must be >= 0.0, got -0.1"),
        ("center", {"center_lr": 0.0}, r"'center_lr' must be > 0.0, got 0.0"),
        ("center", {"center_lr": -1.0}, r"'center_lr'.*-1.0"),
        ("focal", {"gamma": -1.0}, r"'gamma' must be >= 0.0, got -1.0"),
        ("supcon", {"temperature": 0.0}, r"'temperature' must be > 0.0"),
        ("supcon", {"supcon_weight": float("nan")}, r"'supcon_weight' must be finite"),
        ("triplet", {"margin": -0.2}, r"'margin'.*-0.2"),
        ("triplet", {"triplet_weight": "big"}, r"'triplet_weight' must be a number"),
    ],
)
def test_bad_parameter_values(name: str, params: dict, pattern: str) -> None:
    with pytest.raises(LossConfigError, match=pattern):
        build_loss(name, num_classes=4, embed_dim=8, **params)


def test_unknown_parameter_is_rejected_strictly() -> None:
    with pytest.raises(LossConfigError, match=r"'cross_entropy'.*\['gamma'\].*valid parameters: none"):
        build_loss("cross_entropy", num_classes=4, embed_dim=8, gamma=2.0)
    with pytest.raises(LossConfigError, match=r"'focal'.*\['center_lambda'\].*gamma"):
        build_loss("focal", num_classes=4, embed_dim=8, center_lambda=0.1)


def test_bad_sizes_and_inputs() -> None:
    with pytest.raises(LossConfigError, match="num_classes"):
        build_loss("focal", num_classes=1, embed_dim=8)
    with pytest.raises(LossConfigError, match="embed_dim"):
        build_loss("center", num_classes=4, embed_dim=0)
    loss_fn = build_loss("center", num_classes=3, embed_dim=2)
    logits, z, y = torch.zeros(2, 3), torch.zeros(2, 2), torch.tensor([0, 1])
    with pytest.raises(LossConfigError, match=r"logits must have shape \(B, 3\), got \(2, 4\)"):
        loss_fn(torch.zeros(2, 4), z, y)
    with pytest.raises(LossConfigError, match=r"z must have shape \(2, 2\), got \(2, 3\)"):
        loss_fn(logits, torch.zeros(2, 3), y)
    with pytest.raises(LossConfigError, match="needs the embedding z"):
        loss_fn(logits, None, y)
    with pytest.raises(LossConfigError, match=r"class ids must lie in \[0, 3\).*max 3"):
        loss_fn(logits, z, torch.tensor([0, 3]))
    with pytest.raises(LossConfigError, match="integer class ids"):
        loss_fn(logits, z, torch.tensor([0.0, 1.0]))
    with pytest.raises(LossConfigError, match=r"y must have shape \(2,\)"):
        loss_fn(logits, z, torch.tensor([0, 1, 2]))


# ---------------------------------------------------------------- mixed precision

@pytest.mark.parametrize("name", ALL)
def test_finite_under_bfloat16_autocast(name: str) -> None:
    torch.manual_seed(0)
    embed = torch.nn.Linear(6, 16)
    head = torch.nn.Linear(16, 4)
    loss_fn = build_loss(name, num_classes=4, embed_dim=16)
    x = 30.0 * torch.randn(12, 6)  # large activations: stress bf16 range/precision
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 0, 1, 2, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = embed(x)
        logits = head(z)
        assert logits.dtype == torch.bfloat16
        loss = loss_fn(logits, z, y)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    # Same bf16 inputs, computed outside autocast in float32: autocast must not leak
    # into the loss (e.g. a bf16 matmul in supcon/triplet would be off by ~1e-2).
    reference = loss_fn(logits.detach().float(), z.detach().float(), y)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    loss.backward()
    assert torch.isfinite(loss)
    for p in list(embed.parameters()) + list(head.parameters()) + list(loss_fn.parameters()):
        if p.grad is not None:
            assert torch.isfinite(p.grad).all()
    if name == "center":
        assert loss_fn.centers.grad is not None and loss_fn.centers.grad.dtype == torch.float32


# ---------------------------------------------------------------- recipe targets: mixup, smoothing, weights

def _mixed(y: torch.Tensor, pair: torch.Tensor, lam: float, c: int) -> torch.Tensor:
    oh = torch.nn.functional.one_hot(y, c).double()
    return lam * oh + (1 - lam) * oh[pair]


def test_soft_cross_entropy_is_the_mixture_of_the_two_labels_losses() -> None:
    """Mixup's loss (Zhang et al. 2018): CE against λ·e_i + (1-λ)·e_j equals
    λ·CE(y_i) + (1-λ)·CE(y_j) per row, since CE is linear in its target."""
    logits, _, y = random_batch(b=8, c=4, seed=5)
    pair = torch.tensor([3, 2, 1, 0, 7, 6, 5, 4])
    lam = 0.7
    loss_fn = build_loss("cross_entropy", num_classes=4, embed_dim=5)
    got = loss_fn(logits, None, y, _mixed(y, pair, lam, 4))
    want = lam * np_ce(logits.numpy(), y.numpy()) + (1 - lam) * np_ce(logits.numpy(), y[pair].numpy())
    assert got.item() == pytest.approx(want, abs=1e-12)
    # one-hot soft targets are the hard-label loss
    assert loss_fn(logits, None, y, _mixed(y, pair, 1.0, 4)).item() == pytest.approx(loss_fn(logits, None, y).item())


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_and_class_weights_match_torch_cross_entropy(eps: float) -> None:
    logits, _, y = random_batch(b=10, c=4, seed=6)
    w = torch.tensor([1.0, 2.5, 0.5, 3.0])
    for weights in (None, w):
        got = build_loss("cross_entropy", num_classes=4, embed_dim=5, label_smoothing=eps,
                         class_weights=weights)(logits, None, y)
        want = torch.nn.functional.cross_entropy(logits, y, label_smoothing=eps,
                                                 weight=None if weights is None else weights.double())
        assert got.item() == pytest.approx(want.item(), abs=1e-12)


def test_label_smoothing_spreads_only_over_the_classes_in_use() -> None:
    """EmoDB has no 'calm': smoothing must not teach the model to expect it."""
    logits, _, y = random_batch(b=6, c=3, seed=7)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    active = torch.tensor([True, True, False])
    eps = 0.2
    got = build_loss("cross_entropy", num_classes=3, embed_dim=5, label_smoothing=eps,
                     active_classes=active)(logits, None, y)
    ls = np_log_softmax(logits.numpy())
    t = np.zeros((6, 3))
    t[np.arange(6), y.numpy()] = 1 - eps
    t[:, :2] += eps / 2  # K = 2 classes in use
    assert got.item() == pytest.approx(float(np.mean(-(t * ls).sum(axis=1))), abs=1e-12)


def test_focal_with_class_weights_is_alpha_balanced_focal() -> None:
    """Hard labels with weights w: Σ w_y (1-p_y)^γ (-log p_y) / Σ w_y (Lin et al.'s α_t, with the
    weighted mean of PyTorch's weighted CE, so γ = 0 stays exactly CE)."""
    gamma, w = 2.0, np.array([0.5, 1.0, 2.0])
    ls = np_log_softmax(LOGITS)
    terms = [w[Y[i]] * (1 - math.exp(ls[i, Y[i]])) ** gamma * -ls[i, Y[i]] for i in range(len(Y))]
    loss = build_loss("focal", num_classes=3, embed_dim=2, gamma=gamma, class_weights=torch.tensor(w))
    assert loss(t64(LOGITS), None, ty(Y)).item() == pytest.approx(sum(terms) / w[Y].sum(), abs=1e-12)
    focal0 = build_loss("focal", num_classes=3, embed_dim=2, gamma=0.0, class_weights=torch.tensor(w))
    ce = build_loss("cross_entropy", num_classes=3, embed_dim=2, class_weights=torch.tensor(w))
    soft = _mixed(ty(Y), torch.tensor([1, 0, 3, 2]), 0.6, 3)
    assert focal0(t64(LOGITS), None, ty(Y), soft).item() == pytest.approx(ce(t64(LOGITS), None, ty(Y), soft).item())


@pytest.mark.parametrize("name,fn", [
    ("bce", lambda lg, t: torch.nn.functional.binary_cross_entropy_with_logits(lg, t)),
    ("l1", lambda lg, t: torch.nn.functional.l1_loss(torch.softmax(lg, 1), t)),
    ("smooth_l1", lambda lg, t: torch.nn.functional.smooth_l1_loss(torch.softmax(lg, 1), t, beta=1.0)),
])
def test_one_hot_families_regress_onto_the_soft_target(name, fn) -> None:
    logits, _, y = random_batch(b=8, c=4, seed=8)
    soft = _mixed(y, torch.tensor([1, 0, 3, 2, 5, 4, 7, 6]), 0.8, 4)
    loss_fn = build_loss(name, num_classes=4, embed_dim=5)
    assert loss_fn(logits, None, y, soft).item() == pytest.approx(fn(logits, soft).item(), abs=1e-12)
    # label smoothing moves the regression target; class weights weigh each row by its target's weight
    eps, w = 0.1, torch.tensor([1.0, 3.0, 1.0, 0.5], dtype=torch.float64)
    smooth = build_loss(name, num_classes=4, embed_dim=5, label_smoothing=eps)
    assert smooth(logits, None, y).item() == pytest.approx(
        fn(logits, torch.nn.functional.one_hot(y, 4).double() * (1 - eps) + eps / 4).item(), abs=1e-12)
    weighted = build_loss(name, num_classes=4, embed_dim=5, class_weights=w)
    rows = torch.stack([fn(logits[i:i + 1], soft[i:i + 1]) for i in range(8)])
    rw = soft @ w
    assert weighted(logits, None, y, soft).item() == pytest.approx(float((rows * rw).sum() / rw.sum()), abs=1e-12)


@pytest.mark.parametrize("name", sorted(EMBEDDING))
def test_embedding_terms_under_mixup_use_the_dominant_label(name: str) -> None:
    """The CE part takes the soft target, the embedding term the dominant labels y: the loss
    with soft targets minus the loss with hard y is exactly the CE difference."""
    logits, z, y = random_batch(b=8, c=4, d=5, seed=9)
    soft = _mixed(y, torch.tensor([2, 3, 0, 1, 6, 7, 4, 5]), 0.65, 4)
    params = {"center": {"center_lambda": 0.5}, "supcon": {"supcon_weight": 1.0}, "triplet": {"triplet_weight": 1.0}}
    loss_fn = build_loss(name, num_classes=4, embed_dim=5, **params[name])
    if name == "center":
        with torch.no_grad():
            loss_fn.centers.copy_(torch.randn(4, 5, generator=torch.Generator().manual_seed(1)))
    ce = build_loss("cross_entropy", num_classes=4, embed_dim=5)
    term_hard = loss_fn(logits, z, y) - ce(logits, None, y)
    term_soft = loss_fn(logits, z, y, soft) - ce(logits, None, y, soft)
    assert term_hard.item() > 0
    assert term_soft.item() == pytest.approx(term_hard.item(), abs=1e-12)


def test_class_balanced_weights_from_counts() -> None:
    from ser_core.losses import class_balanced_weights

    y = np.array([0, 0, 0, 0, 1, 1, 3, 3])  # class 2 absent from training
    w = class_balanced_weights(y, 4)
    assert w.tolist() == pytest.approx([8 / (3 * 4), 8 / (3 * 2), 0.0, 8 / (3 * 2)])
    assert (w[torch.as_tensor(y)]).sum().item() == pytest.approx(len(y))  # the batch's total weight stays n
    counts = np.bincount(y, minlength=4)
    assert np.allclose((w.numpy() * counts)[counts > 0], len(y) / 3)  # every present class weighs the same
    with pytest.raises(LossConfigError, match=r"labels must lie in \[0, 4\)"):
        class_balanced_weights(np.array([0, 4]), 4)


def test_recipe_target_errors_are_clear() -> None:
    logits, _, y = random_batch(b=4, c=3)
    with pytest.raises(LossConfigError, match=r"soft targets must be floating point of shape \(4, 3\)"):
        build_loss("cross_entropy", num_classes=3, embed_dim=2)(logits, None, y, torch.ones(4, 2))
    with pytest.raises(LossConfigError, match="label_smoothing must be a number in"):
        build_loss("cross_entropy", num_classes=3, embed_dim=2, label_smoothing=1.0)
    with pytest.raises(LossConfigError, match="class_weights must be 3 finite non-negative"):
        build_loss("focal", num_classes=3, embed_dim=2, class_weights=torch.tensor([1.0, -1.0, 1.0]))
    # smoothing and weights are not saved with the loss: they follow from config and data
    plain = build_loss("center", num_classes=3, embed_dim=2)
    recipe = build_loss("center", num_classes=3, embed_dim=2, label_smoothing=0.1, class_weights=torch.ones(3))
    assert plain.state_dict().keys() == recipe.state_dict().keys()
