"""A functionals frontend without the optional openSMILE extra (issue 22): a clear error naming the
extra, at validation (a train config, a sweep file, a trial), never a traceback from deep inside.
Runs whether opensmile is installed or not: its absence is simulated."""
from __future__ import annotations

import sys

import pytest
import ray
from pydantic import ValidationError

from ser_core.config import TrainConfig
from ser_core.features import FrontendConfig, build_frontend

EXTRA = "pip install 'ser-search[baselines]'"


@pytest.fixture
def no_opensmile(monkeypatch):
    monkeypatch.setitem(sys.modules, "opensmile", None)  # `import opensmile` now raises ImportError


def test_a_config_asking_for_functionals_names_the_extra(no_opensmile):
    with pytest.raises(ValidationError) as err:
        TrainConfig.model_validate({"data": {"prepared": "/x"}, "frontend": {"kind": "egemaps"},
                                    "model": {"name": "linear"}})
    assert "frontend 'egemaps' needs the openSMILE package" in str(err.value) and EXTRA in str(err.value)
    assert err.value.errors()[0]["loc"] == ("frontend", "kind")
    TrainConfig.model_validate({"data": {"prepared": "/x"}, "frontend": {"kind": "mel"}})  # others need nothing
    with pytest.raises(ImportError, match=r"ser-search\[baselines\]"):
        build_frontend(FrontendConfig.model_construct(kind="compare", sample_rate=16000))


def test_train_and_sweep_exit_2_with_the_message_before_any_work(no_opensmile, tmp_path, synthetic_prepared, capsys):
    from search.cli import main

    train = tmp_path / "train.toml"
    train.write_text(f'[data]\nprepared = "{synthetic_prepared}"\n[frontend]\nkind = "compare"\n'
                     f'[model]\nname = "mlp"\n')
    assert main(["train", str(train), "--out", str(tmp_path / "run")]) == 2
    assert "frontend 'compare' needs the openSMILE package" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()

    sweep = tmp_path / "s.toml"
    sweep.write_text(f"""
[sweep]
name = "baseline"
num_samples = 2

[data]
prepared = "{synthetic_prepared}"

[scheduler]
max_epochs = 2

[space]
frontend = {{ choices = ["egemaps", "compare"] }}

[base]
model = {{ name = "linear" }}
""")
    assert main(["sweep", str(sweep), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "choice 'egemaps' gives an invalid trial" in err and "needs the openSMILE package" in err and EXTRA in err
    assert not (tmp_path / "r").exists() and not ray.is_initialized()
