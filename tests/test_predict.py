"""`ser-search predict` runs the model exactly as the trial's own test-time evaluation did: same
decoding and segment, same normalisation, and each clip's true length in frames (padding masked),
so its probabilities are the evaluation's, to float precision, even on a mostly padded clip."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix

from ser_core.config import TrainConfig
from ser_core.corpus import PreparedCorpus
from ser_core.features import FeatureNormalizer, FrontendConfig, build_frontend
from ser_core.predict import Predictor
from ser_core.prepare import PrepareOptions, prepare_corpora
from ser_core.train import SplitFeatures, build_model, fit
from ser_core.train.split_features import valid_frames

SEGMENT_SECONDS = 4.0  # longer than the synthetic clips: all padded, the short ones mostly


@pytest.fixture(scope="module")
def padded_prepared(synthetic_prepared, tmp_path_factory) -> Path:
    """The session's synthetic WAVs prepared again with a long segment."""
    source = json.loads((synthetic_prepared / "protocol.json").read_text())["corpora"]["synthetic"]
    out = tmp_path_factory.mktemp("padded") / "prepared"
    prepare_corpora({"synthetic": Path(source)}, out,
                    PrepareOptions(segment_seconds=SEGMENT_SECONDS, n_folds=3, augment_copies=0), progress=False)
    return out


def _config(prepared: Path, model: dict) -> TrainConfig:
    return TrainConfig.model_validate({
        "seed": 0, "device": "cpu",
        "data": {"prepared": str(prepared), "fold": 0, "max_train_clips": 64},
        "frontend": {"kind": "mel", "n_mels": 32},
        "model": model,
        "loss": {"family": "cross_entropy"},
        "optim": {"lr": 3e-3, "batch_size": 32, "epochs": 1},
    })


@torch.no_grad()
def _evaluation_probabilities(corpus: PreparedCorpus, rows: np.ndarray, state: dict) -> np.ndarray:
    """The test split as fit's evaluation feeds it to the model (ser_core.train's SplitFeatures and
    valid_frames on the prepared rows), as class probabilities."""
    cfg = TrainConfig.model_validate(state["config"])
    frontend_cfg = FrontendConfig.model_validate(state["frontend"])
    normalizer = FeatureNormalizer(frontend_cfg.n_features)
    normalizer.load_state_dict(state["normalizer"])
    model = build_model(cfg.model, frontend_cfg.n_features, len(state["labels"]))
    model.load_state_dict(state["model"])
    model.eval()
    feats = SplitFeatures(torch.from_numpy(np.ascontiguousarray(corpus.waveforms[rows])),
                          build_frontend(frontend_cfg), normalizer)
    lengths = valid_frames(corpus, rows, frontend_cfg, cfg.variable_length)
    logits, _ = model(feats[torch.arange(len(rows))], lengths)
    return torch.softmax(logits.float(), dim=1).numpy()


@pytest.mark.parametrize("model", [
    {"name": "cnn_transformer", "channels": [8, 16, 16, 16], "d_model": 32, "n_heads": 2, "n_layers": 1, "ff_dim": 64},
    {"name": "cnn_birnn", "channels": [8, 16, 16], "rnn_hidden": 16, "embed_dim": 32},
], ids=["cnn_transformer", "cnn_birnn"])
def test_predict_gives_the_trials_own_test_probabilities(padded_prepared, model):
    corpus = PreparedCorpus.load(padded_prepared)
    result = fit(_config(padded_prepared, model), corpus)
    state = result.checkpoint | {"preprocessing": corpus.protocol}  # as the sweep's best.pt holds it
    test = corpus.evaluation_split(0).rows["test"]

    expected = _evaluation_probabilities(corpus, test, state)
    # the reconstruction is the trial's evaluation: its argmax gives the trial's test confusion
    y = corpus.manifest["label_id"].to_numpy()[test]
    np.testing.assert_array_equal(confusion_matrix(y, expected.argmax(1), labels=range(len(corpus.labels))),
                                  result.test.confusion)

    valid = corpus.manifest["valid_samples"].to_numpy()[test]
    segment = corpus.waveforms.shape[1]
    assert (valid < segment).all() and valid.min() < 0.4 * segment  # all padded, the shortest mostly

    paths = [Path(p) for p in corpus.manifest["path"].to_numpy()[test]]
    predictions = Predictor(state).predict(paths)
    assert [p.path for p in predictions] == paths and all(p.error is None for p in predictions)
    got = np.array([[p.probabilities[label] for label in corpus.labels] for p in predictions])
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert [p.label for p in predictions] == [corpus.labels[i] for i in expected.argmax(1)]

    # one clip alone (no batch neighbours) gives the same numbers
    shortest = int(np.argmin(valid))
    [alone] = Predictor(state).predict([paths[shortest]])
    np.testing.assert_allclose([alone.probabilities[label] for label in corpus.labels], expected[shortest],
                               atol=1e-5, rtol=0)
