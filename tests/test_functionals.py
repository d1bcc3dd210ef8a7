"""openSMILE functionals as a frontend (issue 22): the cached functionals are openSMILE's own output,
a linear model trains on them through ser_core with each speaker's own statistics, every loss
family applies, and a real sweep records them. The missing extra: tests/test_functionals_missing.py."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from pydantic import ValidationError

try:
    import opensmile
except ImportError:
    if os.environ.get("CI"):  # CI installs the [baselines] extra with .[test]: it must be there
        raise
    pytest.skip("openSMILE not installed: pip install 'ser-search[baselines]'", allow_module_level=True)

from ser_core.config import TrainConfig  # noqa: E402
from config_helpers import train_config  # noqa: E402
from ser_core.corpus import PreparedCorpus  # noqa: E402
from ser_core.feature_cache import corpus_identity  # noqa: E402
from ser_core.features import FrontendConfig, build_frontend, num_frames  # noqa: E402
from ser_core.train import fit, trained_split_features  # noqa: E402
from ser_core.train import spectrograms  # noqa: E402



def _config(prepared, **over) -> TrainConfig:
    raw = {"data": {"prepared": str(prepared), "fold": 0}, "device": "cpu", "frontend": {"kind": "egemaps"},
           "model": {"name": "linear", "dropout": 0.0}, "normalization": "speaker",
           "optim": {"name": "adam", "lr": 0.01, "weight_decay": 0.003, "epochs": 3, "class_weights": "balanced"}}
    return train_config(raw, **over)


def _write_clip(path, corpus, row) -> np.ndarray:
    """The row's speech (its valid samples), written as a float WAV openSMILE reads back exactly."""
    speech = np.asarray(corpus.waveforms[row, :int(corpus.manifest["valid_samples"].iloc[row])], dtype=np.float32)
    sf.write(path, speech, corpus.sample_rate, subtype="FLOAT")
    return speech


@pytest.mark.parametrize("kind, feature_set, n", [("egemaps", "eGeMAPSv02", 88), ("compare", "ComParE_2016", 6373)])
def test_cached_functionals_are_opensmiles_own_output(small_prepared, tmp_path, monkeypatch, kind, feature_set, n):
    corpus = PreparedCorpus.load(small_prepared)
    cfg = _config(small_prepared, frontend={"kind": kind})
    frontend_cfg = cfg.frontend.model_copy(update={"sample_rate": corpus.sample_rate})
    cached = spectrograms.shared_utterance_vectors(cfg, corpus, frontend_cfg, corpus_identity(corpus))
    assert cached.shape == (len(corpus.manifest), n, 1) and cached.dtype == np.float32

    # a second trial maps the node's file: nothing is extracted again
    def no_extraction(*args, **kwargs):
        raise AssertionError("functionals extracted again instead of read from the cache")

    from ser_core.features import frontends  # where the cache fill's extraction looks clip_functionals up

    monkeypatch.setattr(frontends, "clip_functionals", no_extraction)
    again = spectrograms.shared_utterance_vectors(cfg, corpus, frontend_cfg, corpus_identity(corpus))
    assert isinstance(again, np.memmap) or isinstance(getattr(again, "base", None), np.memmap)

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet[feature_set],
                            feature_level=opensmile.FeatureLevel.Functionals)
    assert len(smile.feature_names) == n
    short = int(corpus.manifest["valid_samples"].to_numpy().argmin())  # the most padding
    for row in (0, short, len(corpus.manifest) - 1):
        wav = tmp_path / f"{kind}-{row}.wav"
        _write_clip(wav, corpus, row)
        reference = smile.process_file(str(wav)).to_numpy(dtype=np.float32)[0]
        np.testing.assert_array_equal(again[row, :, 0], reference)
    # over the speech only: the whole zero-padded segment gives other functionals
    padded = smile.process_signal(np.asarray(corpus.waveforms[short]), corpus.sample_rate).to_numpy(np.float32)[0]
    assert int(corpus.manifest["valid_samples"].iloc[short]) < corpus.waveforms.shape[1]
    assert not np.allclose(again[short, :, 0], padded)


def test_other_rates_are_analysed_at_16k_as_opensmile_resamples_them(small_prepared, tmp_path):
    corpus = PreparedCorpus.load(small_prepared)
    speech = np.asarray(corpus.waveforms[1, :int(corpus.manifest["valid_samples"].iloc[1])], dtype=np.float32)
    import librosa

    wave = librosa.resample(speech, orig_sr=16000, target_sr=22050).astype(np.float32)
    sf.write(tmp_path / "c22k.wav", wave, 22050, subtype="FLOAT")
    frontend = build_frontend(FrontendConfig(kind="egemaps", sample_rate=22050))
    ours = frontend(torch.from_numpy(wave)[None], lengths=torch.tensor([len(wave)]))[0, :, 0].numpy()
    resampled = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                feature_level=opensmile.FeatureLevel.Functionals, sampling_rate=16000,
                                resample=True).process_file(str(tmp_path / "c22k.wav")).to_numpy(np.float32)[0]
    np.testing.assert_array_equal(ours, resampled)
    native = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                             feature_level=opensmile.FeatureLevel.Functionals).process_signal(wave, 22050)
    assert not np.allclose(ours, native.to_numpy(np.float32)[0], rtol=1e-3)
    # without lengths a padded batch row is read up to its last non-zero sample
    padded = torch.zeros(1, len(wave) + 5000)
    padded[0, :len(wave)] = torch.from_numpy(wave)
    np.testing.assert_array_equal(frontend(padded)[0, :, 0].numpy(), ours)


def test_egemaps_linear_trains_end_to_end_with_each_speakers_own_statistics(small_prepared):
    corpus = PreparedCorpus.load(small_prepared)
    cfg = _config(small_prepared, optim={"epochs": 25})
    result = fit(cfg, corpus)
    n_classes = len(corpus.labels)
    assert result.epochs_run == 25 and 1 <= result.best_epoch <= 25
    assert result.checkpoint["model"]["classifier.weight"].shape == (n_classes, 88)
    assert result.checkpoint["frontend"]["kind"] == "egemaps"
    # the synthetic emotions differ in pitch, energy and tempo: functionals separate them well
    chance = 1 / len(result.classes)
    assert result.test.ua > chance + 0.3, result.test.ua

    # each row standardised by ITS speaker's statistics over that speaker's clips in the trial
    feats, lengths = trained_split_features(cfg, corpus, "test")
    assert lengths is None or bool((lengths == 1).all())
    split = corpus.evaluation_split(0, **cfg.data.protocol_args())
    rows = split.rows["test"]
    got = feats[torch.arange(len(rows))][:, :, 0].numpy().astype(np.float64)
    raw = spectrograms.shared_utterance_vectors(cfg, corpus, cfg.frontend, corpus_identity(corpus))[:, :, 0]
    speakers = corpus.manifest["speaker"].astype(str).to_numpy()
    in_trial = np.concatenate(list(split.rows.values()))
    expected = np.empty_like(got)
    for i, row in enumerate(rows):
        own = in_trial[speakers[in_trial] == speakers[row]]
        x = raw[own].astype(np.float64)
        expected[i] = (raw[row] - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-5)
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-4)
    # so each test speaker's functionals have mean 0 and unit variance over its own clips
    for speaker in np.unique(speakers[rows]):
        mine = got[speakers[rows] == speaker]
        assert np.abs(mine.mean(axis=0)).max() < 1e-3
        moving = raw[rows][speakers[rows] == speaker].std(axis=0) > 1e-3
        np.testing.assert_allclose(mine[:, moving].std(axis=0), 1.0, atol=1e-3)
    # global normalisation is another thing: training-split statistics for every speaker
    global_feats, _ = trained_split_features(_config(small_prepared, normalization="global"), corpus, "test")
    assert not np.allclose(global_feats[torch.arange(len(rows))][:, :, 0].numpy(), got, atol=1e-2)


@pytest.mark.parametrize("model", ["linear", "mlp"])
def test_every_loss_family_trains_on_functionals(small_prepared, model):
    from ser_core.losses import loss_names

    corpus = PreparedCorpus.load(small_prepared)
    for family in loss_names():
        cfg = _config(small_prepared, model={"name": model, "embed_dim": 16}, loss={"family": family},
                      optim={"epochs": 1})
        result = fit(cfg, corpus)
        assert np.isfinite(result.history[0].train_loss) and 0 <= result.test.ua <= 1, family


def test_linear_is_one_layer_whose_embedding_is_its_logits():
    from ser_core.models import LinearClassifier

    model = LinearClassifier(88, 7).eval()
    x = torch.randn(5, 88, 1)
    logits, z = model(x)
    torch.testing.assert_close(logits, x[:, :, 0] @ model.classifier.weight.T + model.classifier.bias)
    assert z is logits and model.embed_dim == 7
    assert sum(p.numel() for p in model.parameters()) == 88 * 7 + 7


def test_functionals_need_an_utterance_model_and_give_one_frame():
    cfg = FrontendConfig(kind="compare")
    assert cfg.n_features == 6373 and num_frames(cfg, 48000) == 1
    with pytest.raises(ValidationError, match="model.name must be one of linear, mlp"):
        TrainConfig.model_validate({"data": {"prepared": "/x"}, "frontend": {"kind": "egemaps"}})


def _write_sweep(path, prepared, name: str = "baseline"):
    path.write_text(f"""
[sweep]
name = "{name}"
num_samples = 2
max_concurrent_trials = 2
seed = 1
cover_choices = true

[data]
prepared = "{prepared}"

[scheduler]
max_epochs = 3
grace_period = 3

[resources]
cpus_per_trial = 1

[space]
frontend = "egemaps"
normalization = {{ choices = ["speaker", "global"] }}
class_weights = "balanced"
lr = 0.01
seed = 0

[base]
device = "cpu"
model = {{ name = "linear", dropout = 0.0 }}  # in [base]: the frontend axis is checked against it
optim = {{ name = "adam", weight_decay = 0.003 }}
""")
    return path


def test_a_sweep_over_egemaps_gives_leaderboard_rows(small_prepared, tmp_path):
    import ray

    from search.analysis.leaderboard import leaderboard
    from search.definition import load_sweep
    from search.driver import run_sweep
    from search.results import read_trials

    sweep = load_sweep(_write_sweep(tmp_path / "s.toml", small_prepared))
    try:
        outcome = run_sweep(sweep, str(tmp_path / "results"), num_cpus=2, echo=False)
    finally:
        ray.shutdown()
    trials = read_trials(outcome.sweep_dir)
    assert len(trials) == 2 and set(trials["status"]) == {"completed"}
    assert set(trials["frontend"]) == {"egemaps"} and set(trials["model"]) == {"linear"}
    assert {json.loads(c)["normalization"] for c in trials["config_json"]} == {"speaker", "global"}
    assert trials["test_ua"].between(0, 1).all() and (trials["params"] == 88 * 4 + 4).all()
    board = leaderboard(trials)
    assert len(board) == 2 and set(board["frontend"]) == {"egemaps"}
    assert board["test_ua_mean"].notna().all() and set(board["normalization"]) == {"speaker", "global"}


def test_predict_reads_a_functionals_checkpoint_as_training_saw_its_clips(small_prepared):
    from ser_core.predict import Predictor

    corpus = PreparedCorpus.load(small_prepared)
    cfg = _config(small_prepared, normalization="global", optim={"epochs": 5})
    result = fit(cfg, corpus)
    predictor = Predictor(result.checkpoint | {"preprocessing": corpus.protocol})
    rows = corpus.evaluation_split(0, **cfg.data.protocol_args()).rows["test"][:12]
    paths = list(corpus.manifest["path"].to_numpy()[rows])
    got = [p.label for p in predictor.predict(paths)]
    feats, _ = trained_split_features(cfg, corpus, "test")
    with torch.no_grad():
        logits, _ = predictor.model(feats[torch.arange(len(rows))])
    assert got == [corpus.labels[int(i)] for i in logits.argmax(dim=1)]


def test_the_shipped_baselines_sweep_runs_each_arm_once_on_every_fold():
    from pathlib import Path

    from search.definition import load_sweep

    sweep = load_sweep(Path(__file__).resolve().parents[1] / "search" / "sweeps" / "baselines.toml")
    points = sweep.covering_points()
    assert sweep.sweep.num_samples == len(points) == 4
    assert {(p["frontend"], p["normalization"]) for p in points} == {
        (f, n) for f in ("egemaps", "compare") for n in ("speaker", "global")}
    cfg = sweep.trial_config({**{a: sweep.space[a].candidates()[0] for a in sweep.axes()}, **points[0]})
    assert cfg.model.name == "linear" and cfg.loss.family == "cross_entropy" and cfg.optim.class_weights == "balanced"
    assert cfg.data.folds == [0, 1, 2, 3, 4] and cfg.optim.epochs == sweep.scheduler.grace_period
