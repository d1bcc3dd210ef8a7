"""The leaderboard dashboard, built from real results: Parquet files written with ResultsStore
(answers known by hand), checkpoints trained with ser_core's fit, a real Optuna study, one real
tiny Ray sweep, and a real headless chromium (driven over WebDriver by chromedriver) that loads
the page, sorts a table, filters it and takes a screenshot."""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import math
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from html import escape as html_escape
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import torch

from search.dashboard import build_dashboard, make_server, results_version
from search.dashboard.claims import claims_view
from search.dashboard.cli import add_dashboard_command
from search.dashboard.data import load_results, param_importances, sweep_facts
from search.dashboard.embed import embedding_view, locate_checkpoint
from search.dashboard.html import script_json
from search.dashboard.intervals import confirmed_intervals, pairwise_differences
from search.analysis.leaderboard import display_view, leaderboard
from search.results import (
    CONFUSION_SCHEMA,
    EPOCHS_SCHEMA,
    TRIALS_SCHEMA,
    ResultsError,
    ResultsStore,
    config_columns,
    confusion_rows,
    read_trials,
)
from ser_core.config import TrainConfig
from ser_core.corpus import PreparedCorpus
from ser_core.train import fit

from sweep_helpers import write_sweep

T0 = dt.datetime(2025, 3, 4, 10, 0, 0, tzinfo=dt.timezone.utc)
BROKEN = "could not be drawn"  # what a section says when its code failed
SCREENSHOT_COPY = Path("/tmp/dashboard-screenshot.png")
# Student t 97.5 % quantile, df=2, in closed form: the CI of three values with sd 0.1 / 0.05 / 0.01
T2 = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))


# ---------------------------------------------------------------------------- helpers


def _trial(tid: str, status: str = "completed", *, family: str = "cross_entropy", frontend: str = "mel",
           val: float | None = None, test: float | None = None, epochs: int = 4, key: str | None = None,
           stage: str = "search", seed: int = 0, **kw) -> dict:
    return {"trial_id": tid, "status": status, "stage": stage, "config_key": key or f"k-{tid}",
            "model": "cnn_transformer", "loss_family": family, "frontend": frontend, "lr": 1e-3, "batch_size": 32,
            "seed": seed, "fold": 0,
            "epochs_run": epochs, "val_ua": val, "val_wa": val, "test_ua": test, "test_wa": test,
            "test_f1_macro": test, "node": "10.0.0.1", "gpu_fraction": 0.25, "train_seconds": 10.0 * epochs,
            "started_at": T0, "finished_at": T0 + dt.timedelta(seconds=100), **kw}


def _epochs(tid: str, values: list[float]) -> list[dict]:
    return [{"trial_id": tid, "epoch": i + 1, "train_loss": 1.0, "val_loss": 1.0, "val_ua": v, "val_wa": v,
             "best_val_ua": max(values[:i + 1]), "seconds": 1.0} for i, v in enumerate(values)]


LABELS = ["neutral", "angry", "sad"]
TEST_CONFUSION = np.array([[3, 1, 0], [0, 4, 0], [1, 1, 2]])
CONFIRM = {  # family, frontend -> (val UA, test UA) over three seeds
    ("center", "mel"): ([0.50, 0.60, 0.70], [0.45, 0.55, 0.65]),
    ("cross_entropy", "mel"): ([0.55, 0.60, 0.65], [0.50, 0.55, 0.60]),
    ("triplet", "stft"): ([0.90, 0.91, 0.92], [0.88, 0.89, 0.90]),
}
# test-split compactness (lower = tighter) over the same seeds: claim 4a's arms
COMPACTNESS = {("center", "mel"): [0.30, 0.32, 0.34], ("cross_entropy", "mel"): [0.40, 0.41, 0.42]}


def make_results(root: Path) -> Path:
    """A search sweep with every trial fate (and a trial still running) and its confirmation."""
    s = ResultsStore(root, "s")
    (root / "s" / "sweep.toml").write_text(
        '[sweep]\nname = "s"\nnum_samples = 8\n[scheduler]\nmax_epochs = 4\ngrace_period = 1\nreduction_factor = 2\n')
    s.upsert_trial(_trial("a", family="center", val=0.60, test=0.55, center_lambda=0.1, center_lr=0.5))
    s.upsert_trial(_trial("b", val=0.62, test=0.50, node="10.0.0.2"))
    s.upsert_trial(_trial("c", "pruned", frontend="stft", val=0.30, epochs=1))
    s.upsert_trial(_trial("d", "pruned", family="bce", frontend="stft", val=0.35, epochs=2))
    s.upsert_trial(_trial("e", "error", family="triplet", epochs=1, error="RuntimeError: boom"))
    for tid, vals in {"a": [.3, .4, .5, .6], "b": [.4, .5, .6, .62], "c": [.3], "d": [.2, .35], "e": [.1],
                      "f": [.2, .3]}.items():  # f: running, no trials row yet
        s.upsert_epochs(_epochs(tid, vals))
    c = ResultsStore(root, "s-confirm")
    for (family, frontend), (vals, tests) in CONFIRM.items():
        for seed, (v, t) in enumerate(zip(vals, tests)):
            compact = COMPACTNESS.get((family, frontend), [None] * 3)[seed]
            c.upsert_trial(_trial(f"{family}-{seed}", family=family, frontend=frontend, val=v, test=t, seed=seed,
                                  stage="confirm", key=f"k-{family}", epochs=2, compactness_test=compact,
                                  config_json=json.dumps({"optim": {"epochs": 2}})))
            c.upsert_epochs(_epochs(f"{family}-{seed}", [v / 2, v]))
    best = "triplet-2"  # val 0.92: the best completed trial
    c.replace_confusion(best, confusion_rows(TEST_CONFUSION, LABELS, "test")
                        + confusion_rows(np.eye(3, dtype=int) * 2, LABELS, "val"))
    return root


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return make_results(tmp_path_factory.mktemp("dash") / "results")


@pytest.fixture(scope="module")
def page(results) -> str:
    return build_dashboard(results)


class _Page(HTMLParser):
    """Tables (cell text and data-sort), notes and embedded figures of a dashboard page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, str | None]]]] = {}
        self.headers: dict[str, list[str]] = {}
        self.figures: list[dict] = []
        self.sections: dict[str, str] = {}
        self._table = self._cell = self._fig = self._section = None
        self._text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self._section = a["id"]
            self.sections[self._section] = ""
        if tag == "table" and "sortable" in (a.get("class") or ""):
            self._table = a["id"]
            self.tables[self._table], self.headers[self._table] = [], []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell, self._text = (tag, a.get("data-sort")), []
        elif tag == "script" and a.get("class") == "fig-data":
            self._fig, self._text = True, []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell:
            text = "".join(self._text)
            if self._cell[0] == "th":
                self.headers[self._table].append(text)
            else:
                self.tables[self._table][-1].append((text, self._cell[1]))
            self._cell = None
        elif tag == "table":
            if self._table:
                self.tables[self._table] = [r for r in self.tables[self._table] if r]
            self._table = None
        elif tag == "script" and self._fig:
            self.figures.append(json.loads("".join(self._text)))
            self._fig = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._cell or self._fig:
            self._text.append(data)
        if self._section:
            self.sections[self._section] += data


def _array(v) -> np.ndarray:
    """plotly.py's typed-array JSON ({dtype, bdata, shape}) or a plain list -> numpy."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return a.reshape([int(x) for x in str(v["shape"]).split(",")]) if "shape" in v else a
    return np.asarray(v, dtype=float)


def _traces(p: _Page, name: str) -> list[dict]:
    return [t for f in p.figures for t in f["data"] if t.get("name") == name]


# ---------------------------------------------------------------------------- content


def test_leaderboard_tables_show_the_leaderboard_numbers(results, page):
    p = _Page(page)
    trials = read_trials(results)
    for table, board in (("table-configs", leaderboard(trials)),
                         ("table-groups", leaderboard(trials, group_by=["loss_family", "frontend"]))):
        shown = display_view(board)
        assert p.headers[table] == list(shown.columns)
        assert [[t for t, _ in row] for row in p.tables[table]] == shown.astype(str).values.tolist()
        col = p.headers[table].index("val_ua")
        sort_values = [row[col][1] for row in p.tables[table]]
        expected = ["" if np.isnan(v) else repr(float(v)) for v in board["val_ua_mean"]]
        assert sort_values == expected  # the raw mean, so sorting is numeric, not by "0.6 ± 0.2" text
    assert BROKEN not in page
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # the sort/filter script finds tables by id


def test_configurations_table_names_the_settings_configurations_differ_in(tmp_path):
    """Issue 23: configurations differing outside the parameter columns (here normalization and
    optim.weight_decay, only in config_json) are told apart by a column each, as on the leaderboard."""
    s = ResultsStore(tmp_path / "r", "s")
    for tid, norm, wd, val in (("a", "speaker", 1e-4, 0.7), ("b", "global", 1e-4, 0.6), ("c", "global", 0.01, 0.5)):
        cfg = TrainConfig.model_validate({"data": {"prepared": str(tmp_path)}, "normalization": norm, "seed": 3,
                                          "optim": {"weight_decay": wd}})
        cols = config_columns(cfg)
        s.upsert_trial(_trial(tid, val=val, test=val, key=cols["config_key"], config_json=cols["config_json"]))
    p = _Page(build_dashboard(tmp_path / "r"))
    headers = p.headers["table-configs"]
    assert (headers.index("batch_size") < headers.index("optim.weight_decay") < headers.index("normalization")
            < headers.index("n"))
    assert "seed" not in headers and "data.prepared" not in headers
    rows = p.tables["table-configs"]
    assert [r[headers.index("normalization")][0] for r in rows] == ["speaker", "global", "global"]
    assert [r[headers.index("optim.weight_decay")][0] for r in rows] == ["0.0001", "0.0001", "0.01"]
    assert "normalization" not in p.headers["table-groups"]  # pooled rows: no one value per row


def test_sweep_facts_count_epochs_against_a_full_search(results):
    facts = sweep_facts(load_results(results)).set_index("sweep")
    s = facts.loc["s"]
    assert (s["trials"], s["completed"], s["pruned"], s["error"], s["running"]) == (6, 2, 2, 1, 1)
    assert s["epochs_spent"] == 4 + 4 + 1 + 2 + 1 + 2  # f runs, 2 epochs so far
    assert s["epochs_full"] == 6 * 4 and s["epochs_saved"] == pytest.approx(1 - 14 / 24)
    assert s["nodes"] == {"10.0.0.1": 4, "10.0.0.2": 1} and s["gpu_fractions"] == [0.25]
    assert s["wall_seconds"] == pytest.approx(100.0) and s["planned"] == 8 and not s["has_study"]
    c = facts.loc["s-confirm"]
    # no sweep.toml for a confirmation: its budget comes from the trials' configs
    assert c["max_epochs"] == 2 and c["epochs_full"] == 9 * 2 and c["epochs_spent"] == 9 * 2
    assert c["epochs_saved"] == 0 and c["stage"] == "confirm"


def _section_html(page: str, sid: str) -> str:
    return page.split(f'<section id="{sid}">', 1)[1].split("</section>", 1)[0]


def _expected_matrix(metric: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """From CONFIRM by hand: the groups in order (one cell: one sweep lineage, protocol, model
    and prepared corpus), the paired row - column differences (seed by seed on the one test
    fold, as a claim row pairs them), and where their 95 % interval (mean ± T2·sd/√3 over the
    three seed differences) excludes 0."""
    groups = sorted(CONFIRM)
    n = len(groups)
    diff, separate = np.full((n, n), np.nan), np.zeros((n, n), dtype=bool)
    for i, a in enumerate(groups):
        for j, b in enumerate(groups):
            if i != j:
                d = np.array(CONFIRM[a][metric]) - np.array(CONFIRM[b][metric])
                diff[i, j] = d.mean()
                separate[i, j] = abs(d.mean()) > T2 * np.std(d, ddof=1) / math.sqrt(3)
    return [f"{f} · {fe}" for f, fe in groups], diff, separate


def test_confirmed_intervals_and_pairwise_differences(results, page):
    iv = confirmed_intervals(read_trials(results)).set_index("group")
    center = iv.loc["center · mel"]
    assert center["val_ua_mean"] == pytest.approx(0.6)
    # three seeds on one test fold: the interval over seeds, conditional on that fold's speakers
    assert center["val_ua_ci95"] == pytest.approx(T2 * 0.1 / math.sqrt(3))
    assert center["test_ua_n"] == 3 and center["n_configs"] == 1 and center["test_ua_unit"] == "seed"
    assert center["scope"] == "conditional on these test speakers (test fold 0)"
    assert center["lineage"] == "s" and center["config_key"] == "k-center"
    assert iv.loc["triplet · stft", "val_ua_ci95"] == pytest.approx(T2 * 0.01 / math.sqrt(3))
    pairs = pairwise_differences(read_trials(results), "val_ua").set_index(["row", "col"])
    assert len(pairs) == 6  # every ordered pair of the three groups (one cell)
    excludes_0 = ((pairs["ci_low"] > 0) | (pairs["ci_high"] < 0)).to_dict()
    assert excludes_0 == {
        ("center · mel", "cross_entropy · mel"): False, ("cross_entropy · mel", "center · mel"): False,
        ("center · mel", "triplet · stft"): True, ("triplet · stft", "center · mel"): True,
        ("cross_entropy · mel", "triplet · stft"): True, ("triplet · stft", "cross_entropy · mel"): True}
    # triplet - center seed by seed: 0.40, 0.31, 0.22 (sd 0.09)
    assert pairs.loc[("triplet · stft", "center · mel"), "diff"] == pytest.approx(0.31)
    assert pairs.loc[("triplet · stft", "center · mel"), "ci_high"] == pytest.approx(0.31 + T2 * 0.09 / math.sqrt(3))
    assert pairs.loc[("triplet · stft", "center · mel"), "verdict"] == "exceeds E"  # E = 0: the row is ahead
    assert pairs.loc[("center · mel", "triplet · stft"), "verdict"] == "opposite"
    ci = _traces(_Page(page), "confirmed: mean ± 95 % CI")
    assert len(ci) == 2  # val and test panels
    assert _array(ci[0]["y"]).tolist() == pytest.approx([0.6, 0.6, 0.91])
    assert _array(ci[0]["error_y"]["array"]).tolist() == pytest.approx(
        [T2 * s / math.sqrt(3) for s in (0.1, 0.05, 0.01)])


def test_pairwise_matrix_replaces_the_list_of_sentences(page):
    html = _section_html(page, "families")
    assert "Do the families differ?" not in html and "<li>" not in html and 'class="overlap"' not in html
    heat = {t["meta"]: t for f in _Page(page).figures for t in f["data"]
            if t["type"] == "heatmap" and t.get("meta") in ("val_ua", "test_ua")}
    assert set(heat) == {"val_ua", "test_ua"}
    for metric, index in (("val_ua", 0), ("test_ua", 1)):
        groups, diff, separate = _expected_matrix(index)
        t = heat[metric]
        assert t["x"] == groups and t["y"] == groups
        z = np.array([[math.nan if v is None else v for v in row] for row in t["z"]], dtype=float) \
            if isinstance(t["z"], list) else _array(t["z"])
        assert np.isnan(np.diag(z)).all()
        assert z == pytest.approx(diff, nan_ok=True)
        for i in range(len(groups)):
            for j in range(len(groups)):
                if i != j:
                    assert t["text"][i][j] == f"{diff[i, j]:+.3f}" + (" *" if separate[i, j] else "")
                    assert f"{groups[i]} − {groups[j]}: {diff[i, j]:+.3f}" in t["customdata"][i][j]
    # one colour scale for both panels, centred on no difference
    fig = next(f for f in _Page(page).figures if any(t.get("meta") == "val_ua" for t in f["data"]))
    assert fig["layout"]["coloraxis"]["cmid"] == 0
    assert heat["val_ua"]["coloraxis"] == heat["test_ua"]["coloraxis"] == "coloraxis"
    text = _Page(page).sections["families"]
    assert "paired 95 % interval excludes 0: 2 of 3 on test UA; 2 of 3 on validation UA" in text


def _claims_figure(p: _Page) -> dict:
    found = [f for f in p.figures if f["layout"].get("yaxis", {}).get("ticktext")
             and any(t.get("legendgroup") in ("interval", "point") for t in f["data"])]
    assert len(found) == 1
    return found[0]


def _drawn_intervals(fig: dict) -> dict[int, tuple[float, float, float]]:
    """Row index -> (low, mean, high) as drawn: the point and its asymmetric error bar."""
    out = {}
    for t in fig["data"]:
        if t.get("legendgroup") != "interval":
            continue
        x, y = _array(t["x"]), _array(t["y"])
        plus, minus = _array(t["error_x"]["array"]), _array(t["error_x"]["arrayminus"])
        out.update({int(yi): (xi - mi, xi, xi + pi) for xi, yi, pi, mi in zip(x, y, plus, minus)})
    return out


def test_claims_are_drawn_against_zero_and_the_stated_effect(results, page):
    from search.analysis.claims import evaluate_claims

    expected = evaluate_claims(read_trials(results)).reset_index(drop=True)
    p = _Page(page)
    fig = _claims_figure(p)
    ticks = fig["layout"]["yaxis"]["ticktext"]
    assert len(ticks) == len(expected) and _array(fig["layout"]["yaxis"]["tickvals"]).tolist() == list(
        range(len(expected)))
    assert [t.split(" · ")[:2] for t in ticks] == [[f"claim {c}", m] for c, m in zip(expected["claim"],
                                                                                     expected["metric"])]
    shapes = fig["layout"]["shapes"]
    zero = [s for s in shapes if s["yref"] == "paper"]
    assert len(zero) == 1 and zero[0]["x0"] == zero[0]["x1"] == 0 and (zero[0]["y0"], zero[0]["y1"]) == (0, 1)
    e_lines = sorted(((s["y0"] + s["y1"]) / 2, s["x0"]) for s in shapes if s["yref"] == "y")
    assert all(s["x0"] == s["x1"] and s["y1"] > s["y0"] for s in shapes if s["yref"] == "y")
    assert [y for y, _ in e_lines] == pytest.approx(list(range(len(expected))))
    assert [x for _, x in e_lines] == pytest.approx(expected["stated_effect"].tolist())
    drawn = _drawn_intervals(fig)
    with_iv = expected.index[expected["ci_low"].notna()].tolist()
    assert sorted(drawn) == with_iv and with_iv  # an interval on every row that has one, none elsewhere
    for i in with_iv:
        assert drawn[i] == pytest.approx((expected.at[i, "ci_low"], expected.at[i, "mean_diff"],
                                          expected.at[i, "ci_high"]))
    # by hand from CONFIRM / COMPACTNESS: claim 1 (center vs softmax on Mel, test UA) differs by
    # (-0.05, 0, 0.05) over the three seeds; claim 4a's compactness (b - a) by (0.10, 0.09, 0.08)
    row = {(c, m): i for i, (c, m) in enumerate(zip(expected["claim"], expected["metric"]))}
    h = T2 * 0.05 / math.sqrt(3)
    assert drawn[row[("1", "test_ua")]] == pytest.approx((-h, 0.0, h), abs=1e-12)
    h = T2 * 0.01 / math.sqrt(3)
    assert drawn[row[("4a", "compactness_test")]] == pytest.approx((0.09 - h, 0.09, 0.09 + h))
    # the verdict beside every row; rows without an interval say why
    side = {a["y"]: a["text"] for a in fig["layout"]["annotations"] if a.get("xref") == "paper"}
    assert sorted(side) == list(range(len(expected)))
    for i, r in expected.iterrows():
        if i in with_iv:
            assert side[i].startswith(r["verdict"])
        else:
            assert side[i].startswith(("no pairs: ", "too few pairs: "))
    assert side[row[("2", "test_ua")]] == "no pairs: center/stft not confirmed"
    assert len(p.tables["table-claims"]) == len(expected)
    assert BROKEN not in page


def test_claims_with_too_few_pairs_say_why(tmp_path):
    c = ResultsStore(tmp_path / "r", "s-confirm")
    for family in ("center", "cross_entropy"):  # one seed each: one pair, no interval
        c.upsert_trial(_trial(f"{family}-0", family=family, val=0.5, test=0.5, stage="confirm", key=f"k-{family}"))
    fig = _claims_figure(_Page(build_dashboard(tmp_path / "r")))
    assert _drawn_intervals(fig) == {}
    point = [t for t in fig["data"] if t.get("legendgroup") == "point"]
    assert len(point) == 1 and _array(point[0]["x"]).tolist() == [0.0, 0.0]  # claim 1, test UA and WA
    ticks = fig["layout"]["yaxis"]["ticktext"]
    side = {a["y"]: a["text"] for a in fig["layout"]["annotations"] if a.get("xref") == "paper"}
    for y in _array(point[0]["y"]).astype(int):
        assert ticks[y].startswith("claim 1 · ") and side[y] == "too few pairs: 1 paired run(s)"


def test_claims_with_equal_differences_say_no_spread_not_too_few_pairs(tmp_path):
    c = ResultsStore(tmp_path / "r", "s-confirm")
    for seed in (1, 2):  # two pairs, both +0.1: enough pairs, but no spread to build an interval on
        for family, test in (("center", 0.6 + seed / 100), ("cross_entropy", 0.5 + seed / 100)):
            c.upsert_trial(_trial(f"{family}-{seed}", family=family, val=0.5, test=test, stage="confirm",
                                  key=f"k-{family}", seed=seed))
    fig = _claims_figure(_Page(build_dashboard(tmp_path / "r")))
    point = [t for t in fig["data"] if t.get("legendgroup") == "point"]
    side = {a["y"]: a["text"] for a in fig["layout"]["annotations"] if a.get("xref") == "paper"}
    for y in _array(point[0]["y"]).astype(int):
        assert side[y] == "no spread: all 2 paired differences equal"


def test_trials_without_any_epochs_still_give_sweep_facts(tmp_path):
    """Trials recorded but no epochs.parquet (e.g. only trials.parquet copied off a cluster)."""
    s = ResultsStore(tmp_path / "r", "only-trials")
    s.upsert_trial(_trial("a", val=0.5, test=0.4))
    s.upsert_trial(_trial("b", "pruned", val=0.3, epochs=1))
    html = build_dashboard(tmp_path / "r")
    assert BROKEN not in html
    assert "1 completed, 1 pruned by ASHA, 0 failed, 0 running" in _Page(html).sections["facts"]


def test_claims_figure_shows_the_design_columns_when_present():
    """What search.analysis.claims reports beyond the basic columns (folds, seeds, Holm p, the pairs an open
    question needs, the sweep) reaches the hover and the side text, escaped."""
    import plotly.io as pio

    from search.dashboard.claims import claims_figure

    rows = pd.DataFrame([{
        "claim": "x", "statement": HOSTILE_SWEEP, "sweep": HOSTILE_TRIAL, "protocol": "within", "arm_a": "a/mel",
        "arm_b": "b/mel", "metric": "test_ua", "n_pairs": 6, "n_folds": 3, "n_seeds": 2, "mean_diff": 0.02,
        "ci_low": -0.01, "ci_high": 0.05, "stated_effect": 0.03, "p_value": 0.0041, "p_holm": 0.0123,
        "verdict": "inconclusive", "more_pairs_needed": 7, "unit": "fold", "note": "about 7 more folds <b>",
        "config_a": "s/k1", "config_b": "s/k2", "label": "claim x · test_ua", "why": None}])
    fig = claims_figure(rows)
    hover = fig.data[0].text[0]
    assert "6 paired run(s) = 3 fold(s) × 2 seed(s); interval over folds" in hover
    assert "p = 0.0041 · Holm-adjusted p = 0.0123" in hover and "about 7 more folds &lt;b&gt;" in hover
    assert f"sweep {html_escape(HOSTILE_TRIAL)} · protocol within" in hover
    assert fig.layout.annotations[0].text == "inconclusive · ~7 more folds"
    assert claims_figure(rows.drop(columns=["unit"])).layout.annotations[0].text == "inconclusive · ~7 more pairs"
    text = pio.to_json(fig)
    assert HOSTILE_SWEEP not in text and HOSTILE_TRIAL not in text and "&lt;script&gt;alert(1)" in text


def test_learning_curves_mark_asha_stops_and_rungs(page):
    p = _Page(page)
    stops = _traces(p, "stopped by ASHA")
    assert len(stops) == 1 and sorted(_array(stops[0]["x"]).tolist()) == [1, 2]  # c after 1, d after 2
    assert sorted(_array(stops[0]["y"]).tolist()) == pytest.approx([0.30, 0.35])
    assert len(_traces(p, "failed")) == 1
    curves = next(f for f in p.figures if any(t.get("name") == "stopped by ASHA" for t in f["data"]))
    assert sorted(s["x0"] for s in curves["layout"]["shapes"]) == [1, 2]  # ASHA rungs below max_epochs 4
    running = [t for t in curves["data"] if t.get("legendgroup") == "running"]
    assert len(running) == 1 and _array(running[0]["y"]).tolist() == pytest.approx([0.2, 0.3])


def test_best_trial_confusion_is_row_normalised_and_labelled(page):
    p = _Page(page)
    assert "Best trial by validation UA: triplet-2 of sweep s-confirm" in p.sections["best"]
    heat = [t for f in p.figures for t in f["data"] if t["type"] == "heatmap" and "meta" not in t]
    assert len(heat) == 2
    test = heat[1]
    assert test["x"] == LABELS and test["y"] == LABELS
    expected = TEST_CONFUSION / TEST_CONFUSION.sum(axis=1, keepdims=True)
    assert _array(test["z"]) == pytest.approx(expected)
    assert test["text"][0] == ["75%", "25%", "0%"]


def test_parallel_coordinates_keep_trials_without_center_parameters(page):
    par = [t for f in _Page(page).figures for t in f["data"] if t["type"] == "parcoords"]
    assert len(par) == 1
    dims = {d["label"]: d for d in par[0]["dimensions"]}
    assert list(dims) == ["center-loss λ", "center lr α", "learning rate", "frontend", "loss family",
                          "status", "val UA"]
    # search trials with a validation score: a, b, c, d (not the confirmation re-runs, not the failed one)
    assert sorted(_array(dims["val UA"]["values"]).tolist()) == pytest.approx([0.30, 0.35, 0.60, 0.62])
    lam = dims["center-loss λ"]
    assert "n/a" in lam["ticktext"] and sorted(_array(lam["values"]).tolist())[-1] == pytest.approx(-1.0)


def test_partial_results_give_messages_not_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    text = _Page(build_dashboard(empty)).sections
    assert "No trials yet in" in text["facts"] and "No finished trials yet" in text["leaderboard"]
    assert "No epochs recorded yet" in text["curves"] and "No completed trial yet" in text["best"]
    assert "No confirmed runs yet" in text["claims"]
    # only pruned trials: no confusion, no study, no checkpoint, no sweep.toml
    s = ResultsStore(tmp_path / "pruned", "p")
    s.upsert_trial(_trial("x", "pruned", val=0.3, epochs=1))
    s.upsert_epochs(_epochs("x", [0.3]))
    html = build_dashboard(tmp_path / "pruned")
    text = _Page(html).sections
    assert BROKEN not in html and "Traceback" not in html
    assert "No completed trial yet" in text["families"] and "No completed trial yet" in text["best"]
    assert "No Optuna study" in text["params"] and "max_epochs unknown" in text["facts"]
    assert "No confirmed runs yet" in text["claims"] and "ser-search confirm" in text["claims"]
    assert claims_view(read_trials(tmp_path / "pruned")).rows.empty
    # a completed trial whose checkpoint is gone, no confusion rows
    s.upsert_trial(_trial("y", val=0.5, test=0.4, family="center", center_lambda=0.1, center_lr=0.5,
                          checkpoint=str(tmp_path / "gone" / "best.pt")))
    text = _Page(build_dashboard(tmp_path / "pruned")).sections
    assert "is not on this machine" in text["embeddings"] and "no completed cross_entropy trial" in text["embeddings"]
    assert "confusion matrix is not recorded" in text["best"]
    assert "No confirmed seeds yet" in text["families"]
    with pytest.raises(ResultsError, match="not found"):
        build_dashboard(tmp_path / "missing")


# ---------------------------------------------------------------------------- escaping

HOSTILE_SWEEP = "<script>alert(1)</script>"
HOSTILE_FAMILY = "<img src=x onerror=alert(2)>"
HOSTILE_TRIAL = "</script><script>alert(3)</script><!--"


def make_hostile(root: Path) -> Path:
    """Results whose every string is markup; written with pyarrow directly, because
    ResultsStore (rightly) refuses such names for directories."""
    d = root / "<b>evil"  # no "/" in a directory name
    d.mkdir(parents=True)
    rows = [_trial(HOSTILE_TRIAL, val=0.5, test=0.4, family=HOSTILE_FAMILY, frontend="<i>fe</i>"),
            *[_trial(f"{HOSTILE_TRIAL}{i}", val=0.4 + i / 100, test=0.3, family=fam, stage="confirm", seed=i,
                     key=fam) for i, fam in enumerate([HOSTILE_FAMILY, HOSTILE_FAMILY, "<u>x</u>", "<u>x</u>"])]]
    for r in rows:
        r.update(sweep=HOSTILE_SWEEP, node="<marquee>n</marquee>")
    pq.write_table(pa.Table.from_pylist(rows, schema=TRIALS_SCHEMA), d / "trials.parquet")
    ep = [r | {"sweep": HOSTILE_SWEEP} for r in _epochs(HOSTILE_TRIAL, [0.2, 0.5])]
    pq.write_table(pa.Table.from_pylist(ep, schema=EPOCHS_SCHEMA), d / "epochs.parquet")
    cells = [r | {"sweep": HOSTILE_SWEEP, "trial_id": HOSTILE_TRIAL}
             for r in confusion_rows(np.eye(2, dtype=int), [HOSTILE_FAMILY, "<svg onload=alert(5)>"], "test")]
    pq.write_table(pa.Table.from_pylist(cells, schema=CONFUSION_SCHEMA), d / "confusion.parquet")
    return root


def test_strings_from_results_and_paths_are_escaped(tmp_path):
    root = make_hostile(tmp_path / "<title>root")
    html = build_dashboard(root)
    for raw in (HOSTILE_SWEEP, HOSTILE_FAMILY, HOSTILE_TRIAL, "<svg onload", "<marquee>", "<b>evil", "<title>root"):
        assert raw not in html, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown, as text
    assert "&lt;title&gt;root" in html
    # every <script> element on the page is one the dashboard wrote itself
    tags = re.findall(r"<script\b[^>]*>", html, flags=re.IGNORECASE)
    figure_tag = re.compile(r'<script type="application/json" class="fig-data" data-target="fig-\d+">')
    assert all(t == "<script>" or figure_tag.fullmatch(t) for t in tags), tags
    assert html.lower().count("</script") == len(tags)
    assert "<!--" not in html.split("<main>", 1)[1]
    assert BROKEN not in html


def test_script_json_cannot_end_a_script_element():
    text = script_json({"name": "</script><!-- & >"})
    assert "</" not in text and "<!--" not in text and json.loads(text) == {"name": "</script><!-- & >"}


# ---------------------------------------------------------------------------- Optuna importance


def _objective(trial: optuna.Trial) -> float:
    family = trial.suggest_categorical("loss_family", ["cross_entropy", "center"])
    lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    value = 0.5 + 0.1 * math.log10(lr)  # lr decides almost everything
    if family == "center":  # a conditional parameter, as in a define-by-run sweep
        value += 0.001 * trial.suggest_float("center_lambda", 1e-3, 1.0, log=True)
    return value


def test_param_importance_on_a_real_study_with_conditional_parameters(tmp_path):
    path = tmp_path / "optuna.db"
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{path}", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(_objective, n_trials=16)
    results, notes = param_importances(path, "s")
    scopes = {r.scope: r for r in results}
    assert set(scopes) == {"all loss families", "loss family center"} and notes == []
    overall = scopes["all loss families"].values
    assert set(overall) == {"loss_family", "lr"} and max(overall, key=overall.get) == "lr"
    center = scopes["loss family center"]
    assert set(center.values) == {"center_lambda", "lr"}
    assert center.n_trials == sum(1 for t in study.trials if "center_lambda" in t.params)

    few = tmp_path / "few.db"
    optuna.create_study(study_name="f", storage=f"sqlite:///{few}").optimize(_objective, n_trials=2)
    assert param_importances(few, "f")[0] == [] and "needs at least 3" in param_importances(few, "f")[1][0]
    results, notes = param_importances(path, "no-such-study")
    assert results == [] and "could not be opened" in notes[0]


def test_param_importance_leaves_out_the_trials_a_warm_start_added(tmp_path):
    from search.driver.warm_start import WARM_ATTR

    path = tmp_path / "optuna.db"
    study = optuna.create_study(study_name="w", storage=f"sqlite:///{path}", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=1))
    earlier = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    earlier.optimize(_objective, n_trials=10)
    study.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=t.value,
                                                user_attrs={WARM_ATTR: "earlier"}) for t in earlier.trials])
    study.optimize(_objective, n_trials=12)
    results, notes = param_importances(path, "w")
    overall = {r.scope: r for r in results}["all loss families"]
    assert overall.n_trials == 12  # the sweep's own trials, not 22
    assert any("10 completed trial(s) a warm start added" in n for n in notes)


# ---------------------------------------------------------------------------- embeddings


TINY = {"name": "cnn_transformer", "channels": [8, 16, 16, 16], "d_model": 32, "n_heads": 2, "n_layers": 1,
        "ff_dim": 64}


def _train_into(store: ResultsStore, tid: str, loss: dict, prepared: Path, corpus: PreparedCorpus,
                **overrides) -> dict:
    """One real (short) training run whose best.pt sits where a Ray sweep would put it."""
    cfg = TrainConfig.model_validate({"data": {"prepared": str(prepared), "max_train_clips": 96}, "model": TINY,
                                      "frontend": {"n_mels": 32}, "loss": loss, "device": "cpu",
                                      "optim": {"epochs": 1, "batch_size": 32}, "seed": 1, **overrides})
    result = fit(cfg, corpus)
    ckpt = Path(store.root) / "tune" / f"ser_trial_{tid}" / "checkpoint_000000" / "best.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save(result.checkpoint | {"preprocessing": corpus.protocol}, ckpt)
    store.upsert_trial({"trial_id": tid, "status": "completed", "stage": "search", **config_columns(cfg),
                        **{k: v for k, v in result.metrics().items()}, "checkpoint": str(ckpt)})
    return result.metrics()


def test_embedding_views_of_center_and_softmax_trials(synthetic_prepared, tmp_path):
    corpus = PreparedCorpus.load(synthetic_prepared)
    store = ResultsStore(tmp_path / "first", "e")
    center = _train_into(store, "cen", {"family": "center", "center_lambda": 0.1, "center_lr": 0.5},
                         synthetic_prepared, corpus)
    softmax = _train_into(store, "ce", {"family": "cross_entropy"}, synthetic_prepared, corpus)
    # the results are moved after training: the checkpoint is found again under the sweep's tune/
    shutil.move(tmp_path / "first", tmp_path / "moved")
    trials = read_trials(tmp_path / "moved")
    n_test = len(corpus.split_indices(0)["test"])
    for tid, metrics in (("cen", center), ("ce", softmax)):
        row = trials.set_index("trial_id").loc[tid]
        view = embedding_view(locate_checkpoint(row["checkpoint"], tmp_path / "moved" / "e"))
        assert "moved" in view.checkpoint
        assert view.compactness == pytest.approx(metrics["compactness_test"], rel=1e-5)  # the same model
        assert view.points.shape == (n_test, 2) and view.n_test == n_test
        assert set(view.labels) <= set(corpus.labels) and view.classes == corpus.labels
    text = _Page(build_dashboard(tmp_path / "moved")).sections["embeddings"]
    c, s = center["compactness_test"], softmax["compactness_test"]
    assert f"center loss {c:.3f} vs softmax {s:.3f}" in text
    assert ("these two trials show tighter classes with center loss" in text) == (c < s)
    assert f"recorded at training {c:.3f}" in text


def test_embedding_view_of_a_speaker_normalised_trial(synthetic_prepared, tmp_path, monkeypatch):
    # normalization = "speaker" trained on each row standardised by its speaker's statistics; the
    # view must embed those inputs (not the checkpoint's global normaliser's), so the compactness
    # it recomputes is the one training's own test evaluation recorded
    corpus = PreparedCorpus.load(synthetic_prepared)
    store = ResultsStore(tmp_path, "e")
    _train_into(store, "spk", {"family": "center", "center_lambda": 0.1, "center_lr": 0.5},
                synthetic_prepared, corpus, normalization="speaker")
    row = read_trials(tmp_path).set_index("trial_id").loc["spk"]
    view = embedding_view(locate_checkpoint(row["checkpoint"], tmp_path / "e"))
    assert view.compactness == pytest.approx(row["compactness_test"], rel=1e-5)
    assert view.n_clips == view.n_test == len(corpus.split_indices(0)["test"])
    # a sampled view embeds the sampled clips' own (speaker-normalised) features
    import search.dashboard.embed as dashboard_embed  # noqa: PLC0415

    z, labels, _, n_test = dashboard_embed.test_embeddings(Path(view.checkpoint))
    monkeypatch.setattr(dashboard_embed, "MAX_CLIPS", n_test - 5)
    z_sub, labels_sub, _, _ = dashboard_embed.test_embeddings(Path(view.checkpoint))
    pos = np.sort(np.random.default_rng(0).choice(n_test, n_test - 5, replace=False))
    np.testing.assert_allclose(z_sub, z[pos], rtol=1e-5, atol=1e-6)
    assert labels_sub == [labels[i] for i in pos]


# ---------------------------------------------------------------------------- serving and CLI


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_served_page_rebuilds_when_results_change(tmp_path):
    root = make_results(tmp_path / "live")
    server = make_server(root, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code, html = _get(server.url)
        assert code == 200 and "fetch('version'" in html and "new-trial" not in html
        v1 = _get(server.url + "version")[1]
        assert f'data-version="{v1}"' in html
        assert _get(server.url + "version")[1] == v1  # unchanged files, unchanged version
        ResultsStore(root, "s").upsert_trial(_trial("new-trial", val=0.1, test=0.1))
        v2 = _get(server.url + "version")[1]
        assert v2 != v1
        code, html = _get(server.url)
        assert code == 200 and "new-trial" in html and f'data-version="{v2}"' in html
        assert _get(server.url + "nothing-here")[0] == 404
    finally:
        server.shutdown()
        server.server_close()
    assert results_version(root) == v2


def test_registering_the_command_imports_nothing_heavy():
    code = ("import sys, search.dashboard.cli; heavy = {'torch', 'plotly', 'ray', 'pandas'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def _cli() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ser-search")
    add_dashboard_command(p.add_subparsers(dest="command", required=True))
    return p


def test_cli_writes_a_self_contained_file_and_rejects_bad_arguments(results, tmp_path, capsys):
    out = tmp_path / "sub" / "report.html"
    args = _cli().parse_args(["dashboard", str(results), "--out", str(out), "--title", "My <sweep>"])
    assert args.func(args) == 0
    html = out.read_text()
    assert "<title>My &lt;sweep&gt;</title>" in html
    # nothing is fetched: plotly.js is inline, the icon is an empty data: URI
    assert re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=\"(?!data:)", html) is None
    assert html.count("Plotly.newPlot") == 1 and len(html) > 3_000_000
    for bad in (["dashboard", str(results)], ["dashboard", str(results), "--out", "x.html", "--serve"]):
        with pytest.raises(SystemExit) as e:
            _cli().parse_args(bad)
        assert e.value.code == 2
    args = _cli().parse_args(["dashboard", str(results), "--out", str(out), "--port", "9000"])
    with pytest.raises(SystemExit):
        args.func(args)
    assert "--port and --host apply to --serve only" in capsys.readouterr().err
    args = _cli().parse_args(["dashboard", str(tmp_path / "nothing"), "--out", str(out)])
    with pytest.raises(ResultsError, match="results location not found"):  # cli.main prints it, exit 2
        args.func(args)


# ---------------------------------------------------------------------------- a real sweep

# A tiny sweep: it checks the whole path (recorder, Optuna study, best.pt), not the search.
NUM_SAMPLES, MAX_EPOCHS = 3, 2


@pytest.fixture(scope="module")
def real_sweep(synthetic_prepared, tmp_path_factory) -> Path:
    from search.definition import load_sweep
    from search.driver import run_sweep

    tmp = tmp_path_factory.mktemp("realsweep")
    sweep = load_sweep(write_sweep(tmp / "s.toml", synthetic_prepared, name="tiny", num_samples=NUM_SAMPLES,
                                   max_epochs=MAX_EPOCHS, max_train_clips=64))
    try:
        run_sweep(sweep, str(tmp / "results"), num_cpus=2, echo=False)
    finally:
        ray.shutdown()
    return tmp / "results"


def test_dashboard_of_a_real_sweep(real_sweep):
    html = build_dashboard(real_sweep)
    assert BROKEN not in html
    p = _Page(html)
    trials = read_trials(real_sweep)
    assert len(p.tables["table-configs"]) == len(leaderboard(trials))
    facts = p.sections["facts"]
    assert f"{len(trials)} of {NUM_SAMPLES} planned" in facts and "127.0.0.2" in facts
    assert f"trials × {MAX_EPOCHS} epochs" in facts
    assert len(_traces(p, "stopped by ASHA")) == int((trials["status"] == "pruned").any())
    params = p.sections["params"]
    assert "fANOVA" in params and ("all loss families" in html or "needs at least" in params)
    text = p.sections["embeddings"]
    for family, name in (("center", "center loss"), ("cross_entropy", "softmax (cross-entropy)")):
        done = trials[(trials["status"] == "completed") & (trials["loss_family"] == family)]
        if done.empty:  # ASHA decides which families finish
            assert f"no completed {family} trial" in text
            continue
        best = done.sort_values(["val_ua", "val_wa", "trial_id"], ascending=[False, False, True]).iloc[0]
        assert f"{name}: trial {best['trial_id']}" in text
        assert f"compactness {best['compactness_test']:.3f}" in text  # recomputed = recorded


# ---------------------------------------------------------------------------- a real browser


class Browser:
    """Headless chromium driven through chromedriver's W3C WebDriver HTTP API (stdlib only)."""

    ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

    def __init__(self, profile: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.proc = subprocess.Popen([shutil.which("chromedriver"), f"--port={port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if self._call("GET", "/status")["ready"]:
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                    "--window-size=1400,1000",
                    "--enable-unsafe-swiftshader"]  # software WebGL for plotly's parcoords, without a GPU
            caps = {"capabilities": {"alwaysMatch": {
                "browserName": "chrome", "goog:loggingPrefs": {"browser": "ALL"},
                "goog:chromeOptions": {"binary": shutil.which("chromium"), "args": args}}}}
            self.sid = self._call("POST", "/session", caps)["sessionId"]
        except BaseException:
            self.proc.terminate()
            raise
        # record alert() calls instead of letting a dialog block the page
        self.cdp("Page.addScriptToEvaluateOnNewDocument",
                 source="window.__alerts = []; window.alert = function (m) { window.__alerts.push(String(m)); };")

    def _call(self, method: str, path: str, body: dict | None = None):
        req = urllib.request.Request(self.base + path, method=method, headers={"Content-Type": "application/json"},
                                     data=None if body is None else json.dumps(body).encode())
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return json.loads(r.read())["value"]
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"WebDriver {method} {path} failed: {e.read().decode()[:400]}") from None

    def cmd(self, method: str, path: str, body: dict | None = None):
        return self._call(method, f"/session/{self.sid}{path}", body)

    def cdp(self, cmd: str, **params):
        return self.cmd("POST", "/goog/cdp/execute", {"cmd": cmd, "params": params})

    def js(self, script: str, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def element(self, css: str) -> str:
        return self.cmd("POST", "/element", {"using": "css selector", "value": css})[self.ELEMENT]

    def open(self, url: str) -> None:
        self.cmd("POST", "/url", {"url": url})
        deadline = time.monotonic() + 60
        while self.js("return document.body && document.body.getAttribute('data-ready')") != "1":
            assert time.monotonic() < deadline, "the dashboard's script never finished"
            time.sleep(0.1)

    def errors(self) -> list[dict]:
        """Console errors and uncaught exceptions since the last call."""
        return [e for e in self.cmd("POST", "/se/log", {"type": "browser"}) if e["level"] == "SEVERE"]

    def screenshot(self, path: Path) -> None:
        size = self.cdp("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.cdp("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.cmd("DELETE", "")
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


def _column(b: Browser, table: str, col: str) -> list[str]:
    return b.js("""
        const t = document.getElementById(arguments[0]);
        const i = [...t.tHead.rows[0].cells].findIndex(h => h.dataset.col === arguments[1]);
        return [...t.tBodies[0].rows].filter(r => r.style.display !== 'none')
                                     .map(r => r.cells[i].getAttribute('data-sort'));""", table, col)


def test_browser_loads_sorts_filters_and_screenshots(browser, real_sweep, results, tmp_path):
    b = browser
    page = tmp_path / "sweep.html"
    page.write_text(build_dashboard(real_sweep))
    b.open(page.as_uri())
    assert b.errors() == []
    assert b.js("return document.querySelectorAll('.js-plotly-plot .main-svg').length > 0")
    assert b.js("return document.querySelectorAll('.js-plotly-plot').length") == \
        b.js("return document.querySelectorAll('.plotly-div').length") > 0
    shot = tmp_path / "dashboard.png"
    b.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    shutil.copyfile(shot, SCREENSHOT_COPY)

    # sorting and filtering, on results whose order is known
    known = tmp_path / "known.html"
    known.write_text(build_dashboard(results))
    b.open(known.as_uri())
    assert b.errors() == []
    assert b.js("return document.querySelectorAll('.js-plotly-plot').length") == \
        b.js("return document.querySelectorAll('.plotly-div').length")
    # the pairwise matrix and the claims are drawn (SVG text), not only embedded as JSON
    drawn = b.js("return [...document.querySelectorAll('#families .js-plotly-plot, #claims .js-plotly-plot')]"
                 ".map(e => e.textContent).join(' ')")
    assert "+0.310 *" in drawn and "−0.340 *" in drawn.replace("-", "−")
    assert "no pairs: center/stft not confirmed" in drawn and "claim 4a · compactness_test" in drawn
    before = _column(b, "table-configs", "val_ua")
    assert [float(v) for v in before[:3]] == pytest.approx([0.91, 0.62, 0.6])  # ranked: best validation first
    b.cmd("POST", f"/element/{b.element('#table-configs th[data-col=val_ua]')}/click", {})
    after = _column(b, "table-configs", "val_ua")
    numbers = [float(v) for v in after if v]
    assert after != before and numbers == sorted(numbers)
    assert after[len(numbers):] == [""] * (len(after) - len(numbers))  # blanks stay last
    assert b.js("return document.querySelector('#table-configs th[data-col=val_ua]').getAttribute('aria-sort')") \
        == "ascending"
    b.cmd("POST", f"/element/{b.element('#table-configs th[data-col=val_ua]')}/click", {})
    assert [float(v) for v in _column(b, "table-configs", "val_ua") if v] == sorted(numbers, reverse=True)
    b.cmd("POST", f"/element/{b.element('input[data-table=table-configs]')}/value", {"text": "triplet"})
    families = b.js("""return [...document.querySelectorAll('#table-configs tbody tr')]
                       .filter(r => r.style.display !== 'none').map(r => r.textContent)""")
    assert families and all("triplet" in f for f in families)
    assert b.errors() == []

    # a served page reloads itself when the sweep writes
    live = make_results(tmp_path / "live")
    server = make_server(live, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        b.open(server.url)
        old = b.js("return document.body.dataset.version")
        ResultsStore(live, "s").upsert_trial(_trial("late-trial", val=0.2, test=0.2))
        deadline = time.monotonic() + 30
        while b.js("return document.body && document.body.dataset.version") in (old, None):
            assert time.monotonic() < deadline, "the served page did not reload after the results changed"
            time.sleep(0.2)
        b.open(server.url)  # waits for the reloaded page's script
        assert "late-trial" in b.js("return document.body.innerText")
        assert b.errors() == []
    finally:
        server.shutdown()
        server.server_close()

    # a hostile page: nothing runs, everything reads as text
    hostile = tmp_path / "hostile.html"
    hostile.write_text(build_dashboard(make_hostile(tmp_path / "hostile")))
    b.open(hostile.as_uri())
    assert b.js("return window.__alerts") == []
    body = b.js("return document.body.innerText")
    assert HOSTILE_SWEEP in body and HOSTILE_FAMILY in body
    assert b.js("return document.querySelectorAll('img[src=x], svg[onload], marquee').length") == 0
    assert b.errors() == []
