"""The sweep file: one TOML that says what to search, on which data, under which budget.

Everything that can be wrong with it is found when it is loaded — unknown keys, empty
choices, inverted or non-positive log ranges, unknown loss or frontend names, a [base] that
is not a valid TrainConfig, an axis that could never produce a valid trial — and reported in
one message that names every bad key, so a typo costs seconds, not a Ray cluster start.
"""
from __future__ import annotations

import copy
import itertools
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BeforeValidator,
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

from .sections import (NOT_COMPARED, OBJECTIVES_KEY, ResourcesSection, SchedulerSection, Strict,  # noqa: F401
                       SweepSection, experiment_keys, hide_password, resolve_sqlite)
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
from .logging_section import LoggingSection, resolve_tracking_uri

_PLACEHOLDER_DATA = {"prepared": "."}  # lets [base] be validated before [data] is known


class SweepConfigError(ConfigError):
    """The sweep file is unreadable or invalid; the message lists every bad key."""


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, v in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), v, out)
    else:
        out[prefix] = value


def changed_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose value differs between two `SweepConfig.settings()` (or that only one has)."""
    return sorted(k for k in old.keys() | new.keys() if k not in old or k not in new or old[k] != new[k])


def _error(loc: tuple[str, ...], message: str) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("sweep_config", "{message}", {"message": message}),
                            loc=loc, input=None)


class SweepConfig(Strict):
    sweep: SweepSection
    data: DataConfig
    scheduler: SchedulerSection
    resources: ResourcesSection = Field(default_factory=ResourcesSection)
    logging: LoggingSection = Field(default_factory=LoggingSection, description="trackers (search/recording/trackers.py)")
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

    def with_outer_fold(self, fold: int, n_folds: int) -> "SweepConfig":
        """The sweep as outer fold `fold` of a nested cross-validation (the CLI's --outer-fold):
        `fold` held out of the whole sweep (data.test_folds), every other fold of the prepared
        data a selection fold (data.folds), and the sweep named `<name>-f<fold>`, so the outer
        folds' sweeps sit side by side and a claims arm can name them all. It replaces the file's
        own fold design; the same file then runs on a corpus with any number of folds."""
        if not 0 <= fold < n_folds:
            raise SweepConfigError(f"--outer-fold {fold}: the prepared data has folds 0..{n_folds - 1}")
        if n_folds < 3:
            raise SweepConfigError(f"--outer-fold needs at least 3 folds (one held out, 2 to select on); "
                                   f"the prepared data has {n_folds}")
        raw = self.data.model_dump(exclude={"fold", "folds", "test_folds"}, exclude_none=True)
        try:
            data = DataConfig.model_validate(
                {**raw, "test_folds": [fold], "folds": [f for f in range(n_folds) if f != fold]})
            section = SweepSection.model_validate({**self.sweep.model_dump(), "name": f"{self.sweep.name}-f{fold}"})
        except ValidationError as e:
            raise SweepConfigError(format_validation_error(e, f"--outer-fold {fold}")) from None
        return self.model_copy(update={"data": data, "sweep": section})

    def with_prepared(self, prepared: Path | str) -> "SweepConfig":
        """The same sweep on another prepared corpus (the CLI's --prepared)."""
        data = self.data.model_copy(update={"prepared": Path(prepared).expanduser().resolve()})
        return self.model_copy(update={"data": data})


def _resolve_encoders(raw: dict[str, Any], base_dir: Path) -> None:
    """[base] frontend.ssl_model, when it names a directory beside the sweep file, as an absolute
    path, before validation reads it (trials run elsewhere)."""
    from ser_core.features.ssl import resolve_encoder  # noqa: PLC0415

    frontend = raw.get("base", {}).get("frontend") if isinstance(raw.get("base"), dict) else None
    if isinstance(frontend, dict) and isinstance(frontend.get("ssl_model"), str):
        frontend["ssl_model"] = resolve_encoder(frontend["ssl_model"], base_dir)


def parse_sweep(text: str, *, source: str = "<string>", base_dir: Path | None = None) -> SweepConfig:
    """Sweep TOML text -> SweepConfig; a relative data.prepared resolves against base_dir."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SweepConfigError(f"{source} is not valid TOML: {e}") from None
    _resolve_encoders(raw, base_dir or Path.cwd())
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
