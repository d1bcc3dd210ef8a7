"""search/driver/sweep.py::record_lost_trials when a lost trial's fixed parameters cannot be rebuilt:
its row is still written, with Optuna's parameters, and the driver says why on stderr."""
from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pandas as pd

import search.driver.sweep as runner
from search.driver.study import FAILED_ATTR, TUNE_ID_ATTR


def test_a_space_that_cannot_rebuild_the_fixed_values_still_gets_a_row(monkeypatch, capsys):
    lost = SimpleNamespace(params={"lr": 0.01}, user_attrs={TUNE_ID_ATTR: "t9", FAILED_ATTR: "asked after the last"},
                           datetime_start=datetime(2024, 1, 1, tzinfo=timezone.utc), datetime_complete=None)
    monkeypatch.setattr(runner, "failed_tune_trials", lambda study: [lost])

    def define_by_run(trial):
        raise ValueError("the space changed since")

    written = []
    recorder = SimpleNamespace(store=SimpleNamespace(trials=pd.DataFrame),
                               record_lost=lambda *args: written.append(args))
    assert runner.record_lost_trials(SimpleNamespace(define_by_run=define_by_run), None, recorder) == 1
    (tune_id, params, reason, started, finished), = written
    assert (tune_id, params, reason) == ("t9", {"lr": 0.01}, "asked after the last")
    err = capsys.readouterr().err
    assert "t9" in err and "could not rebuild its fixed parameters" in err and "the space changed since" in err
