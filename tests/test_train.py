"""The training loop on real audio files: determinism, resume, non-finite losses, predict,
and above-chance speaker-independent UA on the real EmoDB clips."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ser_core.config import ConfigError, LossConfig, TrainConfig, load_train_config
from ser_core.corpus import PreparedCorpus
from ser_core.predict import Predictor
from ser_core.train import NonFiniteLossError, fit

TINY_MODEL = {"name": "cnn_transformer", "channels": [8, 16, 16, 16], "d_model": 32, "n_heads": 2,
              "n_layers": 1, "ff_dim": 64}


def tiny_config(prepared: Path, **overrides) -> TrainConfig:
    raw = {"data": {"prepared": str(prepared)}, "model": TINY_MODEL, "frontend": {"n_mels": 40},
           "optim": {"epochs": 2, "batch_size": 32}, "seed": 3}
    raw.update(overrides)
    return TrainConfig.model_validate(raw)


@pytest.fixture(scope="module")
def corpus(synthetic_prepared) -> PreparedCorpus:
    return PreparedCorpus.load(synthetic_prepared)


def test_fit_reports_every_epoch_and_final_metrics(corpus, synthetic_prepared):
    seen = []
    result = fit(tiny_config(synthetic_prepared, loss={"family": "center"}), corpus,
                 on_epoch=lambda r, state: seen.append((r, state())))
    assert [r.epoch for r, _ in seen] == [1, 2]
    assert seen[-1][0].final is result and seen[0][0].final is None
    assert result.epochs_run == 2 and result.best_epoch in (1, 2)
    for value in (result.val.ua, result.test.ua, result.test.wa, result.test.f1_macro):
        assert 0.0 <= value <= 1.0
    n_test = len(corpus.split_indices(0)["test"])
    assert result.test.confusion.sum() == n_test
    assert result.test.confusion.shape == (corpus.num_classes,) * 2
    assert math.isfinite(result.compactness_test) and result.compactness_test > 0
    # the resumable state carries the center loss's own optimizer
    assert seen[-1][1]["center_optimizer"] is not None


def test_same_seed_same_numbers_on_cpu(corpus, synthetic_prepared):
    a = fit(tiny_config(synthetic_prepared), corpus)
    b = fit(tiny_config(synthetic_prepared), corpus)
    assert [h.train_loss for h in a.history] == [h.train_loss for h in b.history]
    assert a.test.ua == b.test.ua
    c = fit(tiny_config(synthetic_prepared, seed=4), corpus)
    assert [h.train_loss for h in c.history] != [h.train_loss for h in a.history]


def test_resume_from_checkpoint_equals_uninterrupted_run(corpus, synthetic_prepared):
    cfg = tiny_config(synthetic_prepared, loss={"family": "center"})
    cfg = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"epochs": 3})})
    states = {}
    full = fit(cfg, corpus, on_epoch=lambda r, state: states.__setitem__(r.epoch, state()))
    resumed = fit(cfg, corpus, resume=states[1])
    assert [h.train_loss for h in resumed.history] == pytest.approx([h.train_loss for h in full.history], rel=1e-6)
    assert resumed.test.ua == full.test.ua


def test_non_finite_loss_stops_the_trial_with_a_clear_error(corpus, synthetic_prepared):
    class Poisoned:
        """The same corpus with one training clip's samples set to inf."""
        def __init__(self, base):
            self.manifest, self.labels, self.sample_rate = base.manifest, base.labels, base.sample_rate
            self.evaluation_split = base.evaluation_split
            self.waveforms = np.array(base.waveforms)
            self.waveforms[base.split_indices(0)["train"][0]] = np.inf

    with pytest.raises((NonFiniteLossError, ValueError), match="non-finite|Non-finite|NaN|nan|inf"):
        fit(tiny_config(synthetic_prepared), Poisoned(corpus))


def test_variable_length_cnn_birnn_trains(corpus, synthetic_prepared):
    assert "valid_samples" in corpus.manifest.columns
    assert corpus.manifest["valid_samples"].min() < corpus.waveforms.shape[1]  # some clips are padded
    cfg = tiny_config(synthetic_prepared, model={"name": "cnn_birnn", "rnn_hidden": 32, "embed_dim": 32},
                      loss={"family": "center", "center_lambda": 0.1})
    result = fit(cfg, corpus)
    assert 0.0 <= result.test.ua <= 1.0


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\nprepared = "x"\n[loss]\nfamily = "center"\ncenter_lambda = -1.0\n')
    with pytest.raises(ConfigError, match=r"loss: .*center_lambda"):
        load_train_config(bad)
    bad.write_text('[data]\nprepared = "x"\n[optim]\nlrr = 0.1\n')
    with pytest.raises(ConfigError, match=r"optim.lrr"):
        load_train_config(bad)
    with pytest.raises(ValueError, match="unknown loss family 'softmaxx'"):
        LossConfig(family="softmaxx")
    with pytest.raises(ValueError, match="gamma is not a parameter of loss family 'center'"):
        LossConfig(family="center", gamma=2.0)


def test_train_and_predict_commands(synthetic_prepared, tmp_path):
    cfg = tmp_path / "train.toml"
    cfg.write_text(f'seed = 1\n[data]\nprepared = "{synthetic_prepared}"\n[frontend]\nkind = "stft"\n'
                   f'[model]\nname = "cnn_transformer"\nchannels = [8, 16, 16, 16]\nd_model = 32\n'
                   f'n_heads = 2\nn_layers = 1\nff_dim = 64\n[optim]\nepochs = 1\n')
    out = tmp_path / "run"
    run = subprocess.run([sys.executable, "-m", "search.cli", "train", str(cfg), "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test_ua"] <= 1 and metrics["epochs_run"] == 1
    manifest = PreparedCorpus.load(synthetic_prepared).manifest
    wavs = [Path(p) for p in manifest.loc[~manifest["augmented"], "path"].head(3)]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    run = subprocess.run([sys.executable, "-m", "search.cli", "predict", str(out / "checkpoint.pt"),
                          *map(str, wavs), str(broken)], capture_output=True, text=True, timeout=300)
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 1 and len(lines) == 4
    labels = set(PreparedCorpus.load(synthetic_prepared).labels)
    for line in lines[:3]:
        path, label, probs = line.split("\t")
        assert label in labels
        assert sum(float(kv.split("=")[1]) for kv in probs.split()) == pytest.approx(1.0, abs=0.01)
    assert lines[3].split("\t")[1] == "ERROR"
    # Predictor in-process agrees with the command line
    pred = Predictor(out / "checkpoint.pt").predict(wavs[:1])[0]
    assert pred.label == lines[0].split("\t")[1]


def test_emodb_speaker_independent_ua_above_chance(emodb_dir, tmp_path):
    """Real speech end to end: prepare EmoDB, train a few epochs, test on unseen speakers."""
    from ser_core.prepare import PrepareOptions, prepare_corpora

    prepared = tmp_path / "emodb"
    prepare_corpora({"emodb": emodb_dir}, prepared,
                    PrepareOptions(segment_seconds=2.0, augment_copies=0), progress=False)
    corpus = PreparedCorpus.load(prepared)
    test_speakers = set(corpus.manifest.loc[corpus.split_indices(0)["test"], "speaker"])
    train_speakers = set(corpus.manifest.loc[corpus.split_indices(0)["train"], "speaker"])
    assert test_speakers and not test_speakers & train_speakers
    torch.set_num_threads(2)
    cfg = TrainConfig.model_validate({
        "data": {"prepared": str(prepared)}, "model": TINY_MODEL, "frontend": {"n_mels": 40},
        "optim": {"epochs": 6, "batch_size": 16, "lr": 2e-3}, "seed": 0,
    })
    result = fit(cfg, corpus)
    chance = 1.0 / corpus.num_classes
    assert result.test.ua > chance + 0.1, f"test UA {result.test.ua:.3f} vs chance {chance:.3f}"


def test_per_batch_spectrograms_equal_the_cached_ones(corpus, synthetic_prepared):
    """Computing spectrograms per batch (for corpora too big to cache) trains the same model."""
    cached = fit(tiny_config(synthetic_prepared, feature_cache="on"), corpus)
    per_batch = fit(tiny_config(synthetic_prepared, feature_cache="off"), corpus)
    assert [h.train_loss for h in per_batch.history] == pytest.approx([h.train_loss for h in cached.history], rel=1e-4)
    assert per_batch.test.ua == pytest.approx(cached.test.ua, abs=0.02)


def test_split_features_cache_is_the_normalised_frontend_output() -> None:
    """The cache is filled batch by batch in one preallocated tensor (a tail batch too) and
    normalised in place; it must equal normalising the frontend's output directly."""
    from ser_core.features import FeatureNormalizer, FrontendConfig, build_frontend
    from ser_core.train import SplitFeatures

    torch.manual_seed(0)
    waves = torch.randn(11, 8000) * 0.1
    frontend = build_frontend(FrontendConfig(kind="mel", n_mels=32))
    normalizer = FeatureNormalizer(32)
    feats = SplitFeatures(waves, frontend, normalizer, batch=4)
    normalizer.fit(feats.raw_batches(None, keep=True))
    feats.build_cache()
    with torch.no_grad():
        direct = normalizer(frontend(waves))
    assert feats.cache.shape == direct.shape
    assert torch.allclose(feats.cache, direct, atol=1e-5)
    idx = torch.tensor([10, 0, 5])
    assert torch.equal(feats[idx], feats.cache[idx])
    # without a kept pass, build_cache computes the batches itself
    again = SplitFeatures(waves, frontend, normalizer, batch=3)
    again.build_cache()
    assert torch.allclose(again.cache, direct, atol=1e-5)


def test_fastpath_switch_decides_which_modules_train(corpus, synthetic_prepared, monkeypatch):
    """fastpath = true swaps ser_core.fastpath's modules in (and keeps freed memory on a CPU);
    false trains the stock modules, which the epoch benchmark's 'stock modules' row relies on."""
    import ser_core.train as train_mod
    from ser_core import fastpath

    trained, allocator = [], []
    real_accelerate = train_mod.accelerate

    def spy(model):
        real_accelerate(model)
        trained.append({type(m) for m in model.modules()})
        return model

    monkeypatch.setattr(train_mod, "accelerate", spy)
    monkeypatch.setattr(train_mod, "keep_freed_memory", lambda: allocator.append(True))
    fit(tiny_config(synthetic_prepared, optim={"epochs": 1, "batch_size": 32}, fastpath=False), corpus)
    assert trained == [] and allocator == []
    fit(tiny_config(synthetic_prepared, optim={"epochs": 1, "batch_size": 32}, device="cpu"), corpus)
    assert allocator == [True]
    assert {fastpath.Dropout, fastpath.TransformerEncoderLayer} <= trained[0]
