"""TrainConfigs for the tests: a test's base settings with some overridden."""
from __future__ import annotations

from typing import Any

from ser_core.config import TrainConfig


def train_config(raw: dict[str, Any], **over: Any) -> TrainConfig:
    """`raw` with each keyword applied: a dict updates that section, anything else replaces the key."""
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for key, value in over.items():
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    return TrainConfig.model_validate(raw)
