"""The sweep file's [logging] section as data: which trackers a sweep logs to (MLflow,
TensorBoard, Weights & Biases) and whether their packages are here. The callbacks that do the
logging are search.recording.trackers; this part is read by the sweep file, the run record and
a confirmation without importing Ray or any tracker.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator

# MLflow stores a URI can name; a scheme-less path is a file store too.
_MLFLOW_SCHEMES = {"file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks"}
EXTRA = "pip install 'ser-search[trackers]'"


class TrackerError(RuntimeError):
    """A tracker named in [logging] cannot be used here (its package is not installed)."""


class LoggingSection(BaseModel):
    """[logging]: which trackers receive the trials. Where results go, not what runs: a resume
    does not compare it (SweepConfig.settings), and no trial's config or config_key holds it."""

    model_config = ConfigDict(extra="forbid")

    mlflow: str | None = Field(None, description="MLflow tracking URI: file:./mlruns, sqlite:///mlflow.db, "
                                                 "http://host:5000; a relative path is relative to the sweep file")
    experiment: str | None = Field(None, min_length=1, description="MLflow experiment / W&B project; default: "
                                                                  "the sweep's name")
    tensorboard: bool = Field(False, description="TensorBoard event files in each trial's directory under tune/")
    wandb: Literal["offline", "online"] | None = Field(None, description="Weights & Biases mode (needs wandb)")

    @field_validator("mlflow")
    @classmethod
    def _tracking_uri(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.strip():
            raise ValueError("an empty MLflow tracking URI; e.g. file:./mlruns or sqlite:///mlflow.db")
        scheme = urlparse(v).scheme
        if len(scheme) > 1 and scheme.split("+")[0] not in _MLFLOW_SCHEMES:  # one letter: a Windows drive
            raise ValueError(f"{scheme!r} is not a store MLflow can track in ({', '.join(sorted(_MLFLOW_SCHEMES))}); "
                             f"e.g. file:./mlruns or sqlite:///mlflow.db")
        if scheme == "sqlite" and v.rstrip("/") in ("sqlite:", "sqlite:///:memory:"):
            raise ValueError("an SQLite MLflow store needs a file: sqlite:///mlflow.db")
        return v

    def enabled(self) -> bool:
        return bool(self.mlflow or self.tensorboard or self.wandb)


def resolve_tracking_uri(uri: str, base_dir: Path) -> str:
    """A file store (file:./mlruns, file:mlruns, or a bare path) or sqlite:///relative.db names a
    place relative to the sweep file's directory, like data.prepared and optuna_storage: the
    result is absolute, so the stored sweep (sweep.json) and a confirmation log to the same place."""
    parsed = urlparse(uri)
    if uri == "databricks":  # MLflow's name for the Databricks workspace, not a path
        return uri
    if parsed.scheme == "sqlite":
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
            return prefix + str((base_dir / uri.removeprefix(prefix)).resolve())
        return uri
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:
        path = Path(uri.removeprefix("file://") if uri.startswith("file://") else uri.removeprefix("file:"))
        return (path if path.is_absolute() else base_dir / path).resolve().as_uri()
    return uri


def is_file_store(uri: str) -> bool:
    return urlparse(uri).scheme == "file"


def _need(package: str, key: str, error: type[Exception]) -> None:
    if importlib.util.find_spec(package) is None:
        raise error(f"[logging] {key} needs the {package!r} package, which is not installed: {EXTRA}"
                           + (" (or pip install wandb)" if package == "wandb" else ""))


def check_installed(logging: LoggingSection, error: type[Exception] = TrackerError) -> None:
    """Fail before Ray starts when a configured tracker's package is missing, naming it (as
    `error`: the runner's SweepError, which the command line prints without a traceback)."""
    if logging.mlflow:
        _need("mlflow", "mlflow", error)
    if logging.tensorboard:
        _need("tensorboardX", "tensorboard", error)
    if logging.wandb:
        _need("wandb", "wandb", error)


def stored_logging(record_text: str | None) -> LoggingSection | None:
    """The [logging] a sweep ran with, from its stored sweep.json (what a confirmation reuses)."""
    if not record_text:
        return None
    raw = json.loads(record_text).get("sweep", {}).get("logging")
    return LoggingSection.model_validate(raw) if raw else None


def same_trackers(stored: dict[str, Any] | None, current: dict[str, Any] | None) -> bool:
    """Whether two sweeps' [logging] (as in sweep.json) name the same trackers."""
    return LoggingSection.model_validate(stored or {}) == LoggingSection.model_validate(current or {})


RESUME_NOTE = ("--resume: [logging] differs from the sweep's start; Tune restores the run with the trackers it "
               "started with, so the resumed trials log there (a new [logging] applies to a new sweep)")
