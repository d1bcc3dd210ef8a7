"""`--resume` runs a sweep as it started: a sweep file whose validated settings changed is refused,
naming the changed keys; comments and formatting are no change; the prepared corpus counts by its
identity. No Ray: the comparison runs before Ray starts (the refusal through the command line,
with a real stored Tune experiment, is in test_sweep_resume.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from search.definition import SweepConfigError, load_sweep
from search.results import ResultsStore
from search.driver import SweepError
from search.driver.run_record import check_resume_unchanged, record_start
from sweep_helpers import write_sweep


def _started(tmp_path: Path, prepared: Path, prepared_id: str | None = "abc123"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_sweep(tmp_path / "s.toml", prepared, name="s", max_epochs=3)
    sweep = load_sweep(path)
    store = ResultsStore(str(tmp_path / "results"), "s")
    record_start(store, sweep, prepared_id)
    return path, store


def test_unchanged_file_with_new_comments_and_layout_resumes(tmp_path, synthetic_prepared):
    path, store = _started(tmp_path, synthetic_prepared)
    original = path.read_text()
    edited = ("# resumed after the driver died\n" + original.replace("max_epochs = 3", "max_epochs   =   3  # same")
              .replace("[base]", "[base] # shared by all trials"))
    path.write_text(edited)
    check_resume_unchanged(store, load_sweep(path), "abc123")  # no error
    assert (Path(store.root) / "sweep.toml").read_text() == original  # never rewritten


def test_changed_settings_are_refused_naming_each_dotted_key(tmp_path, synthetic_prepared):
    path, store = _started(tmp_path, synthetic_prepared)
    text = path.read_text()
    path.write_text(text.replace("max_epochs = 3", "max_epochs = 5").replace("d_model = 32", "d_model = 64")
                    .replace("high = 3e-3", "high = 4e-3"))
    with pytest.raises(SweepError) as e:
        check_resume_unchanged(store, load_sweep(path), "abc123")
    message = str(e.value)
    for key in ("scheduler.max_epochs", "base.model.d_model", "space.lr.high"):
        assert key in message
    assert "base.model.n_heads" not in message and "sweep.seed" not in message


def test_explicit_default_in_base_is_no_change(tmp_path, synthetic_prepared):
    from ser_core.config import TrainConfig

    path, store = _started(tmp_path, synthetic_prepared)
    default_wd = TrainConfig.model_fields["optim"].default_factory().weight_decay
    path.write_text(path.read_text().replace('device = "cpu"', f'device = "cpu"\noptim = {{ weight_decay = {default_wd} }}'))
    check_resume_unchanged(store, load_sweep(path), "abc123")


def test_prepared_corpus_counts_by_identity(tmp_path, synthetic_prepared):
    path, store = _started(tmp_path, synthetic_prepared)
    copy = tmp_path / "copy-of-prepared"
    shutil.copytree(synthetic_prepared, copy)
    moved = load_sweep(path).with_prepared(copy)
    check_resume_unchanged(store, moved, "abc123")  # another path to the same preparation: resumes
    with pytest.raises(SweepError, match="data.prepared"):
        check_resume_unchanged(store, moved, "fff999")  # another preparation
    # without an identity on either side, the path decides
    _, bare = _started(tmp_path / "bare", synthetic_prepared, prepared_id=None)
    with pytest.raises(SweepError, match="data.prepared"):
        check_resume_unchanged(bare, moved, None)
    check_resume_unchanged(bare, load_sweep(path), None)


def test_optuna_storage_setting_is_validated_and_compared(tmp_path, synthetic_prepared):
    path, store = _started(tmp_path, synthetic_prepared)
    sweep = load_sweep(path)
    elsewhere = sweep.with_optuna_storage("postgresql://ser:secret@db.example/optuna")
    with pytest.raises(SweepError) as e:
        check_resume_unchanged(store, elsewhere, "abc123")
    assert "sweep.optuna_storage" in str(e.value) and "secret" not in str(e.value)
    for bad in ("not a url", "sqlite:///:memory:", "redis://host/0"):
        with pytest.raises(SweepConfigError, match="optuna_storage|--optuna-storage"):
            sweep.with_optuna_storage(bad)
    # a relative SQLite file in a sweep file is relative to the file, like data.prepared
    path.write_text(path.read_text().replace("cover_choices = true", 'cover_choices = true\noptuna_storage = "sqlite:///studies/o.db"'))
    assert load_sweep(path).sweep.optuna_storage == f"sqlite:///{(tmp_path / 'studies' / 'o.db').resolve()}"
    settings = elsewhere.settings()
    assert settings["sweep.optuna_storage"] == "postgresql://ser:***@db.example/optuna"


def test_overrides_the_sweep_ran_with_are_what_a_resume_compares(tmp_path, synthetic_prepared):
    """The demo (or any caller) may run a sweep file with a shorter budget: sweep.toml is the file,
    sweep.json what ran. The same override resumes; the bare file does not."""
    path = write_sweep(tmp_path / "s.toml", synthetic_prepared, name="s", max_epochs=3)
    sweep = load_sweep(path)
    short = sweep.model_copy(update={"scheduler": sweep.scheduler.model_copy(update={"max_epochs": 1})})
    store = ResultsStore(str(tmp_path / "results"), "s")
    record_start(store, short, "abc123")
    check_resume_unchanged(store, short, "abc123")
    with pytest.raises(SweepError, match="scheduler.max_epochs"):
        check_resume_unchanged(store, sweep, "abc123")
