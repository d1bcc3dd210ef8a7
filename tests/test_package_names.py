"""ser_core.train and ser_core.losses as packages: every name the single modules had still
resolves where pickles (Ray Tune's snapshots) and callers look for it, a config still pickles,
the loss parameters are declared once, and the layers import what they should and no more."""
from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

# Every public module-level name of ser_core/train.py before it became a package.
OLD_TRAIN_NAMES = ["NonFiniteLossError", "CorpusLike", "EpochReport", "FitResult", "EpochCallback", "resolve_device",
                   "build_model", "seed_everything", "SplitFeatures", "RowFeatures", "keep_on_device", "TrialData",
                   "prepare_trial", "trained_split_features", "fit", "FoldRun", "FoldsResult", "fit_folds",
                   "save_checkpoint", "load_checkpoint"]
# ... and of ser_core/losses.py.
OLD_LOSSES_NAMES = ["LossConfigError", "LossParam", "LossFamily", "CrossEntropyLoss", "FocalLoss", "CenterLoss",
                    "SupConLoss", "TripletLoss", "L1Loss", "SmoothL1Loss", "BCELoss", "LOSS_FAMILIES", "loss_names",
                    "loss_uses_centers", "loss_parameters", "build_loss", "class_balanced_weights"]


@pytest.mark.parametrize("module, names", [("ser_core.train", OLD_TRAIN_NAMES), ("ser_core.losses", OLD_LOSSES_NAMES)])
def test_every_old_name_resolves_on_the_package(module, names):
    import importlib

    pkg = importlib.import_module(module)
    for name in names:
        assert getattr(pkg, name) is not None, name
    assert set(names) <= set(dir(pkg))


def test_old_pickles_of_train_names_load():
    """A pickle written when these lived in ser_core/train.py names ser_core.train.<name>."""
    import ser_core.train as train

    for name in ("fit", "EpochReport", "FitResult", "FoldsResult", "FoldRun"):
        old_stream = f"c{train.__name__}\n{name}\n.".encode()  # protocol 0: a global by module and name
        assert pickle.loads(old_stream) is getattr(train, name)
    report = train.EpochReport(1, 0.5, 0.4, 0.3, 0.3, 1.0, best_val_ua=0.3)  # not nan: nan != nan
    assert pickle.loads(pickle.dumps(report)) == report


def test_a_trial_config_pickles_with_its_generated_loss_fields():
    from ser_core.config import LossConfig, TrainConfig

    cfg = TrainConfig.model_validate({"data": {"prepared": "x"}, "loss": {"family": "center", "center_lambda": 0.1}})
    again = pickle.loads(pickle.dumps(cfg))
    assert again == cfg and type(again.loss) is LossConfig and again.loss.params() == {"center_lambda": 0.1}
    assert (LossConfig.__module__, LossConfig.__qualname__) == ("ser_core.config", "LossConfig")
    assert pickle.loads(pickle.dumps(TrainConfig.model_validate({"data": {"prepared": "x"}}))).loss == LossConfig()


def test_loss_parameters_are_declared_once_on_their_families():
    """The specs' order is the results' column order; the config's fields are the specs."""
    from ser_core.config import LossConfig
    from ser_core.losses import LOSS_FAMILIES, loss_param_specs

    specs = loss_param_specs()
    assert [s.name for s in specs] == ["center_lambda", "center_lr", "gamma", "temperature", "supcon_weight",
                                       "margin", "triplet_weight"]
    assert list(LossConfig.model_fields) == ["family", *(s.name for s in specs)]
    for s in specs:
        assert s.label and s.families
        for family in s.families:
            p = LOSS_FAMILIES[family].params[s.name]
            assert (p.default, p.low, p.high, p.label) == (s.default, s.low, s.high, s.label)
    assert {n for cls in LOSS_FAMILIES.values() for n in cls.params} == {s.name for s in specs}


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, timeout=120)
    return set(out.stdout.split())


def test_ser_core_imports_no_search_ray_or_optuna():
    loaded = _modules_after("import ser_core.train.loop, ser_core.losses, ser_core.predict, ser_core.cost")
    assert not [m for m in loaded if m.split(".")[0] in ("search", "ray", "optuna")]


def test_reading_a_checkpoint_loads_no_training_loop():
    """ser_core.predict and ser_core.cost import the setup and the state, not the loop."""
    loaded = _modules_after("import ser_core.predict, ser_core.cost")
    assert {"ser_core.train.setup", "ser_core.train.state"} <= loaded
    assert not loaded & {"ser_core.train.loop", "ser_core.train.run", "ser_core.train.folds"}
