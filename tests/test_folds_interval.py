"""FoldsResult.test_ua_interval (ser_core/train/results.py): the corrected resampled t interval over
a cross-validated trial's per-fold test UAs, its no-spread case, and how that case reaches
trials.parquet (search/recording/recorder.py)."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from ser_core.metrics import ClassificationReport
from ser_core.train import FoldsResult, FitResult


def _report(ua: float) -> ClassificationReport:
    return ClassificationReport(ua=ua, wa=ua, precision_macro=ua, recall_macro=ua, f1_macro=ua,
                                confusion=np.eye(2, dtype=np.int64))


def _fit(test_ua: float, val_ua: float = 0.5) -> FitResult:
    return FitResult(labels=("a", "b"), best_epoch=1, epochs_run=1, val=_report(val_ua), test=_report(test_ua),
                     compactness_val=1.0, compactness_test=1.0, train_seconds=1.0, history=[], checkpoint={})


def _folds(test_uas: list[float], test_train_ratio: float | None = None) -> FoldsResult:
    per_fold = [_fit(u) for u in test_uas]
    return FoldsResult(labels=("a", "b"), best_epoch=1, epochs_run=1, val=_report(0.5),
                       test=_report(float(np.mean(test_uas))), compactness_val=1.0, compactness_test=1.0,
                       train_seconds=1.0, history=[], checkpoint={}, folds=tuple(range(len(test_uas))),
                       per_fold=per_fold, test_train_ratio=test_train_ratio)


def test_interval_is_the_t_interval_over_folds():
    uas = [0.5, 0.6, 0.7]
    half = stats.t.ppf(0.975, 2) * np.std(uas, ddof=1) / math.sqrt(3)
    assert _folds(uas).test_ua_interval() == pytest.approx((0.6 - half, 0.6 + half))


@pytest.mark.parametrize("k, ratio", [(5, 1 / 3), (3, 0.5), (10, 1 / 8)])
def test_interval_is_corrected_for_the_folds_overlapping_training_sets(k, ratio):
    """Nadeau & Bengio (2003): the folds' training sets overlap, so the half-width is the plain t's
    times sqrt(1 + k * n_test/n_train) (x1.63 for 5 folds, 3 training folds each)."""
    uas = list(np.linspace(0.5, 0.7, k))
    plain = _folds(uas).test_ua_interval()
    corrected = _folds(uas, test_train_ratio=ratio).test_ua_interval()
    m = float(np.mean(uas))
    assert corrected[0] < plain[0] < m < plain[1] < corrected[1]
    assert (corrected[1] - m) == pytest.approx((plain[1] - m) * math.sqrt(1 + k * ratio))
    assert _folds(uas, test_train_ratio=ratio).metrics()["test_ua_ci95_high"] == pytest.approx(corrected[1])


@pytest.mark.parametrize("uas", [[0.5, 0.5, 0.5], [0.1 + 0.2, 0.3, 0.3]])  # equal, and equal up to rounding
def test_all_equal_fold_uas_give_no_interval(uas):
    """Folds that all score the same have no spread to build an interval on (a test set's
    granularity, not certainty): NaN bounds, as search/analysis/claims/stats.py::t_interval answers."""
    low, high = _folds(uas).test_ua_interval()
    assert math.isnan(low) and math.isnan(high)
    m = _folds(uas).metrics()
    assert math.isnan(m["test_ua_ci95_low"]) and math.isnan(m["test_ua_ci95_high"])


def test_a_nan_interval_is_a_null_in_trials_parquet(tmp_path):
    """The recorder writes the NaN bounds of a no-spread trial as nulls of the float64 columns."""
    from ser_core.config import TrainConfig
    from search.recording.recorder import ParquetRecorder
    from search.worker.trainable import FINAL_JSON, FINAL_PREFIX

    cfg = TrainConfig.model_validate({"data": {"prepared": str(tmp_path), "folds": [0, 1, 2]}})
    final = _folds([0.5, 0.5, 0.5])
    last = {"epoch": 1, **{FINAL_PREFIX + k: v for k, v in final.metrics().items()},
            FINAL_JSON: json.dumps({"labels": ["a", "b"], "classes": ["a", "b"], "classes_dropped": {},
                                    "confusion_val": [[1, 0], [0, 1]], "confusion_test": [[1, 0], [0, 1]],
                                    **final.fold_metrics()})}
    recorder = ParquetRecorder("nan-ci", lambda params: cfg, str(tmp_path / "results"), 0.0, echo=False)
    trial = SimpleNamespace(trial_id="t1", config={}, last_result=last, checkpoint=None)
    recorder.on_trial_complete(0, [], trial)
    row = recorder.store.trials().iloc[0]
    assert row["status"] == "completed" and row["test_ua"] == pytest.approx(0.5)
    assert row["test_ua_ci95_low"] is None or np.isnan(row["test_ua_ci95_low"])
    assert row["test_ua_ci95_high"] is None or np.isnan(row["test_ua_ci95_high"])
    assert list(row["test_ua_folds"]) == [0.5, 0.5, 0.5]
