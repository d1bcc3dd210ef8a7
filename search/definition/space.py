"""The axes of a sweep's [space] table: what each name means in a TrainConfig and how Optuna
asks for it.

An axis is written in one of three shapes, chosen so a sweep file reads like the paper's
experiment table: a fixed value (`seed = 0`), a categorical (`{ choices = [...] }`) or a
numeric range (`{ low, high, log, step }`). Whether a range is asked as an int or a float
comes from the TrainConfig field it sets, not from how the numbers were typed in TOML, so
`center_lambda = { low = 0, high = 1 }` is a float range, not the two integers 0 and 1.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

if TYPE_CHECKING:  # optuna is needed only by whoever calls define_by_run
    import optuna

from ser_core.config import TrainConfig
from ser_core.losses import loss_names, loss_parameters

Scalar = StrictBool | StrictInt | StrictFloat | StrictStr
NumericKind = Literal["int", "float"]

# Short names for the axes a loss/frontend study sweeps most; they are also the result columns.
SHORT_AXES: dict[str, tuple[str, ...]] = {
    "loss_family": ("loss", "family"),
    "frontend": ("frontend", "kind"),
    "model": ("model", "name"),
    "optimizer": ("optim", "name"),
    "lr": ("optim", "lr"),
    "batch_size": ("optim", "batch_size"),
    "weight_decay": ("optim", "weight_decay"),
    "dropout": ("model", "dropout"),
    "seed": ("seed",),
    # the training recipe (docs/recipe.md "Training recipe"); every other [augment]/[optim] field is
    # searched by its dotted name (augment.freq_mask_width, optim.step_gamma, ...)
    "schedule": ("optim", "schedule"),
    "warmup_epochs": ("optim", "warmup_epochs"),
    "label_smoothing": ("optim", "label_smoothing"),
    "class_weights": ("optim", "class_weights"),
    "ema_decay": ("optim", "ema_decay"),
    "mixup_alpha": ("augment", "mixup_alpha"),
    "freq_masks": ("augment", "freq_masks"),
    "time_masks": ("augment", "time_masks"),
    "time_shift": ("augment", "time_shift"),
    "time_crop": ("augment", "time_crop"),
    "normalization": ("normalization",),  # global or per-speaker feature statistics
}
# Sections whose fields may be searched by dotted name ("model.d_model", "frontend.n_mels").
DOTTED_SECTIONS = ("frontend", "model", "optim", "augment")
# Set by the sweep itself, never by an axis or [base].
RESERVED_PATHS: dict[tuple[str, ...], str] = {
    ("optim", "epochs"): "epochs come from scheduler.max_epochs",
    ("data",): "the data section comes from [data]",
    ("output",): "each trial's output location is chosen by the runner",
}
_AXIS_KEYS = {"choices", "low", "high", "log", "step"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FixedAxis(_Strict):
    """A constant: not searched, but recorded with every trial like a searched axis."""

    value: Scalar

    def candidates(self) -> list[Any]:
        return [self.value]


class ChoiceAxis(_Strict):
    choices: list[Scalar] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> "ChoiceAxis":
        seen: list[Any] = []
        for c in self.choices:
            # 1 == 1.0 == True in Python; compare type too so only true repeats are caught.
            if any(c == s and type(c) is type(s) for s in seen):
                raise ValueError(f"choice {c!r} is listed twice")
            seen.append(c)
        kinds = {"str" if isinstance(c, str) else "bool" if isinstance(c, bool) else "number" for c in self.choices}
        if len(kinds) > 1:
            raise ValueError(f"choices mix types ({', '.join(sorted(kinds))}): {self.choices}")
        return self

    def candidates(self) -> list[Any]:
        return list(self.choices)


class RangeAxis(_Strict):
    low: StrictFloat | StrictInt
    high: StrictFloat | StrictInt
    log: StrictBool = False
    step: StrictFloat | StrictInt | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "RangeAxis":
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be < high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got low = {self.low}")
        if self.step is not None:
            if self.step <= 0:
                raise ValueError(f"step must be > 0, got {self.step}")
            if self.log:
                raise ValueError("step cannot be combined with log = true (Optuna does not support it)")
        return self

    def candidates(self) -> list[Any]:
        return [self.low, self.high]


Axis = FixedAxis | ChoiceAxis | RangeAxis


def _parse_axis(raw: Any) -> Any:
    """TOML value -> axis model; pydantic then reports errors under the axis's own key."""
    if isinstance(raw, (FixedAxis, ChoiceAxis, RangeAxis)):
        return raw
    if isinstance(raw, dict):
        if "choices" in raw:
            return ChoiceAxis.model_validate(raw)
        if raw.keys() & {"low", "high"}:
            return RangeAxis.model_validate(raw)
        raise ValueError(
            f"expected {{ choices = [...] }} or {{ low = ..., high = ... [, log = true] }}, got keys {sorted(raw)}"
        )
    if isinstance(raw, list):
        raise ValueError(f"a bare list is ambiguous; write choices as {{ choices = {raw!r} }} "
                         "(list-valued settings such as model.channels belong in [base])")
    return FixedAxis.model_validate({"value": raw})


AxisField = Annotated[Axis, BeforeValidator(_parse_axis)]


def flatten_space(raw: Any) -> Any:
    """Nested TOML tables (`model.dropout = {...}` under [space]) -> dotted axis names.

    A table is an axis when it has one of the axis keys (choices/low/high/log/step), otherwise
    it is a namespace; no TrainConfig field is called like an axis key, so this is unambiguous.
    """
    if not isinstance(raw, dict):
        return raw  # pydantic reports the type error
    flat: dict[str, Any] = {}

    def walk(prefix: str, table: dict[str, Any]) -> None:
        for key, value in table.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict) and value and not (value.keys() & _AXIS_KEYS):
                walk(name + ".", value)
            else:
                flat[name] = value

    walk("", raw)
    return flat


@dataclass(frozen=True)
class AxisTarget:
    """Where an axis lands in a TrainConfig and how it is asked."""

    name: str
    path: tuple[str, ...]
    numeric: NumericKind | None  # None: only fixed values or choices make sense
    loss_param: bool  # a loss family's parameter: asked only when that family is drawn


def loss_param_names() -> list[str]:
    names: list[str] = []
    for family in loss_names():
        names += [p for p in loss_parameters(family) if p not in names]
    return names


def families_using(param: str) -> list[str]:
    return [f for f in loss_names() if param in loss_parameters(f)]


def valid_axis_names() -> list[str]:
    return list(SHORT_AXES) + loss_param_names()


def resolve_axis(name: str) -> AxisTarget:
    """Raises ValueError (naming the valid choices) for a name no TrainConfig field answers to."""
    if name in SHORT_AXES:
        path = SHORT_AXES[name]
        return AxisTarget(name, path, _numeric_kind(_field_annotation(path)), False)
    if name in loss_param_names():
        return AxisTarget(name, ("loss", name), "float", True)
    parts = tuple(name.split("."))
    if len(parts) == 2 and parts[0] in DOTTED_SECTIONS:
        if parts in RESERVED_PATHS:
            raise ValueError(f"{name} cannot be searched: {RESERVED_PATHS[parts]}")
        section = TrainConfig.model_fields[parts[0]].annotation
        if parts[1] in section.model_fields:
            return AxisTarget(name, parts, _numeric_kind(_field_annotation(parts)), False)
        raise ValueError(f"unknown axis {name!r}: {parts[0]} has no field {parts[1]!r} "
                         f"(its fields: {', '.join(section.model_fields)})")
    if parts[0] == "loss" and len(parts) == 2:
        raise ValueError(f"unknown axis {name!r}: loss settings are searched by short name "
                         f"(loss_family, {', '.join(loss_param_names())})")
    raise ValueError(f"unknown axis {name!r}; valid names: {', '.join(valid_axis_names())}, "
                     f"or a dotted field of {', '.join(DOTTED_SECTIONS)} such as model.d_model")


def _field_annotation(path: tuple[str, ...]) -> Any:
    model: Any = TrainConfig
    annotation: Any = None
    for part in path:
        annotation = model.model_fields[part].annotation
        model = annotation
    return annotation


def _numeric_kind(annotation: Any) -> NumericKind | None:
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (Union, UnionType) else (annotation,)
    args = tuple(a for a in args if a is not type(None))
    if args == (int,):
        return "int"
    if args in ((float,), (float, int), (int, float)):
        return "float"
    return None


def check_range_fits(axis: RangeAxis, target: AxisTarget) -> None:
    """A range must land on a numeric field; an int field needs whole-number bounds and step."""
    if target.numeric is None:
        raise ValueError(f"a {{low, high}} range needs a numeric setting, but {'.'.join(target.path)} "
                         "takes fixed values or { choices = [...] }")
    if target.numeric == "int":
        for what in ("low", "high", "step"):
            v = getattr(axis, what)
            if v is not None and float(v) != int(v):
                raise ValueError(f"{what} ({v}) must be a whole number: {'.'.join(target.path)} is an integer")
        if axis.log and axis.step not in (None, 1):
            raise ValueError("an integer log range cannot have a step")


def suggest(trial: optuna.Trial, name: str, axis: Axis, target: AxisTarget) -> Any:
    """Ask Optuna for one searched axis (never called for fixed values)."""
    if isinstance(axis, ChoiceAxis):
        return trial.suggest_categorical(name, axis.choices)
    if isinstance(axis, RangeAxis):
        if target.numeric == "int":
            return trial.suggest_int(name, int(axis.low), int(axis.high), step=int(axis.step or 1), log=axis.log)
        return trial.suggest_float(name, float(axis.low), float(axis.high), step=axis.step, log=axis.log)
    raise TypeError(f"axis {name!r} is fixed; it is not suggested")


def set_path(config: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = config
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"{'.'.join(path)}: {part} is not a table")
        node = child
    node[path[-1]] = value


def get_path(config: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at path, or a KeyError if any level is missing."""
    node: Any = config
    for part in path:
        if not isinstance(node, dict) or part not in node:
            raise KeyError(".".join(path))
        node = node[part]
    return node
