"""benchmarks/early_stopping.py's pure figures: epochs counted per search, the P4 verdict (ASHA within
1 UA point of FIFO's confirmed best with <= 25 % of its epochs), and the table. No Ray, no training."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from benchmarks.early_stopping import Side, epochs_spent, summary, table, verdict


def _side(seed: int, side: str, epochs: int, val: list[float], test: list[float] | None = None) -> Side:
    return Side(seed=seed, side=side, epochs=epochs, trials=12, completed=12 if side == "FIFO" else 3,
                pruned=0 if side == "FIFO" else 9, searched_val_ua=max(val, default=math.nan), confirmed_val=val,
                confirmed_test=test if test is not None else val, chosen="mel, cross_entropy, lr 0.001")


def test_epochs_spent_sums_epochs_run_of_search_trials_only():
    trials = pd.DataFrame({
        "stage": ["search", "search", "search", "search", "confirm"],
        "status": ["completed", "pruned", "pruned", "error", "completed"],
        "epochs_run": [16, 1, 2, None, 16],
    })
    assert epochs_spent(trials) == 19          # a stopped trial counts what it ran; an error with none, 0
    assert epochs_spent(trials.drop(columns="stage")) == 35
    assert epochs_spent(trials.iloc[0:0]) == 0


def test_verdict_holds_within_one_point_and_a_quarter_of_the_epochs():
    fifo = _side(0, "FIFO", 192, [0.50, 0.52, 0.54])      # mean 0.52
    asha = _side(0, "ASHA", 48, [0.505, 0.515, 0.51])     # mean 0.51: exactly 1 point lower, 25 %
    v = verdict([asha], [fifo])
    assert v.val_diff == pytest.approx(-0.01)
    assert v.epochs_ratio == pytest.approx(0.25)
    assert v.ua_ok and v.epochs_ok and v.holds


@pytest.mark.parametrize("asha_epochs, asha_val, ua_ok, epochs_ok", [
    (49, [0.51], True, False),      # one epoch over a quarter
    (48, [0.509], False, True),     # 1.1 points lower
    (100, [0.40], False, False),
    (10, [0.60], True, True),       # better and cheaper
])
def test_verdict_misses(asha_epochs, asha_val, ua_ok, epochs_ok):
    v = verdict([_side(0, "ASHA", asha_epochs, asha_val)], [_side(0, "FIFO", 192, [0.52])])
    assert (v.ua_ok, v.epochs_ok, v.holds) == (ua_ok, epochs_ok, ua_ok and epochs_ok)


def test_verdict_over_seeds_is_the_mean_difference_and_the_summed_epochs():
    asha = [_side(0, "ASHA", 30, [0.50]), _side(1, "ASHA", 70, [0.47])]
    fifo = [_side(0, "FIFO", 200, [0.48]), _side(1, "FIFO", 200, [0.50])]
    v = verdict(asha, fifo)
    # seed 0: +2 points, seed 1: -3 points -> mean -0.5 points: within 1 point, though seed 1 alone is not
    assert v.val_diff == pytest.approx(-0.005)
    assert v.epochs_ratio == pytest.approx(100 / 400)
    assert v.holds
    assert not verdict(asha[1:], fifo[1:]).holds
    # summed epochs, not the mean of per-seed ratios: 10/100 and 90/300 -> 100/400 = 0.25, mean ratio 0.2
    v2 = verdict([_side(0, "ASHA", 10, [0.5]), _side(1, "ASHA", 90, [0.5])],
                 [_side(0, "FIFO", 100, [0.5]), _side(1, "FIFO", 300, [0.5])])
    assert v2.epochs_ratio == pytest.approx(0.25)


def test_verdict_uses_the_confirmed_means_not_the_searched_best():
    asha = _side(0, "ASHA", 40, [0.40, 0.42])
    asha.searched_val_ua = 0.60          # a lucky searched run does not count
    fifo = _side(0, "FIFO", 192, [0.50, 0.52])
    v = verdict([asha], [fifo])
    assert v.val_diff == pytest.approx(-0.10)
    assert not v.holds


def test_verdict_pairs_by_seed_and_refuses_unpaired_sides():
    with pytest.raises(ValueError):
        verdict([_side(0, "ASHA", 10, [0.5])], [_side(1, "FIFO", 100, [0.5])])
    with pytest.raises(ValueError):
        verdict([_side(0, "ASHA", 10, [0.5])], [])


def test_verdict_without_confirmed_runs_does_not_hold():
    v = verdict([_side(0, "ASHA", 10, [])], [_side(0, "FIFO", 100, [0.5])])
    assert math.isnan(v.val_diff) and not v.ua_ok and not v.holds


def test_table_and_summary_show_the_figures():
    asha = _side(2, "ASHA", 41, [0.50, 0.52, 0.54], [0.40, 0.42, 0.44])
    fifo = _side(2, "FIFO", 192, [0.53, 0.53, 0.53], [0.41, 0.41, 0.41])
    text = table([asha, fifo])
    assert "| 2 | ASHA | 41 | 12 (3 / 9) |" in text
    assert "0.520 ± 0.050 (n=3)" in text           # t(0.975, 2) * 0.02 / sqrt(3) = 0.0497
    assert "0.530 ± 0.000 (n=3)" in text
    out = summary([asha], [fifo])
    assert "-1.0 points" in out and "41 / 192 = 0.21" in out
    assert "HOLDS" in out
