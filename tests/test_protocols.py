"""Cross-corpus and leave-one-corpus-out protocols on the real EmoDB clips prepared together
with the synthetic corpus: which rows each subset gets, shared classes, speaker independence,
normalisation from the training corpora only, and training/CLI end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ser_core.config import ConfigError, DataConfig, TrainConfig
from ser_core.corpus import PreparedCorpus
from ser_core.features import FeatureNormalizer, build_frontend, num_frames
from ser_core.predict import Predictor
from ser_core.protocols import ProtocolError, resolve_corpora
from ser_core.train import fit

TINY_MODEL = {"name": "cnn_transformer", "channels": [8, 16, 16, 16], "d_model": 32, "n_heads": 2,
              "n_layers": 1, "ff_dim": 64}
EMODB_CLASSES = {"neutral", "happy", "sad", "angry", "fear", "disgust"}  # boredom is not in the label set


@pytest.fixture(scope="module")
def mixed(mixed_prepared) -> PreparedCorpus:
    return PreparedCorpus.load(mixed_prepared)


def _corpora_of(c: PreparedCorpus, rows: np.ndarray) -> set[str]:
    return set(c.manifest["corpus"].to_numpy()[rows])


def _labels_of(c: PreparedCorpus, rows: np.ndarray) -> set[str]:
    return set(c.manifest["label"].to_numpy()[rows])


def test_default_protocol_is_the_within_corpus_fold_split(mixed):
    for fold in range(mixed.n_folds):
        split = mixed.evaluation_split(fold)
        assert not split.cross_corpus and split.dropped == {}
        assert {k: v.tolist() for k, v in split.rows.items()} == \
            {k: v.tolist() for k, v in mixed.split_indices(fold).items()}


def test_train_synthetic_test_emodb(mixed):
    split = mixed.evaluation_split(0, train_corpora=["synthetic"], eval_corpora=["emodb"])
    m = mixed.manifest
    assert split.cross_corpus and split.train_corpora == ("synthetic",) and split.eval_corpora == ("emodb",)
    assert _corpora_of(mixed, split.rows["train"]) == {"synthetic"}
    assert _corpora_of(mixed, split.rows["val"]) == {"synthetic"}   # model selection never sees EmoDB
    assert _corpora_of(mixed, split.rows["test"]) == {"emodb"}
    # every original EmoDB clip of a shared class is tested, whatever its fold
    emodb = m[(m["corpus"] == "emodb") & ~m["augmented"]]
    assert sorted(split.rows["test"].tolist()) == sorted(emodb.index.tolist())
    # evaluation on the shared classes only; the dropped ones are named with the reason
    assert set(split.classes) == EMODB_CLASSES
    assert split.dropped == {"calm": "only in the training corpora", "surprise": "only in the training corpora"}
    for name in ("train", "val", "test"):
        assert _labels_of(mixed, split.rows[name]) <= EMODB_CLASSES
    # validation = the training corpus's validation fold, originals only; train keeps noisy copies
    assert set(m["fold"].to_numpy()[split.rows["val"]]) == {1}
    assert not m["augmented"].to_numpy()[split.rows["val"]].any()
    assert not m["augmented"].to_numpy()[split.rows["test"]].any()
    assert m["augmented"].to_numpy()[split.rows["train"]].any()
    assert set(m["fold"].to_numpy()[split.rows["train"]]) == {0, 2}  # a train-only corpus also trains on fold 0


def test_leave_one_corpus_out_is_cross_corpus_with_every_other_corpus(mixed):
    for held in mixed.corpora():
        loco = mixed.evaluation_split(1, leave_out=held)
        others = [c for c in mixed.corpora() if c != held]
        explicit = mixed.evaluation_split(1, train_corpora=others, eval_corpora=[held])
        assert loco.eval_corpora == (held,) and loco.train_corpora == tuple(others)
        assert {k: v.tolist() for k, v in loco.rows.items()} == {k: v.tolist() for k, v in explicit.rows.items()}
    held_synthetic = mixed.evaluation_split(0, leave_out="synthetic")
    assert held_synthetic.dropped == {"calm": "only in the evaluation corpora",
                                      "surprise": "only in the evaluation corpora"}


@pytest.mark.parametrize("protocol", [{}, {"leave_out": "emodb"}, {"leave_out": "synthetic"},
                                      {"train_corpora": ["emodb", "synthetic"], "eval_corpora": ["emodb"]}])
def test_speaker_independence_within_and_across_corpora(mixed, protocol):
    speakers = mixed.manifest["speaker"].to_numpy()
    for fold in range(mixed.n_folds):
        rows = mixed.evaluation_split(fold, **protocol).rows
        train, val, test = (set(speakers[rows[k]]) for k in ("train", "val", "test"))
        assert not train & test and not train & val and not val & test, (protocol, fold)


def test_a_corpus_on_both_sides_keeps_its_test_fold_out_of_training(mixed):
    split = mixed.evaluation_split(2, train_corpora=["emodb", "synthetic"], eval_corpora=["emodb"])
    m = mixed.manifest
    test = m.loc[split.rows["test"]]
    assert set(test["corpus"]) == {"emodb"} and set(test["fold"]) == {2}
    train = m.loc[split.rows["train"]]
    assert not ((train["corpus"] == "emodb") & (train["fold"] == 2)).any()
    assert set(train.loc[train["corpus"] == "synthetic", "fold"]) == {1, 2}  # a train-only corpus: all but val fold 0
    assert set(split.classes) == EMODB_CLASSES


def test_protocol_errors_say_what_is_wrong(mixed):
    with pytest.raises(ProtocolError, match=r"'ravdess' is not in the prepared data \(it holds: emodb, synthetic\)"):
        mixed.evaluation_split(0, train_corpora=["ravdess"], eval_corpora=["emodb"])
    with pytest.raises(ProtocolError, match="leave_out cannot be combined"):
        resolve_corpora(["a", "b"], ["a"], None, "b")
    with pytest.raises(ProtocolError, match="at least two corpora"):
        resolve_corpora(["a"], None, None, "a")
    with pytest.raises(ProtocolError, match="out of range"):
        mixed.evaluation_split(3, leave_out="emodb")
    # too few shared classes: train on the angry EmoDB clips only is not expressible, so build it
    m = mixed.manifest.copy()
    m.loc[m["corpus"] == "synthetic", "label_id"] = mixed.labels.index("calm")
    from ser_core.protocols import evaluation_split
    with pytest.raises(ProtocolError, match="share 0 emotion class"):
        evaluation_split(m, mixed.labels, mixed.n_folds, 0, train_corpora=["synthetic"], eval_corpora=["emodb"])


def test_data_config_validates_the_protocol_keys():
    with pytest.raises(ValueError, match="leave_out cannot be combined"):
        DataConfig(prepared=Path("x"), leave_out="emodb", train_corpora=["synthetic"])
    with pytest.raises(ValueError, match="lists a corpus twice"):
        DataConfig(prepared=Path("x"), eval_corpora=["emodb", "emodb"])
    with pytest.raises(ValueError, match="at least 1 item"):
        DataConfig(prepared=Path("x"), train_corpora=[])


def _config(prepared: Path, **data) -> TrainConfig:
    return TrainConfig.model_validate({
        "data": {"prepared": str(prepared), **data}, "model": TINY_MODEL, "frontend": {"n_mels": 32},
        "optim": {"epochs": 2, "batch_size": 32}, "seed": 1, "device": "cpu"})


def test_cross_corpus_fit_scores_shared_classes_with_train_only_statistics(mixed, mixed_prepared):
    cfg = _config(mixed_prepared, train_corpora=["synthetic"], eval_corpora=["emodb"])
    result = fit(cfg, mixed)
    split = mixed.evaluation_split(0, train_corpora=["synthetic"], eval_corpora=["emodb"])
    assert result.train_corpora == ("synthetic",) and result.eval_corpora == ("emodb",)
    assert set(result.classes) == EMODB_CLASSES and set(result.classes_dropped) == {"calm", "surprise"}
    labels = list(result.labels)
    dropped = [labels.index(c) for c in ("calm", "surprise")]
    conf = result.test.confusion
    assert conf.sum() == len(split.rows["test"])            # every EmoDB test clip scored once
    assert conf[dropped, :].sum() == 0 and conf[:, dropped].sum() == 0  # no dropped class, true or predicted
    assert 0.0 <= result.test.ua <= 1.0

    # the normaliser's statistics are those of the synthetic training rows alone
    frontend_cfg = type(cfg.frontend).model_validate({**cfg.frontend.model_dump(), "sample_rate": mixed.sample_rate})
    rows = split.rows["train"]
    with torch.no_grad():
        feats = build_frontend(frontend_cfg)(torch.from_numpy(np.ascontiguousarray(mixed.waveforms[rows])))
    frames = torch.as_tensor([num_frames(frontend_cfg, int(s)) for s in mixed.manifest["valid_samples"].to_numpy()[rows]])
    expected = FeatureNormalizer(feats.shape[1]).fit([(feats, frames)])
    got = result.checkpoint["normalizer"]
    assert torch.allclose(got["mean"].double(), expected.mean.double(), atol=1e-4)
    assert torch.allclose(got["std"].double(), expected.std.double(), rtol=1e-4)

    # the saved model predicts only the classes it was trained on
    predictor = Predictor(result.checkpoint)
    assert set(predictor.classes) == EMODB_CLASSES
    wav = Path(mixed.manifest["path"].iloc[int(split.rows["test"][0])])
    [pred] = predictor.predict([wav])
    assert pred.error is None and pred.label in EMODB_CLASSES and set(pred.probabilities) == EMODB_CLASSES


def test_train_cli_leave_one_corpus_out(mixed_prepared, tmp_path, capsys):
    from search.cli import main

    config = tmp_path / "train.toml"
    config.write_text(f'device = "cpu"\nseed = 0\n[data]\nprepared = "{mixed_prepared}"\n'
                      '[model]\nname = "cnn_transformer"\nchannels = [8, 16, 16, 16]\nd_model = 32\n'
                      'n_heads = 2\nn_layers = 1\nff_dim = 64\n[frontend]\nn_mels = 32\n[optim]\nepochs = 1\n')
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--leave-out", "emodb"]) == 0
    out = capsys.readouterr().out
    assert "train on synthetic, test on emodb" in out and "dropped calm (only in the training corpora)" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["train_corpora"] == ["synthetic"] and metrics["eval_corpora"] == ["emodb"]
    assert set(metrics["classes"]) == EMODB_CLASSES
    # a corpus that is not prepared is a one-line user error
    assert main(["train", str(config), "--train-corpora", "ravdess", "--eval-corpora", "emodb"]) == 2
    assert "ravdess" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        from search.cli import _with_data_overrides
        import argparse
        _with_data_overrides(TrainConfig.model_validate({"data": {"prepared": "x"}}), argparse.Namespace(
            fold=None, train_corpora=["a"], eval_corpora=None, leave_out="b"))


def test_predictions_never_name_a_class_the_protocol_dropped():
    """A model whose logits favour a dropped class still predicts among the used ones."""
    from contextlib import nullcontext

    from torch import nn

    from ser_core.train import predict

    class FavoursCalm(nn.Module):
        def forward(self, x, lengths=None):
            logits = torch.zeros(len(x), 8)
            logits[:, 1] = 10.0           # calm: dropped
            logits[:, 3] = x[:, 0]        # sad: used, below calm
            logits[:, 2] = 1.0 - x[:, 0]  # happy: used
            return logits, torch.zeros(len(x), 4)

    x = torch.tensor([[0.0], [2.0], [0.2]])
    y = torch.tensor([2, 3, 2])
    mask = torch.tensor([True, False, True, True, True, True, True, False])
    _, pred, _ = predict(FavoursCalm(), lambda logits, z, target: logits.sum() * 0, x, y, None, 2,
                          nullcontext, mask)
    assert pred.tolist() == [2, 3, 2]
    _, unmasked, _ = predict(FavoursCalm(), lambda logits, z, target: logits.sum() * 0, x, y, None, 2,
                              nullcontext, torch.ones(8, dtype=torch.bool))
    assert unmasked.tolist() == [1, 1, 1]  # the test above would fail without the mask


def test_a_class_only_in_validation_rows_is_recorded_as_dropped():
    """Cross-corpus: a class that only the validation fold of the training corpus holds is
    neither trained on nor tested, so it is dropped with a reason, not silently."""
    import pandas as pd

    from ser_core.protocols import evaluation_split

    rows = [("a", f, lab) for f in range(3) for lab in (0, 1, 2)] + [("a", 1, 3)]
    rows += [("b", f, lab) for f in range(3) for lab in (0, 1, 2)]
    manifest = pd.DataFrame(rows, columns=["corpus", "fold", "label_id"]).assign(augmented=False)
    split = evaluation_split(manifest, ["neutral", "happy", "sad", "angry"], 3, 0,
                             train_corpora=["a"], eval_corpora=["b"])
    assert split.classes == ("neutral", "happy", "sad")
    assert split.dropped == {"angry": "only in the validation rows (neither trained on nor tested)"}
    assert 3 not in manifest["label_id"].to_numpy()[split.rows["val"]]
