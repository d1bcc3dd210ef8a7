"""The learning-rate schedules against their closed forms, step by step."""
from __future__ import annotations

import math

import pytest
import torch

from ser_core.schedules import build_schedule, steps_per_epoch

LR = 2e-3


def _lrs(schedule: str, n_steps: int, **kwargs) -> list[float]:
    """The lr each of n_steps optimizer steps uses, stepping the scheduler after each."""
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([p], lr=LR)
    sched = build_schedule(opt, schedule, **kwargs)
    out = []
    for _ in range(n_steps):
        out.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones_like(p)
        opt.step()
        if sched is not None:
            sched.step()
    return out


def test_steps_per_epoch_skips_a_lone_tail_clip():
    assert steps_per_epoch(64, 32) == 2
    assert steps_per_epoch(65, 32) == 2  # the lone 65th clip is not a step
    assert steps_per_epoch(66, 32) == 3


def test_constant_without_warmup_leaves_the_optimizer_alone():
    p = torch.nn.Parameter(torch.zeros(1))
    assert build_schedule(torch.optim.SGD([p], lr=LR), "constant", epochs=3, steps_per_epoch=4) is None


def test_constant_with_warmup_is_linear_then_flat():
    spe, epochs, warm = 4, 3, 1.5  # W = 6 steps of 12
    got = _lrs("constant", epochs * spe, epochs=epochs, steps_per_epoch=spe, warmup_epochs=warm)
    want = [LR * (k + 1) / 7 if k < 6 else LR for k in range(12)]
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("warmup_epochs", [0.0, 1.0, 2.5])
def test_cosine_with_linear_warmup_matches_its_formula(warmup_epochs):
    spe, epochs = 4, 5
    n, w = epochs * spe, round(warmup_epochs * spe)
    got = _lrs("cosine", n, epochs=epochs, steps_per_epoch=spe, warmup_epochs=warmup_epochs)
    want = [LR * (k + 1) / (w + 1) if k < w else LR * (1 + math.cos(math.pi * (k - w) / (n - w))) / 2
            for k in range(n)]
    assert got == pytest.approx(want, rel=1e-9, abs=1e-15)
    assert got[w] == pytest.approx(LR)  # the peak comes right after the warm-up
    assert got[-1] < 0.05 * LR  # and the run ends near 0


def test_step_schedule_decays_by_gamma_every_step_epochs():
    spe, epochs = 3, 7
    got = _lrs("step", epochs * spe, epochs=epochs, steps_per_epoch=spe, step_epochs=2, step_gamma=0.5)
    want = [LR * 0.5 ** (k // 6) for k in range(epochs * spe)]
    assert got == pytest.approx(want, rel=1e-12)
    # with a warm-up the decays count from its end
    got = _lrs("step", epochs * spe, epochs=epochs, steps_per_epoch=spe, warmup_epochs=1, step_epochs=2,
               step_gamma=0.5)
    want = [LR * (k + 1) / 4 if k < 3 else LR * 0.5 ** ((k - 3) // 6) for k in range(epochs * spe)]
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("warmup_epochs", [0.0, 2.0])
def test_onecycle_rises_to_lr_then_anneals(warmup_epochs):
    spe, epochs = 5, 6
    n = epochs * spe
    pct = warmup_epochs * spe / n if warmup_epochs else 0.3
    got = _lrs("onecycle", n, epochs=epochs, steps_per_epoch=spe, warmup_epochs=warmup_epochs)

    def cos_anneal(start, end, frac):
        return end + (start - end) / 2 * (1 + math.cos(math.pi * frac))

    lo, end1 = LR / 25, pct * n - 1
    floor = lo / 1e4
    want = [cos_anneal(lo, LR, k / end1) if k <= end1 else cos_anneal(LR, floor, (k - end1) / (n - 1 - end1))
            for k in range(n)]
    assert got == pytest.approx(want, rel=1e-9)
    assert max(got) == pytest.approx(LR, rel=0.02) and got[0] == pytest.approx(LR / 25)


def test_bad_schedule_settings_are_clear_errors():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=LR)
    with pytest.raises(ValueError, match="unknown schedule 'cosin'"):
        build_schedule(opt, "cosin", epochs=2, steps_per_epoch=3)
    with pytest.raises(ValueError, match="warm-up of 6 steps does not fit a run of 6 steps"):
        build_schedule(opt, "cosine", epochs=2, steps_per_epoch=3, warmup_epochs=2)


def test_scheduler_state_round_trips():
    """What resume relies on: a scheduler rebuilt and loaded from a state dict continues with
    the same rates as the one that kept running."""
    def make():
        p = torch.nn.Parameter(torch.zeros(2))
        opt = torch.optim.AdamW([p], lr=LR)
        return p, opt, build_schedule(opt, "cosine", epochs=4, steps_per_epoch=5, warmup_epochs=1)

    p, opt, sched = make()
    for _ in range(7):
        p.grad = torch.ones_like(p)
        opt.step()
        sched.step()
    p2, opt2, sched2 = make()
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    for _ in range(5):
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
        for q, o, s in ((p, opt, sched), (p2, opt2, sched2)):
            q.grad = torch.ones_like(q)
            o.step()
            s.step()
