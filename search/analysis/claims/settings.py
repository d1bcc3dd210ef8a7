"""Recipe settings an arm fixes (Arm.settings: a sweep axis name such as mixup_alpha, and its
value), read from each trial's recorded configuration, and which runs an arm holds (`arm_mask`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .model import Arm, Claim
from .runs import is_missing

if TYPE_CHECKING:  # pandas is imported lazily so `ser-search --help` stays fast
    import pandas as pd


def setting_keys(claims: Sequence[Claim]) -> list[str]:
    """Every recipe setting the claims' arms fix, in first-mention order."""
    return list(dict.fromkeys(k for c in claims for arm in (c.arm_a, c.arm_b) for k, _ in arm.settings))


def with_setting_columns(trials: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """`trials` with a column per setting key (a sweep axis name such as mixup_alpha or
    augment.freq_mask_width), read from each row's recorded configuration (`config_json`, the
    trial's whole TrainConfig): recipe settings have no columns of their own. A key that is
    already a column is kept as it is; a row without a configuration gets None."""
    import json  # noqa: PLC0415

    from search.definition.space import get_path, resolve_axis  # noqa: PLC0415 - pydantic, only when settings are used

    missing = [k for k in keys if k not in trials.columns]
    if not missing:
        return trials
    paths = {k: resolve_axis(k).path for k in missing}
    configs = [json.loads(t) if isinstance(t, str) and t else None
               for t in (trials["config_json"] if "config_json" in trials.columns else [None] * len(trials))]

    def value(cfg: Any, path: tuple[str, ...]) -> Any:
        try:
            return get_path(cfg, path) if isinstance(cfg, dict) else None
        except KeyError:
            return None

    return trials.assign(**{k: [value(c, paths[k]) for c in configs] for k in missing})


def setting_equal(value: Any, wanted: Any) -> bool:
    """A recorded setting equals an arm's: numbers within float round-off (0 == 0.0), other
    values exactly; a missing value never matches."""
    import numbers  # noqa: PLC0415

    if is_missing(value):
        return False
    if isinstance(wanted, bool) or isinstance(value, (bool, _np_bool())):
        return isinstance(value, (bool, _np_bool())) and isinstance(wanted, bool) and bool(value) == wanted
    if isinstance(wanted, numbers.Real) and isinstance(value, numbers.Real):
        return math.isclose(float(value), float(wanted), rel_tol=1e-9, abs_tol=1e-12)
    return bool(value == wanted)


def _np_bool() -> type:
    import numpy as np  # noqa: PLC0415

    return np.bool_


def arm_mask(df: pd.DataFrame, arm: Arm) -> pd.Series:
    """The rows of `df` that hold `arm`: its loss family, and its frontend, model and settings where
    it fixes them (`df` has a column per setting key: with_setting_columns)."""
    mask = df["loss_family"] == arm.loss_family
    if arm.frontend is not None:
        mask &= df["frontend"] == arm.frontend
    if arm.model is not None:
        mask &= df["model"] == arm.model
    if arm.sweep is not None:
        if "lineage" in df.columns:
            lineages = df["lineage"]
        else:  # a trials table as read (check_arms_held): the lineage from its sweep columns
            import pandas as pd  # noqa: PLC0415

            from .runs import lineage  # noqa: PLC0415

            cols = [df[c] if c in df.columns else [None] * len(df) for c in ("sweep", "stage", "source_sweep")]
            lineages = pd.Series([lineage(*v) for v in zip(*cols)], index=df.index, dtype="object")
        mask &= lineages.isin(arm.sweeps)
    for key, wanted in arm.settings:
        mask &= df[key].map(lambda v, w=wanted: setting_equal(v, w)).astype(bool)
    return mask
