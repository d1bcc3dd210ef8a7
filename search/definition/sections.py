"""The sweep file's sections other than the space: [sweep] (name, budget, sampler, objectives,
storage, warm start), [scheduler] (ASHA's rungs) and [resources] (what a trial holds), and the
experiment keys a warm start compares.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ser_core.config import DataConfig, TrainConfig

from .objectives import Objective, parse_objectives


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


# [base] keys a warm start does not compare (search/driver/warm_start.py), with why: where and how a
# trial runs is no part of the experiment (as search.results.config_key leaves them out), and
# the epochs come from [scheduler] (a different max_epochs is noted, not refused).
NOT_COMPARED: dict[str, str] = {
    "base.device": "where a trial runs is no part of the experiment",
    "base.output": "where a trial runs is no part of the experiment",
    "base.fastpath": "where a trial runs is no part of the experiment (the same maths, faster)",
    "base.feature_cache": "where a trial runs is no part of the experiment",
    "base.feature_cache_dir": "where a trial runs is no part of the experiment",
    "base.optim.epochs": "epochs come from scheduler.max_epochs (a warm start notes a different budget)",
}


# The objective is compared too, but no allowance can make an earlier trial's value one of this
# study's: a warm start seeds a study maximising validation UA from trials that maximised it.
OBJECTIVES_KEY = "sweep.objectives"


def _model_keys(model: Any, prefix: str) -> list[str]:
    out: list[str] = []
    for name, info in model.model_fields.items():
        key = f"{prefix}.{name}"
        out.append(key)
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            out += _model_keys(info.annotation, key)
    return out


def experiment_keys() -> list[str]:
    """The keys a warm start compares between an earlier sweep and a new one, in order, and so
    the names `[sweep] warm_start_allow` may list: every [data] key (data.prepared standing for
    the prepared corpus's identity) and every [base] key (a TrainConfig field, nested ones
    dotted) but those in NOT_COMPARED, and the tables above them (`data`, `base`, `base.model`),
    each of which stands for every key below it. Read from the models, so a field added to
    DataConfig or TrainConfig is compared (and may be allowed) without a change here."""
    keys = ["data", *_model_keys(DataConfig, "data"), "base"]
    keys += [k for k in _model_keys(TrainConfig, "base") if not k.startswith("base.data")]
    return [k for k in keys if k not in NOT_COMPARED]


def _check_allowances(names: list[str]) -> list[str]:
    known = experiment_keys()
    problems: list[str] = []
    for name in dict.fromkeys(names):
        if name in known:
            continue
        if name in NOT_COMPARED:
            problems.append(f"{name!r} is not compared: {NOT_COMPARED[name]}")
        elif name in (OBJECTIVES_KEY, "objectives"):
            problems.append(f"{name!r} cannot be allowed: an earlier trial's value must be what this study "
                            "maximises (validation UA)")
        else:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            problems.append(f"unknown key {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    if problems:
        problems.append("a warm start compares data.<key> (data.prepared: the prepared corpus), base.<key> "
                        "(e.g. base.model.name, base.frontend.kind, base.optim.lr) and tables of them (data, "
                        "base.model), each standing for every key in it")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"{', '.join(map(repr, repeated))} listed twice")
    return problems


class SweepSection(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$", description="results go to <results>/<name>/")
    description: str = ""
    num_samples: int = Field(gt=0, description="trials Optuna proposes")
    max_concurrent_trials: int = Field(1, gt=0)
    seed: int = Field(0, description="TPE sampler seed")
    cover_choices: bool = Field(
        False, description="enqueue first trials so every choice of every categorical axis runs at least once")
    objectives: list[str] | None = Field(
        None, description="several objectives, 'metric:max|min': first a validation metric (val_ua, val_wa), then "
                          "model costs (params, macs, latency_ms); a Pareto front instead of one best trial")
    sampler: Literal["tpe", "nsga2"] | None = Field(
        None, description="Optuna sampler of a multi-objective sweep: tpe (default) or nsga2")

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [str(o) for o in parse_objectives(v)]

    @model_validator(mode="after")
    def _sampler_needs_objectives(self) -> "SweepSection":
        if self.sampler == "nsga2" and not self.objectives:
            raise ValueError("sampler = \"nsga2\" is for sweeps with several objectives ([sweep] objectives); "
                             "a sweep on validation UA alone uses TPE")
        if self.objectives and getattr(self, "warm_start", None):
            raise ValueError("warm_start seeds a single-objective study (validation UA) and cannot be combined "
                             "with objectives")
        return self

    def objective_list(self) -> list[Objective] | None:
        """The objectives as search.definition.objectives.Objective, or None for a sweep on validation UA alone."""
        return None if self.objectives is None else [Objective.parse(o) for o in self.objectives]
    optuna_storage: str | None = Field(
        None, description="an Optuna RDB storage URL for the study (postgresql://..., mysql://..., "
                          "sqlite:///path/optuna.db); default: optuna.db with the results (search/driver/study.py)")
    warm_start: list[str] = Field(
        default_factory=list, description="results directories of earlier sweeps whose finished trials seed this "
                                          "sweep's Optuna study (search/driver/warm_start.py); relative to the sweep file")
    warm_start_allow: list[str] = Field(
        default_factory=list, description="keys in which a warm_start sweep's experiment may differ from this one's "
                                          "([data] and [base] keys such as data.prepared, data.folds, "
                                          "base.model.name, or a table such as base.model for every key in it); "
                                          "any other difference refuses the warm start (search/driver/warm_start.py)")

    @field_validator("warm_start_allow")
    @classmethod
    def _known_allowances(cls, v: list[str]) -> list[str]:
        problems = _check_allowances(v)
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @model_validator(mode="after")
    def _allow_needs_warm_start(self) -> "SweepSection":
        if self.warm_start_allow and not self.warm_start:
            raise ValueError("warm_start_allow without warm_start: it names the ways the earlier sweeps that "
                             "warm_start lists may differ from this one")
        return self

    @field_validator("warm_start")
    @classmethod
    def _distinct_sources(cls, v: list[str]) -> list[str]:
        if any(not s.strip() for s in v):
            raise ValueError("an empty path; give each earlier sweep's results directory (<results>/<name>)")
        repeated = sorted({s for s in v if v.count(s) > 1})
        if repeated:
            raise ValueError(f"{', '.join(map(repr, repeated))} listed twice: its trials would be added twice")
        return v

    @field_validator("optuna_storage")
    @classmethod
    def _database_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from sqlalchemy.engine import make_url  # noqa: PLC0415 - Optuna's dependency; only when given

        try:
            url = make_url(v)
        except Exception:  # noqa: BLE001 - sqlalchemy raises several types; the URL itself is not echoed
            raise ValueError("not a database URL; e.g. postgresql://user@host/db or sqlite:////abs/path/optuna.db") from None
        dialect = url.drivername.split("+")[0]
        if dialect not in _RDB_DIALECTS:
            raise ValueError(f"{dialect!r} is not a database Optuna can store a study in "
                             f"({', '.join(sorted(_RDB_DIALECTS))})")
        if dialect == "sqlite" and url.database in (None, "", ":memory:"):
            raise ValueError("an SQLite study needs a file: sqlite:////abs/path/optuna.db (an in-memory one "
                             "would be lost with the driver)")
        return v

    @field_validator("name")
    @classmethod
    def _not_dots(cls, v: str) -> str:
        if set(v) == {"."}:
            raise ValueError(f"{v!r} is not a usable directory name")
        return v


_RDB_DIALECTS = {"sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql"}


def hide_password(url: str) -> str:
    """A database URL as it may be printed or stored beside the results: its password as ***."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL: nothing to hide
        return url


def resolve_sqlite(url: str, base_dir: Path) -> str:
    """sqlite:///relative.db names a file relative to the working directory; a sweep file means
    its own directory (like data.prepared)."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        return prefix + str((base_dir / url.removeprefix(prefix)).resolve())
    return url


class SchedulerSection(Strict):
    """ASHA: a trial reaching `grace_period` epochs may be stopped; survivors get `max_epochs`."""

    max_epochs: int = Field(gt=0)
    grace_period: int = Field(1, gt=0)
    # 3, not ASHA's usual 2: over 6 EmoDB searches it spent fewer epochs in total (513 vs 558) at
    # an equal or better confirmed validation UA in all 6 (benchmarks/RESULTS.md, Benchmark 6)
    reduction_factor: float = Field(3.0, gt=1.0)

    @model_validator(mode="after")
    def _grace_within_budget(self) -> "SchedulerSection":
        if self.grace_period > self.max_epochs:
            raise ValueError(f"grace_period ({self.grace_period}) must be <= max_epochs ({self.max_epochs})")
        return self


class ResourcesSection(Strict):
    cpus_per_trial: float = Field(1.0, gt=0.0)
    gpus_per_trial: float = Field(0.0, ge=0.0, description="used only on clusters with GPUs; 0 = CPU only")
    reuse_actors: bool = Field(True, description="run a later trial in a finished trial's Ray actor (Tune's "
                               "reuse_actors): no process start, imports or first-optimizer cost per trial")

    @field_validator("gpus_per_trial")
    @classmethod
    def _whole_above_one(cls, v: float) -> float:
        # Ray shares a GPU only as a fraction of one; more than one must be whole devices.
        if v > 1 and v != int(v):
            raise ValueError(f"gpus_per_trial above 1 must be a whole number, got {v}")
        return v
