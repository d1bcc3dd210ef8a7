"""The node's shared spectrogram cache (ser_core/feature_cache.py) and what fit builds on it:
computed once, shared by concurrent askers, never stale, the same features as computing them in
the trial; the GPU-copy decision as a pure function; per-speaker normalisation."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ser_core.config import TrainConfig
from ser_core.corpus import PreparedCorpus
from ser_core.feature_cache import (cache_dir, cache_key, corpus_identity, key_name,
                                    open_or_build)
from ser_core.features import FeatureNormalizer, FrontendConfig, build_frontend
from ser_core.train import RowFeatures, fit, keep_on_device, prepare_trial, seed_everything

TINY_MODEL = {"name": "cnn_transformer", "channels": [8, 16, 16, 16], "d_model": 32, "n_heads": 2,
              "n_layers": 1, "ff_dim": 64}


def _config(prepared: Path, **overrides) -> TrainConfig:
    raw = {"data": {"prepared": str(prepared)}, "model": TINY_MODEL, "frontend": {"n_mels": 40},
           "optim": {"epochs": 1, "batch_size": 32}, "seed": 3}
    raw.update(overrides)
    return TrainConfig.model_validate(raw)


@pytest.fixture()
def private_prepared(synthetic_prepared, tmp_path) -> Path:
    """A copy of the session's prepared corpus, so this test's cache files are its own."""
    out = tmp_path / "prepared"
    shutil.copytree(synthetic_prepared, out, ignore=shutil.ignore_patterns("feature-cache"))
    return out


# ----------------------------------------------------------------------------- open_or_build


def _fill_counter(log: Path, value: float, delay: float = 0.0):
    def fill(out: np.ndarray) -> None:
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(delay)
        out[:] = value
    return fill


def test_computed_once_then_mapped(tmp_path):
    log = tmp_path / "fills"
    key = {"format": 1, "frontend": {"kind": "mel"}, "corpus": {"prepared_id": "a"}}
    first, built = open_or_build(tmp_path / "c", key, (3, 2, 4), _fill_counter(log, 1.5))
    again, built_again = open_or_build(tmp_path / "c", key, (3, 2, 4), _fill_counter(log, 9.0))
    assert built and not built_again
    assert log.read_text().count("\n") == 1
    assert isinstance(again, np.memmap) and np.all(again == 1.5)
    # a new key is a new file, never the old one's contents
    other, built_other = open_or_build(tmp_path / "c", key | {"frontend": {"kind": "stft"}}, (3, 2, 4),
                                       _fill_counter(log, 2.0))
    assert built_other and np.all(other == 2.0)
    assert len(list((tmp_path / "c").glob("*.npy"))) == 2
    assert not list((tmp_path / "c").glob(".*tmp*"))  # nothing half-written left behind


def test_a_file_that_does_not_match_its_key_is_rebuilt(tmp_path):
    key = {"format": 1, "corpus": {"prepared_id": "b"}}
    open_or_build(tmp_path, key, (2, 2, 2), _fill_counter(tmp_path / "log", 1.0))
    name = key_name(key)
    np.save(tmp_path / f"{name}.npy", np.zeros((5, 2, 2), np.float32))  # wrong shape under the name
    arr, built = open_or_build(tmp_path, key, (2, 2, 2), _fill_counter(tmp_path / "log", 3.0))
    assert built and arr.shape == (2, 2, 2) and np.all(arr == 3.0)
    (tmp_path / f"{name}.json").write_text(json.dumps({"format": 1, "corpus": {"prepared_id": "other"}}))
    arr, built = open_or_build(tmp_path, key, (2, 2, 2), _fill_counter(tmp_path / "log", 4.0))
    assert built and np.all(arr == 4.0)


def _ask(directory: str, log: str, value: float, q) -> None:
    key = {"format": 1, "corpus": {"prepared_id": "concurrent"}}
    arr, built = open_or_build(Path(directory), key, (4, 3, 5), _fill_counter(Path(log), value, delay=1.0))
    q.put((built, float(arr.sum())))


def test_two_processes_asking_at_once_compute_once(tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_ask, args=(str(tmp_path / "c"), str(tmp_path / "log"), v, q)) for v in (1.0, 2.0)]
    for p in procs:
        p.start()
    outcomes = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sorted(b for b, _ in outcomes) == [False, True]  # one computed, the other waited and mapped it
    assert outcomes[0][1] == outcomes[1][1]                 # both read the one finished file
    assert (tmp_path / "log").read_text().count("\n") == 1


def test_a_failed_fill_leaves_no_temporary_file(tmp_path):
    """Whatever fill raises (here a KeyboardInterrupt, as a stopped trial), its GB-sized
    temporary file goes with it, and the next ask computes the file."""
    key = {"format": 1, "corpus": {"prepared_id": "interrupted"}}

    def interrupted(out: np.ndarray) -> None:
        out[0] = 1.0
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        open_or_build(tmp_path, key, (2, 2, 2), interrupted)
    assert not list(tmp_path.glob(".*tmp*")) and not list(tmp_path.glob("*.npy"))
    arr, built = open_or_build(tmp_path, key, (2, 2, 2), _fill_counter(tmp_path / "log", 5.0))
    assert built and np.all(arr == 5.0)


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_next_fill_removes_what_a_killed_process_left(tmp_path):
    """A process killed inside fill runs no `finally`: its temporary files stay. The next fill of
    that file on the same host removes the ones whose process is gone, and only those."""
    import re
    import socket

    key = {"format": 1, "corpus": {"prepared_id": "killed"}}
    name = key_name(key)
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())  # this machine's name as the files spell it
    dead, alive = _dead_pid(), os.getppid()  # the test's parent process outlives the test
    stale = [tmp_path / f".{name}.{host}.{dead}.tmp.npy", tmp_path / f".{name}.{host}.{dead}.tmp.json",
             tmp_path / f".{name}.{dead}.tmp.npy"]  # the last: a name from before hosts were named
    kept = [tmp_path / f".{name}.{host}.{alive}.tmp.npy",          # its process still runs
            tmp_path / f".{name}.other-node.{dead}.tmp.npy",       # another host's pid says nothing here
            tmp_path / f".{key_name({'other': 1})}.{host}.{dead}.tmp.npy"]  # another cache file's
    for f in stale + kept:
        f.write_bytes(b"half-written")
    arr, built = open_or_build(tmp_path, key, (2, 2, 2), _fill_counter(tmp_path / "log", 6.0))
    assert built and np.all(arr == 6.0)
    assert [f.name for f in stale if f.exists()] == []
    assert [f.name for f in kept if f.exists()] == [f.name for f in kept]
    # leftovers beside a finished file (its filler may have seen the killed one not yet reaped):
    # the next ask that maps it removes them
    for f in stale:
        f.write_bytes(b"half-written")
    again, built = open_or_build(tmp_path, key, (2, 2, 2), _fill_counter(tmp_path / "log", 7.0))
    assert not built and np.all(again == 6.0)
    assert [f.name for f in stale if f.exists()] == []
    assert [f.name for f in kept if f.exists()] == [f.name for f in kept]


def _fill_until_killed(directory: str, marker: str) -> None:
    def fill(out: np.ndarray) -> None:
        out[:] = 1.0
        Path(marker).write_text("filling")
        time.sleep(600)
    open_or_build(Path(directory), {"format": 1, "corpus": {"prepared_id": "sigkill"}}, (64, 8, 8), fill)


def test_a_process_killed_inside_fill_leaves_nothing_behind_once_the_next_one_fills(tmp_path):
    """SIGKILL inside fill (how Ray stops a trial's worker): the temporary file stays until the
    next fill, which removes it, even while the killed process is not yet reaped (a zombie)."""
    ctx = mp.get_context("spawn")
    marker = tmp_path / "in-fill"
    proc = ctx.Process(target=_fill_until_killed, args=(str(tmp_path / "c"), str(marker)))
    proc.start()
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the child never reached fill"
        left = list((tmp_path / "c").glob(".*.tmp.npy"))
        assert len(left) == 1 and f".{proc.pid}.tmp.npy" in left[0].name
        proc.kill()
        deadline = time.monotonic() + 30  # dead (a zombie: not joined yet) once its lock is free
        while time.monotonic() < deadline:
            try:
                os.kill(proc.pid, 0)
                stat = Path(f"/proc/{proc.pid}/stat").read_text()
            except (ProcessLookupError, FileNotFoundError):
                break
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.05)
        arr, built = open_or_build(tmp_path / "c", {"format": 1, "corpus": {"prepared_id": "sigkill"}}, (64, 8, 8),
                                   _fill_counter(tmp_path / "log", 2.0))
        assert built and np.all(arr == 2.0)
        assert not list((tmp_path / "c").glob(".*tmp*"))
    finally:
        proc.kill()
        proc.join(timeout=30)


def test_the_key_names_the_frontend_code_and_libraries(tmp_path, monkeypatch):
    """A persistent cache must not serve spectrograms computed by other frontend code: the key
    holds ser_core.features.FEATURES_VERSION and the librosa and torch releases (major.minor)."""
    import librosa

    from ser_core import features

    mel = FrontendConfig(n_mels=40).model_dump(mode="json")
    ident = {"prepared_id": "versions"}
    key = cache_key(mel, ident)
    assert key["code"] == {"features": features.FEATURES_VERSION,
                           "librosa": ".".join(librosa.__version__.split(".")[:2]),
                           "torch": ".".join(torch.__version__.split("+")[0].split(".")[:2])}
    first, built = open_or_build(tmp_path, key, (2, 2, 2), _fill_counter(tmp_path / "log", 1.0))
    assert built

    monkeypatch.setattr(features, "FEATURES_VERSION", features.FEATURES_VERSION + 1)
    bumped = cache_key(mel, ident)
    assert key_name(bumped) != key_name(key)
    arr, built = open_or_build(tmp_path, bumped, (2, 2, 2), _fill_counter(tmp_path / "log", 2.0))
    assert built and np.all(arr == 2.0)  # a miss: computed again, not the old code's file
    monkeypatch.undo()

    assert key_name(cache_key(mel, ident)) == key_name(key)
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    monkeypatch.setattr(torch, "__version__", f"{major}.{minor}.99+other")  # a patch release: the same key
    assert key_name(cache_key(mel, ident)) == key_name(key)
    monkeypatch.setattr(torch, "__version__", f"{major}.{int(minor) + 1}.0")  # another minor: another key
    assert key_name(cache_key(mel, ident)) != key_name(key)
    monkeypatch.setattr(torch, "__version__", f"{major}.{minor}.0")
    monkeypatch.setattr(librosa, "__version__", "0.99.0")
    assert key_name(cache_key(mel, ident)) != key_name(key)


# ----------------------------------------------------------------------------- identity and location


def test_identity_changes_with_the_corpus_and_is_absent_without_one(private_prepared):
    corpus = PreparedCorpus.load(private_prepared)
    ident = corpus_identity(corpus)
    assert ident is not None and ident["prepared_id"] == corpus.prepared_id
    assert corpus_identity(corpus.in_memory()) == ident  # the object-store copy shares the file
    mel = FrontendConfig(n_mels=40).model_dump(mode="json")
    stft = FrontendConfig(kind="stft").model_dump(mode="json")
    assert key_name(cache_key(mel, ident)) != key_name(cache_key(stft, ident))
    # a rewritten waveforms file (same bytes, new mtime) and an edited row each name a new cache
    wav = private_prepared / "waveforms.npy"
    os.utime(wav, ns=(wav.stat().st_atime_ns, wav.stat().st_mtime_ns + 10**9))
    assert corpus_identity(PreparedCorpus.load(private_prepared)) != ident
    edited = corpus.in_memory()
    edited.waveforms[0] *= 0.5
    assert corpus_identity(edited)["rows_digest"] != ident["rows_digest"]

    class Bare:  # handed over without a prepared directory: nothing to key a cache by
        waveforms, manifest = corpus.waveforms, corpus.manifest
    assert corpus_identity(Bare()) is None


def test_cache_dir_prefers_config_then_env_then_a_writable_prepared_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("SER_SEARCH_FEATURE_CACHE", raising=False)
    assert cache_dir(tmp_path) == tmp_path / "feature-cache"
    assert cache_dir(tmp_path, tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.setenv("SER_SEARCH_FEATURE_CACHE", str(tmp_path / "env"))
    assert cache_dir(tmp_path) == tmp_path / "env"
    monkeypatch.delenv("SER_SEARCH_FEATURE_CACHE")
    assert cache_dir(tmp_path / "does-not-exist").name.startswith("ser-search-feature-cache")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        assert cache_dir(ro).name.startswith("ser-search-feature-cache")


# ----------------------------------------------------------------------------- what fit trains on


def test_trial_features_from_the_shared_cache_equal_the_in_trial_ones(private_prepared):
    """Shared raw spectrograms normalised per batch are the features fit computed in the trial
    (feature_cache = "off"), the normaliser's statistics are the same, and a second trial maps
    the file the first one wrote instead of computing it again."""
    corpus = PreparedCorpus.load(private_prepared)
    seed_everything(0)
    own = prepare_trial(_config(private_prepared, feature_cache="off"), corpus)
    timings: dict[str, float] = {}
    shared = prepare_trial(_config(private_prepared), corpus, timings)
    assert isinstance(shared.feats["train"], RowFeatures) and shared.feats["train"].cache is None  # CPU: no copy
    files = sorted((private_prepared / "feature-cache").glob("*.npy"))
    # the raw spectrograms and, beside them, every row's moments (the normaliser's statistics)
    assert sorted(str(np.load(f, mmap_mode="r").dtype) for f in files) == ["float32", "float64"]
    assert "feature_cache" in timings
    torch.testing.assert_close(shared.normalizer.mean, own.normalizer.mean, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(shared.normalizer.std, own.normalizer.std, rtol=1e-6, atol=1e-5)
    for name in ("train", "val", "test"):
        idx = torch.arange(len(own.feats[name]))
        torch.testing.assert_close(shared.feats[name][idx], own.feats[name][idx], rtol=1e-5, atol=1e-4)
    mtimes = [f.stat().st_mtime_ns for f in files]
    prepare_trial(_config(private_prepared), corpus.in_memory())  # the object-store copy of a sweep
    assert [f.stat().st_mtime_ns for f in files] == mtimes  # both mapped, neither computed again
    assert sorted((private_prepared / "feature-cache").glob("*.npy")) == files
    # moments over all frames (variable_length = false) are other numbers under another key
    fixed = prepare_trial(_config(private_prepared, variable_length=False), corpus)
    assert len(list((private_prepared / "feature-cache").glob("*.npy"))) == 3
    assert not torch.allclose(fixed.normalizer.mean, shared.normalizer.mean)


def test_fit_on_the_shared_cache_trains_like_the_per_batch_path(private_prepared):
    corpus = PreparedCorpus.load(private_prepared)
    shared = fit(_config(private_prepared, optim={"epochs": 2, "batch_size": 32}), corpus)
    per_batch = fit(_config(private_prepared, optim={"epochs": 2, "batch_size": 32}, feature_cache="off"), corpus)
    assert [h.train_loss for h in shared.history] == pytest.approx([h.train_loss for h in per_batch.history],
                                                                   rel=1e-4)


def test_keep_on_device_is_a_function_of_free_memory_and_sizes():
    gib = 1024**3
    assert keep_on_device("auto", 1 * gib, "cuda", 8 * gib)          # an eighth of the free memory
    assert not keep_on_device("auto", 3 * gib, "cuda", 8 * gib)      # over the quarter packed trials leave
    assert not keep_on_device("auto", 1, "cuda", None)               # free memory unknown: per batch
    assert keep_on_device("on", 100 * gib, "cuda", 1 * gib)          # forced
    assert not keep_on_device("off", 1, "cuda", 80 * gib)
    assert keep_on_device("auto", gib, "cpu", None) and not keep_on_device("auto", 3 * gib, "cpu", None)
    assert keep_on_device("auto", 2 * gib, "cuda", 16 * gib, share=0.5)


def test_row_features_copied_to_the_device_equal_the_per_batch_ones():
    """The GPU branch (rows copied once, normalised in place) and the mapped branch give the same
    batches; run on the CPU device, which takes the same code path."""
    torch.manual_seed(0)
    raw = torch.randn(20, 6, 9) * 10 + 3
    rows = torch.tensor([3, 7, 1, 19, 4, 0, 11])
    norm = FeatureNormalizer(6).fit([raw[rows]])
    mapped = RowFeatures(raw, rows, norm, torch.device("cpu"), on_device=False)
    copied = RowFeatures(raw, rows, norm, torch.device("cpu"), on_device=True, chunk=3)
    assert copied.cache is not None and copied.raw is None
    idx = torch.tensor([6, 0, 2])
    torch.testing.assert_close(mapped[idx], copied[idx])
    torch.testing.assert_close(mapped[idx], norm(raw[rows[idx]]))
    torch.testing.assert_close(mapped[1:4], norm(raw[rows[1:4]]))
    assert torch.equal(raw, raw.clone())  # the shared rows are never normalised in place


# ----------------------------------------------------------------------------- per-speaker normalisation


def _real_frame_moments(data, corpus, name: str):
    """Per speaker of a split: per-frequency mean and std of its normalised ORIGINAL clips over
    their real frames."""
    feats = data.feats[name][torch.arange(len(data.feats[name]))].double()
    lengths = data.lens[name]
    rows = data.protocol.rows[name]
    speakers = corpus.manifest["speaker"].to_numpy()[rows]
    originals = ~corpus.manifest["augmented"].to_numpy(dtype=bool)[rows]
    out = {}
    for spk in np.unique(speakers):
        pick = np.flatnonzero((speakers == spk) & originals)
        cols = torch.cat([feats[i, :, :int(lengths[i])] for i in pick], dim=1)
        out[spk] = (cols.mean(dim=1), cols.std(dim=1, unbiased=False))
    return out


@pytest.mark.parametrize("cache", ["auto", "off"])
def test_speaker_normalisation_standardises_each_speaker_over_its_real_frames(private_prepared, cache):
    corpus = PreparedCorpus.load(private_prepared)
    data = prepare_trial(_config(private_prepared, normalization="speaker", feature_cache=cache), corpus)
    for name in ("train", "val", "test"):  # test speakers too, with their own statistics
        moments = _real_frame_moments(data, corpus, name)
        assert moments
        for spk, (mean, std) in moments.items():
            torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-3, rtol=0, msg=f"{name} {spk}")
            torch.testing.assert_close(std, torch.ones_like(std), atol=1e-3, rtol=0, msg=f"{name} {spk}")


def test_global_normalisation_is_unchanged(private_prepared):
    """Default mode: one per-frequency mean/std from the training split for every row; a test
    speaker is not standardised on its own (its mean over real frames is not ~0)."""
    corpus = PreparedCorpus.load(private_prepared)
    data = prepare_trial(_config(private_prepared), corpus)
    rows = data.protocol.rows["train"]
    frontend = build_frontend(FrontendConfig(n_mels=40, sample_rate=corpus.sample_rate))
    with torch.no_grad():
        raw = frontend(torch.from_numpy(np.array(corpus.waveforms[rows])))
    expected = FeatureNormalizer(40).fit([(raw, data.lens["train"])])
    torch.testing.assert_close(data.normalizer.mean, expected.mean, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(data.normalizer.std, expected.std, rtol=1e-6, atol=1e-5)
    idx = torch.arange(len(rows))
    torch.testing.assert_close(data.feats["train"][idx], expected(raw), rtol=1e-5, atol=1e-4)
    worst = max(float(m.abs().max()) for m, _ in _real_frame_moments(data, corpus, "test").values())
    assert worst > 0.05


def test_predict_on_a_speaker_normalised_model_uses_the_files_own_statistics(private_prepared):
    """A model trained with normalization = "speaker" never saw globally normalised features:
    predict takes the files of one call as one speaker and standardises them with their own
    statistics (over real frames), not the training split's."""
    from ser_core.predict import Predictor

    corpus = PreparedCorpus.load(private_prepared)
    result = fit(_config(private_prepared, normalization="speaker"), corpus)
    predictor = Predictor(result.checkpoint | {"preprocessing": corpus.protocol})
    m = corpus.manifest
    test = m.iloc[corpus.evaluation_split(0).rows["test"]]
    speaker = test["speaker"].iloc[0]
    paths = [Path(p) for p in test[test["speaker"] == speaker]["path"].head(4)]
    got = np.array([[p.probabilities[c] for c in predictor.classes] for p in predictor.predict(paths)])

    waves = [predictor._waveform(p) for p in paths]
    with torch.no_grad():
        feats = predictor.frontend(torch.from_numpy(np.stack([w for w, _ in waves]).astype(np.float32)))
        lengths = predictor._lengths([v for _, v in waves])
        own = FeatureNormalizer(feats.shape[1]).fit([(feats, lengths)])

        @torch.no_grad()
        def probs(norm):
            logits, _ = predictor.model(norm(feats), lengths)
            return torch.softmax(logits.float()[:, predictor._class_index], dim=1).numpy()
    np.testing.assert_allclose(got, probs(own), rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, probs(predictor.normalizer), atol=1e-4)  # not the training split's statistics
