"""The statistics of a claim row: a design-aware t interval, its verdict, Holm's adjustment,
and how many more paired units an undecided row would likely need.

The unit of analysis follows the design (confirmed runs are seeds x test folds):
- **one fold**: the paired differences of the seeds are the units: paired t over seeds;
- **one fold**: the interval says how much the training noise (seeds) moves the difference *on
  these test speakers*; it is conditional on them, not a statement about other speakers;
- **several folds**: runs of one fold share its test set, so their differences are not
  independent. The seeds of each fold are averaged first and the interval is taken over the
  fold means (df = folds - 1): a fold is one unit, as in cross-validated comparisons. The fold
  means are not independent either: the folds' training sets overlap, which makes the plain t
  over them liberal (Dietterich 1998, Neural Computation 10(7)). Nadeau & Bengio (2003, Machine
  Learning 52) correct the variance of the mean from sd²/k to sd²·(1/k + n_test/n_train), the
  corrected resampled t; Bouckaert & Frank (2004, PAKDD) apply it to k-fold cross-validation.
  `design_interval` uses it whenever the fold units' n_test/n_train is known (the folds one run
  tests on over the folds it trains on), so the half-width is sqrt(1 + k·n_test/n_train) times the
  plain one (1.63 for 5 folds tested one at a time with 3 training folds). Pooling seeds x
  folds as independent pairs would be narrower still.
scipy.stats supplies the t quantiles; the formulae are spelled out so the edge cases have a
stated answer. Units that are all equal (common with a few seeds on a small test set, where
accuracies move in steps of one clip) give no interval: a zero spread is the test set's
granularity, not certainty, and a point interval would call two identical pairs p < 0.001.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .model import ClaimsError

Verdict = Literal["exceeds E", "consistent with E", "real but smaller than E", "not detected", "opposite",
                  "inconclusive"]
VERDICTS: tuple[str, ...] = ("exceeds E", "consistent with E", "real but smaller than E", "not detected",
                             "opposite", "inconclusive")
Unit = Literal["seed", "fold"]

ALPHA = 0.05       # two-sided, for the sample-size estimate (the interval's own level is `confidence`)
POWER = 0.80
MAX_UNITS = 10_000  # beyond this an estimate of "more runs needed" says nothing useful


class StatsError(ClaimsError):
    """Input to the statistics that cannot give an answer; the message says which."""


@dataclass(frozen=True)
class DesignResult:
    """Mean paired difference over the design's units with its t interval and test of zero.

    `units` holds the numbers the interval is taken over (the seed differences with one
    fold, the fold means with several), `unit` says which. The interval and p-value are NaN
    with fewer than two units."""
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    sd: float
    unit: Unit
    units: tuple[float, ...]
    n_pairs: int
    n_folds: int
    n_seeds: int
    confidence: float = 0.95
    # n_test/n_train of the fold units when the interval is Nadeau & Bengio's corrected one;
    # None: the plain t (one fold, or a design that did not record its training folds)
    test_train_ratio: float | None = None

    @property
    def n_units(self) -> int:
        return len(self.units)

    @property
    def has_interval(self) -> bool:
        return self.n_units >= 2


def t_interval(units: Sequence[float], confidence: float = 0.95,
               test_train_ratio: float = 0.0) -> tuple[float, float, float, float, float]:
    """(mean, low, high, p, sd) of a one-sample Student t over `units` against 0:
    mean ± t.ppf((1+confidence)/2, n-1) · se and the two-sided p of t = mean/se, with
    se = sd·sqrt(1/n + test_train_ratio) (sd/√n for independent units; Nadeau & Bengio's
    corrected resampled t for fold units whose training sets overlap).
    With n < 2 only the mean is defined (the rest NaN). With sd = 0 (all units equal) there is
    no spread to build an interval on: the bounds and p are NaN and sd is 0."""
    from scipy import stats  # noqa: PLC0415 - heavy; `ser-search --help` must not pay for it

    if not 0.0 < confidence < 1.0:
        raise StatsError(f"confidence must be in (0, 1), got {confidence}")
    if not (math.isfinite(test_train_ratio) and test_train_ratio >= 0.0):
        raise StatsError(f"n_test/n_train must be a finite number >= 0, got {test_train_ratio}")
    x = [float(v) for v in units]
    bad = [i for i, v in enumerate(x) if not math.isfinite(v)]
    if bad:
        raise StatsError(f"unit(s) at position {bad} are not finite numbers; drop them first")
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan, math.nan
    mean = math.fsum(x) / n
    if n < 2:
        return mean, math.nan, math.nan, math.nan, math.nan
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in x) / (n - 1))
    if sd <= 1e-12 * max(1.0, abs(mean)):
        sd = 0.0  # equal units up to rounding (0.1 + 0.1 + 0.1 != 0.3): no spread, not a huge t
    se = sd * math.sqrt(1.0 / n + test_train_ratio)
    if se == 0.0:
        return mean, math.nan, math.nan, math.nan, 0.0
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * se
    p = float(2.0 * stats.t.sf(abs(mean) / se, df=n - 1))
    return mean, mean - half, mean + half, p, sd


def design_interval(folds: Sequence[Any], seeds: Sequence[int], diffs: Sequence[float],
                    confidence: float = 0.95, test_train_ratio: float | None = None) -> DesignResult:
    """The design-aware interval of paired differences `diffs` observed at (fold, seed):
    paired t over seeds with one fold, t over the per-fold means of the seeds with several
    (each fold weighs the same, whatever its number of seeds). A fold is any hashable that
    names one test set (a fold number, or "0+1" for two folds held out together).

    With several folds and `test_train_ratio` (n_test/n_train of one fold unit) the interval is
    Nadeau & Bengio's corrected resampled t; None with several folds is the plain t, which is
    too narrow for fold units whose training sets overlap — callers say so."""
    if not len(folds) == len(seeds) == len(diffs):
        raise StatsError(f"folds ({len(folds)}), seeds ({len(seeds)}) and diffs ({len(diffs)}) must line up")
    by_fold: dict[Any, list[float]] = {}
    for f, d in zip(folds, diffs):
        by_fold.setdefault(f, []).append(float(d))
    ratio: float | None = None
    if len(by_fold) <= 1:
        unit: Unit = "seed"
        units = tuple(float(d) for d in diffs)
    else:
        unit = "fold"
        units = tuple(math.fsum(v) / len(v) for _, v in sorted(by_fold.items(), key=lambda kv: str(kv[0])))
        ratio = test_train_ratio
    mean, low, high, p, sd = t_interval(units, confidence, ratio or 0.0)
    return DesignResult(mean_diff=mean, ci_low=low, ci_high=high, p_value=p, sd=sd, unit=unit, units=units,
                        n_pairs=len(diffs), n_folds=len(by_fold), n_seeds=len({int(s) for s in seeds}),
                        confidence=confidence, test_train_ratio=ratio)


def verdict(ci_low: float, ci_high: float, effect: float) -> Verdict:
    """The plain-word verdict of interval [ci_low, ci_high] against 0 and the stated effect E >= 0
    ("arm a beats arm b by E"):

    - exceeds E: the interval lies entirely above E (ci_low > E);
    - consistent with E: above 0 and containing E;
    - real but smaller than E: above 0, entirely below E;
    - not detected: contains 0 and lies entirely below E;
    - opposite: entirely below 0 (arm b is the better one);
    - inconclusive: contains both 0 and E, or there is no interval (NaN bounds).

    With E = 0 (an ordering: "a beats b") zero and E coincide, so only three words can occur:
    exceeds E (the ordering holds), opposite, and inconclusive (no difference detected either
    way); there is no effect size to fall short of."""
    if effect < 0 or not math.isfinite(effect):
        raise StatsError(f"stated effect must be a finite number >= 0 (name the better arm first), got {effect}")
    if not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return "inconclusive"
    if ci_low > ci_high:
        raise StatsError(f"interval [{ci_low}, {ci_high}] has its low end above its high end")
    if ci_high < 0:
        return "opposite"
    if ci_low > effect:
        return "exceeds E"
    if ci_low > 0:
        return "consistent with E" if ci_high >= effect else "real but smaller than E"
    # ci_low <= 0 <= ci_high from here
    return "not detected" if ci_high < effect else "inconclusive"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's (1979, Scand. J. Statist. 6) step-down adjusted p-values, in input order: with the m
    finite p sorted ascending, p_adj(i) = max over j <= i of min(1, (m - j + 1) · p(j)). It
    controls the family-wise error rate over the rows of one report under any dependence. NaN
    (a row with no test) stays NaN and does not count in m."""
    finite = [(float(p), i) for i, p in enumerate(p_values) if p is not None and math.isfinite(float(p))]
    bad = [i for p, i in finite if not 0.0 <= p <= 1.0]
    if bad:
        raise StatsError(f"p-value(s) at position {bad} are outside [0, 1]")
    out = [math.nan] * len(p_values)
    m = len(finite)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(finite)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def more_units_needed(result: DesignResult, effect: float, *, alpha: float = ALPHA, power: float = POWER,
                      max_units: int = MAX_UNITS) -> int | None:
    """How many more units (seeds with one fold, folds with several) would likely decide an
    inconclusive row, if the true difference and spread are the observed ones.

    Deciding means the interval excludes 0 or E; it will first exclude the one farther from the
    mean, at distance δ = max(|mean|, |mean − E|). The total N is the smallest with
    (t(1−α/2, N−1) + t(power, N−1)) · sd/√N ≤ δ — the usual one-sample t sample-size formula with
    t quantiles in place of normal ones, found by stepping N up. None: no spread observed yet
    (fewer than two units, or all equal), δ = 0, or more than `max_units` would be needed."""
    import numpy as np  # noqa: PLC0415
    from scipy import stats  # noqa: PLC0415

    n, sd, mean = result.n_units, result.sd, result.mean_diff
    if n < 2 or not math.isfinite(sd) or not math.isfinite(mean):
        return None
    delta = max(abs(mean), abs(mean - effect))
    if delta == 0.0:
        return None
    if sd == 0.0:
        return None  # no spread observed: the power formula has nothing to work with
    total = np.arange(max(n, 2), max_units + 1)
    # the corrected variance keeps sd²·n_test/n_train however many folds are added
    ratio = result.test_train_ratio or 0.0
    need = (stats.t.ppf(1 - alpha / 2, total - 1) + stats.t.ppf(power, total - 1)) * sd * np.sqrt(1 / total + ratio)
    hits = np.flatnonzero(need <= delta)
    return max(int(total[hits[0]]) - n, 1) if hits.size else None
