"""Objectives and non-dominated sorting for sweeps with several objectives.

A sweep with `[sweep] objectives = ["val_ua:max", "latency_ms:min"]` has no single best
trial: a configuration is worth keeping when no other one is at least as good on every
objective and better on one (Pareto dominance). The multi-objective scheduler promotes by
these ranks at each rung, the leaderboard's `--pareto` lists rank 0, and the dashboard draws
it. The sort is the one of NSGA-II (Deb et al. 2002, "A fast and elitist multiobjective
genetic algorithm: NSGA-II"), written over whole arrays: the sweeps here hold at most a few
thousand trials, so the O(k n^2) dominance matrix is cheap and needs no Python per pair.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

SENSES = ("max", "min")


@dataclass(frozen=True)
class Objective:
    """One objective: a metric name as trials report it, and whether more or less is better."""

    name: str
    sense: str  # "max" or "min"

    def __post_init__(self) -> None:
        if self.sense not in SENSES:
            raise ValueError(f"objective {self.name!r}: sense must be one of {SENSES}, not {self.sense!r}")

    @classmethod
    def parse(cls, text: str) -> "Objective":
        """'val_ua:max' -> Objective('val_ua', 'max')."""
        name, sep, sense = text.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"objective {text!r}: write it as 'metric:max' or 'metric:min'")
        return cls(name.strip(), sense.strip())

    def __str__(self) -> str:
        return f"{self.name}:{self.sense}"


def _as_minimised(values: np.ndarray, senses: Sequence[str]) -> np.ndarray:
    """Values with every objective turned into one to minimise; a missing value (NaN) becomes
    +inf, so a trial that lacks an objective never dominates one that has it."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[1] != len(senses):
        raise ValueError(f"values must be (n trials, {len(senses)} objectives), got shape {v.shape}")
    for s in senses:
        if s not in SENSES:
            raise ValueError(f"sense must be one of {SENSES}, not {s!r}")
    sign = np.array([-1.0 if s == "max" else 1.0 for s in senses])
    out = v * sign
    out[np.isnan(out)] = np.inf
    return out


def dominance_matrix(values: np.ndarray, senses: Sequence[str]) -> np.ndarray:
    """d[i, j] is True when trial i dominates trial j: no worse on every objective and better
    on at least one."""
    m = _as_minimised(values, senses)
    no_worse = (m[:, None, :] <= m[None, :, :]).all(axis=2)
    better = (m[:, None, :] < m[None, :, :]).any(axis=2)
    return no_worse & better


def non_dominated_ranks(values: np.ndarray, senses: Sequence[str]) -> np.ndarray:
    """The front each trial belongs to: 0 for the non-dominated ones, 1 for those dominated
    only by front 0, and so on (NSGA-II's fast non-dominated sort). Equal trials share a rank.
    A trial missing any objective (NaN) is ranked after every complete one: it cannot be shown
    to be on a front it was never measured for."""
    v = np.asarray(values, dtype=float)
    complete = ~np.isnan(v).any(axis=1) if v.ndim == 2 else np.ones(0, dtype=bool)
    if v.ndim == 2 and not complete.all():
        ranks = np.empty(v.shape[0], dtype=int)
        inner = non_dominated_ranks(v[complete], senses)
        ranks[complete] = inner
        ranks[~complete] = (inner.max() + 1) if inner.size else 0
        return ranks
    d = dominance_matrix(v, senses)
    n = d.shape[0]
    ranks = np.full(n, -1, dtype=int)
    dominated_by = d.sum(axis=0)  # how many trials dominate each one
    rank = 0
    current = np.flatnonzero(dominated_by == 0)
    while current.size:
        ranks[current] = rank
        dominated_by = dominated_by - d[current].sum(axis=0)
        dominated_by[ranks >= 0] = -1  # already placed
        current = np.flatnonzero(dominated_by == 0)
        rank += 1
    return ranks


def pareto_mask(values: np.ndarray, senses: Sequence[str]) -> np.ndarray:
    """True for the non-dominated trials (rank 0 and every objective measured)."""
    v = np.asarray(values, dtype=float)
    return (non_dominated_ranks(v, senses) == 0) & ~np.isnan(v).any(axis=1)
