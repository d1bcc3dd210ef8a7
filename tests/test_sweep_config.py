"""Sweep files: validation messages, the define-by-run space and trial configs."""
from __future__ import annotations

import math
import pickle
from pathlib import Path

import optuna
import pytest

from search.definition import SweepConfig, SweepConfigError, load_sweep, parse_sweep
from ser_core.config import TrainConfig
from ser_core.losses import loss_names, loss_parameters

SWEEPS = Path(__file__).resolve().parents[1] / "search" / "sweeps"

HEAD = """
[sweep]
name = "t"
num_samples = 4
[data]
prepared = "prep"
[scheduler]
max_epochs = 3
"""

GOOD = HEAD + """
[space]
loss_family = { choices = ["cross_entropy", "center", "focal"] }
center_lambda = { low = 1e-3, high = 1.0, log = true }
center_lr = 0.5
frontend = { choices = ["mel", "stft"] }
lr = { low = 1e-4, high = 3e-3, log = true }
batch_size = { choices = [16, 32] }
model.dropout = { low = 0, high = 0.3 }
"frontend.n_mels" = { low = 32, high = 96, step = 32 }
seed = 7
[base]
model = { name = "cnn_birnn", rnn_hidden = 32 }
optim = { weight_decay = 0.001 }
"""


@pytest.fixture(autouse=True)
def _quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _error(text: str) -> str:
    with pytest.raises(SweepConfigError) as info:
        parse_sweep(text, source="x.toml")
    return str(info.value)


def _sample(cfg: SweepConfig, n: int, seed: int = 0) -> list[dict]:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        constants = cfg.define_by_run(trial)  # must run before trial.params is read
        params = {**trial.params, **constants}
        study.tell(trial, 0.5)
        out.append(params)
    return out


# ---------------------------------------------------------------------------- packaged sweeps


@pytest.mark.parametrize("name", ["demo", "center_loss_dai2019", "loss_functions_cnn_transformer", "recipe_emodb",
                                  "quick_recipe"])
def test_packaged_sweeps_load_and_give_valid_trials(name):
    cfg = load_sweep(SWEEPS / f"{name}.toml")
    assert cfg.data.prepared.is_absolute()
    assert cfg.data.prepared.parts[-3] == "runs"  # ../../runs/<x>/prepared resolved from the file
    assert cfg.source_text == (SWEEPS / f"{name}.toml").read_text()
    for params in _sample(cfg, 12):
        tc = cfg.trial_config(params)
        assert tc.optim.epochs == cfg.scheduler.max_epochs


def test_demo_covers_every_loss_family_and_both_frontends():
    cfg = load_sweep(SWEEPS / "demo.toml")
    assert sorted(cfg.families()) == sorted(loss_names())
    assert set(cfg.space["frontend"].choices) == {"mel", "stft"}


def test_paper_sweeps_use_their_models():
    dai = load_sweep(SWEEPS / "center_loss_dai2019.toml")
    assert dai.base["model"]["name"] == "cnn_birnn"
    assert set(dai.families()) == {"cross_entropy", "center"}
    assert dai.space["center_lambda"].log and dai.space["center_lr"].log
    ct = load_sweep(SWEEPS / "loss_functions_cnn_transformer.toml")
    assert ct.base["model"]["name"] == "cnn_transformer"
    assert set(ct.families()) == {"l1", "smooth_l1", "bce", "cross_entropy"}
    assert ct.space["frontend"].value == "mel"


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("extra, expected", [
    ("[space]\ncenter_lambda = { low = 1.0, high = 0.1 }\n[base]\nloss = { family = 'center' }",
     "space.center_lambda: low (1.0) must be < high (0.1)"),
    ("[space]\nlr = { low = 0.0, high = 0.1, log = true }", "space.lr: a log range needs low > 0"),
    ("[space]\nfrontend = { choices = [] }", "space.frontend.choices"),
    ("[space]\nloss_family = { choices = ['cross_entropy', 'centre'] }", "space.loss_family: unknown loss family 'centre'"),
    ("[space]\nfrontend = { choices = ['mel', 'cqt'] }", "space.frontend: choice 'cqt' gives an invalid trial"),
    ("[base]\nmodel = { nmae = 'cnn_birnn' }", "base.model.nmae: Extra inputs are not permitted"),
    ("[base]\noptim = { epochs = 5 }", "base.optim.epochs: cannot be set in [base]"),
    ("[space]\nlr = { low = 1e-4, high = 1e-2, lgo = true }", "space.lr.lgo: Extra inputs are not permitted"),
    ("[space]\nlr = { low = 1e-4, high = 1e-2 }\n[base]\noptim = { lr = 0.01 }", "base.optim.lr: is searched as space.lr"),
    ("[space]\nloss_family = { choices = ['cross_entropy', 'l1'] }\ncenter_lambda = 0.1",
     "space.center_lambda: no loss family this sweep can draw (cross_entropy, l1) uses it"),
    ("[space]\nbatch_size = { low = 8, high = 64.5 }", "space.batch_size: high (64.5) must be a whole number"),
    ("[space]\nfrontend = { low = 1, high = 2 }", "space.frontend: a {low, high} range needs a numeric setting"),
    ("[space]\nfrontend = ['mel', 'stft']", "space.frontend: a bare list is ambiguous"),
    ("[space]\nbatchsize = 32", "space.batchsize: unknown axis 'batchsize'"),
    ("[space]\nmodel.nmae = { choices = [1, 2] }", "space.model.nmae: unknown axis 'model.nmae'"),
    ("[space]\nlr = { low = 1e-4, high = 2.0 }", "space.lr: high 2.0 gives an invalid trial: optim.lr"),
    ("[space]\nfrontend = 'mfcc'\n[base]\nfrontend = { n_mfcc = 80, n_mels = 40 }",
     "space.frontend: value 'mfcc' gives an invalid trial: frontend.n_mfcc"),
    ("[space]\nloss_family = { choices = ['focal', 'center'] }\n[base]\nloss = { family = 'focal' }",
     "base.loss: the loss family is searched"),
    ("[space]\nfrontend = 'mel'\n\"frontend.kind\" = 'stft'", "space.frontend.kind: duplicates space.frontend"),
    ("[space]\nseed = { choices = [1, 1] }", "space.seed: choice 1 is listed twice"),
    ("[resources]\ngpus_per_trial = 1.5", "resources.gpus_per_trial: gpus_per_trial above 1 must be a whole number"),
    ("[sweep2]\nx = 1", "sweep2: Extra inputs are not permitted"),
])
def test_bad_sweeps_name_the_key(extra, expected):
    message = _error(HEAD + extra)
    assert "x.toml" in message
    assert expected in message


def test_bad_header_values_are_all_listed_together():
    text = HEAD.replace('name = "t"', 'name = "a/b"').replace("num_samples = 4", "num_samples = 0") \
        .replace("max_epochs = 3", "max_epochs = 3\ngrace_period = 5") + \
        "[space]\ncenter_lambda = { low = 1.0, high = 0.1 }\n[base]\nmodel = { nmae = 1 }\n"
    message = _error(text)
    for key in ("sweep.name", "sweep.num_samples", "scheduler: grace_period (5) must be <= max_epochs (3)",
                "space.center_lambda: low (1.0) must be < high (0.1)", "base.model.nmae"):
        assert key in message


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(SweepConfigError, match="sweep file not found"):
        load_sweep(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sweep\nname = 1\n")
    with pytest.raises(SweepConfigError, match=r"bad\.toml is not valid TOML"):
        load_sweep(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text(HEAD + "[base]\nmodel = { nmae = 'x' }\n")
    with pytest.raises(SweepConfigError, match=r"(?s)typo\.toml.*base\.model\.nmae"):
        load_sweep(typo)


# ---------------------------------------------------------------------------- search space


def test_define_by_run_asks_family_params_only_for_their_family():
    cfg = parse_sweep(GOOD)
    samples = _sample(cfg, 60)
    families = {p["loss_family"] for p in samples}
    assert families == {"cross_entropy", "center", "focal"}
    for p in samples:
        is_center = p["loss_family"] == "center"
        assert ("center_lambda" in p) == is_center and ("center_lr" in p) == is_center
        assert "gamma" not in p  # not an axis: focal runs with the registry default
        assert p["seed"] == 7  # constants come back with the suggestions
        assert p["frontend"] in ("mel", "stft") and p["batch_size"] in (16, 32)
        assert 1e-4 <= p["lr"] <= 3e-3
        assert p["frontend.n_mels"] in (32, 64, 96) and isinstance(p["frontend.n_mels"], int)
        assert 0.0 <= p["model.dropout"] <= 0.3
        if is_center:
            assert 1e-3 <= p["center_lambda"] <= 1.0 and p["center_lr"] == 0.5


def test_trial_config_merges_base_params_and_family_defaults():
    cfg = parse_sweep(GOOD, base_dir=Path("/data/sweeps"))
    params = {"loss_family": "focal", "frontend": "stft", "lr": 1e-3, "batch_size": 16,
              "model.dropout": 0.2, "frontend.n_mels": 32, "seed": 7,
              "center_lambda": None, "center_lr": None}  # unused axes may come as None
    tc = cfg.trial_config(params)
    assert isinstance(tc, TrainConfig)
    assert tc.data.prepared == Path("/data/sweeps/prep")
    assert tc.model.name == "cnn_birnn" and tc.model.rnn_hidden == 32 and tc.model.dropout == 0.2
    assert tc.optim.weight_decay == 0.001 and tc.optim.lr == 1e-3 and tc.optim.batch_size == 16
    assert tc.frontend.kind == "stft" and tc.frontend.n_mels == 32 and tc.seed == 7
    assert tc.loss.family == "focal" and tc.loss.gamma == loss_parameters("focal")["gamma"][0]
    assert tc.loss.center_lambda is None and tc.loss.center_lr is None
    assert tc.optim.epochs == 3 and cfg.trial_config(params, epochs=9).optim.epochs == 9

    center = cfg.trial_config({**params, "loss_family": "center", "center_lambda": 0.05, "center_lr": 0.5})
    assert center.loss.center_lambda == 0.05 and center.loss.center_lr == 0.5 and center.loss.gamma is None


def test_trial_config_rejects_bad_params():
    cfg = parse_sweep(GOOD)
    params = {"loss_family": "cross_entropy", "frontend": "mel", "lr": 1e-3, "batch_size": 16,
              "model.dropout": 0.2, "frontend.n_mels": 32, "seed": 7}
    with pytest.raises(SweepConfigError, match="not axes"):
        cfg.trial_config({**params, "learning_rate": 0.1})
    with pytest.raises(SweepConfigError, match="lack axis 'lr'"):
        cfg.trial_config({k: v for k, v in params.items() if k != "lr"})
    with pytest.raises(SweepConfigError, match="center_lambda=0.1 does not apply to loss family 'cross_entropy'"):
        cfg.trial_config({**params, "center_lambda": 0.1})
    with pytest.raises(SweepConfigError, match="optim.batch_size"):
        cfg.trial_config({**params, "batch_size": 0})


def test_family_fixed_in_base_with_searched_params():
    cfg = parse_sweep(HEAD + "[space]\ngamma = { low = 0.5, high = 4.0 }\nlr = 1e-3\n[base]\nloss = { family = 'focal' }\n")
    assert cfg.families() == ["focal"] and cfg.searched_axes() == ["gamma"] and cfg.axes() == ["gamma", "lr"]
    for p in _sample(cfg, 5):
        assert 0.5 <= p["gamma"] <= 4.0
        tc = cfg.trial_config(p)
        assert tc.loss.family == "focal" and tc.loss.gamma == p["gamma"]


def test_log_range_is_log_uniform():
    cfg = parse_sweep(HEAD + "[space]\nlr = { low = 1e-5, high = 1e-1, log = true }\n")
    logs = sorted(math.log10(p["lr"]) for p in _sample(cfg, 200, seed=1))
    median = logs[len(logs) // 2]
    assert -3.6 < median < -2.4  # log-uniform median is 1e-3; a uniform draw would be ~5e-2


def test_ray_optuna_search_accepts_define_by_run():
    from ray.tune.search.optuna import OptunaSearch

    cfg = load_sweep(SWEEPS / "center_loss_dai2019.toml")
    search = OptunaSearch(space=cfg.define_by_run, metric="val_ua", mode="max",
                          sampler=optuna.samplers.TPESampler(seed=0))
    for i in range(6):
        params = search.suggest(f"t{i}")
        assert set(params) >= {"loss_family", "frontend", "lr", "batch_size", "seed"}
        cfg.trial_config(params)
        search.on_trial_complete(f"t{i}", {"val_ua": 0.1 * i, "training_iteration": 1})


def test_with_prepared_and_pickle_keep_everything(tmp_path):
    cfg = parse_sweep(GOOD)
    moved = cfg.with_prepared(tmp_path / "other")
    assert moved.data.prepared == (tmp_path / "other").resolve()
    assert cfg.data.prepared != moved.data.prepared  # the original is untouched
    assert moved.source_text == GOOD and moved.axes() == cfg.axes()
    clone = pickle.loads(pickle.dumps(moved))  # Ray ships the space function to its searcher
    assert clone.source_text == GOOD
    params = _sample(clone, 1)[0]
    assert clone.trial_config(params).data.prepared == moved.data.prepared


def _covering_sweep(num_samples: int) -> SweepConfig:
    return parse_sweep(f"""
[sweep]
name = "c"
num_samples = {num_samples}
cover_choices = true
[data]
prepared = "/x"
[scheduler]
max_epochs = 2
[space]
loss_family = {{ choices = ["cross_entropy", "focal", "bce"] }}
frontend = {{ choices = ["mel", "stft"] }}
lr = {{ low = 1e-4, high = 1e-3, log = true }}
""")


def test_cover_choices_tries_every_combination_when_the_budget_allows():
    points = _covering_sweep(6).covering_points()
    assert len(points) == 6 and {(p["loss_family"], p["frontend"]) for p in points} == {
        (f, fe) for f in ("cross_entropy", "focal", "bce") for fe in ("mel", "stft")}
    assert all(set(p) == {"loss_family", "frontend"} for p in points)  # lr stays with the sampler


def test_cover_choices_cycles_choices_when_combinations_exceed_the_budget():
    points = _covering_sweep(5).covering_points()
    assert points == [{"loss_family": "cross_entropy", "frontend": "mel"}, {"loss_family": "focal", "frontend": "stft"},
                      {"loss_family": "bce", "frontend": "mel"}]


def test_recipe_axes_resolve_by_short_and_dotted_name():
    """The training recipe's keys are sweep axes: short names and augment.* dotted names."""
    from search.definition.space import resolve_axis

    assert resolve_axis("mixup_alpha").path == ("augment", "mixup_alpha")
    assert resolve_axis("schedule").path == ("optim", "schedule") and resolve_axis("schedule").numeric is None
    assert resolve_axis("augment.freq_mask_width").numeric == "int"
    assert resolve_axis("ema_decay").numeric == "float"
    with pytest.raises(ValueError, match="augment has no field 'mixup'"):
        resolve_axis("augment.mixup")
    cfg = load_sweep(SWEEPS / "recipe_emodb.toml")
    assert set(cfg.space["model"].choices) == {"cnn_transformer", "cnn_birnn"}
    seen = {(tc.augment.mixup_alpha, tc.optim.schedule) for tc in (cfg.trial_config(p) for p in _sample(cfg, 12))}
    assert len(seen) > 1  # the axes reach the trials' configs
