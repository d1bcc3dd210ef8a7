"""The dashboard's Pareto view: the front of a multi-objective sweep, drawn from trials whose
objective values are known by hand, and the section on a page built from real Parquet results
with the sweep record a real sweep writes (search.driver.record_start)."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from search.definition import parse_sweep
from search.dashboard import build_dashboard
from search.dashboard.data import load_results
from search.dashboard.pareto import (
    CONFIRMED,
    DOMINATED,
    FRONT,
    PRUNED,
    has_objectives,
    pareto_figure,
    pareto_panel,
    sweep_objectives,
)
from search.definition.objectives import Objective
from search.results import ResultsStore
from search.driver.run_record import record_start

from sweep_helpers import write_sweep

ACC, LAT, PAR = Objective("val_ua", "max"), Objective("latency_ms", "min"), Objective("params", "min")
T975_2 = float(stats.t.ppf(0.975, df=2))  # the 95 % Student-t quantile of three seeds

# (status, val_ua, latency_ms, params) of the search trials of sweep "s"; by hand, on (val_ua, latency_ms):
#   t1 (0.50, 1.0), t2 (0.60, 2.0) and t4 (0.70, 5.0) are non-dominated;
#   t3 is beaten by t2 on both, t6 ties t2 on accuracy and is slower, t5 is beaten by t4 on both;
#   p1 would beat everything but ASHA stopped it, so it is not ranked; e1 failed; t7 has no latency.
SEARCH = {
    "t1": ("completed", 0.50, 1.0, 900_000), "t2": ("completed", 0.60, 2.0, 4_000_000),
    "t3": ("completed", 0.55, 3.0, 200_000), "t4": ("completed", 0.70, 5.0, 8_000_000),
    "t5": ("completed", 0.65, 6.0, 100_000), "t6": ("completed", 0.60, 2.5, 4_000_000),
    "p1": ("pruned", 0.80, 0.5, 100_000), "e1": ("error", None, None, None),
    "t7": ("completed", 0.90, None, 1_000_000),
}
FRONT_IDS, DOMINATED_IDS = {"t1", "t2", "t4"}, {"t3", "t5", "t6"}
# on (val_ua, params): t7 (0.90, 1e6) beats t2, t4 and t6, t5 (0.65, 1e5) beats t1 and t3
PARAMS_FRONT = {"t5", "t7"}
CONFIRM_T2 = ([0.58, 0.60, 0.62], [2.0, 2.2, 2.4])  # val_ua, latency_ms over three seeds


def _row(sweep: str, tid: str, status: str, val, lat, params, *, stage: str = "search", key: str | None = None,
         seed: int = 0, source: str | None = None) -> dict:
    return {"sweep": sweep, "trial_id": tid, "stage": stage, "status": status, "source_sweep": source,
            "config_key": key or f"k-{tid}", "model": "cnn_transformer", "loss_family": "center", "frontend": "mel",
            "center_lambda": 0.1, "center_lr": 0.5, "lr": 1e-3, "batch_size": 32, "seed": seed, "fold": 0,
            "val_ua": val, "val_wa": val, "test_ua": val, "latency_ms": lat, "params": params}


def _rows() -> list[dict]:
    rows = [_row("s", tid, *v) for tid, v in SEARCH.items()]
    for seed, (v, lat) in enumerate(zip(*CONFIRM_T2)):  # t2's configuration confirmed over three seeds
        rows.append(_row("s-confirm", f"c-t2-{seed}", "completed", v, lat, 4_000_000, stage="confirm", key="k-t2",
                         seed=seed, source="s"))
    # a dominated configuration's confirmation, and one of t4's key from another sweep's lineage: neither drawn
    rows.append(_row("s-confirm", "c-t3-0", "completed", 0.5, 3.0, 200_000, stage="confirm", key="k-t3", source="s"))
    rows.append(_row("o-confirm", "c-t4-0", "completed", 0.1, 9.0, 8_000_000, stage="confirm", key="k-t4", source="o"))
    return rows


def _trace(fig, name: str):
    found = [t for t in fig.data if t.name == name]
    assert len(found) <= 1
    return found[0] if found else None


def _ids(trace) -> set[str]:
    return set() if trace is None else set(trace.customdata)


def test_front_holds_exactly_the_non_dominated_trials_and_greys_the_rest():
    trials = pd.DataFrame(_rows())
    panel = pareto_panel(trials, "s", ACC, LAT, [ACC, LAT])
    fig = pareto_figure(panel)
    front, dominated, pruned = _trace(fig, FRONT), _trace(fig, DOMINATED), _trace(fig, PRUNED)
    assert _ids(front) == FRONT_IDS
    assert _ids(dominated) == DOMINATED_IDS
    assert _ids(pruned) == {"p1"}  # drawn, faint, never on the front although it would dominate it
    assert pruned.marker.opacity < 0.5 and dominated.marker.color != front.marker.color
    # the front joined in cost order as a step line: along latency, then up to the next accuracy
    assert list(front.x) == [1.0, 2.0, 5.0] and list(front.y) == [0.50, 0.60, 0.70]
    assert front.mode == "lines+markers" and front.line.shape == "hv"
    assert panel.unmeasured == 1  # t7: completed, no latency
    assert "t7" not in _ids(front) | _ids(dominated) and "e1" not in _ids(pruned)
    assert fig.layout.xaxis.type == "linear"
    hover = front.text[list(front.customdata).index("t2")]
    assert "trial t2 (completed)" in hover and "center · mel" in hover and "lr 0.001" in hover
    assert "center-loss λ 0.1" in hover and "batch 32" in hover and "config k-t2" in hover


def test_confirmed_front_configuration_gets_its_interval():
    panel = pareto_panel(pd.DataFrame(_rows()), "s", ACC, LAT)
    confirmed = _trace(pareto_figure(panel), CONFIRMED)
    assert list(confirmed.customdata) == ["t2"]  # only the front's confirmed configuration, in its own lineage
    vals, lats = CONFIRM_T2
    assert confirmed.y[0] == pytest.approx(np.mean(vals)) and confirmed.x[0] == pytest.approx(np.mean(lats))
    assert confirmed.error_y.array[0] == pytest.approx(T975_2 * np.std(vals, ddof=1) / math.sqrt(3))
    assert confirmed.error_x.array[0] == pytest.approx(T975_2 * np.std(lats, ddof=1) / math.sqrt(3))
    assert "over 3 seed(s)" in confirmed.text[0]


def test_each_cost_has_its_own_front_and_counts_are_on_a_log_axis():
    """Three objectives: against params the front differs from the latency one, and the hover
    gives each trial's rank over all three."""
    panel = pareto_panel(pd.DataFrame(_rows()), "s", ACC, PAR, [ACC, LAT, PAR])
    fig = pareto_figure(panel, 3)
    assert _ids(_trace(fig, FRONT)) == PARAMS_FRONT
    assert _trace(fig, CONFIRMED) is None  # t2 is not on this front
    assert fig.layout.xaxis.type == "log"
    ranks = dict(zip(panel.points["trial_id"], panel.points["rank"]))
    assert ranks["t7"] == -1 and ranks["t1"] == 0 and ranks["t3"] == 0 and ranks["t6"] == 1
    assert "rank over all 3 objectives: 1" in _trace(fig, DOMINATED).text[list(_trace(fig, DOMINATED).customdata)
                                                                           .index("t6")]


# ---------------------------------------------------------------------------- the page


def _store_rows(root, with_objectives: bool, prepared) -> None:
    """The same trials as Parquet, with the sweep record a real sweep start writes."""
    root.mkdir(parents=True)
    text = write_sweep(root.parent / "sweep.toml", prepared, name="s").read_text()
    if with_objectives:
        text = text.replace('[sweep]\n', '[sweep]\nobjectives = ["val_ua:max", "latency_ms:min", "params:min"]\n', 1)
    stores: dict[str, ResultsStore] = {}
    for r in _rows():
        sweep = r["sweep"]
        stores.setdefault(sweep, ResultsStore(root, sweep)).upsert_trial(r)
    record_start(stores["s"], parse_sweep(text), None)


def _section(html: str, sid: str) -> str | None:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', html, re.DOTALL)
    return m.group(1) if m else None


def test_page_has_a_pareto_section_only_for_a_sweep_with_objectives(tmp_path):
    multi, single = tmp_path / "multi" / "results", tmp_path / "single" / "results"
    _store_rows(multi, True, tmp_path / "prepared")  # a sweep file names one; the page never opens it
    _store_rows(single, False, tmp_path / "prepared")
    record = json.loads((multi / "s" / "sweep.json").read_text())
    assert record["sweep"]["sweep"]["objectives"] == ["val_ua:max", "latency_ms:min", "params:min"]
    data = load_results(multi)
    assert has_objectives(data) and [str(o) for o in sweep_objectives(data.sweeps["s"])] == \
        ["val_ua:max", "latency_ms:min", "params:min"]
    assert not has_objectives(load_results(single))
    (multi / "s" / "sweep.toml").unlink()  # the record of the sweep as it ran is enough
    assert [str(o) for o in sweep_objectives(load_results(multi).sweeps["s"])] == record["sweep"]["sweep"]["objectives"]

    html = build_dashboard(multi)
    body = _section(html, "pareto")
    assert body is not None and '<a href="#pareto">' in html and "could not be drawn" not in body
    figures = [json.loads(s.replace("\\u003c", "<").replace("\\u003e", ">").replace("\\u0026", "&"))
               for s in re.findall(r'<script type="application/json" class="fig-data"[^>]*>(.*?)</script>', body)]
    assert len(figures) == 2  # one per cost: latency_ms, params
    fronts = [set(next(t for t in f["data"] if t["name"] == FRONT)["customdata"]) for f in figures]
    assert fronts == [FRONT_IDS, PARAMS_FRONT]
    assert [f["layout"]["xaxis"].get("type") for f in figures] == ["linear", "log"]
    assert any(t["name"] == CONFIRMED for t in figures[0]["data"])
    assert "1 front configuration(s) confirmed" in body

    plain = build_dashboard(single)
    assert _section(plain, "pareto") is None and '<a href="#pareto">' not in plain
    assert _section(plain, "leaderboard") is not None
