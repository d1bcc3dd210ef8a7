"""The ssl frontend (issue 22): a frozen self-supervised encoder's hidden layers, averaged over each
clip's speech, cached once per corpus and summed with learnt weights by the classifier. No weights
can be downloaded here, so every test runs on a tiny randomly initialised WavLM built from a config
and saved to disk, loaded by the same code that loads microsoft/wavlm-base-plus."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from pydantic import ValidationError

try:
    import transformers
except ImportError:
    if os.environ.get("CI"):  # CI installs the [ssl] extra with .[test]: it must be there
        raise
    pytest.skip("transformers not installed: pip install 'ser-search[ssl]'", allow_module_level=True)

from ser_core.config import TrainConfig  # noqa: E402
from config_helpers import train_config  # noqa: E402
from ser_core.corpus import PreparedCorpus  # noqa: E402
from ser_core.feature_cache import corpus_identity  # noqa: E402
from ser_core.features import FrontendConfig, num_frames  # noqa: E402
from ser_core.train import fit, spectrograms  # noqa: E402

LAYERS, DIM = 3, 32  # the tiny encoder: the input embedding and 2 transformer layers, 32 wide


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A randomly initialised WavLM (seeded) with its feature extractor, as `save_pretrained` writes
    any Hugging Face encoder: what frontend.ssl_model points at on a machine without internet."""
    path = tmp_path_factory.mktemp("tiny-wavlm")
    torch.manual_seed(0)
    config = transformers.WavLMConfig(hidden_size=DIM, num_hidden_layers=LAYERS - 1, num_attention_heads=2,
                                      intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                                      num_conv_pos_embedding_groups=2)
    transformers.WavLMModel(config).save_pretrained(path)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(path)
    return str(path)


def _config(prepared, encoder, **over) -> TrainConfig:
    raw = {"data": {"prepared": str(prepared), "fold": 0}, "device": "cpu",
           "frontend": {"kind": "ssl", "ssl_model": encoder}, "model": {"name": "mlp", "embed_dim": 32},
           "normalization": "speaker", "optim": {"name": "adam", "lr": 0.003, "epochs": 3, "class_weights": "balanced"}}
    return train_config(raw, **over)


def _by_hand(encoder, wave: np.ndarray) -> np.ndarray:
    """Every hidden layer's mean over the frames of one clip, run through transformers directly."""
    model = transformers.AutoModel.from_pretrained(encoder).eval()
    extractor = transformers.AutoFeatureExtractor.from_pretrained(encoder)
    inputs = extractor(wave, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        hidden = model(inputs["input_values"], output_hidden_states=True).hidden_states
    return torch.stack(hidden, dim=1)[0].mean(dim=1).numpy()


def test_cached_layer_means_are_the_encoders_own_states_over_each_clips_speech(small_prepared, encoder_dir, tmp_path):
    corpus = PreparedCorpus.load(small_prepared)
    cfg = _config(small_prepared, encoder_dir, feature_cache_dir=str(tmp_path / "cache"))
    assert cfg.frontend.n_features == LAYERS * DIM and cfg.frontend.layers == LAYERS
    assert num_frames(cfg.frontend, corpus.waveforms.shape[1]) == 1
    cached = spectrograms.shared_utterance_vectors(cfg, corpus, cfg.frontend, corpus_identity(corpus))
    assert cached.shape == (len(corpus.waveforms), LAYERS * DIM, 1)
    speech = corpus.manifest["valid_samples"].to_numpy()
    padded = [i for i in range(len(speech)) if speech[i] < corpus.waveforms.shape[1]]
    assert padded  # some clips end in padding: it must not reach the encoder
    for row in (padded[0], padded[-1], 5):
        want = _by_hand(encoder_dir, np.asarray(corpus.waveforms[row, :speech[row]], dtype=np.float32))
        np.testing.assert_allclose(cached[row, :, 0].reshape(LAYERS, DIM), want, rtol=1e-4, atol=1e-5)
    # the padded whole row gives other states: the speech-only cut is what makes them equal
    whole = _by_hand(encoder_dir, np.asarray(corpus.waveforms[padded[0]], dtype=np.float32))
    assert not np.allclose(cached[padded[0], :, 0].reshape(LAYERS, DIM), whole, atol=1e-4)
    # a second trial maps the same file: nothing is computed again
    files = sorted((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 1
    again = spectrograms.shared_utterance_vectors(cfg, corpus, cfg.frontend, corpus_identity(corpus))
    np.testing.assert_array_equal(again, cached)
    assert sorted((tmp_path / "cache").rglob("*.npy")) == files


def test_other_weights_under_the_same_path_are_another_cache_entry(small_prepared, encoder_dir, tmp_path):
    """The cache keys a local encoder by its files' digests: retrained weights written over the same
    directory must not be served the old encoder's features."""
    import shutil

    from ser_core.feature_cache import ssl_cache_key
    from ser_core.features.ssl import encoder_fingerprint

    copy = tmp_path / "encoder"
    shutil.copytree(encoder_dir, copy)
    corpus = PreparedCorpus.load(small_prepared)
    before = ssl_cache_key(str(copy), 16000, corpus_identity(corpus), "valid_samples")
    model = transformers.AutoModel.from_pretrained(copy)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    model.save_pretrained(copy)
    encoder_fingerprint.cache_clear()
    after = ssl_cache_key(str(copy), 16000, corpus_identity(corpus), "valid_samples")
    assert before["frontend"]["encoder"] != after["frontend"]["encoder"]
    # the weights are hashed whole: one value changed mid-file is another encoder
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    encoder_fingerprint.cache_clear()
    changed = ssl_cache_key(str(copy), 16000, corpus_identity(corpus), "valid_samples")
    assert changed["frontend"]["encoder"] != after["frontend"]["encoder"]
    # hf download's timestamped metadata (a hidden folder) is not the encoder: copies share one entry
    meta = copy / ".cache" / "huggingface" / "download"
    meta.mkdir(parents=True)
    (meta / "model.safetensors.metadata").write_text("downloaded at 2026-12-07T05:00:00")
    encoder_fingerprint.cache_clear()
    assert ssl_cache_key(str(copy), 16000, corpus_identity(corpus), "valid_samples") == changed


def test_a_relative_encoder_directory_is_read_beside_the_config_file(small_prepared, encoder_dir, tmp_path,
                                                                      monkeypatch):
    """Trials run in their own working directories: a local encoder named relative to the train or
    sweep file is resolved against that file's directory, as data.prepared is."""
    import shutil

    from search.definition import load_sweep
    from ser_core.config import load_train_config

    here = tmp_path / "experiment"
    shutil.copytree(encoder_dir, here / "encoders" / "tiny")
    monkeypatch.chdir(tmp_path)  # not the file's directory
    train = here / "train.toml"
    train.write_text(f'[data]\nprepared = "{small_prepared}"\n[frontend]\nkind = "ssl"\n'
                     f'ssl_model = "encoders/tiny"\n[model]\nname = "linear"\n')
    assert load_train_config(train).frontend.ssl_model == str((here / "encoders" / "tiny").resolve())
    sweep = here / "s.toml"
    sweep.write_text(f"""
[sweep]
name = "rel"
num_samples = 1

[data]
prepared = "{small_prepared}"

[scheduler]
max_epochs = 1

[space]
frontend = "ssl"

[base]
model = {{ name = "linear" }}
frontend = {{ ssl_model = "./encoders/tiny" }}
""")
    assert load_sweep(sweep).base["frontend"]["ssl_model"] == str((here / "encoders" / "tiny").resolve())


def test_layer_weights_are_positive_sum_to_one_and_make_superbs_weighted_sum():
    from ser_core.models import LayerWeightedSum, MLPClassifier

    head = LayerWeightedSum(LAYERS, DIM)
    with torch.no_grad():
        head.logits.copy_(torch.tensor([0.3, -1.0, 2.0]))
    w = head.weights().detach()
    assert (w > 0).all() and float(w.sum()) == pytest.approx(1.0, abs=1e-6)
    x = torch.randn(4, LAYERS * DIM)
    want = sum(w[l] * x[:, l * DIM:(l + 1) * DIM] for l in range(LAYERS))
    torch.testing.assert_close(head(x), want)
    # the MLP on an encoder's layers sums them first: its first linear layer reads DIM inputs
    model = MLPClassifier(LAYERS * DIM, 4, hidden=16, layers=LAYERS)
    assert model.hidden[1].in_features == DIM
    assert float(model.layer_sum.weights().detach().sum()) == pytest.approx(1.0)


def test_ssl_trains_end_to_end_learns_its_layer_weights_and_resumes_exactly(small_prepared, encoder_dir, tmp_path):
    corpus = PreparedCorpus.load(small_prepared)
    cfg = _config(small_prepared, encoder_dir, feature_cache_dir=str(tmp_path / "cache"), optim={"epochs": 6})
    states = {}
    result = fit(cfg, corpus, on_epoch=lambda r, state: states.__setitem__(r.epoch, state()))
    assert result.epochs_run == 6 and np.isfinite([h.train_loss for h in result.history]).all()
    weights = torch.softmax(result.checkpoint["model"]["layer_sum.logits"], dim=0)
    assert float(weights.sum()) == pytest.approx(1.0) and not torch.allclose(weights, torch.full((LAYERS,), 1 / LAYERS))
    assert result.checkpoint["frontend"]["kind"] == "ssl" and result.checkpoint["frontend"]["ssl_model"] == encoder_dir
    assert 0 <= result.test.ua <= 1

    # killed after epoch 3 and resumed from its checkpoint: the same epochs 4-6, the same weights
    resumed = fit(cfg, corpus, resume=states[3])
    assert [h.train_loss for h in resumed.history] == pytest.approx([h.train_loss for h in result.history], rel=1e-6)
    assert [h.val_ua for h in resumed.history] == [h.val_ua for h in result.history]
    for k, v in result.checkpoint["model"].items():
        torch.testing.assert_close(resumed.checkpoint["model"][k], v, rtol=1e-5, atol=1e-6)


def test_predict_runs_the_encoder_on_new_audio_as_training_saw_its_clips(small_prepared, encoder_dir):
    from ser_core.predict import Predictor
    from ser_core.train import trained_split_features

    corpus = PreparedCorpus.load(small_prepared)
    cfg = _config(small_prepared, encoder_dir, normalization="global", optim={"epochs": 3})
    result = fit(cfg, corpus)
    predictor = Predictor(result.checkpoint | {"preprocessing": corpus.protocol})
    rows = corpus.evaluation_split(0, **cfg.data.protocol_args()).rows["test"][:6]
    got = [p.label for p in predictor.predict(list(corpus.manifest["path"].to_numpy()[rows]))]
    feats, _ = trained_split_features(cfg, corpus, "test")
    with torch.no_grad():
        logits, _ = predictor.model(feats[torch.arange(len(rows))])
    assert got == [corpus.labels[int(i)] for i in logits.argmax(dim=1)]


def test_an_encoder_that_cannot_be_found_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ValidationError) as err:
        FrontendConfig(kind="ssl", ssl_model=str(tmp_path / "no-such-encoder"))
    assert "cannot load the SSL encoder" in str(err.value) and "there is no directory" in str(err.value)
    with pytest.raises(ValidationError) as err:
        FrontendConfig(kind="ssl", ssl_model="microsoft/wavlm-base-plus")
    message = str(err.value)
    assert "not in the Hugging Face cache" in message and "local copy" in message and str(tmp_path / "hf") in message
    with pytest.raises(ValidationError, match="needs frontend.ssl_model"):
        FrontendConfig(kind="ssl")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValidationError, match="does not hold a loadable encoder"):
        FrontendConfig(kind="ssl", ssl_model=str(empty))
    # an encoder named for a sweep that also tries mel is no error, and no part of mel's identity
    assert FrontendConfig.model_validate({"kind": "mel", "ssl_model": str(empty)}) == FrontendConfig(kind="mel")


def test_without_the_extra_the_error_names_it(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now raises ImportError
    with pytest.raises(ValidationError, match=r"needs the transformers package: pip install 'ser-search\[ssl\]'"):
        FrontendConfig(kind="ssl", ssl_model=str(tmp_path / "never-loaded"))
    FrontendConfig(kind="mel")  # the other frontends need nothing


def test_train_and_sweep_exit_2_naming_the_encoder_before_any_work(tmp_path, synthetic_prepared, capsys, monkeypatch):
    import ray

    from search.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = tmp_path / "wavlm-base-plus"
    train = tmp_path / "train.toml"
    train.write_text(f'[data]\nprepared = "{synthetic_prepared}"\n[frontend]\nkind = "ssl"\n'
                     f'ssl_model = "{missing}"\n[model]\nname = "mlp"\n')
    assert main(["train", str(train), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"cannot load the SSL encoder '{missing}'" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()

    sweep = tmp_path / "s.toml"
    sweep.write_text(f"""
[sweep]
name = "ssl"
num_samples = 2

[data]
prepared = "{synthetic_prepared}"

[scheduler]
max_epochs = 2

[space]
frontend = "ssl"
lr = {{ low = 0.0001, high = 0.01, log = true }}

[base]
model = {{ name = "mlp" }}
frontend = {{ ssl_model = "{missing}" }}
""")
    assert main(["sweep", str(sweep), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "cannot load the SSL encoder" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists() and not ray.is_initialized()


def test_an_ssl_sweep_records_its_encoder_and_ranks_beside_a_mel_frontend(small_prepared, encoder_dir, tmp_path):
    import ray

    from search.analysis.leaderboard import leaderboard
    from search.definition import load_sweep
    from search.driver import run_sweep
    from search.results import read_trials

    path = tmp_path / "s.toml"
    path.write_text(f"""
[sweep]
name = "ssl"
num_samples = 2
max_concurrent_trials = 2
seed = 1
cover_choices = true

[data]
prepared = "{small_prepared}"

[scheduler]
max_epochs = 2
grace_period = 2

[resources]
cpus_per_trial = 1

[space]
frontend = {{ choices = ["ssl", "egemaps"] }}
lr = 0.003
seed = 0

[base]
device = "cpu"
model = {{ name = "mlp", embed_dim = 16 }}
frontend = {{ ssl_model = "{encoder_dir}" }}
""")
    try:
        outcome = run_sweep(load_sweep(path), str(tmp_path / "results"), num_cpus=2, echo=False)
    finally:
        ray.shutdown()
    trials = read_trials(outcome.sweep_dir)
    assert len(trials) == 2 and set(trials["status"]) == {"completed"}, trials[["status", "error"]]
    frontends = {json.loads(c)["frontend"]["kind"]: json.loads(c)["frontend"] for c in trials["config_json"]}
    assert frontends["ssl"]["ssl_model"] == encoder_dir and frontends["egemaps"].get("ssl_model") is None
    board = leaderboard(trials)
    assert set(board["frontend"]) == {"ssl", "egemaps"} and board["test_ua_mean"].notna().all()
