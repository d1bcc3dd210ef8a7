"""Cross-validated selection (`[data] folds`): one trial trains once per fold in lockstep and
reports the folds' mean validation UA each epoch; each fold is the single-fold run of the same
seed, the best epoch is the best mean, each fold's test is read at that epoch, a resumed trial
continues exactly, and a real sweep writes the per-fold columns."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import ray
import torch
from pydantic import ValidationError
from scipy import stats

from ser_core.config import DataConfig, TrainConfig
from ser_core.corpus import PreparedCorpus
from ser_core.fastpath import accelerate
from ser_core.losses import build_loss
from ser_core.metrics import classification_report
from ser_core.train import FoldsResult, build_model, fit, predict, prepare_trial

from sweep_helpers import write_sweep

TINY_MODEL = {"name": "cnn_transformer", "channels": [8, 16, 16, 16], "d_model": 32, "n_heads": 2,
              "n_layers": 1, "ff_dim": 64}
EPOCHS = 2
SMALL = {"max_train_clips": 64}  # a quarter of the training rows: the proofs need steps, not accuracy


def tiny_config(prepared, epochs: int = EPOCHS, data: dict | None = None, **overrides) -> TrainConfig:
    raw = {"data": {"prepared": str(prepared), **SMALL, **(data or {})}, "model": TINY_MODEL, "frontend": {"n_mels": 32},
           "optim": {"epochs": epochs, "batch_size": 32}, "seed": 3, "device": "cpu"}
    raw.update(overrides)
    return TrainConfig.model_validate(raw)


@pytest.fixture(scope="module")
def corpus(synthetic_prepared) -> PreparedCorpus:
    return PreparedCorpus.load(synthetic_prepared)


# ------------------------------------------------------------------------------- config


def test_folds_validation_names_the_problem():
    d = DataConfig(prepared="p", folds=[2, 0])
    assert d.fold == 2  # fold becomes the first listed, so a dumped config validates again
    assert DataConfig.model_validate(d.model_dump()) == d
    assert DataConfig(prepared="p", folds=[1, 2], fold=1).folds == [1, 2]  # the same fold: no conflict
    for bad, message in [
        ({"folds": [1, 1]}, "lists a fold twice"),
        ({"folds": [1]}, "at least 2"),
        ({"folds": [0, -1]}, "greater than or equal to 0"),
        ({"folds": [0, 1], "fold": 2}, r"data.fold = 2 conflicts with data.folds = \[0, 1\]"),
        ({"folds": [0, 1], "leave_out": "emodb"}, "within-corpus protocol"),
        ({"folds": [0, 1], "train_corpora": ["a"], "eval_corpora": ["b"]}, "within-corpus protocol"),
    ]:
        with pytest.raises(ValidationError, match=message):
            DataConfig(prepared="p", **bad)


def test_a_fold_the_corpus_lacks_fails_before_training(corpus, synthetic_prepared):
    seen = []
    with pytest.raises(ValueError, match="fold 5 out of range"):
        fit(tiny_config(synthetic_prepared, data={"folds": [0, 5]}), corpus, on_epoch=lambda r, s: seen.append(r))
    assert seen == []


# ---------------------------------------------------------------- the folds' mean, exactly


def _single_fold_runs(cfg_for, corpus, folds):
    """Each fold alone, one epoch longer than the cross-validated trial (constant lr: the first
    EPOCHS epochs are the same), so the weights after every one of those epochs are the live
    model's (the last epoch's would already hold the best weights)."""
    runs = {}
    for f in folds:
        states = {}
        result = fit(cfg_for(f), corpus, on_epoch=lambda r, state, states=states: states.__setitem__(r.epoch, state()))
        runs[f] = (result.history[:EPOCHS], states)
    return runs


def _test_ua_of(cfg, corpus, state) -> float:
    """Test UA of given weights, evaluated as fit's final evaluation does (fastpath modules,
    channels-last)."""
    data = prepare_trial(cfg, corpus)
    model = build_model(cfg.model, data.frontend_cfg.n_features, data.num_classes).to(
        data.device, memory_format=torch.channels_last)
    if cfg.fastpath:
        accelerate(model)
    model.load_state_dict(state)
    loss_fn = build_loss(cfg.loss.family, num_classes=data.num_classes, embed_dim=model.embed_dim,
                         active_classes=data.class_mask.cpu())
    _, pred, _ = predict(model, loss_fn, data.feats["test"], data.ys["test"], data.lens["test"], 256,
                          data.autocast, data.class_mask)
    return classification_report(data.ys["test"].numpy(), pred.numpy(), data.num_classes).ua


def test_two_fold_trial_reports_the_mean_of_two_single_fold_fits(corpus, synthetic_prepared):
    folds = [0, 1]
    cfg = tiny_config(synthetic_prepared, data={"folds": folds})
    reports = []
    result = fit(cfg, corpus, on_epoch=lambda r, state: reports.append(r))
    assert isinstance(result, FoldsResult) and result.folds == (0, 1)
    single = _single_fold_runs(lambda f: tiny_config(synthetic_prepared, epochs=EPOCHS + 1, data={"fold": f}),
                               corpus, folds)

    # every epoch: each fold's validation UA is its single-fold run's, and what is reported is the mean
    assert [r.epoch for r in reports] == list(range(1, EPOCHS + 1))
    for r in reports:
        own = [single[f][0][r.epoch - 1] for f in folds]
        assert r.val_ua_folds == tuple(h.val_ua for h in own)
        assert r.val_ua == pytest.approx(np.mean([h.val_ua for h in own]), abs=1e-12)
        assert r.val_wa == pytest.approx(np.mean([h.val_wa for h in own]), abs=1e-12)
        assert r.train_loss == pytest.approx(np.mean([h.train_loss for h in own]), abs=1e-6)
        assert r.val_loss == pytest.approx(np.mean([h.val_loss for h in own]), abs=1e-6)
    means = [r.val_ua for r in reports]
    assert [r.best_val_ua for r in reports] == list(np.maximum.accumulate(means))

    # one best epoch for all folds: the first with the best mean (not each fold's own best)
    best = int(np.argmax(means)) + 1
    assert result.best_epoch == best and all(r.best_epoch == best for r in result.per_fold)
    for f, fold_result in zip(folds, result.per_fold):
        states = single[f][1]
        want = states[best]["model"]
        assert all(torch.equal(fold_result.checkpoint["model"][k], want[k]) for k in want), f
        assert fold_result.val.ua == single[f][0][best - 1].val_ua
        assert fold_result.test.ua == _test_ua_of(tiny_config(synthetic_prepared, data={"fold": f}), corpus, want)

    # the trial's figures are the folds' means, with Nadeau & Bengio's corrected t interval over the
    # folds: se = sd * sqrt(1/k + n_test/n_train), n_train counting recorded clips, not noisy copies
    test = [r.test.ua for r in result.per_fold]
    assert result.test.ua == pytest.approx(np.mean(test), abs=1e-12)
    assert result.val.ua == pytest.approx(means[best - 1], abs=1e-12)
    copies = corpus.manifest["augmented"].to_numpy(dtype=bool)
    assert copies.any()  # the synthetic corpus has noisy copies: the ratio must not count them
    ratio = np.mean([len(corpus.split_indices(f)["test"]) / (~copies[corpus.split_indices(f)["train"]]).sum()
                     for f in folds])
    half = stats.t.ppf(0.975, 1) * np.std(test, ddof=1) * math.sqrt(1 / 2 + ratio)
    m = result.metrics()
    assert m["test_ua"] == result.test.ua
    assert (m["test_ua_ci95_low"], m["test_ua_ci95_high"]) == pytest.approx((np.mean(test) - half, np.mean(test) + half))
    per = result.per_fold
    assert result.fold_metrics() == {"folds": [0, 1], "val_ua_folds": [r.val.ua for r in per],
                                     "test_ua_folds": test, "test_wa_folds": [r.test.wa for r in per],
                                     "test_f1_macro_folds": [r.test.f1_macro for r in per],
                                     "test_precision_macro_folds": [r.test.precision_macro for r in per],
                                     "test_recall_macro_folds": [r.test.recall_macro for r in per],
                                     "compactness_test_folds": [r.compactness_test for r in per]}
    n_test = sum(len(corpus.split_indices(f)["test"]) for f in folds)
    assert result.test.confusion.sum() == n_test  # the folds' disjoint test sets, summed


def test_resumed_multi_fold_trial_continues_exactly(corpus, synthetic_prepared):
    cfg = tiny_config(synthetic_prepared, data={"folds": [1, 2]}, loss={"family": "center", "center_lambda": 0.1},
                      optim={"epochs": 3, "batch_size": 32, "schedule": "cosine", "ema_decay": 0.9},
                      augment={"mixup_alpha": 0.4, "time_masks": 1})
    states = {}
    full = fit(cfg, corpus, on_epoch=lambda r, state: states.__setitem__(r.epoch, state()))
    assert states[1]["folds"] == [1, 2] and len(states[1]["fold_states"]) == 2
    resumed = fit(cfg, corpus, resume=states[1])
    assert [h.train_loss for h in resumed.history] == pytest.approx([h.train_loss for h in full.history], rel=1e-6)
    assert [h.val_ua_folds for h in resumed.history] == [h.val_ua_folds for h in full.history]
    assert resumed.best_epoch == full.best_epoch
    assert [r.test.ua for r in resumed.per_fold] == [r.test.ua for r in full.per_fold]
    for a, b in zip(resumed.per_fold, full.per_fold):
        for key, value in b.checkpoint["model"].items():
            assert torch.allclose(a.checkpoint["model"][key].float(), value.float(), atol=1e-6), key
    other = tiny_config(synthetic_prepared, data={"folds": [0, 2]})
    with pytest.raises(ValueError, match=r"checkpoint is of folds \[1, 2\]"):
        fit(other, corpus, resume=states[1])


# -------------------------------------------------------------------------- a real sweep


@pytest.mark.parametrize("design, folds, val_folds, test_folds, exposed", [
    ("folds = [0, 1]", [0, 1], [1, 2], [0, 1], True),  # fold 1 validates fold 0's run and is tested
    ("folds = [1, 2]\ntest_folds = [0]", [1, 2], [1, 2], [0], False),  # nested: fold 0 held out
])
def test_sweep_with_folds_writes_the_per_fold_columns(synthetic_prepared, tmp_path, design, folds, val_folds,
                                                      test_folds, exposed):
    from search.definition import load_sweep
    from search.results import read_epochs, read_trials
    from search.driver import run_sweep

    path = write_sweep(tmp_path / "s.toml", synthetic_prepared, name="cv", num_samples=2, max_epochs=2,
                       families=("cross_entropy",), max_train_clips=64)
    path.write_text(path.read_text().replace("max_train_clips = 64", f"max_train_clips = 64\n{design}"))
    sweep = load_sweep(path)
    assert sweep.data.folds == folds
    try:
        run_sweep(sweep, str(tmp_path / "results"), num_cpus=2, echo=False)
    finally:
        ray.shutdown()
    trials = read_trials(tmp_path / "results" / "cv")
    epochs = read_epochs(tmp_path / "results" / "cv")
    done = trials[trials["status"] == "completed"]
    assert len(done) >= 1
    for _, t in done.iterrows():
        assert list(t["folds"]) == folds
        # the design, recorded: a cross-validated trial has no single fold unless one is held out
        assert list(t["val_folds"]) == val_folds and list(t["test_folds"]) == test_folds
        assert bool(t["selection_exposed"]) is exposed
        assert (t["fold"] == test_folds[0]) if len(test_folds) == 1 else pd.isna(t["fold"])
        per_fold = list(t["test_ua_folds"])
        assert len(per_fold) == 2 and len(t["val_ua_folds"]) == 2
        assert t["test_ua"] == pytest.approx(np.mean(per_fold), abs=1e-12)
        assert t["val_ua"] == pytest.approx(np.mean(t["val_ua_folds"]), abs=1e-12)
        if not exposed:  # one held-out test set: k models on it, no fold-level interval
            assert pd.isna(t["test_ua_ci95_low"]) and len(t["test_wa_folds"]) == 2
        elif len(set(per_fold)) == 1:  # no spread over the folds: no interval (FoldsResult.test_ua_interval)
            assert pd.isna(t["test_ua_ci95_low"]) and pd.isna(t["test_ua_ci95_high"])
        else:  # k test sets: an interval over them
            assert t["test_ua_ci95_low"] <= t["test_ua"] <= t["test_ua_ci95_high"]
        mine = epochs[epochs["trial_id"] == t["trial_id"]]
        # what ASHA and TPE saw each epoch is the mean; the row's val_ua is the best of those
        assert t["val_ua"] == pytest.approx(mine["val_ua"].max(), abs=1e-12)
        assert int(t["best_epoch"]) == int(mine.loc[mine["val_ua"].idxmax(), "epoch"])
    no_spread = sum(len(set(f)) == 1 for f in done["test_ua_folds"])
    if exposed:
        assert pd.isna(trials["test_ua_ci95_low"]).sum() == (trials["status"] != "completed").sum() + no_spread
