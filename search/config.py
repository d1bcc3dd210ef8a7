"""The sweep file: one TOML that says what to search, on which data, under which budget.

Everything that can be wrong with it is found when it is loaded — unknown keys, empty
choices, inverted or non-positive log ranges, unknown loss or frontend names, a [base] that
is not a valid TrainConfig, an axis that could never produce a valid trial — and reported in
one message that names every bad key, so a typo costs seconds, not a Ray cluster start.
"""
from __future__ import annotations

import copy
import difflib
import itertools
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

if TYPE_CHECKING:  # optuna is needed only by whoever calls define_by_run
    import optuna

from ser_core.config import ConfigError, DataConfig, TrainConfig, format_validation_error
from ser_core.losses import loss_names, loss_parameters

from .pareto import Objective
from .space import (
    RESERVED_PATHS,
    AxisField,
    AxisTarget,
    ChoiceAxis,
    FixedAxis,
    RangeAxis,
    check_range_fits,
    families_using,
    flatten_space,
    get_path,
    resolve_axis,
    set_path,
    suggest,
)
from .trackers import LoggingSection, resolve_tracking_uri

_PLACEHOLDER_DATA = {"prepared": "."}  # lets [base] be validated before [data] is known


class SweepConfigError(ConfigError):
    """The sweep file is unreadable or invalid; the message lists every bad key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


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


# [base] keys a warm start does not compare (search/warm_start.py), with why: where and how a
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


class SweepSection(_Strict):
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
        """The objectives as search.pareto.Objective, or None for a sweep on validation UA alone."""
        return None if self.objectives is None else [Objective.parse(o) for o in self.objectives]
    optuna_storage: str | None = Field(
        None, description="an Optuna RDB storage URL for the study (postgresql://..., mysql://..., "
                          "sqlite:///path/optuna.db); default: optuna.db with the results (search/study.py)")
    warm_start: list[str] = Field(
        default_factory=list, description="results directories of earlier sweeps whose finished trials seed this "
                                          "sweep's Optuna study (search/warm_start.py); relative to the sweep file")
    warm_start_allow: list[str] = Field(
        default_factory=list, description="keys in which a warm_start sweep's experiment may differ from this one's "
                                          "([data] and [base] keys such as data.prepared, data.folds, "
                                          "base.model.name, or a table such as base.model for every key in it); "
                                          "any other difference refuses the warm start (search/warm_start.py)")

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


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, v in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), v, out)
    else:
        out[prefix] = value


def changed_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose value differs between two `SweepConfig.settings()` (or that only one has)."""
    return sorted(k for k in old.keys() | new.keys() if k not in old or k not in new or old[k] != new[k])


class SchedulerSection(_Strict):
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


class ResourcesSection(_Strict):
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


def _error(loc: tuple[str, ...], message: str) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("sweep_config", "{message}", {"message": message}),
                            loc=loc, input=None)


class SweepConfig(_Strict):
    sweep: SweepSection
    data: DataConfig
    scheduler: SchedulerSection
    resources: ResourcesSection = Field(default_factory=ResourcesSection)
    logging: LoggingSection = Field(default_factory=LoggingSection, description="trackers (search/trackers.py)")
    space: Annotated[dict[str, AxisField], BeforeValidator(flatten_space)] = Field(default_factory=dict)
    base: dict[str, Any] = Field(default_factory=dict, description="TrainConfig keys shared by every trial")

    _source_text: str = PrivateAttr("")
    _source_path: Path | None = PrivateAttr(None)
    _targets: dict[str, AxisTarget] = PrivateAttr(default_factory=dict)

    # ------------------------------------------------------------------ validation

    @field_validator("base")
    @classmethod
    def _base_is_train_config(cls, base: dict[str, Any]) -> dict[str, Any]:
        errors: list[InitErrorDetails] = []
        probe = copy.deepcopy(base)
        for path, why in RESERVED_PATHS.items():
            try:
                get_path(base, path)
            except KeyError:
                continue
            errors.append(_error(path, f"cannot be set in [base]: {why}"))
            parent = get_path(probe, path[:-1]) if len(path) > 1 else probe
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
        try:
            TrainConfig.model_validate({**probe, "data": _PLACEHOLDER_DATA})
        except ValidationError as e:
            errors += [_error(tuple(str(p) for p in err["loc"]), err["msg"].removeprefix("Value error, "))
                       for err in e.errors()]
        if errors:  # raised as a ValidationError, pydantic prefixes every loc with `base`
            raise ValidationError.from_exception_data("base", errors)
        return base

    @model_validator(mode="after")
    def _axes_consistent(self) -> "SweepConfig":
        errors: list[InitErrorDetails] = []
        targets: dict[str, AxisTarget] = {}
        owner: dict[tuple[str, ...], str] = {}
        for name, axis in self.space.items():
            try:
                target = resolve_axis(name)
                if isinstance(axis, RangeAxis):
                    check_range_fits(axis, target)
            except ValueError as e:
                errors.append(_error(("space", name), str(e)))
                continue
            if target.path in owner:
                errors.append(_error(("space", name), f"duplicates space.{owner[target.path]} "
                                     f"(both set {'.'.join(target.path)})"))
                continue
            owner[target.path] = name
            targets[name] = target
            try:
                get_path(self.base, target.path)
                errors.append(_error(("base", *target.path), f"is searched as space.{name}; set it in one place"))
            except KeyError:
                pass
        self._targets = targets

        loss_clash = "loss_family" in self.space and "loss" in self.base
        if loss_clash:
            errors.append(_error(("base", "loss"), "the loss family is searched (space.loss_family); give family "
                                 "parameters in [space] (fixed values are fine) so each applies only to its family"))
        families = self.families()
        unknown = [f for f in families if f not in loss_names()]
        if unknown:  # base.loss.family was checked with [base]; only the axis can get here
            errors.append(_error(("space", "loss_family"), f"unknown loss family {', '.join(map(repr, unknown))}; "
                                 f"choose from {', '.join(loss_names())}"))
        families = [f for f in families if f not in unknown]
        for name, target in list(targets.items()):
            if target.loss_param and not any(name in loss_parameters(f) for f in families):
                errors.append(_error(("space", name), (
                    f"no loss family this sweep can draw ({', '.join(families) or 'none'}) uses it; "
                    f"it belongs to {', '.join(families_using(name))}")))
                del targets[name]

        # Every value an axis can take must give a valid TrainConfig on top of [base].
        for name, target in targets.items():
            if (target.loss_param or name == "loss_family") and (loss_clash or unknown):
                continue  # the loss errors above say what to fix first
            axis = self.space[name]
            for value in axis.candidates():
                problem = self._probe(target, value, families)
                if problem:
                    what = "value" if isinstance(axis, FixedAxis) else (
                        "choice" if isinstance(axis, ChoiceAxis) else ("low" if value == axis.low else "high"))
                    errors.append(_error(("space", name), f"{what} {value!r} gives an invalid trial: {problem}"))
        if errors:
            raise ValidationError.from_exception_data("SweepConfig", errors)
        return self

    def _probe(self, target: AxisTarget, value: Any, families: list[str]) -> str | None:
        raw = copy.deepcopy(self.base)
        raw["data"] = _PLACEHOLDER_DATA
        if target.loss_param:
            set_path(raw, ("loss", "family"), next(f for f in families if target.name in loss_parameters(f)))
        set_path(raw, target.path, value)
        try:
            TrainConfig.model_validate(raw)
        except ValidationError as e:
            return "; ".join(format_validation_error(e, "").splitlines()[1:]).strip()
        return None

    # ------------------------------------------------------------------ queries

    @property
    def source_text(self) -> str:
        """The sweep file as written, to be stored next to its results."""
        return self._source_text

    @property
    def source_path(self) -> Path | None:
        return self._source_path

    def axes(self) -> list[str]:
        """Every [space] name, searched or fixed, in file order: the keys a params dict can hold."""
        return list(self.space)

    def searched_axes(self) -> list[str]:
        return [n for n, a in self.space.items() if not isinstance(a, FixedAxis)]

    def families(self) -> list[str]:
        """The loss families this sweep can draw."""
        axis = self.space.get("loss_family")
        if axis is None:
            return [self.base.get("loss", {}).get("family", "cross_entropy")]
        return [str(c) for c in axis.candidates()]

    def _target(self, name: str) -> AxisTarget:
        return self._targets.get(name) or resolve_axis(name)

    # ------------------------------------------------------------------ search

    def define_by_run(self, trial: optuna.Trial) -> dict[str, Any]:
        """Optuna define-by-run space (Ray's `OptunaSearch(space=...)`).

        Searched axes are asked from `trial`; fixed values are returned, so Ray's params
        dict holds every axis. A family parameter is asked (or returned) only when the drawn
        family has it, so TPE never models center_lambda on cross-entropy trials.
        """
        constants: dict[str, Any] = {}
        family = self._value(trial, "loss_family", constants) if "loss_family" in self.space else self.families()[0]
        family_params = loss_parameters(family)
        for name in self.space:
            if name == "loss_family":
                continue
            if self._target(name).loss_param and name not in family_params:
                continue
            self._value(trial, name, constants)
        return constants

    def _value(self, trial: optuna.Trial, name: str, constants: dict[str, Any]) -> Any:
        axis = self.space[name]
        if isinstance(axis, FixedAxis):
            constants[name] = axis.value
            return axis.value
        return suggest(trial, name, axis, self._target(name))

    def trial_config(self, params: dict[str, Any], *, epochs: int | None = None) -> TrainConfig:
        """[base] + one trial's params (+ [data], epochs) -> a validated TrainConfig.

        `params` holds axis names as define_by_run produced them; a None value means the axis
        was not used by this trial. The drawn family's parameters are written out in full
        (registry default where neither [space] nor [base] gives one), so the stored config
        says exactly what ran.
        """
        unknown = sorted(set(params) - set(self.space))
        if unknown:
            raise SweepConfigError(f"trial params {unknown} are not axes of sweep {self.sweep.name!r} "
                                   f"(its axes: {', '.join(self.space) or 'none'})")
        raw = copy.deepcopy(self.base)
        raw["data"] = self.data.model_dump()
        set_path(raw, ("optim", "epochs"), self.scheduler.max_epochs if epochs is None else epochs)
        family = params.get("loss_family") or self.families()[0]
        for name in self.space:
            target = self._target(name)
            value = params.get(name)
            if target.loss_param:
                if value is not None and name not in loss_parameters(family):
                    raise SweepConfigError(f"trial param {name}={value!r} does not apply to loss family {family!r}")
                continue
            if value is None:
                raise SweepConfigError(f"trial params lack axis {name!r} (sweep {self.sweep.name!r})")
            set_path(raw, target.path, value)
        loss = raw.setdefault("loss", {})
        for pname, (default, _, _) in loss_parameters(family).items():
            given = params.get(pname)
            loss[pname] = given if given is not None else loss.get(pname, default)
        try:
            return TrainConfig.model_validate(raw)
        except ValidationError as e:
            raise SweepConfigError(format_validation_error(
                e, f"trial of sweep {self.sweep.name!r} with params {params}")) from None

    def covering_points(self) -> list[dict[str, Any]]:
        """First trials that together try every choice of every categorical axis, so a small
        sweep cannot miss a loss family or a frontend by chance: every combination of them
        when that fits in `num_samples` (then each family is seen on each frontend), else
        choice i of each axis in trial i, cycling shorter axes. Other axes stay free for the
        sampler. Empty unless `sweep.cover_choices` is set."""
        if not self.sweep.cover_choices:
            return []
        categorical = {name: axis.choices for name, axis in self.space.items()
                       if isinstance(axis, ChoiceAxis) and len(axis.choices) > 1}
        if not categorical:
            return []
        names = list(categorical)
        combos = list(itertools.product(*categorical.values()))
        if len(combos) <= self.sweep.num_samples:
            return [dict(zip(names, combo)) for combo in combos]
        n = max(len(c) for c in categorical.values())
        return [{name: choices[i % len(choices)] for name, choices in categorical.items()} for i in range(n)]

    def settings(self) -> dict[str, Any]:
        """The sweep as validated, one dotted key per setting (`scheduler.max_epochs`,
        `base.model.d_model`, `space.lr.high`): what a resume compares with the stored run, so
        a comment or a reformatted table is no change but every value that shapes a trial is.
        [base] is taken as the TrainConfig it gives (an explicit default equals an omitted one);
        a storage URL's password is left out. [logging] is not compared: trackers shape no trial."""
        d = self.model_dump(mode="json", exclude={"space", "base", "logging"})
        if d["sweep"].get("optuna_storage"):
            d["sweep"]["optuna_storage"] = hide_password(d["sweep"]["optuna_storage"])
        d["space"] = {name: axis.value if isinstance(axis, FixedAxis) else axis.model_dump(mode="json")
                      for name, axis in self.space.items()}
        base = TrainConfig.model_validate({**copy.deepcopy(self.base), "data": _PLACEHOLDER_DATA})
        d["base"] = base.model_dump(mode="json", exclude={"data"})
        flat: dict[str, Any] = {}
        _flatten("", d, flat)
        return flat

    def as_raw(self) -> dict[str, Any]:
        """The sweep as a sweep file's data, overrides included (--prepared, a demo's shorter
        budget): what ran, for sweep.json; `SweepConfig.model_validate` reads it back. A storage
        URL's password is left out."""
        d = self.model_dump(mode="json", exclude={"space", "base"}, exclude_none=True)
        if d["sweep"].get("optuna_storage"):
            d["sweep"]["optuna_storage"] = hide_password(d["sweep"]["optuna_storage"])
        if d["logging"].get("mlflow"):
            d["logging"]["mlflow"] = hide_password(d["logging"]["mlflow"])
        d["space"] = {name: axis.value if isinstance(axis, FixedAxis) else axis.model_dump(mode="json", exclude_none=True)
                      for name, axis in self.space.items()}
        d["base"] = copy.deepcopy(self.base)
        return d

    def with_optuna_storage(self, url: str) -> "SweepConfig":
        """The same sweep with its study in another storage (the CLI's --optuna-storage)."""
        try:
            section = SweepSection.model_validate({**self.sweep.model_dump(), "optuna_storage": url})
        except ValidationError as e:
            raise SweepConfigError(format_validation_error(e, "--optuna-storage")) from None
        section.optuna_storage = resolve_sqlite(section.optuna_storage, Path.cwd())
        return self.model_copy(update={"sweep": section})

    def with_prepared(self, prepared: Path | str) -> "SweepConfig":
        """The same sweep on another prepared corpus (the CLI's --prepared)."""
        data = self.data.model_copy(update={"prepared": Path(prepared).expanduser().resolve()})
        return self.model_copy(update={"data": data})


def parse_sweep(text: str, *, source: str = "<string>", base_dir: Path | None = None) -> SweepConfig:
    """Sweep TOML text -> SweepConfig; a relative data.prepared resolves against base_dir."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SweepConfigError(f"{source} is not valid TOML: {e}") from None
    try:
        cfg = SweepConfig.model_validate(raw)
    except ValidationError as e:
        raise SweepConfigError(format_validation_error(e, source)) from None
    if not cfg.data.prepared.is_absolute():
        cfg.data.prepared = ((base_dir or Path.cwd()) / cfg.data.prepared).resolve()
    if cfg.sweep.optuna_storage:
        cfg.sweep.optuna_storage = resolve_sqlite(cfg.sweep.optuna_storage, base_dir or Path.cwd())
    if cfg.logging.mlflow:  # a file store or sqlite:/// relative to the sweep file, like optuna_storage
        cfg.logging.mlflow = resolve_tracking_uri(cfg.logging.mlflow, base_dir or Path.cwd())
    # like data.prepared: relative to the sweep file; a URI (s3://...) as given
    cfg.sweep.warm_start = [s if "://" in s else str(((base_dir or Path.cwd()) / Path(s).expanduser()).resolve())
                            for s in cfg.sweep.warm_start]
    cfg._source_text = text
    return cfg


def load_sweep(path: Path | str) -> SweepConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweepConfigError(f"sweep file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SweepConfigError(f"cannot read sweep file {path}: {e}") from None
    cfg = parse_sweep(text, source=str(path), base_dir=path.parent)
    cfg._source_path = path.resolve()
    return cfg
