"""Claims files: hypotheses as data (`ser-search claims RESULTS --claims FILE.toml`).

A claims file is TOML with one `[[claim]]` table per hypothesis, validated with pydantic like a
sweep file: unknown keys, a missing or unknown metric, a negative effect, identical arms, a
frontend set twice and duplicate ids are all reported at once, each naming the file and key.
The papers' claims ship as `papers.toml` next to this module; its comments are the format's
reference.

    [[claim]]
    id = "1"                                  # unique in the file; names the rows
    statement = "center + softmax beats softmax on Mel by > 3 points"
    a = { loss_family = "center" }            # the arm said to be better
    b = { loss_family = "cross_entropy" }     # an arm may also fix `frontend`, and recipe
                                              # `settings = { mixup_alpha = 0.2 }` (sweep axis names)
    frontend = "mel"                          # optional: both arms on this frontend
    model = "cnn_birnn"                       # optional: only this model (else a row per model)
                                              # an arm may name its own `model` and `sweep` (a
                                              # search sweep's name): a deep configuration against
                                              # the baseline sweep, paired by test fold only;
                                              # `sweep = ["q-f0", "q-f1", ...]`: one held-out sweep
                                              # per outer fold (nested CV), each choosing its own
    metrics = ["test_ua", "test_wa"]          # or metric = "test_ua"
    effect = 0.03                             # stated effect E >= 0, in the metric's units
    sweep_file = "search/sweeps/center_loss_dai2019.toml"   # optional hint: where runs come from
    source = "Dai et al., ICASSP 2019"        # optional
"""
from __future__ import annotations

import functools
import math
import tomllib
from pathlib import Path
from typing import Annotated, Any

from .model import TEST_METRICS, Arm, Claim, ClaimsError

PAPERS_FILE = Path(__file__).with_name("papers.toml")


def _models() -> Any:
    """The pydantic models, built on first use (pydantic is not imported for `--help`)."""
    from pydantic import (  # noqa: PLC0415
        BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, field_validator, model_validator)

    class _Strict(BaseModel):
        model_config = ConfigDict(extra="forbid", protected_namespaces=())

    class ArmSpec(_Strict):
        loss_family: str = Field(min_length=1)
        frontend: str | None = Field(None, min_length=1)
        model: str | None = Field(None, min_length=1, description="this arm's model (arms may differ: a baseline)")
        sweep: Annotated[str, Field(min_length=1)] | Annotated[list[str], Field(min_length=1)] | None = Field(
            None, description="this arm's sweep lineage (its search sweep's name), or one per outer fold of a "
                              "nested cross-validation (each chooses its own configuration)")
        settings: dict[str, StrictBool | StrictInt | StrictFloat | StrictStr] = Field(
            default_factory=dict, description="recipe settings the arm's runs have, by sweep axis name")

        @field_validator("sweep")
        @classmethod
        def _sweep_names(cls, v: str | list[str] | None) -> str | tuple[str, ...] | None:
            if not isinstance(v, list):
                return v
            if any(not name for name in v):
                raise ValueError("a sweep name cannot be empty")
            if len(set(v)) != len(v):
                raise ValueError(f"names a sweep twice: {v}")
            return v[0] if len(v) == 1 else tuple(v)

        @field_validator("settings")
        @classmethod
        def _axis_names(cls, v: dict[str, Any]) -> dict[str, Any]:
            from search.definition.space import resolve_axis  # noqa: PLC0415

            for name in v:
                if name in _NOT_SETTINGS:
                    raise ValueError(f"{name!r} is not a setting here: {_NOT_SETTINGS[name]}")
                try:
                    resolve_axis(name)
                except ValueError as e:
                    raise ValueError(f"settings.{name}: {e}") from None
            return v

    class ClaimSpec(_Strict):
        id: str = Field(min_length=1)
        statement: str = Field(min_length=1)
        a: ArmSpec
        b: ArmSpec
        metric: str | None = None
        metrics: list[str] | None = None
        effect: float = Field(ge=0.0, description="stated effect E, >= 0: name the better arm a")
        model: str | None = Field(None, min_length=1)
        frontend: str | None = Field(None, min_length=1)
        sweep_file: str = ""
        source: str = ""

        @field_validator("effect")
        @classmethod
        def _finite(cls, v: float) -> float:
            if not math.isfinite(v):
                raise ValueError(f"must be a finite number, got {v}")
            return v

        @field_validator("metrics")
        @classmethod
        def _metric_list(cls, v: list[str] | None) -> list[str] | None:
            if v is not None:
                if not v:
                    raise ValueError("must name at least one metric")
                for m in v:
                    _check_metric(m)
                if len(set(v)) != len(v):
                    raise ValueError(f"lists a metric twice: {v}")
            return v

        @field_validator("metric")
        @classmethod
        def _one_metric(cls, v: str | None) -> str | None:
            return _check_metric(v) if v is not None else v

        @model_validator(mode="after")
        def _consistent(self) -> "ClaimSpec":
            if (self.metric is None) == (self.metrics is None):
                raise ValueError("give exactly one of `metric = \"test_ua\"` or `metrics = [...]`")
            for side in ("a", "b"):
                for key in ("frontend", "model"):
                    if getattr(self, key) is not None and getattr(getattr(self, side), key) is not None:
                        raise ValueError(f"{key} is set both for the claim and in arm {side}; set it once")
            arm_a, arm_b = self.arm(self.a), self.arm(self.b)
            if arm_a == arm_b:
                raise ValueError(f"arms a and b are the same ({arm_a.label()}); a claim compares two")
            if not _disjoint(arm_a, arm_b):
                # otherwise one arm's runs could also be the other's
                raise ValueError(f"arms a and b ({arm_a.label()} / {arm_b.label()}) could match the same runs: "
                                 "give them different loss families, a different frontend, model or sweep in "
                                 "each, or a setting both name with a different value")
            return self

        def arm(self, spec: Any) -> Arm:
            return Arm(spec.loss_family, spec.frontend or self.frontend, spec.model or self.model,
                       tuple(spec.settings.items()), spec.sweep)

    class ClaimsFile(_Strict):
        description: str = ""
        claim: list[ClaimSpec] = Field(min_length=1, description="one [[claim]] table per hypothesis")

        @model_validator(mode="after")
        def _unique_ids(self) -> "ClaimsFile":
            ids = [c.id for c in self.claim]
            dup = sorted({i for i in ids if ids.count(i) > 1})
            if dup:
                raise ValueError(f"claim id(s) {dup} appear more than once; ids name the rows and must be unique")
            return self

    return ClaimsFile


# Arm keys that are not recipe settings: they have their own place in a claim, or pair the runs.
_NOT_SETTINGS = {
    "loss_family": "give it as the arm's loss_family",
    "frontend": "give it as the arm's (or the claim's) frontend",
    "model": "give it as the arm's (or the claim's) model",
    "sweep": "give it as the arm's sweep",
    "seed": "runs pair by seed; an arm cannot fix one",
}


def _disjoint(a: Arm, b: Arm) -> bool:
    """No run can belong to both arms: they differ on the loss family, on a frontend both name,
    or on a setting both name."""
    if a.loss_family != b.loss_family:
        return True
    for key in ("frontend", "model"):
        x, y = getattr(a, key), getattr(b, key)
        if x is not None and y is not None and x != y:
            return True
    if a.sweeps and b.sweeps and not set(a.sweeps) & set(b.sweeps):
        return True
    sa, sb = dict(a.settings), dict(b.settings)
    return any(k in sb and sb[k] != v for k, v in sa.items())


def _check_metric(m: str) -> str:
    if m not in TEST_METRICS:
        hint = " (validation chose the configurations; claims are judged on test metrics)" if m.startswith(
            ("val_", "compactness_val")) else ""
        raise ValueError(f"unknown metric {m!r}{hint}; choose from {', '.join(TEST_METRICS)}")
    return m


def _format(err: Any, source: str, raw: dict[str, Any]) -> str:
    """One line per problem: `claim[2] (id '3a').a.loss_family: message`."""
    lines = [f"invalid claims file {source}:"]
    claims = raw.get("claim") if isinstance(raw.get("claim"), list) else []
    for e in err.errors():
        loc = list(e["loc"])
        parts: list[str] = []
        if len(loc) >= 2 and loc[0] == "claim" and isinstance(loc[1], int):
            i = loc[1]
            cid = claims[i].get("id") if i < len(claims) and isinstance(claims[i], dict) else None
            parts.append(f"claim[{i}]" + (f" (id {cid!r})" if cid is not None else ""))
            loc = loc[2:]
        parts += [str(p) for p in loc]
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {'.'.join(parts) or '(top level)'}: {msg}")
    return "\n".join(lines)


def parse_claims(text: str, *, source: str = "<string>") -> tuple[Claim, ...]:
    """Claims TOML text -> Claims; every problem in one ClaimsError naming `source` and the key."""
    from pydantic import ValidationError  # noqa: PLC0415

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ClaimsError(f"{source} is not valid TOML: {e}") from None
    try:
        parsed = _models().model_validate(raw)
    except ValidationError as e:
        raise ClaimsError(_format(e, source, raw)) from None
    return tuple(Claim(c.id, c.statement, c.arm(c.a), c.arm(c.b), tuple(c.metrics or [c.metric]), c.effect,
                       c.sweep_file, f"{source}: claim[{i}] (id {c.id!r})") for i, c in enumerate(parsed.claim))


def load_claims(path: Path | str) -> tuple[Claim, ...]:
    """Read and validate a claims file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClaimsError(f"claims file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ClaimsError(f"cannot read claims file {path}: {e}") from None
    return parse_claims(text, source=str(path))


@functools.cache
def papers_claims() -> tuple[Claim, ...]:
    """The two papers' claims, from the claims file shipped with the package."""
    return load_claims(PAPERS_FILE)
