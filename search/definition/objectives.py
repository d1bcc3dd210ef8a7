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


def crowding_distance(values: np.ndarray, senses: Sequence[str], ranks: np.ndarray | None = None) -> np.ndarray:
    """NSGA-II's crowding distance of each trial within its own front (Deb et al. 2002, §III-B):
    per objective, the gap between its two neighbours on the front, as a fraction of the front's
    range, summed over objectives. A trial at either end of the front on some objective gets
    +inf, so the extremes of a trade-off are kept before its middle; so does every trial of a
    front of one or two. Ties at an end are all ends (every trial equal to the front's minimum
    is as extreme as any other), so the result never depends on the order of the rows. An
    objective that is constant on a front adds nothing there. A trial missing an objective (NaN)
    gets 0: it is on no front it was measured for."""
    m = _as_minimised(values, senses)
    v = np.asarray(values, dtype=float)
    ranks = non_dominated_ranks(v, senses) if ranks is None else np.asarray(ranks)
    complete = ~np.isnan(v).any(axis=1)
    out = np.zeros(len(m))
    for r in np.unique(ranks[complete]):
        idx = np.flatnonzero((ranks == r) & complete)
        if idx.size <= 2:
            out[idx] = np.inf
            continue
        dist = np.zeros(idx.size)
        for k in range(m.shape[1]):
            col = m[idx, k]
            lo, hi = col.min(), col.max()
            if hi == lo:
                continue
            order = np.argsort(col, kind="stable")
            s = col[order]
            gaps = np.empty(idx.size)
            gaps[1:-1] = (s[2:] - s[:-2]) / (hi - lo)
            contrib = np.empty(idx.size)
            contrib[order] = np.r_[0.0, gaps[1:-1], 0.0]
            contrib[(col == lo) | (col == hi)] = np.inf
            dist += contrib
        out[idx] = dist
    return out


def objectives_from_record(record: dict) -> list[Objective] | None:
    """A sweep's objectives from its `sweep.json` (search/driver/sweep.py `record_start`): None for a
    sweep on validation UA alone (no `[sweep] objectives`)."""
    texts = (record.get("sweep") or {}).get("sweep", {}).get("objectives")
    return [Objective.parse(t) for t in texts] if texts else None


# Objectives a multi-objective sweep may name, with the only sense that makes sense for each. The
# first is what the trials are validated on; the others are model costs every trial measures
# (ser_core/cost.py) and reports in every result.
VALIDATION_OBJECTIVES = {"val_ua": "max", "val_wa": "max"}


COST_OBJECTIVES = {"params": "min", "macs": "min", "latency_ms": "min"}


# The Tune result key an objective is judged on while trials run: for UA the best so far (what
# single-objective ASHA compares, and what trials.parquet's val_ua holds at the end); the
# trainable keeps no best-so-far for the others, so theirs are each epoch's own.
_TUNE_KEYS = {"val_ua": "best_val_ua"}


def tune_metric(name: str) -> str:
    """The key of a Tune result that carries objective `name`."""
    return _TUNE_KEYS.get(name, name)


def parse_objectives(texts: list[str]) -> list[Objective]:
    """Validate `[sweep] objectives`; raises ValueError naming every problem."""
    if len(texts) < 2:
        raise ValueError("give at least two objectives, e.g. [\"val_ua:max\", \"latency_ms:min\"]; a sweep on "
                         "validation UA alone leaves `objectives` out")
    problems: list[str] = []
    parsed: list[Objective] = []
    for i, text in enumerate(texts):
        try:
            o = Objective.parse(text)
        except ValueError as e:
            problems.append(str(e))
            continue
        allowed = VALIDATION_OBJECTIVES if i == 0 else COST_OBJECTIVES
        if o.name not in allowed:
            where = "the first objective must be a validation metric" if i == 0 else "later objectives are model costs"
            problems.append(f"{text!r}: {where} ({', '.join(allowed)})"
                            + (f"; {o.name} can only come first" if o.name in VALIDATION_OBJECTIVES else ""))
        elif o.sense != allowed[o.name]:
            problems.append(f"{text!r}: {o.name} is only ever better {'higher' if allowed[o.name] == 'max' else 'lower'}"
                            f"; write {o.name}:{allowed[o.name]}")
        parsed.append(o)
    names = [o.name for o in parsed]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"{', '.join(repeated)} listed twice")
    if problems:
        raise ValueError("; ".join(problems))
    return parsed
