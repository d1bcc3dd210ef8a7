"""The synthetic corpus: layout and adapter, determinism, re-run behaviour, emotion acoustics in
the intended direction, and learnable-but-not-trivial under a speaker-independent split."""
from __future__ import annotations

import json
import time
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ser_core.corpora import CorpusError, get_adapter
from ser_core.corpora.synthetic import SyntheticAdapter
from ser_core.labels import EMOTIONS
from ser_core.synthetic import MARKER_NAME, README_NAME, generate_corpus

N_SPEAKERS, CLIPS = 6, 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_corpus(tmp_path_factory.mktemp("syn") / "corpus", n_speakers=N_SPEAKERS,
                           clips_per_emotion=CLIPS, seed=7)


@pytest.fixture(scope="module")
def utterances(corpus: Path):
    return SyntheticAdapter().scan(corpus)


# --- layout and adapter -------------------------------------------------------------------------

def test_layout_and_adapter_parse(corpus: Path, utterances) -> None:
    assert (corpus / README_NAME).read_text().startswith("Synthetic emotional-speech corpus")
    assert json.loads((corpus / MARKER_NAME).read_text())["n_speakers"] == N_SPEAKERS
    assert (corpus / "spk03_male" / "angry" / "spk03_angry_007.wav").is_file()

    assert len(utterances) == N_SPEAKERS * len(EMOTIONS) * CLIPS
    assert [u.path for u in utterances] == sorted(u.path for u in utterances)
    assert {u.speaker for u in utterances} == {f"spk{i:02d}" for i in range(N_SPEAKERS)}
    genders = {u.speaker: u.gender for u in utterances}
    assert sorted(genders.values()) == ["female"] * 3 + ["male"] * 3
    assert all(u.label == u.raw_label and u.label in EMOTIONS for u in utterances)
    assert {u.label for u in utterances} == set(EMOTIONS)
    assert all(u.corpus == "synthetic" and u.session is None for u in utterances)


def test_files_are_16bit_mono_wav_of_plausible_length(utterances) -> None:
    for u in utterances[::37]:
        info = sf.info(u.path)
        assert (info.format, info.subtype, info.channels, info.samplerate) == (
            "WAV", "PCM_16", 1, 16000)
        assert 1.2 < info.duration < 5.0, u.path


def test_leading_and_trailing_silence_is_trimmable(utterances) -> None:
    removed = []
    for u in utterances[::11]:
        y, _ = sf.read(u.path)
        _, (start, end) = librosa.effects.trim(y=y, top_db=30)
        removed.append((start + (len(y) - end)) / 16000)
    assert np.mean(removed) > 0.2, removed


def test_registry_returns_the_adapter() -> None:
    assert isinstance(get_adapter("synthetic"), SyntheticAdapter)


def test_adapter_collects_unrecognised_files(tmp_path: Path) -> None:
    root = generate_corpus(tmp_path / "c", n_speakers=1, clips_per_emotion=1, emotions=["sad"])
    good = root / "spk00_female" / "sad" / "spk00_sad_000.wav"
    data = good.read_bytes()
    (root / "spk00_female" / "sad" / "spk01_sad_001.wav").write_bytes(data)      # wrong speaker
    (root / "spk00_female" / "sad" / "spk00_angry_001.wav").write_bytes(data)    # wrong emotion
    (root / "spk00_female" / "sad" / "notes.txt").write_text("x")
    (root / "speaker0" / "sad").mkdir(parents=True)
    (root / "speaker0" / "sad" / "spk00_sad_002.wav").write_bytes(data)          # bad speaker dir
    (root / "stray.wav").write_bytes(data)                                        # wrong depth
    (root / "spk00_female" / "bored").mkdir()
    (root / "spk00_female" / "bored" / "spk00_bored_000.wav").write_bytes(data)  # unmappable

    adapter = SyntheticAdapter()
    utts = adapter.scan(root)
    assert [(u.path.name, u.label) for u in utts] == [("spk00_bored_000.wav", None),
                                                      ("spk00_sad_000.wav", "sad")]
    reasons = {p.name: why for p, why in adapter.unrecognised}
    assert set(reasons) == {"spk01_sad_001.wav", "spk00_angry_001.wav", "notes.txt",
                            "spk00_sad_002.wav", "stray.wav"}
    assert "speaker spk01" in reasons["spk01_sad_001.wav"]
    assert "emotion 'angry'" in reasons["spk00_angry_001.wav"]
    assert "speaker folder 'speaker0'" in reasons["spk00_sad_002.wav"]
    assert "path level" in reasons["stray.wav"]
    assert [p for p, _ in adapter.unrecognised] == sorted(p for p, _ in adapter.unrecognised)


def test_adapter_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        SyntheticAdapter().scan(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no clip matching"):
        SyntheticAdapter().scan(tmp_path / "empty")
    (tmp_path / "other" / "x").mkdir(parents=True)
    (tmp_path / "other" / "x" / "a.wav").write_bytes(b"RIFF")
    adapter = SyntheticAdapter()
    with pytest.raises(CorpusError, match="1 other file"):
        adapter.scan(tmp_path / "other")
    assert [p.name for p, _ in adapter.unrecognised] == ["a.wav"]


# --- generation: determinism, re-runs, bad parameters -------------------------------------------

def test_same_seed_gives_identical_bytes_and_subsets_match(tmp_path: Path, corpus: Path) -> None:
    kw = dict(n_speakers=2, clips_per_emotion=2, emotions=["angry", "sad"], seed=7)
    a, b = generate_corpus(tmp_path / "a", **kw), generate_corpus(tmp_path / "b", **kw)
    files = sorted(p.relative_to(a) for p in a.rglob("*.wav"))
    assert len(files) == 8
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
        assert (a / rel).read_bytes() == (corpus / rel).read_bytes()   # same seed, larger corpus
    c = generate_corpus(tmp_path / "c", **{**kw, "seed": 8})
    assert all((a / rel).read_bytes() != (c / rel).read_bytes() for rel in files)


def test_rerun_is_skipped_and_changed_parameters_regenerate(tmp_path: Path) -> None:
    root = generate_corpus(tmp_path / "c", n_speakers=1, clips_per_emotion=2, emotions=["calm"])
    wav = root / "spk00_female" / "calm" / "spk00_calm_001.wav"
    before = wav.stat().st_mtime_ns
    start = time.perf_counter()
    assert generate_corpus(root, n_speakers=1, clips_per_emotion=2, emotions=["calm"]) == root
    assert time.perf_counter() - start < 0.5
    assert wav.stat().st_mtime_ns == before

    generate_corpus(root, n_speakers=1, clips_per_emotion=1, emotions=["calm"])
    assert not wav.exists()                                   # stale clip removed
    assert len(SyntheticAdapter().scan(root)) == 1
    assert json.loads((root / MARKER_NAME).read_text())["clips_per_emotion"] == 1
    assert not list(tmp_path.glob(".c.partial-*"))


def test_foreign_folder_and_bad_parameters_are_refused(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        generate_corpus(tmp_path / "mine", n_speakers=1, clips_per_emotion=1)
    assert (tmp_path / "mine" / "keep.txt").read_text() == "precious"
    with pytest.raises(ValueError, match="unknown: \\['bored'\\]"):
        generate_corpus(tmp_path / "x", emotions=["sad", "bored"])
    with pytest.raises(ValueError, match="n_speakers"):
        generate_corpus(tmp_path / "x", n_speakers=0)
    with pytest.raises(ValueError, match="seed must be an integer in >= 0, got -1"):
        generate_corpus(tmp_path / "x", seed=-1)
    with pytest.raises(ValueError, match="clips_per_emotion .* got 2.5"):
        generate_corpus(tmp_path / "x", clips_per_emotion=2.5)
    with pytest.raises(ValueError, match="sample_rate"):
        generate_corpus(tmp_path / "x", sample_rate=4000)
    assert not (tmp_path / "x").exists()


# --- acoustics: emotions differ in the intended direction ---------------------------------------

def _prosody(path: Path) -> tuple[float, float, float, float]:
    """(median F0 in semitones, F0 rise last third vs first third, voiced seconds, RMS dB)."""
    y, sr = sf.read(path)
    y, _ = librosa.effects.trim(y=y, top_db=30)
    f0 = librosa.yin(y=y, fmin=60, fmax=700, sr=sr, frame_length=1024, hop_length=256)
    rms = librosa.feature.rms(y=y, frame_length=1024, hop_length=256)[0][: len(f0)]
    st = 12.0 * np.log2(f0[rms > rms.max() * 10 ** (-15 / 20)])
    third = len(st) // 3
    return (float(np.median(st)), float(np.median(st[-third:]) - np.median(st[:third])),
            len(y) / sr, float(20 * np.log10(np.sqrt(np.mean(y**2)))))


def test_emotion_acoustics_point_the_intended_way(utterances) -> None:
    by: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    for u in utterances:
        if u.label in ("angry", "sad", "surprise", "neutral") and int(u.path.stem[-3:]) < 4:
            by.setdefault((u.speaker, u.label), []).append(_prosody(u.path))
    for spk in sorted({s for s, _ in by}):
        m = {emo: np.mean(by[(spk, emo)], axis=0)
             for emo in ("angry", "sad", "surprise", "neutral")}
        assert m["angry"][0] > m["sad"][0] + 2.0, (spk, "angry F0 above sad")
        assert m["surprise"][1] > max(m["neutral"][1], m["sad"][1]), (spk, "surprise rises most")
        assert m["sad"][2] > m["angry"][2], (spk, "sad spoken slower than angry")
        assert m["angry"][3] > m["sad"][3] + 6.0, (spk, "angry louder than sad")
    # Sad falls more than neutral: a smaller difference, so checked over all speakers together.
    rise = {emo: np.mean([r[1] for (_, e), rs in by.items() if e == emo for r in rs])
            for emo in ("neutral", "sad")}
    assert rise["sad"] < rise["neutral"] - 0.5, rise


# --- learnable but not trivial ------------------------------------------------------------------

def test_speaker_independent_proxy_is_above_chance_but_far_from_perfect(utterances) -> None:
    """Log-Mel mean+std + logistic regression, two held-out speakers per fold."""
    feats, labels, speakers = [], [], []
    for u in utterances:
        y, sr = sf.read(u.path)
        y, _ = librosa.effects.trim(y=y, top_db=30)
        mel = librosa.power_to_db(S=librosa.feature.melspectrogram(
            y=y, sr=sr, n_fft=512, hop_length=160, n_mels=64))
        feats.append(np.concatenate([mel.mean(axis=1), mel.std(axis=1)]))
        labels.append(u.label)
        speakers.append(int(u.speaker[3:]))
    x, labels, speakers = np.array(feats), np.array(labels), np.array(speakers)
    uas = []
    for held_out in ((0, 1), (2, 3), (4, 5)):
        test = np.isin(speakers, held_out)
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
        clf.fit(x[~test], labels[~test])
        uas.append(balanced_accuracy_score(labels[test], clf.predict(x[test])))
    ua = float(np.mean(uas))
    assert 0.35 <= ua <= 0.9, f"speaker-independent proxy UA {ua:.3f} (folds {np.round(uas, 3)})"
