"""Claim verdicts from confirmed runs (`ser-search claims RESULTS [--claims FILE.toml]`).

Both papers report single runs with no interval, so a claim like "center loss adds 3 UA points"
is only checkable by repeating both arms over seeds (and folds) and looking at the *paired*
differences: runs that share a seed, fold and held-out corpus share the data split and initial
draw, so pairing removes that shared noise from the comparison.

- model.py   what a claim is (Arm, Claim, the metrics a claim may compare)
- file.py    claims files: the papers' claims (papers.toml) and a researcher's own, validated
- runs.py    the confirmed runs as the claims read them: lineage, protocol, arm key, test units
- settings.py the recipe settings an arm fixes, read from each run's configuration; which runs an
             arm holds
- arms.py    how each arm's configuration is chosen and how they pair: one sweep lineage, model,
             prepared corpus and protocol per row, never a pair across them (evaluate_claims)
- stats.py   the design-aware interval (paired t over seeds with one fold, t over fold means
             with several), verdicts against 0 and the stated effect, Holm, runs still needed
- report.py  rendering and the CLI sub-command

Only the standard library is imported here; pandas, scipy and pydantic load when used.
"""
from __future__ import annotations

from typing import Any

from .arms import COLUMNS, PAIR_KEYS, arms_of_sweep, check_arms_held, claim_arms, evaluate_claims, unit_interval
from .file import PAPERS_FILE, load_claims, papers_claims, parse_claims
from .model import LOWER_IS_BETTER, TEST_METRICS, Arm, Claim, ClaimsError
from .report import FORMATS, add_claims_command, display_view, render_claims
from .runs import confirmed_runs, design_units, lineage
from .stats import VERDICTS, DesignResult, design_interval, holm, more_units_needed, t_interval, verdict

__all__ = ["CLAIMS", "COLUMNS", "FORMATS", "LOWER_IS_BETTER", "PAIR_KEYS", "PAPERS_FILE", "TEST_METRICS", "VERDICTS",
           "Arm", "Claim", "ClaimsError", "DesignResult", "add_claims_command", "arms_of_sweep", "check_arms_held",
           "claim_arms",
           "confirmed_runs", "design_interval", "design_units", "display_view", "evaluate_claims", "holm", "lineage", "load_claims",
           "more_units_needed", "papers_claims", "parse_claims", "render_claims", "t_interval", "unit_interval",
           "verdict"]


def __getattr__(name: str) -> Any:
    # CLAIMS (the papers' claims) is read from papers.toml on first use, not at import.
    if name == "CLAIMS":
        return papers_claims()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
