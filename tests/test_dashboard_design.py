"""The dashboard's confirmed intervals, pairwise matrix and Pareto error bars use the claims'
cells and design (issue 21, item 6): one group per sweep lineage, protocol, model and prepared
corpus (never pooled across them), the configuration the claims' rule chooses, values averaged
per test unit over seeds and the design-aware interval over units (Nadeau & Bengio's corrected
t over fold means with several test folds), and the pairwise matrix as the paired difference a
claim row would give. Rows are real trials rows (search.results.config_columns)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from search.analysis.claims import Arm, Claim, evaluate_claims
from search.dashboard.intervals import confirmed_intervals, pairwise_differences
from search.dashboard.figures import pairwise_figure
from search.dashboard.pareto import pareto_panel
from search.analysis.leaderboard import mean_ci95
from search.definition.objectives import Objective
from search.results import config_columns
from ser_core.config import TrainConfig

TINY_MODEL = {"name": "cnn_transformer", "channels": [8, 16, 16, 16], "d_model": 32, "n_heads": 2,
              "n_layers": 1, "ff_dim": 64}
CENTER = {"family": "center", "center_lambda": 0.01, "center_lr": 0.5}
# per-fold test UA of the two arms (fold effects far larger than seed noise, as on real speakers)
FOLD_UA = {"center": (0.62, 0.55, 0.58, 0.61, 0.57), "cross_entropy": (0.60, 0.56, 0.55, 0.58, 0.57)}
SEED_NOISE = (0.0, 0.004, -0.003)


def _cfg(data: dict, seed: int = 0, family: str = "cross_entropy", lr: float = 1e-3, **loss) -> TrainConfig:
    return TrainConfig.model_validate({"data": {"prepared": "p", **data}, "seed": seed, "model": TINY_MODEL,
                                       "optim": {"lr": lr}, "loss": {"family": family, **loss}})


def _row(cfg: TrainConfig, trial: str, test_ua: float, *, val_ua: float = 0.5, lineage: str = "s",
         prepared_id: str = "pid", selected_by: TrainConfig | None = None, stage: str = "confirm", **extra) -> dict:
    cols = config_columns(cfg, n_folds=5, prepared_id=prepared_id, selected_by=selected_by)
    confirm = stage == "confirm"
    return {**cols, "sweep": f"{lineage}-confirm" if confirm else lineage, "source_sweep": lineage if confirm else None,
            "trial_id": trial, "stage": stage, "status": "completed", "val_ua": val_ua, "val_wa": val_ua,
            "test_ua": test_ua, **extra}


def _fold_design_rows(lineage: str = "s", prepared_id: str = "pid") -> list[dict]:
    """Center and cross-entropy (mel), each confirmed on 5 folds x 3 seeds, one fold per run."""
    rows = []
    for family, loss in (("center", CENTER), ("cross_entropy", {"family": "cross_entropy"})):
        for f, ua in enumerate(FOLD_UA[family]):
            for seed, noise in enumerate(SEED_NOISE):
                cfg = _cfg({"fold": f}, seed, **loss)
                rows.append(_row(cfg, f"{lineage}-{family}-{f}-{seed}", ua + noise * (family == "center"),
                                 val_ua=0.6 + noise, lineage=lineage, prepared_id=prepared_id))
    return rows


def _one_fold_rows(lineage: str, prepared_id: str = "pid", *, fold: int = 0,
                   selected_by: TrainConfig | None = None) -> list[dict]:
    """Center and cross-entropy confirmed on one test fold over 3 seeds."""
    rows = []
    for family, loss, base in (("center", CENTER, 0.60), ("cross_entropy", {"family": "cross_entropy"}, 0.57)):
        for seed, noise in enumerate((0.0, 0.01, -0.02)):
            cfg = _cfg({"fold": fold}, seed, **loss)
            rows.append(_row(cfg, f"{lineage}-{family}-{seed}", base + noise + (family == "center") * seed / 100,
                             val_ua=0.6 + noise, lineage=lineage, prepared_id=prepared_id, selected_by=selected_by))
    return rows


def _corrected_half(fold_means: list[float], ratio: float) -> float:
    k = len(fold_means)
    return float(stats.t.ppf(0.975, k - 1) * np.std(fold_means, ddof=1) * math.sqrt(1 / k + ratio))


# ------------------------------------------------------------------ 1: per-group intervals


def test_two_lineages_or_two_preparations_are_two_groups_never_one():
    for a, b in ((_one_fold_rows("s"), _one_fold_rows("t")),
                 (_one_fold_rows("s", "p1"), _one_fold_rows("s", "p2"))):
        iv = confirmed_intervals(pd.DataFrame(a + b))
        center = iv[iv["loss_family"] == "center"]
        assert len(center) == 2  # one per cell, not the two pooled into one group of 6 runs
        assert (center["test_ua_n"] == 3).all()
        assert len(set(iv["group"])) == len(iv)  # each group labelled with its cell
        for c in ("lineage", "protocol", "model", "prepared_id", "scope"):
            assert c in iv.columns
    iv = confirmed_intervals(pd.DataFrame(_one_fold_rows("s") + _one_fold_rows("t")))
    assert sorted(iv["lineage"]) == ["s", "s", "t", "t"]
    assert all("s" in g or "t" in g for g in iv["group"])
    # one cell: the plain family · frontend label
    assert sorted(confirmed_intervals(pd.DataFrame(_one_fold_rows("s")))["group"]) == \
        ["center · mel", "cross_entropy · mel"]


def test_a_group_on_five_folds_by_three_seeds_has_the_corrected_fold_level_interval():
    rows = _fold_design_rows()
    iv = confirmed_intervals(pd.DataFrame(rows)).set_index("loss_family")
    center = iv.loc["center"]
    fold_means = [ua + np.mean(SEED_NOISE) for ua in FOLD_UA["center"]]
    assert center["test_ua_n"] == 5  # df = 4, not 14
    assert center["test_ua_mean"] == pytest.approx(np.mean(fold_means))
    assert center["test_ua_ci95"] == pytest.approx(_corrected_half(fold_means, 1 / 3))
    plain = mean_ci95([r["test_ua"] for r in rows if r["loss_family"] == "center"])
    assert plain[2] == 15 and center["test_ua_ci95"] > plain[1]  # the pooled t was too narrow
    assert center["scope"] == "5 test folds (corrected t)"


def test_a_group_reports_the_configuration_the_claims_choose_not_every_configuration_pooled():
    rows = _one_fold_rows("s")
    for seed in range(3):  # a second cross-entropy configuration, worse on validation, better on test
        rows.append(_row(_cfg({"fold": 0}, seed, lr=1e-2), f"other-{seed}", 0.9, val_ua=0.3))
    iv = confirmed_intervals(pd.DataFrame(rows)).set_index("loss_family")
    ce = iv.loc["cross_entropy"]
    assert ce["n_configs"] == 2 and ce["test_ua_n"] == 3
    assert ce["test_ua_mean"] == pytest.approx(np.mean([0.57, 0.58, 0.55]))
    assert ce["config_key"] == _row(_cfg({"fold": 0}), "x", 0)["config_key"]
    claim = Claim("c", "", Arm("center", "mel"), Arm("cross_entropy", "mel"), ("test_ua",), 0.0)
    assert ce["config_key"] == evaluate_claims(pd.DataFrame(rows), [claim]).iloc[0]["config_b"]
    assert ce["scope"] == "conditional on these test speakers (test fold 0)"


def test_a_group_of_cross_validated_runs_is_read_fold_by_fold_validation_included():
    """Center confirmed by cross-validated runs (data.folds = all five) over 3 seeds: the claims
    split each run into its folds' test figures; the validation UA is taken per fold too (its
    val_ua_folds), else every fold would carry the run's mean and the fold interval no spread."""
    rows = []
    val_folds = (0.60, 0.50, 0.56, 0.63, 0.52)
    for seed, noise in enumerate(SEED_NOISE):
        tests = [ua + noise for ua in FOLD_UA["center"]]
        vals = [v + noise for v in val_folds]
        rows.append(_row(_cfg({"folds": [0, 1, 2, 3, 4]}, seed, **CENTER), f"cv{seed}", float(np.mean(tests)),
                         val_ua=float(np.mean(vals)), test_ua_folds=tests, val_ua_folds=vals))
    center = confirmed_intervals(pd.DataFrame(rows)).iloc[0]
    assert center["test_ua_n"] == 5 and center["val_ua_n"] == 5 and center["test_ua_unit"] == "fold"
    test_means = [ua + np.mean(SEED_NOISE) for ua in FOLD_UA["center"]]
    val_means = [v + np.mean(SEED_NOISE) for v in val_folds]
    assert center["test_ua_ci95"] == pytest.approx(_corrected_half(test_means, 1 / 3))
    assert center["val_ua_ci95"] == pytest.approx(_corrected_half(val_means, 1 / 3))
    assert center["selection_exposed"]  # the older CV design validates on folds it also tests on


# ------------------------------------------------------------------ 2: pairwise matrix


def test_pairwise_entries_are_the_claim_rows_and_cells_are_never_compared():
    searched = _cfg({"fold": 0})  # validated on fold 1: a confirmation tested on fold 1 is not nested
    rows = _fold_design_rows("s") + _one_fold_rows("t", fold=1, selected_by=searched)
    trials = pd.DataFrame(rows)
    claim = Claim("c", "", Arm("center", "mel"), Arm("cross_entropy", "mel"), ("test_ua",), 0.0)
    claims = evaluate_claims(trials, [claim]).set_index("sweep")
    iv = confirmed_intervals(trials)
    label = {(r["lineage"], r["loss_family"]): r["group"] for _, r in iv.iterrows()}
    pairs = pairwise_differences(trials, "test_ua")
    assert len(pairs) == 4  # two ordered pairs per lineage; none across lineages
    by = pairs.set_index(["row", "col"])
    for lin in ("s", "t"):
        expect = claims.loc[lin]
        got = by.loc[(label[(lin, "center")], label[(lin, "cross_entropy")])]
        assert got["diff"] == pytest.approx(expect["mean_diff"])
        assert (got["ci_low"], got["ci_high"]) == pytest.approx((expect["ci_low"], expect["ci_high"]))
        assert got["verdict"] == expect["verdict"] and got["scope"] == expect["scope"]
        assert bool(got["selection_exposed"]) == bool(expect["selection_exposed"])
        back = by.loc[(label[(lin, "cross_entropy")], label[(lin, "center")])]
        assert back["diff"] == pytest.approx(-expect["mean_diff"])
        assert (back["ci_low"], back["ci_high"]) == pytest.approx((-expect["ci_high"], -expect["ci_low"]))
    s = by.loc[(label[("s", "center")], label[("s", "cross_entropy")])]
    assert s["n_folds"] == 5 and s["unit"] == "fold" and "corrected" in s["scope"]
    t = by.loc[(label[("t", "center")], label[("t", "cross_entropy")])]
    assert t["scope"] == "conditional on these test speakers (test fold 1)" and t["selection_exposed"]
    assert (label[("s", "center")], label[("t", "cross_entropy")]) not in by.index

    groups = list(iv["group"])
    fig = pairwise_figure(groups, {"test_ua": pairs})
    heat = fig.data[0]
    i, j = groups.index(label[("t", "center")]), groups.index(label[("t", "cross_entropy")])
    hover = heat.customdata[i][j]
    assert "conditional on these test speakers" in hover and "NOT NESTED" in hover
    assert f"{t['diff']:+.3f}" in heat.text[i][j]
    k = groups.index(label[("s", "center")])
    assert math.isnan(heat.z[k][j]) and heat.text[k][j] == ""  # across cells: blank, and the hover says why
    assert "not compared" in heat.customdata[k][j]
    assert "NOT NESTED" not in heat.customdata[k][groups.index(label[("s", "cross_entropy")])]


# ------------------------------------------------------------------ 3: Pareto error bars


def test_pareto_error_bar_is_the_unit_interval_of_the_confirmed_configuration():
    acc, lat = Objective("val_ua", "max"), Objective("latency_ms", "min")
    searched = _cfg({"fold": 0}, lr=1e-3)
    other = _cfg({"fold": 0}, lr=1e-2)
    rows = [_row(searched, "t1", 0.6, val_ua=0.60, stage="search", latency_ms=2.0),
            _row(other, "t2", 0.5, val_ua=0.50, stage="search", latency_ms=1.0)]
    for f in range(5):
        for seed, noise in enumerate(SEED_NOISE):
            rows.append(_row(_cfg({"fold": f}, seed, lr=1e-3), f"c{f}{seed}", 0.6, val_ua=0.55 + f / 50 + noise,
                             selected_by=searched, latency_ms=2.0 + noise))
    trials = pd.DataFrame(rows)
    panel = pareto_panel(trials, "s", acc, lat)
    assert list(panel.confirmed["trial_id"]) == ["t1"]
    got = panel.confirmed.iloc[0]
    fold_means = [0.55 + f / 50 + np.mean(SEED_NOISE) for f in range(5)]
    assert got["y_n"] == 5  # fold units, df = 4
    assert got["y_ci95"] == pytest.approx(_corrected_half(fold_means, 1 / 3))
    assert got["y_ci95"] > mean_ci95([r["val_ua"] for r in rows[2:]])[1]  # not the plain t over 15 runs
    assert got["x_mean"] == pytest.approx(2.0 + np.mean(SEED_NOISE))  # the cost: its runs' mean, as before

    from search.analysis.claims import confirmed_runs, unit_interval

    runs = confirmed_runs(trials)
    res = unit_interval(runs, "val_ua")
    assert res.n_folds == 5 and res.unit == "fold" and res.test_train_ratio == pytest.approx(1 / 3)
    assert got["y_mean"] == pytest.approx(res.mean_diff)
    assert got["y_ci95"] == pytest.approx((res.ci_high - res.ci_low) / 2)
