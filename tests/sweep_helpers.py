"""Small sweep files for the Ray tests: real Ray, real Optuna, tiny data and model."""
from __future__ import annotations

from pathlib import Path

TINY_BASE = """
[base]
device = "cpu"
model = { name = "cnn_transformer", channels = [8, 16, 16, 16], d_model = 32, n_heads = 2, n_layers = 1, ff_dim = 64 }
frontend = { n_mels = 32 }
"""


def write_sweep(path: Path, prepared: Path, *, name: str = "t", num_samples: int = 6, max_epochs: int = 3,
                families: tuple[str, ...] = ("cross_entropy", "center", "bce"), concurrent: int = 2,
                max_train_clips: int = 96) -> Path:
    fams = ", ".join(f'"{f}"' for f in families)
    text = f"""
[sweep]
name = "{name}"
num_samples = {num_samples}
max_concurrent_trials = {concurrent}
seed = 1
cover_choices = true

[data]
prepared = "{prepared}"
max_train_clips = {max_train_clips}

[scheduler]
max_epochs = {max_epochs}
grace_period = 1
reduction_factor = 2

[resources]
cpus_per_trial = 1

[space]
loss_family = {{ choices = [{fams}] }}
frontend = {{ choices = ["mel", "stft"] }}
lr = {{ low = 5e-4, high = 3e-3, log = true }}
batch_size = 32
seed = 0
""" + ("""center_lambda = { low = 1e-3, high = 0.3, log = true }
center_lr = { low = 0.1, high = 0.9, log = true }
""" if "center" in families else "") + TINY_BASE
    path.write_text(text)
    return path


def failed_trials_by_tune_id(study) -> tuple[set[str], list]:
    """An ended study's FAIL trials: the Tune ids of those Ray Tune ran (each has a Parquet row),
    and those a killed driver asked Optuna for but never handed to Tune (no Tune id, no row: the
    kill fell between Optuna's ask and suggest() returning). Both carry the reason they failed."""
    from optuna.trial import TrialState

    from search.driver.study import FAILED_ATTR, TUNE_ID_ATTR
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert all(FAILED_ATTR in t.user_attrs for t in failed), [t.user_attrs for t in failed]
    never_ran = [t for t in failed if not t.user_attrs.get(TUNE_ID_ATTR)]
    assert all("before handing it to Ray Tune" in t.user_attrs[FAILED_ATTR] for t in never_ran)
    return {t.user_attrs[TUNE_ID_ATTR] for t in failed if t.user_attrs.get(TUNE_ID_ATTR)}, never_ran
