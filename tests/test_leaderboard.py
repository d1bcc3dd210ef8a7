"""Leaderboard on constructed trials with answers known by hand."""
from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest

from search.analysis.leaderboard import LeaderboardError, display_view, leaderboard, mean_ci95, render
from search.results import ResultsStore, read_trials

# Student t 97.5 % quantiles in closed form: df=1 is Cauchy, df=2 has t = (2p-1) sqrt(2 / (4p(1-p))).
T_975_DF1 = math.tan(math.pi * (0.975 - 0.5))
T_975_DF2 = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))
CI_3 = T_975_DF2 * 0.1 / math.sqrt(3)  # [0.5, 0.6, 0.7]: sd 0.1, n 3


def _trial(trial_id, key, status="completed", val=None, test=None, *, sweep="s", family="cross_entropy",
           frontend="mel", **kw):
    return {"sweep": sweep, "trial_id": trial_id, "config_key": key, "status": status, "loss_family": family,
            "frontend": frontend, "lr": 1e-3, "batch_size": 32, "val_ua": val, "val_wa": val,
            "test_ua": test, "test_wa": test, "test_f1_macro": test, **kw}


@pytest.fixture
def trials() -> pd.DataFrame:
    return pd.DataFrame([
        # k1: one center-loss configuration, three seeds
        _trial("a", "k1", val=0.5, test=0.45, family="center", center_lambda=0.1),
        _trial("b", "k1", val=0.6, test=0.55, family="center", center_lambda=0.1),
        _trial("c", "k1", val=0.7, test=0.65, family="center", center_lambda=0.1),
        # k2: one CE run, better on validation mean, worse on test
        _trial("d", "k2", val=0.62, test=0.30),
        # k3: pruned at a lucky early epoch and a crash: never ranked
        _trial("e", "k3", "pruned", val=0.99, frontend="stft"),
        _trial("f", "k3", "error", frontend="stft"),
        # k4: CE on stft, the best test score but the lowest validation
        _trial("g", "k4", val=0.40, test=0.95, frontend="stft"),
        _trial("h", "k4", "pruned", val=0.35, frontend="stft"),
    ])


def test_mean_ci95_known_answers():
    mean, ci, n = mean_ci95([0.5, 0.6, 0.7])
    assert n == 3 and mean == pytest.approx(0.6) and ci == pytest.approx(CI_3)
    mean, ci, n = mean_ci95([0.8, None, 0.6])  # nulls are not observations
    assert n == 2 and mean == pytest.approx(0.7)
    assert ci == pytest.approx(T_975_DF1 * (math.sqrt(0.02) / math.sqrt(2)))
    mean, ci, n = mean_ci95([0.42])
    assert (mean, n) == (0.42, 1) and math.isnan(ci)
    assert mean_ci95([])[2] == 0


def test_default_leaderboard_ranks_configurations_by_validation(trials):
    lb = leaderboard(trials)
    assert list(lb["config_key"]) == ["k2", "k1", "k4", "k3"]  # test never decides the order
    assert list(lb["rank"].astype("object")) == [1, 2, 3, pd.NA]  # k3 has no completed trial

    k1 = lb.set_index("config_key").loc["k1"]
    assert k1["n"] == 3 and k1["val_ua_mean"] == pytest.approx(0.6) and k1["val_ua_ci95"] == pytest.approx(CI_3)
    assert k1["test_ua_mean"] == pytest.approx(0.55) and k1["test_ua_ci95"] == pytest.approx(CI_3)
    assert k1["loss_family"] == "center" and k1["center_lambda"] == 0.1

    k2 = lb.set_index("config_key").loc["k2"]
    assert k2["n"] == 1 and math.isnan(k2["val_ua_ci95"])
    k3 = lb.set_index("config_key").loc["k3"]
    assert (k3["n"], k3["n_pruned"], k3["n_error"]) == (0, 1, 1) and math.isnan(k3["val_ua_mean"])
    k4 = lb.set_index("config_key").loc["k4"]
    assert (k4["n"], k4["n_pruned"]) == (1, 1) and k4["val_ua_mean"] == pytest.approx(0.40)  # pruned 0.35 not averaged


def test_group_by_columns(trials):
    lb = leaderboard(trials, group_by=["loss_family", "frontend"])
    assert list(zip(lb["loss_family"], lb["frontend"])) == [
        ("cross_entropy", "mel"), ("center", "mel"), ("cross_entropy", "stft")]  # 0.62 > 0.60 > 0.40
    center = lb.iloc[1]
    assert center["n"] == 3 and center["val_ua_mean"] == pytest.approx(0.6)
    assert (center["best_trial_id"], center["best_val_ua"], center["best_test_ua"]) == ("c", 0.7, 0.65)
    stft = lb.iloc[2]
    assert (stft["n"], stft["n_pruned"], stft["n_error"]) == (1, 2, 1)
    assert stft["best_trial_id"] == "g"  # the pruned 0.99 is not a candidate
    assert "config_key" not in lb.columns

    by_family = leaderboard(trials, group_by=["loss_family"])
    ce = by_family.set_index("loss_family").loc["cross_entropy"]
    assert ce["n"] == 2 and ce["val_ua_mean"] == pytest.approx(0.51)


def test_unknown_group_by_column_lists_valid_ones(trials):
    with pytest.raises(LeaderboardError, match=r"cannot group by \['famly'\]; valid group-by columns: .*loss_family"):
        leaderboard(trials, group_by=["famly"])
    with pytest.raises(LeaderboardError, match="cannot group by"):
        leaderboard(trials, group_by=["test_ua"])  # a metric is not a grouping
    with pytest.raises(LeaderboardError, match="lacks column"):
        leaderboard(trials.drop(columns=["val_ua"]))


def test_several_sweeps_keep_their_configurations_apart(trials):
    other = trials.assign(sweep="t", val_ua=trials["val_ua"] - 0.3)
    lb = leaderboard(pd.concat([trials, other], ignore_index=True))
    assert len(lb) == 8
    top = lb.iloc[0]
    assert (top["sweep"], top["config_key"]) == ("s", "k2")
    assert lb[lb["sweep"] == "t"]["n"].sum() == 5


def test_rows_without_config_key_stand_alone():
    df = pd.DataFrame([_trial("x", None, val=0.5, test=0.5), _trial("y", None, val=0.6, test=0.6)])
    lb = leaderboard(df)
    assert list(lb["config_key"]) == ["trial:y", "trial:x"] and list(lb["n"]) == [1, 1]


def test_running_sweep_from_the_store(tmp_path):
    store = ResultsStore(tmp_path, "live")
    assert leaderboard(read_trials(tmp_path)).empty  # nothing finished yet
    assert render(leaderboard(read_trials(tmp_path)), "table") == "no trials yet"
    store.upsert_trial({"trial_id": "1", "status": "pruned", "config_key": "a", "val_ua": 0.3})
    store.upsert_trial({"trial_id": "2", "status": "completed", "config_key": "b", "loss_family": "focal",
                        "gamma": 2.0, "val_ua": 0.5, "val_wa": 0.55, "test_ua": 0.45, "test_wa": 0.5,
                        "test_f1_macro": 0.4})
    lb = leaderboard(read_trials(tmp_path))
    assert list(lb["config_key"]) == ["b", "a"] and lb["rank"].iloc[0] == 1 and pd.isna(lb["rank"].iloc[1])
    assert lb["gamma"].iloc[0] == 2.0 and "center_lambda" not in lb.columns  # all-null params hidden


def test_render_formats(trials):
    lb = leaderboard(trials)
    table = render(lb, "table")
    assert "0.600 ± 0.248" in table and "k3" in table
    md = render(lb, "markdown").splitlines()
    assert md[0].startswith("| rank | sweep | config_key") and set(md[1]) <= {"|", "-"}
    assert len(md) == 2 + len(lb) and "0.600 ± 0.248" in md[3]
    back = pd.read_csv(io.StringIO(render(lb, "csv")))
    assert list(back.columns) == list(lb.columns)
    assert back["val_ua_ci95"].iloc[1] == pytest.approx(CI_3)
    records = json.loads(render(lb, "json"))
    assert records[1]["config_key"] == "k1" and records[1]["val_ua_ci95"] == pytest.approx(CI_3, abs=1e-13)
    assert records[3]["rank"] is None and records[0]["val_ua_ci95"] is None
    with pytest.raises(LeaderboardError, match="unknown format 'html'"):
        render(lb, "html")  # type: ignore[arg-type]


def test_protocol_columns_appear_only_across_protocols_and_list_every_held_out_corpus():
    within = [_trial("a", "k1", val=0.5, test=0.5, train_corpora="emodb", eval_corpora="emodb")]
    assert "eval_corpora" not in leaderboard(pd.DataFrame(within)).columns  # one within-corpus protocol
    loco = [_trial("b", "k2", val=0.4, test=0.2, train_corpora="emodb", eval_corpora="synthetic",
                   classes_dropped="calm: only in the evaluation corpora"),
            _trial("c", "k2", val=0.6, test=0.3, train_corpora="synthetic", eval_corpora="emodb",
                   classes_dropped="calm: only in the training corpora")]
    board = leaderboard(pd.DataFrame(within + loco)).set_index("config_key")
    assert board.loc["k2", "eval_corpora"] == "emodb | synthetic"
    assert board.loc["k2", "train_corpora"] == "emodb | synthetic"
    assert board.loc["k2", "classes_dropped"] == ("calm: only in the evaluation corpora | "
                                                  "calm: only in the training corpora")
    assert board.loc["k1", "eval_corpora"] == "emodb" and board.loc["k2", "n"] == 2


def test_leaderboard_command_on_a_folder_without_sweeps_says_where_it_looked(tmp_path, capsys):
    from search.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["leaderboard", str(empty)]) == 2
    out = capsys.readouterr()
    assert out.out == ""  # no empty table
    assert out.err.strip() == (f"ser-search leaderboard: error: no sweep found in {empty}: looked for "
                               f"{empty}/trials.parquet and {empty}/*/trials.parquet (pass the --results "
                               "directory of `ser-search sweep`)")

    # the demo's --out folder: its sweeps are one level further down, in results/
    demo = tmp_path / "demo-out"
    (demo / "corpus").mkdir(parents=True)
    ResultsStore(demo / "results", "demo").upsert_trial(
        _trial("1", "k", val=0.5, test=0.5) | {"sweep": "demo", "stage": "search"})
    assert main(["leaderboard", str(demo), "--format", "json"]) == 2
    err = capsys.readouterr().err
    assert f"no sweep found in {demo}: looked for {demo}/trials.parquet and {demo}/*/trials.parquet" in err
    assert err.rstrip().endswith(f"; sweeps are in {demo / 'results'}")
    assert main(["leaderboard", str(demo / "results"), "--format", "json"]) == 0
    assert [r["config_key"] for r in json.loads(capsys.readouterr().out)] == ["k"]


def test_leaderboard_command_on_a_sweep_with_no_finished_trial_is_no_error(tmp_path, capsys):
    from search.cli import main

    ResultsStore(tmp_path, "live").save_source("[sweep]\nname = 'live'\n")  # what a starting sweep writes first
    assert main(["leaderboard", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == "no trials yet"
    assert out.err.strip() == f"no trial has finished yet in {tmp_path} (sweep: live)"


# ---------------------------------------------------------------------------- the settings rows differ in (issue 23)


def _configured(trial_id, val, *, sweep="s", prepared_id=None, **settings):
    """A trials row as a sweep writes it: the parameter columns, config_key and config_json of a
    TrainConfig with `settings` (dotted keys: optim.weight_decay=0.01)."""
    from ser_core.config import TrainConfig
    from search.results import config_columns

    raw: dict = {"data": {"prepared": "/data/prepared"}}
    for dotted, value in settings.items():
        *parents, leaf = dotted.split(".")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    columns = config_columns(TrainConfig.model_validate(raw), prepared_id=prepared_id)
    return {**columns, "sweep": sweep, "trial_id": trial_id, "status": "completed", "val_ua": val, "val_wa": val,
            "test_ua": val, "test_wa": val, "test_f1_macro": val}


def test_configurations_differing_only_in_normalization_name_it_in_every_format():
    df = pd.DataFrame([_configured("a", 0.60, normalization="speaker", seed=0),
                       _configured("b", 0.70, normalization="speaker", seed=1),  # one configuration, two seeds
                       _configured("c", 0.50, normalization="global")])
    params = ["model", "loss_family", "frontend", "lr", "batch_size"]
    assert (df[params].nunique() == 1).all()  # every parameter column the same: only config_json differs
    lb = leaderboard(df)
    assert len(lb) == 2 and list(lb["n"]) == [2, 1]
    assert list(lb["normalization"]) == ["speaker", "global"]
    cols = list(lb.columns)
    assert cols.index("batch_size") < cols.index("normalization") < cols.index("n")  # after the parameters
    assert "seed" not in cols and "device" not in cols and not any(c.startswith("optim.") for c in cols)

    table = render(lb, "table")
    assert "normalization" in table and "speaker" in table and "global" in table
    md = render(lb, "markdown").splitlines()
    header = [c.strip() for c in md[0].strip("|").split("|")]
    assert "normalization" in header
    col = header.index("normalization")
    assert [[c.strip() for c in line.strip("|").split("|")][col] for line in md[2:]] == ["speaker", "global"]
    back = pd.read_csv(io.StringIO(render(lb, "csv")))
    assert list(back.columns) == list(lb.columns) and list(back["normalization"]) == ["speaker", "global"]
    records = json.loads(render(lb, "json"))
    assert [r["normalization"] for r in records] == ["speaker", "global"]


def test_a_nested_setting_is_named_by_its_dotted_path():
    df = pd.DataFrame([_configured("a", 0.6, **{"optim.weight_decay": 0.01, "augment.freq_masks": 2}),
                       _configured("b", 0.5, **{"optim.weight_decay": 0.0001, "augment.freq_masks": 2}),
                       _configured("c", 0.4, **{"optim.weight_decay": 0.0001, "model.d_model": 128})])
    lb = leaderboard(df)
    assert list(lb["optim.weight_decay"]) == [0.01, 0.0001, 0.0001]
    assert list(lb["augment.freq_masks"]) == [2, 2, 0] and list(lb["model.d_model"]) == [64, 64, 128]
    assert "normalization" not in lb.columns and "optim.lr" not in lb.columns  # equal, or a column already
    records = json.loads(render(lb, "json"))
    assert [r["optim.weight_decay"] for r in records] == [0.01, 0.0001, 0.0001]
    assert "optim.weight_decay" in render(lb, "markdown").splitlines()[0]
    assert "optim.weight_decay" in pd.read_csv(io.StringIO(render(lb, "csv"))).columns


def test_a_setting_config_key_ignores_is_no_difference():
    df = pd.DataFrame([_configured("a", 0.6, device="cpu", seed=0, fastpath=True, **{"data.fold": 0}),
                       _configured("b", 0.5, device="cuda", seed=1, fastpath=False, output="/tmp/b",
                                   feature_cache="off", **{"data.fold": 1, "data.prepared": "/elsewhere"})])
    assert df["config_key"].nunique() == 1  # one configuration, as today
    lb = leaderboard(df)
    assert len(lb) == 1 and lb["n"].iloc[0] == 2
    assert [c for c in lb.columns if c not in leaderboard(df.drop(columns=["config_json"])).columns] == []


def test_differences_are_over_every_row_listed_not_within_a_sweep():
    df = pd.DataFrame([_configured("a", 0.6, sweep="s", normalization="global"),
                       _configured("b", 0.5, sweep="s", **{"optim.label_smoothing": 0.1}),
                       _configured("c", 0.4, sweep="t", normalization="speaker"),
                       _configured("d", 0.3, sweep="t", normalization="speaker", **{"optim.label_smoothing": 0.1})])
    lb = leaderboard(df)
    assert list(zip(lb["sweep"], lb["normalization"], lb["optim.label_smoothing"])) == [
        ("s", "global", 0.0), ("s", "global", 0.1), ("t", "speaker", 0.0), ("t", "speaker", 0.1)]
    alone = leaderboard(df[df["sweep"] == "t"])
    assert "normalization" not in alone.columns and "optim.label_smoothing" in alone.columns


def test_settings_with_columns_of_their_own_are_not_repeated_and_unrecorded_rows_are_blank():
    df = pd.DataFrame([_configured("a", 0.6, loss={"family": "center", "center_lambda": 0.1}, model={"name": "cnn_birnn"}),
                       _configured("b", 0.5, **{"optim.lr": 0.01, "optim.ema_decay": 0.99}),
                       _trial("c", "legacy", val=0.4, test=0.4)])  # written without config_json
    lb = leaderboard(df)
    assert not [c for c in lb.columns if c.startswith(("loss.", "model.", "optim.lr"))]
    assert list(lb["center_lambda"].astype(object).where(lb["center_lambda"].notna(), None)) == [0.1, None, None]
    assert list(lb["optim.ema_decay"].astype(object).where(lb["optim.ema_decay"].notna(), None)) == [0.0, 0.99, None]
    assert list(display_view(lb)["optim.ema_decay"]) == ["0", "0.99", ""]


def test_prepared_corpora_and_design_folds():
    df = pd.DataFrame([_configured("a", 0.6, prepared_id="aaaaaaaaaaaa"),
                       _configured("b", 0.5, prepared_id="bbbbbbbbbbbb")])
    assert list(leaderboard(df)["prepared_id"]) == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    # the validation folds of nested selection are not what test_folds shows
    nested = pd.DataFrame([_configured("a", 0.6, data={"prepared": "/p", "folds": [1, 2], "test_folds": [0]}),
                           _configured("b", 0.5, data={"prepared": "/p", "folds": [2, 3], "test_folds": [0]})])
    nested["test_folds"] = [[0], [0]]
    lb = leaderboard(nested)
    assert list(lb["test_folds"]) == ["0", "0"] and list(lb["data.folds"]) == [[1, 2], [2, 3]]
    assert "data.test_folds" not in lb.columns
    assert "[1, 2]" in render(lb, "markdown") and json.loads(render(lb, "json"))[0]["data.folds"] == [1, 2]
    # cross-validated test folds are shown by test_folds already
    cv = pd.DataFrame([_configured("a", 0.6, data={"prepared": "/p", "folds": [0, 1]}),
                       _configured("b", 0.5, data={"prepared": "/p", "folds": [0, 1, 2]})])
    cv["test_folds"] = [[0, 1], [0, 1, 2]]
    assert "data.folds" not in leaderboard(cv).columns


def test_group_by_adds_no_setting_columns():
    df = pd.DataFrame([_configured("a", 0.6, normalization="speaker"), _configured("b", 0.5)])
    assert "normalization" not in leaderboard(df, group_by=["loss_family"]).columns
    assert "normalization" not in leaderboard(df, group_by=["config_key"]).columns


def test_config_key_ignores_exactly_the_settings_left_out():
    from ser_core.config import TrainConfig
    from search.analysis.differences import IGNORED, configuration_settings
    from search.results.schema import config_key

    base = {"data": {"prepared": "/p", "train_corpora": ["a", "b"]}}
    changed = {"seed": 7, "device": "cpu", "output": "/o", "fastpath": False, "feature_cache": "off",
               "feature_cache_dir": "/c", "data.prepared": "/q", "data.fold": 3}
    assert set(changed) | {"data.leave_out"} == IGNORED
    key = config_key(TrainConfig.model_validate(base))
    for dotted, value in changed.items():
        raw = json.loads(json.dumps(base))
        *parents, leaf = dotted.split(".")
        node = raw
        for p in parents:
            node = node[p]
        node[leaf] = value
        assert config_key(TrainConfig.model_validate(raw)) == key, dotted
    loco = [TrainConfig.model_validate({"data": {"prepared": "/p", "leave_out": c}}) for c in ("a", "b")]
    assert config_key(loco[0]) == config_key(loco[1])
    settings = configuration_settings(TrainConfig.model_validate(base).model_dump_json())
    assert not IGNORED & set(settings) and settings["normalization"] == "global"


def test_a_trial_whose_params_made_no_configuration_shows_them_by_path():
    bad = {"sweep": "s", "trial_id": "x", "status": "error", "loss_family": "center", "lr": 1e-3,
           "batch_size": 32, "frontend": "mel", "val_ua": None, "val_wa": None, "test_ua": None, "test_wa": None,
           "test_f1_macro": None,
           "config_json": json.dumps({"loss_family": "center", "weight_decay": 0.5, "seed": 3, "nonsense": 1})}
    lb = leaderboard(pd.DataFrame([_configured("a", 0.6), bad]))
    assert list(lb["optim.weight_decay"]) == [0.0001, 0.5]
    assert "seed" not in lb.columns and "nonsense" not in lb.columns and "loss.family" not in lb.columns


def test_pareto_front_names_the_settings_its_configurations_differ_in():
    from search.analysis.pareto import pareto_front, pareto_leaderboard
    from search.definition.objectives import Objective

    rows = [_configured("a", 0.7, normalization="speaker") | {"params": 200},
            _configured("b", 0.6) | {"params": 100},
            _configured("c", 0.5, **{"optim.weight_decay": 0.01}) | {"params": 300}]  # dominated by both
    objectives = [Objective("val_ua", "max"), Objective("params", "min")]
    front = pareto_front(pd.DataFrame(rows), objectives)
    assert list(front["normalization"]) == ["speaker", "global"]
    assert "optim.weight_decay" not in front.columns  # only the dominated configuration differs there
    cols = list(front.columns)
    assert cols.index("normalization") < cols.index("n") < cols.index("params")
    other = [_configured("d", 0.4, sweep="t", normalization="speaker", **{"optim.schedule": "cosine"})
             | {"params": 50}]
    both, _ = pareto_leaderboard(pd.DataFrame(rows + other), {"s": objectives, "t": objectives})
    assert list(both["optim.schedule"]) == ["constant", "constant", "cosine"]


def test_reading_settings_imports_no_torch():
    """The leaderboard reads config_json as JSON: `ser-search leaderboard` stays quick to start."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, search.analysis.leaderboard, search.analysis.differences; "
            "assert 'torch' not in sys.modules and 'ser_core.config' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_a_configuration_confirmed_on_folds_gets_the_interval_its_design_supports():
    """Two seeds x three one-fold confirmations of one configuration are three test sets, not six
    independent runs: the test interval is taken over the folds' seed means with Nadeau & Bengio's
    correction (the folds' training sets overlap: n_test/n_train = 1/3 here), as the claims take it;
    the validation interval over the two seeds' means. Pooling the six rows as independent (the
    old rule) gives a half-width about four times narrower."""
    from scipy import stats

    test = {(1, 0): 0.60, (1, 1): 0.70, (1, 2): 0.80, (2, 0): 0.62, (2, 1): 0.68, (2, 2): 0.82}
    val = {1: 0.55, 2: 0.65}
    rows = [_trial(f"s{seed}f{fold}", "k", val=val[seed] + fold * 0.01, test=ua, seed=seed, stage="confirm",
                   fold=fold, test_folds=[fold], val_folds=[(fold + 1) % 5], n_train_folds=3,
                   selection_exposed=False)
            for (seed, fold), ua in test.items()]
    row = leaderboard(pd.DataFrame(rows)).iloc[0]

    fold_means = [(test[1, f] + test[2, f]) / 2 for f in range(3)]
    sd = pd.Series(fold_means).std(ddof=1)
    corrected = stats.t.ppf(0.975, 2) * sd * math.sqrt(1 / 3 + 1 / 3)
    assert row["test_ua_mean"] == pytest.approx(sum(fold_means) / 3)
    assert row["test_ua_ci95"] == pytest.approx(corrected)
    pooled = mean_ci95(list(test.values()))[1]
    assert row["test_ua_ci95"] > 3 * pooled

    # validation UA by the same rule (as the dashboard reads it): each fold's run's own, seeds averaged
    val_means = [(val[1] + val[2]) / 2 + fold * 0.01 for fold in range(3)]
    assert row["val_ua_mean"] == pytest.approx(sum(val_means) / 3)
    assert row["val_ua_ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * pd.Series(val_means).std(ddof=1)
                                               * math.sqrt(1 / 3 + 1 / 3))
    # validation WA has no per-fold figures: over the seeds' means
    seed_means = [val[s] + 0.01 for s in (1, 2)]
    assert row["val_wa_ci95"] == pytest.approx(T_975_DF1 * pd.Series(seed_means).std(ddof=1) / math.sqrt(2))


def test_leave_one_corpus_out_repeats_are_one_test_set_per_held_out_corpus():
    """Two seeds x three held-out corpora of one configuration: three test sets (each corpus's
    two seeds averaged), not six independent runs and not one test set 'fold 0'."""
    from scipy import stats

    held = {"a": (0.50, 0.52), "b": (0.70, 0.66), "c": (0.60, 0.61)}
    rows = [_trial(f"{c}{seed}", "k", val=0.5, test=ua, seed=seed, stage="confirm",
                   train_corpora="|".join(sorted(set("abc") - {c})), eval_corpora=c)
            for c, uas in held.items() for seed, ua in zip((1, 2), uas)]
    row = leaderboard(pd.DataFrame(rows)).iloc[0]
    means = [sum(v) / 2 for v in held.values()]
    assert row["test_ua_mean"] == pytest.approx(sum(means) / 3)
    assert row["test_ua_ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * pd.Series(means).std(ddof=1) / math.sqrt(3))
