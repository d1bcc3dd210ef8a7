"""What a confirmation runs, as data: search.analysis.confirmation chooses it from a sweep's
results, search.driver.confirm runs it. The driver is told what to run; it ranks nothing."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConfirmationPlan:
    """What a confirmation runs: every configuration (a searched trial's config_json) with every seed."""

    sweep: str                # the searched sweep: the lineage its runs belong to
    configs: list[str]
    seeds: list[int]
