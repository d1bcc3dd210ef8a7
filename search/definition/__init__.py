"""The sweep definition: a TOML sweep file → a validated `SweepConfig` (the space, the
objectives, the scheduler's rungs, the resources, the [logging] section), all as data.

Nothing here imports Ray: a sweep file is checked, and `ser-search` starts, without it.
"""
from .confirmation import ConfirmationPlan
from .logging_section import (EXTRA, RESUME_NOTE, LoggingSection, TrackerError, check_installed, is_file_store,
                              resolve_tracking_uri, same_trackers, stored_logging)
from .objectives import (COST_OBJECTIVES, SENSES, VALIDATION_OBJECTIVES, Objective, crowding_distance,
                         dominance_matrix, non_dominated_ranks, objectives_from_record, parse_objectives, pareto_mask,
                         tune_metric)
from .sections import (NOT_COMPARED, OBJECTIVES_KEY, ResourcesSection, SchedulerSection, SweepSection,
                       experiment_keys, hide_password, resolve_sqlite)
from .space import ChoiceAxis, FixedAxis, RangeAxis, get_path, resolve_axis, set_path
from .sweep import SweepConfig, SweepConfigError, changed_settings, load_sweep, parse_sweep

__all__ = [
    "COST_OBJECTIVES", "EXTRA", "NOT_COMPARED", "OBJECTIVES_KEY", "RESUME_NOTE", "SENSES", "VALIDATION_OBJECTIVES",
    "ChoiceAxis", "ConfirmationPlan", "FixedAxis", "LoggingSection", "Objective", "RangeAxis", "ResourcesSection", "SchedulerSection",
    "SweepConfig", "SweepConfigError", "SweepSection", "TrackerError", "changed_settings", "check_installed",
    "crowding_distance", "dominance_matrix", "experiment_keys", "get_path", "hide_password", "is_file_store",
    "load_sweep", "non_dominated_ranks", "objectives_from_record", "parse_objectives", "parse_sweep", "pareto_mask",
    "resolve_axis", "resolve_sqlite", "resolve_tracking_uri", "same_trackers", "set_path", "stored_logging",
    "tune_metric",
]
