"""What a claim is: two arms, the metrics, the stated effect (standard library only, so the
`ser-search` parser can import the claims package without pandas, scipy or pydantic)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ClaimsError(ValueError):
    """The trials table, a claims file or the arguments cannot give claim verdicts; the message
    says why and where."""


# Test-side metrics of the trials table a claim may compare. Validation metrics chose the
# configurations, so a claim on them would be judged on the data it was tuned on.
TEST_METRICS = ("test_ua", "test_wa", "test_f1_macro", "test_precision_macro", "test_recall_macro",
                "compactness_test")
# Metrics where a lower value is the better one; their difference is taken b - a.
LOWER_IS_BETTER = frozenset({"compactness_val", "compactness_test"})


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: a loss family, optionally a frontend and a model (None: any),
    and optionally training-recipe settings the arm's runs must have (`settings`: pairs of a
    sweep axis name, as in a sweep's [space], and its value, e.g. ("mixup_alpha", 0.2)), read
    from each run's recorded configuration. Settings make ablations claims: the same loss and
    model with and without one recipe element. `sweep` ties the arm to one sweep lineage (the
    search sweep's name): a baseline sweep's arm against a deep sweep's (Claim.across); or to
    several, one per outer fold of a nested cross-validation done as one held-out sweep per fold:
    each sweep then chooses its own configuration (the arm is the selection procedure, and its
    test sets are the sweeps' held-out folds)."""
    loss_family: str
    frontend: str | None = None
    model: str | None = None
    settings: tuple[tuple[str, Any], ...] = ()
    sweep: str | tuple[str, ...] | None = None

    @property
    def sweeps(self) -> tuple[str, ...]:
        """The sweep lineages the arm's runs come from (none: any)."""
        if self.sweep is None:
            return ()
        return (self.sweep,) if isinstance(self.sweep, str) else self.sweep

    def label(self) -> str:
        text = "/".join(x for x in (self.loss_family, self.frontend) if x) + (f" ({self.model})" if self.model else "")
        if self.settings:
            text += " [" + ", ".join(f"{k}={v}" for k, v in self.settings) + "]"
        return text + (f" @{','.join(self.sweeps)}" if self.sweeps else "")

    def cell(self) -> dict[str, Any]:
        """The trial columns this arm fixes (what `confirm --for-claims` confirms); a setting is a
        column named by its axis (search.analysis.claims.settings.with_setting_columns adds it)."""
        fixed: dict[str, Any] = {k: v for k, v in (("loss_family", self.loss_family), ("frontend", self.frontend),
                                                   ("model", self.model), ("sweep", self.sweep)) if v is not None}
        return fixed | dict(self.settings)


@dataclass(frozen=True)
class Claim:
    """'arm_a beats arm_b on each metric by stated_effect' (>= 0; orient so that a is the arm said
    to be better). `sweep` names the sweep file that produces the runs (a hint shown when runs
    are missing); `origin` says where the claim was defined, for error messages."""
    claim: str
    statement: str
    arm_a: Arm
    arm_b: Arm
    metrics: tuple[str, ...]
    stated_effect: float
    sweep: str = ""
    origin: str = ""

    @property
    def across(self) -> bool:
        """The arms name different models or different sweeps (a deep configuration against the
        functionals baseline): their runs share test speakers, not seeds or a search, so they
        pair by test set only (search.analysis.claims.arms)."""
        a, b = self.arm_a, self.arm_b
        return (a.model != b.model and (a.model or b.model) is not None) or (
            a.sweep != b.sweep and (a.sweep or b.sweep) is not None)

    @property
    def model(self) -> str | None:
        """The model the claim fixes (both arms share it), or None: a row per model found (an
        `across` claim's arms each name their own)."""
        return None if self.across else self.arm_a.model
