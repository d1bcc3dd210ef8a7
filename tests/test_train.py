"""The training loop on real audio files: determinism, resume, non-finite losses, predict,
and above-chance speaker-independent UA on the real EmoDB clips."""
from __future__ import annotations

import json
import math
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


def test_final_evaluation_reuses_the_best_epochs_validation_pass(corpus, synthetic_prepared, monkeypatch):
    """The best epoch's validation outputs are the final validation figures: the final
    evaluation runs only the test pass. A resume whose best epoch is in the checkpoint has no
    outputs kept and runs validation again, to the same figures."""
    import ser_core.train.evaluation as evaluation

    passes: list[int] = []  # which split each pass read (by its features object)
    predict = evaluation.predict  # every pass, validation (run.py) and final (evaluation.py), calls it here

    def counted(model, loss_fn, x, *args, **kwargs):
        passes.append(id(x))
        return predict(model, loss_fn, x, *args, **kwargs)

    monkeypatch.setattr(evaluation, "predict", counted)
    cfg = tiny_config(synthetic_prepared, loss={"family": "center"})
    cfg = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"epochs": 3})})
    states = {}
    full = fit(cfg, corpus, on_epoch=lambda r, state: states.__setitem__(r.epoch, state()))
    val, test = passes[0], passes[-1]
    assert passes == [val, val, val, test] and val != test  # one validation pass per epoch, test once
    best = full.history[full.best_epoch - 1]
    assert (full.val.ua, full.val.wa) == (best.val_ua, best.val_wa)

    passes.clear()
    resumed = fit(cfg, corpus, resume=states[2])
    again = passes[:-1]  # epoch 3's validation, and validation once more if the best epoch was before it
    assert len(again) == (2 if full.best_epoch < 3 else 1) and len(set(again)) == 1
    assert (resumed.best_epoch, resumed.val.ua, resumed.test.ua) == (full.best_epoch, full.val.ua, full.test.ua)
    assert resumed.compactness_val == pytest.approx(full.compactness_val, rel=1e-6)


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
    import ser_core.train.run as run_mod
    import ser_core.train.setup as setup_mod
    from ser_core import fastpath

    trained, allocator = [], []
    real_accelerate = run_mod.accelerate

    def spy(model):
        real_accelerate(model)
        trained.append({type(m) for m in model.modules()})
        return model

    monkeypatch.setattr(run_mod, "accelerate", spy)
    monkeypatch.setattr(setup_mod, "keep_freed_memory", lambda: allocator.append(True))
    fit(tiny_config(synthetic_prepared, optim={"epochs": 1, "batch_size": 32}, fastpath=False), corpus)
    assert trained == [] and allocator == []
    fit(tiny_config(synthetic_prepared, optim={"epochs": 1, "batch_size": 32}, device="cpu"), corpus)
    assert allocator == [True]
    assert {fastpath.Dropout, fastpath.TransformerEncoderLayer} <= trained[0]


# ---------------------------------------------------------------- the training recipe (issue 14)

# fit's numbers before the recipe axes existed (HEAD cb900d3, torch 2.13.0+cpu, AVX2, one thread,
# this file's synthetic corpus): with every recipe setting at its default, fit must give them
# bit for bit, because the recipe code must not run, draw a random number or reorder an op.
BEFORE_RECIPE = {
    "ce_transformer": {"train_loss": [2.147775173187256, 1.9866830110549927],
                       "val_loss": [2.025895595550537, 1.9672949314117432],
                       "val_ua": [0.15625, 0.1875], "test_ua": 0.1328125, "best_epoch": 2},
    "center_birnn": {"train_loss": [2.0889151096343994, 2.0657031536102295],
                     "val_loss": [2.079623222351074, 2.070739507675171],
                     "val_ua": [0.125, 0.125], "test_ua": 0.125, "best_epoch": 1},
}


def test_recipe_off_trains_bit_identically_to_before(corpus, synthetic_prepared):
    configs = {
        "ce_transformer": tiny_config(synthetic_prepared, device="cpu"),
        "center_birnn": tiny_config(synthetic_prepared, device="cpu",
                                    model={"name": "cnn_birnn", "rnn_hidden": 32, "embed_dim": 32},
                                    loss={"family": "center", "center_lambda": 0.1}),
    }
    reference_machine = (torch.__version__.startswith("2.13.0")
                         and torch.backends.cpu.get_cpu_capability() == "AVX2")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the recorded run's thread count: reductions split the same way
    try:
        for name, cfg in configs.items():
            r = fit(cfg, corpus)
            got = {"train_loss": [h.train_loss for h in r.history], "val_loss": [h.val_loss for h in r.history],
                   "val_ua": [h.val_ua for h in r.history], "test_ua": r.test.ua, "best_epoch": r.best_epoch}
            if reference_machine:
                assert got == BEFORE_RECIPE[name], name
            else:  # other kernels round differently; the same maths stays within float noise
                assert got["train_loss"] == pytest.approx(BEFORE_RECIPE[name]["train_loss"], rel=1e-4), name
    finally:
        torch.set_num_threads(threads)


def _recipe_config(prepared, epochs: int = 3, **optim):
    return tiny_config(
        prepared, device="cpu", loss={"family": "center", "center_lambda": 0.05},
        optim={"epochs": epochs, "batch_size": 32, "schedule": "cosine", "warmup_epochs": 0.5,
               "label_smoothing": 0.1, "class_weights": "balanced", "ema_decay": 0.9, **optim},
        augment={"freq_masks": 2, "freq_mask_width": 6, "time_masks": 2, "time_mask_width": 10,
                 "time_shift": 0.2, "time_crop": 0.2, "mixup_alpha": 0.4})


def test_augmentation_sees_training_batches_only(corpus, synthetic_prepared, monkeypatch):
    """Every training step's batch goes through the augmentation; validation and test never do."""
    from ser_core.augment import BatchAugment
    from ser_core.schedules import steps_per_epoch

    seen = []
    real = BatchAugment.__call__

    def spy(self, x, lengths, y, num_classes, gen, paired=None):
        seen.append(len(x))
        out = real(self, x, lengths, y, num_classes, gen, paired)
        assert not torch.equal(out[0], x) and out[2] is not None  # the batch is changed, mixup targets made
        return out

    monkeypatch.setattr(BatchAugment, "__call__", spy)
    cfg = _recipe_config(synthetic_prepared, epochs=2)
    fit(cfg, corpus)
    n_train = len(corpus.split_indices(0)["train"])
    bs = cfg.optim.batch_size
    per_epoch = n_train - (n_train % bs if n_train % bs < 2 else 0)
    assert len(seen) == 2 * steps_per_epoch(n_train, bs)
    assert sum(seen) == 2 * per_epoch  # training rows only: no validation or test batch


def test_recipe_resume_equals_uninterrupted_run(corpus, synthetic_prepared):
    """The checkpoint carries the schedule's and the moving average's state: a run resumed after
    epoch 1 gives the uninterrupted run's numbers; the lr follows the warm-up + cosine formula."""
    from ser_core.schedules import steps_per_epoch

    cfg = _recipe_config(synthetic_prepared)
    states = {}
    full = fit(cfg, corpus, on_epoch=lambda r, state: states.__setitem__(r.epoch, state()))
    assert states[1]["scheduler"] is not None and states[1]["ema"] is not None
    spe = steps_per_epoch(len(corpus.split_indices(0)["train"]), cfg.optim.batch_size)
    n, w, k = 3 * spe, round(0.5 * spe), spe  # after epoch 1 the next step is k = spe
    want = cfg.optim.lr * (1 + math.cos(math.pi * (k - w) / (n - w))) / 2
    assert states[1]["optimizer"]["param_groups"][0]["lr"] == pytest.approx(want, rel=1e-9)
    resumed = fit(cfg, corpus, resume=states[1])
    assert [h.train_loss for h in resumed.history] == pytest.approx([h.train_loss for h in full.history], rel=1e-6)
    assert [h.val_ua for h in resumed.history] == [h.val_ua for h in full.history]
    assert resumed.test.ua == full.test.ua
    for key, value in full.checkpoint["model"].items():
        assert torch.allclose(resumed.checkpoint["model"][key].float(), value.float(), atol=1e-6), key
    # a checkpoint without the scheduler's state cannot resume a scheduled run silently
    with pytest.raises(ValueError, match="no scheduler state"):
        fit(cfg, corpus, resume={**states[1], "scheduler": None})


def test_ema_weights_are_what_validation_and_test_use(corpus, synthetic_prepared, monkeypatch):
    """With optim.ema_decay the validated, selected and saved weights are the moving average's,
    not the live model's; evaluating those weights reproduces the reported validation UA. The
    selection is made to keep epoch 1 of 2 (only the first score improves), so that the saved
    weights being the best epoch's average, not the last one's, is something this test can see."""
    import ser_core.train.evaluation as evaluation
    import ser_core.train.loop as loop
    from ser_core.train import build_model, predict, prepare_trial
    from ser_core.metrics import classification_report
    from ser_core.losses import build_loss

    first_only = iter([True])
    monkeypatch.setattr(loop, "improves", lambda score, best: next(first_only, False))
    final_evaluation, last_ema = evaluation.final_evaluation, {}

    def keeping_the_last_average(*, model, **rest):
        # the weights validated last (the average after the last epoch), before the best replace them
        last_ema.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        return final_evaluation(model=model, **rest)

    monkeypatch.setattr(evaluation, "final_evaluation", keeping_the_last_average)
    cfg = tiny_config(synthetic_prepared, device="cpu", optim={"epochs": 2, "batch_size": 32, "ema_decay": 0.8})
    seen = []
    result = fit(cfg, corpus, on_epoch=lambda r, state: seen.append((r, state())))
    assert result.best_epoch == 1 < len(seen) == 2  # the best epoch is not the last
    data = prepare_trial(cfg, corpus)
    model = build_model(cfg.model, data.frontend_cfg.n_features, data.num_classes)
    loss_fn = build_loss("cross_entropy", num_classes=data.num_classes, embed_dim=model.embed_dim)
    for report, state in seen[:-1]:  # the last epoch's live model was replaced by the best weights
        ema = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
        assert set(ema) == set(state["model"])
        assert any(not torch.equal(ema[k], state["model"][k]) for k in ema)  # the average is not the model
        model.load_state_dict(ema)
        _, pred, _ = predict(model, loss_fn, data.feats["val"], data.ys["val"], data.lens["val"], 256,
                              data.autocast, data.class_mask)
        assert classification_report(data.ys["val"].numpy(), pred.numpy(), data.num_classes).ua == report.val_ua
        if state["best_epoch"] == report.epoch:
            assert all(torch.equal(state["best_state"][k], ema[k]) for k in ema)
    best_epoch_state = seen[result.best_epoch - 1][1]
    ema_best = {k.removeprefix("module."): v for k, v in best_epoch_state["ema"].items() if k.startswith("module.")}
    assert set(last_ema) == set(ema_best)
    assert any(not torch.equal(last_ema[k], ema_best[k]) for k in ema_best)  # so the next line tells them apart
    assert all(torch.equal(result.checkpoint["model"][k], ema_best[k]) for k in ema_best)


def test_a_tie_in_validation_ua_keeps_the_earlier_epoch(corpus, synthetic_prepared, monkeypatch):
    """Epochs 1 and 3 reach the same UA by two confusion matrices, equal but for the last bit
    (as 0.5208333333333333 and 0.5208333333333334 did in a demo trial): the first stays the best,
    and its weights are what the test split sees."""
    import dataclasses

    import ser_core.train.run as run  # where an epoch's validation is scored

    scores = iter([0.5208333333333333, 0.5, 0.5208333333333334])
    report = run.classification_report

    def epoch_scores(y_true, y_pred, num_classes):
        real = report(y_true, y_pred, num_classes)
        return dataclasses.replace(real, ua=next(scores, real.ua))  # the epochs' three validations, then real

    monkeypatch.setattr(run, "classification_report", epoch_scores)
    cfg = tiny_config(synthetic_prepared)
    cfg = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"epochs": 3})})
    result = fit(cfg, corpus)
    assert [h.best_val_ua for h in result.history] == [0.5208333333333333] * 3
    assert result.best_epoch == 1
