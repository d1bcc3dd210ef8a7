"""The Optuna study as part of a sweep's results: its file name beside the Parquet tables and
the user attributes ser-search writes on the study and its trials. Readers (the dashboard's
parameter importance, warm start) use these names without the driver that writes them.
"""
from __future__ import annotations

from collections.abc import Iterable

from optuna.trial import FrozenTrial

STUDY_FILE = "optuna.db"
# Optuna study / trial user attributes written by ser-search.
RESULTS_ATTR = "ser_search_results"    # study: the results directory it belongs to
FINISHED_ATTR = "ser_search_finished"  # study: a driver saw every trial end (errored trials are final)
TUNE_ID_ATTR = "tune_trial_id"         # trial: the Ray Tune trial it is
ERROR_ATTR = "ser_search_error"        # trial: the Tune trial errored (told FAIL when the sweep ends)
FAILED_ATTR = "ser_search_failed"      # trial: why ser-search told it FAIL
REQUEUED_ATTR = "ser_search_requeued_from"  # trial: the lost trial whose cover_choices point it re-asks
WARM_ATTR = "ser_search_warm_start_from"    # trial: added from this earlier sweep's results (search.driver.warm_start)
WARM_NUMBER_ATTR = "ser_search_warm_start_number"  # trial: its number in the earlier study


def own_trials(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """A study's trials without those a warm start added: the ones this sweep ran."""
    return [t for t in trials if WARM_ATTR not in t.user_attrs]
