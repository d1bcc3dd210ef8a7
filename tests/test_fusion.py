"""A spectrogram model fused with the clip's openSMILE functionals (model.fuse_functionals, issue 22):
the functionals reach the model standardised like the functionals frontend's, mixup pairs them with
the spectrograms, the model trains, resumes, is costed and predicts from its checkpoint, and
configurations without it keep their config_key."""
from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch
from pydantic import ValidationError

try:
    import opensmile  # noqa: F401
except ImportError:
    if os.environ.get("CI"):  # CI installs the [baselines] extra with .[test]: it must be there
        raise
    pytest.skip("openSMILE not installed: pip install 'ser-search[baselines]'", allow_module_level=True)

from search.results.schema import config_key  # noqa: E402
from ser_core.augment import mixup  # noqa: E402
from ser_core.config import TrainConfig  # noqa: E402
from config_helpers import train_config  # noqa: E402
from ser_core.corpus import PreparedCorpus  # noqa: E402
from ser_core.cost import measure_cost  # noqa: E402
from ser_core.models import FusedClassifier  # noqa: E402
from ser_core.predict import Predictor  # noqa: E402
from ser_core.train import fit, prepare_trial, trained_split_inputs  # noqa: E402
from ser_core.train.setup import build_model  # noqa: E402

TINY = {"name": "cnn_transformer", "channels": [8, 16, 16, 16], "d_model": 32, "n_heads": 2, "n_layers": 1,
        "ff_dim": 64}


def _config(prepared, **over) -> TrainConfig:
    raw = {"data": {"prepared": str(prepared), "fold": 0}, "device": "cpu", "normalization": "speaker",
           "model": {**TINY, "fuse_functionals": "egemaps", "fuse_hidden": 16},
           "optim": {"lr": 3e-3, "epochs": 3, "batch_size": 16}}
    return train_config(raw, **over)


def test_configurations_without_fusion_keep_their_config_key():
    """Keys computed by the code before model.fuse_functionals existed (commit 905a2d9)."""
    cfg = TrainConfig.model_validate({"data": {"prepared": "p", "fold": 0}, "model": {"name": "cnn_birnn", "dropout": 0.3},
                                      "frontend": {"kind": "mel"}})
    assert config_key(cfg, "pid") == "e3ee2c6ea10f"
    assert config_key(TrainConfig.model_validate({"data": {"prepared": "p"}})) == "e2aeaee14fd2"
    fused = cfg.model_copy(update={"model": cfg.model.model_copy(update={"fuse_functionals": "egemaps"})})
    assert config_key(fused, "pid") != "e3ee2c6ea10f"


@pytest.mark.parametrize("model, frontend", [({"name": "linear"}, {"kind": "egemaps"}), ({"name": "mlp"}, {"kind": "mel"})])
def test_fusing_into_a_model_that_reads_one_vector_per_clip_is_refused_naming_the_key(model, frontend):
    with pytest.raises(ValidationError, match="model.fuse_functionals joins functionals"):
        TrainConfig.model_validate({"data": {"prepared": "p"}, "model": {**model, "fuse_functionals": "egemaps"},
                                    "frontend": frontend})


def test_the_fused_model_reads_both_inputs():
    model = build_model(TrainConfig.model_validate({"data": {"prepared": "p"}, "model": {**TINY, "fuse_functionals": "compare",
                                                                                       "fuse_hidden": 8}}).model,
                        64, 5)
    assert isinstance(model, FusedClassifier) and model.n_functionals == 6373
    model.eval()
    x, u = torch.randn(3, 64, 50), torch.randn(3, 6373, 1)
    logits, z = model(x, None, u)
    assert logits.shape == (3, 5) and z.shape == (3, model.deep.embed_dim + 8) and model.embed_dim == z.shape[1]
    assert not torch.allclose(model(x, None, u + 1.0)[0], logits)  # the functionals change the answer
    assert not torch.allclose(model(x + 1.0, None, u)[0], logits)  # and so do the spectrograms
    with pytest.raises(ValueError, match="functionals beside its spectrogram"):
        model(x)


def test_mixup_mixes_the_paired_input_with_the_same_pairs():
    x = torch.randn(8, 4, 6)
    paired = x[:, :, :1].clone()  # the same clips' second input: mixed alike, it stays x's first frame
    y = torch.arange(8) % 3
    mixed, _, _ = mixup(x, None, y, 3, 0.4, torch.Generator().manual_seed(3), paired)
    assert not torch.equal(paired, x[:, :, :1])
    assert torch.allclose(paired, mixed[:, :, :1])


def test_a_fused_model_trains_on_speaker_standardised_functionals_resumes_and_predicts(small_prepared, tmp_path):
    corpus = PreparedCorpus.load(small_prepared)
    cfg = _config(small_prepared, augment={"mixup_alpha": 0.2})
    data = prepare_trial(cfg, corpus)
    assert data.functionals is not None and set(data.functionals) == {"train", "val", "test"}
    # each training speaker's functionals are standardised with that speaker's own statistics
    train_rows = data.protocol.rows["train"]
    u = data.functionals["train"][torch.arange(len(train_rows))][:, :, 0]
    for spk in np.unique(corpus.manifest["speaker"].to_numpy()[train_rows]):
        mine = torch.as_tensor(corpus.manifest["speaker"].to_numpy()[train_rows] == spk)
        assert u[mine].mean(dim=0).abs().max() < 1e-4

    checkpoints = []
    result = fit(cfg, corpus, on_epoch=lambda report, checkpoint: checkpoints.append(checkpoint()))
    assert np.isfinite(result.test.ua) and len(result.history) == 3
    assert "functionals_normalizer" in result.checkpoint

    # resumed after epoch 2: epoch 3 as the uninterrupted run trained it
    resumed = fit(cfg, corpus, resume=checkpoints[1])
    assert [h.train_loss for h in resumed.history] == pytest.approx([h.train_loss for h in result.history])

    # the checkpoint predicts a file from its spectrogram and its functionals
    row = int(data.protocol.rows["test"][0])
    wav = tmp_path / "clip.wav"
    sf.write(wav, np.asarray(corpus.waveforms[row, :int(corpus.manifest["valid_samples"].iloc[row])]),
             corpus.sample_rate, subtype="FLOAT")
    wav2 = tmp_path / "clip2.wav"
    row2 = int(data.protocol.rows["test"][1])
    sf.write(wav2, np.asarray(corpus.waveforms[row2, :int(corpus.manifest["valid_samples"].iloc[row2])]),
             corpus.sample_rate, subtype="FLOAT")
    predictions = Predictor(result.checkpoint).predict([wav, wav2])
    assert all(p.error is None and abs(sum(p.probabilities.values()) - 1) < 1e-5 for p in predictions)

    feats, lengths, functionals = trained_split_inputs(cfg, corpus, "test")
    assert functionals is not None and len(functionals) == len(feats)
    # the dashboard's embedding view of the checkpoint: the fused embedding of every test clip
    from search.dashboard.embed import test_embeddings  # noqa: PLC0415

    torch.save(result.checkpoint, tmp_path / "best.pt")
    z, labels, _, n_test = test_embeddings(tmp_path / "best.pt")
    assert z.shape == (n_test, TINY["channels"][-1] + TINY["d_model"] + 16) and len(labels) == n_test


def test_a_fused_model_is_costed_with_its_functionals_branch():
    cfg = TrainConfig.model_validate({"data": {"prepared": "p"}, "model": {**TINY, "fuse_functionals": "egemaps",
                                                                           "fuse_hidden": 16}})
    plain = measure_cost(cfg.model.model_copy(update={"fuse_functionals": "off"}), 64, 4, 100, runs=1, warmup=0)
    fused = measure_cost(cfg.model, 64, 4, 100, runs=1, warmup=0)
    # the functionals branch (88 -> 16) and the wider classifier (embedding + 16 -> 4, in place of the
    # spectrogram model's own, which the fused model drops)
    assert fused.params - plain.params == 88 * 16 + 16 + 16 * 4
    assert fused.macs - plain.macs == 88 * 16 + 16 * 4
