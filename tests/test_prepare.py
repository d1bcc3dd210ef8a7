"""Corpus preparation end to end on real audio: the shipped EmoDB copy through the real EmoDB
adapter, plus an EmoDB-named corpus of deliberately bad files, and the split protocols."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from ser_core.corpora import CorpusError
from ser_core.corpus import CORPUS_FORMAT_VERSION, CorpusFormatError, PreparedCorpus
from ser_core.labels import EMOTIONS
from ser_core.prepare import PrepareError, PrepareOptions, prepare_corpora
from ser_core.splits import SplitError, group_folds, session_folds, split_names, stratified_folds


MANIFEST_DTYPES = {
    "row": "int64", "label_id": "int32", "duration": "float64", "fold": "int32", "augmented": "bool",
    "source_row": "int64", "snr_db": "float64", "valid_samples": "int64",
}
STRING_COLUMNS = ["path", "corpus", "speaker", "gender", "raw_label", "label", "session", "split", "sha1"]


def speakers_by_subset(c: PreparedCorpus, fold: int) -> dict[str, set[str]]:
    return {k: set(c.manifest["speaker"].to_numpy()[v]) for k, v in c.split_indices(fold).items()}


# ------------------------------------------------------------------ EmoDB end to end

@pytest.fixture(scope="module")
def emodb(tmp_path_factory: pytest.TempPathFactory, emodb_dir: Path):
    out = tmp_path_factory.mktemp("prep") / "emodb"
    report = prepare_corpora({"emodb": emodb_dir}, out, PrepareOptions(), progress=False)
    return report, PreparedCorpus.load(out)


def test_emodb_counts_and_report(emodb) -> None:
    report, c = emodb
    assert report.found == 535
    assert report.rejected == {"unmappable label": 81}
    assert report.prepared == 535 - 81
    assert report.augmented == 2 * report.prepared
    assert report.handled == {"resampled from 22050 Hz": report.prepared}
    assert report.labels == ("neutral", "happy", "sad", "angry", "fear", "disgust")  # EMOTIONS order
    assert report.class_counts == {"neutral": 79, "happy": 71, "sad": 62, "angry": 127, "fear": 69, "disgust": 46}
    text = report.summary()
    assert "454 clips" in text and "unmappable label 81" in text and "535 found" in text

    rejects = pq.read_table(c.root / "rejects.parquet").to_pandas()
    assert list(rejects.columns) == ["path", "corpus", "reason"]
    assert len(rejects) == 81
    assert set(rejects["reason"]) == {"unmappable label 'L'"}
    assert all(Path(p).name[5] == "L" for p in rejects["path"])


def test_emodb_manifest_schema_and_waveforms(emodb) -> None:
    _, c = emodb
    m = c.manifest
    for col, dtype in MANIFEST_DTYPES.items():
        assert str(m[col].dtype) == dtype, col
    for col in STRING_COLUMNS:
        assert pd.api.types.is_string_dtype(m[col]) or m[col].isna().all(), col
    assert len(m) == 3 * 454
    np.testing.assert_array_equal(m["row"], np.arange(len(m)))
    assert isinstance(c.waveforms, np.memmap) and c.waveforms.dtype == np.float32
    assert c.waveforms.shape == (len(m), 56000)
    direct = np.load(c.root / "waveforms.npy", mmap_mode="r")
    assert direct.shape == c.waveforms.shape

    orig = m[~m["augmented"]]
    aug = m[m["augmented"]]
    np.testing.assert_array_equal(orig["source_row"], orig["row"])
    assert orig["snr_db"].isna().all() and (aug["snr_db"] == 20.0).all()
    assert m["session"].isna().all()
    assert set(m["gender"]) == {"male", "female"}
    assert m["speaker"].str.startswith("emodb:").all() and m["speaker"].nunique() == 10
    assert (m["duration"] == 2.0).all()
    assert (m["label"].map(lambda l: c.labels.index(l)) == m["label_id"]).all()
    np.testing.assert_array_equal(c.targets(), m["label_id"].to_numpy().astype(np.int64))
    assert c.num_classes == 6 and c.sample_rate == 16000

    # sha1 is of the source file bytes
    first = orig.iloc[0]
    assert first["sha1"] == hashlib.sha1(Path(first["path"]).read_bytes()).hexdigest()

    # Originals are the trimmed 2 s clips (zero padded to 3.5 s); copies are noisy versions of them.
    for _, r in orig.sample(5, random_state=0).iterrows():
        w = np.asarray(c.waveforms[r["row"]])
        assert 0 < r["valid_samples"] <= 32000
        assert not w[r["valid_samples"]:].any() and np.abs(w[: r["valid_samples"]]).max() > 0.1
        for k in (1, 2):
            a = np.asarray(c.waveforms[r["row"] + k])
            assert m.loc[r["row"] + k, "source_row"] == r["row"]
            noise = a[: r["valid_samples"]].astype(np.float64) - w[: r["valid_samples"]]
            snr = 10 * np.log10(np.sum(w[: r["valid_samples"]].astype(np.float64) ** 2) / np.sum(noise ** 2))
            assert snr == pytest.approx(20.0, abs=0.3)
            assert not a[r["valid_samples"]:].any()
        assert not np.array_equal(c.waveforms[r["row"] + 1], c.waveforms[r["row"] + 2])


def test_emodb_speaker_independent_for_every_fold(emodb) -> None:
    _, c = emodb
    m = c.manifest
    assert c.n_folds == 5
    orig = m[~m["augmented"]]
    per_fold = orig.groupby("fold").size()
    assert len(per_fold) == 5 and per_fold.max() - per_fold.min() <= 60  # greedy balance of 10 speakers
    assert (orig.groupby("speaker")["fold"].nunique() == 1).all()
    split0 = split_names(orig["fold"].to_numpy(), 0, 5)
    np.testing.assert_array_equal(orig["split"].to_numpy(), split0)
    for fold in range(5):
        idx = c.split_indices(fold)
        spk = speakers_by_subset(c, fold)
        assert not spk["train"] & spk["val"] and not spk["train"] & spk["test"] and not spk["val"] & spk["test"]
        assert len(idx["train"]) + len(idx["val"]) + len(idx["test"]) == len(m) - 2 * (len(idx["val"]) + len(idx["test"]))
        assert not m["augmented"].to_numpy()[idx["val"]].any() and not m["augmented"].to_numpy()[idx["test"]].any()
        assert (np.diff(idx["train"]) > 0).all()
        # an augmented copy is in train exactly when its source is
        train = set(idx["train"].tolist())
        src_in = m["source_row"].to_numpy()[idx["train"]]
        assert set(src_in.tolist()) <= train
        aug_rows = m.index[m["augmented"]].to_numpy()
        for r in aug_rows[:200]:
            assert (r in train) == (int(m.at[r, "source_row"]) in train)
    with pytest.raises(ValueError, match="out of range"):
        c.split_indices(5)


def test_emodb_protocol_json_records_the_preprocessing(emodb, emodb_dir: Path) -> None:
    _, c = emodb
    p = json.loads((c.root / "protocol.json").read_text())
    assert p["format_version"] == CORPUS_FORMAT_VERSION
    assert p["sample_rate"] == 16000 and p["segment_seconds"] == 3.5 and p["trim_top_db"] == 30.0
    assert p["labels"] == list(c.labels) and p["protocol"] == "speaker" and p["n_folds"] == 5
    assert p["val_fold_rule"] == "(test_fold + 1) % n_folds"
    assert p["augment_copies"] == 2 and p["augment_snr_db"] == 20.0 and p["seed"] == 0
    assert p["corpora"] == {"emodb": str(emodb_dir.absolute())}
    assert p["counts"]["found"] == 535 and p["counts"]["prepared"] == 454 and p["counts"]["rows"] == 3 * 454
    assert p["counts"]["rejected"] == {"unmappable label": 81}


def test_emodb_utterance_protocol_is_stratified_80_10_10(tmp_path: Path, emodb_dir: Path) -> None:
    out = tmp_path / "utt"
    report = prepare_corpora({"emodb": emodb_dir}, out, PrepareOptions(protocol="utterance", augment_copies=0),
                             progress=False)
    c = PreparedCorpus.load(out)
    assert report.n_folds == 10 and c.n_folds == 10 and len(c.manifest) == 454
    idx = c.split_indices(0)
    sizes = {k: len(v) / 454 for k, v in idx.items()}
    assert sizes["train"] == pytest.approx(0.8, abs=0.02)
    assert sizes["val"] == pytest.approx(0.1, abs=0.01) and sizes["test"] == pytest.approx(0.1, abs=0.01)
    labels = c.manifest["label"].to_numpy()
    for name in c.labels:
        n = (labels == name).sum()
        for k, frac in (("val", 0.1), ("test", 0.1)):
            assert abs((labels[idx[k]] == name).sum() - frac * n) <= 1, (name, k)
    # speakers are shared across subsets here: this is the non-independent protocol
    assert speakers_by_subset(c, 0)["train"] & speakers_by_subset(c, 0)["test"]


# ------------------------------------------------------------------ bad files

def _tone(seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def build_bad_corpus(root: Path, emodb: Path) -> dict[str, str]:
    """An EmoDB-named corpus: a few real clips, every odd kind, and what reject reason (prefix)
    or handled note each bad file should produce."""
    root.mkdir(parents=True)
    real = [p for spk in ("03", "08", "09") for p in [q for q in sorted(emodb.glob(f"{spk}*.wav"))
                                                       if q.name[5] != "L"][:3]]
    for p in real:
        shutil.copy(p, root / p.name)
    expect: dict[str, str] = {}
    sf.write(root / "10a01Wa.wav", _tone(2.0, 22050), 22050, subtype="PCM_U8")
    expect["10a01Wa.wav"] = "handled: decoded PCM_U8"
    sf.write(root / "10a01Wb.wav", _tone(2.0, 44100), 44100, subtype="PCM_24")
    expect["10a01Wb.wav"] = "handled: resampled from 44100 Hz"
    stereo = np.stack([_tone(2.0, 8000), _tone(2.0, 8000, 0.2)], axis=1)
    sf.write(root / "10a01Wc.wav", stereo, 8000, subtype="FLOAT")
    expect["10a01Wc.wav"] = "handled: mixed 2 channels to mono"
    sf.write(root / "10a02Wa.wav", _tone(120.0, 16000), 16000, subtype="PCM_16")
    expect["10a02Wa.wav"] = "handled: long: decoded first 60 s"
    (root / "11a01Wa.wav").write_bytes(b"")
    expect["11a01Wa.wav"] = "empty"
    sf.write(root / "11a01Wb.wav", np.zeros(0, np.float32), 16000, subtype="PCM_16")
    expect["11a01Wb.wav"] = "empty"
    sf.write(root / "11a01Wc.wav", np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    expect["11a01Wc.wav"] = "all-silent (peak -inf dBFS)"
    nan = _tone(1.0, 16000)
    nan[100:110] = np.nan
    sf.write(root / "11a01Wd.wav", nan, 16000, subtype="FLOAT")
    expect["11a01Wd.wav"] = "non-finite samples"
    data = real[0].read_bytes()
    (root / "11a02Wa.wav").write_bytes(data[: len(data) // 2])
    expect["11a02Wa.wav"] = "truncated: the header declares "
    (root / "11a02Wc.wav").write_bytes(data[:44 + 100])  # cut just after its header: 50 samples
    expect["11a02Wc.wav"] = "truncated: the header declares "
    sf.write(root / "11a03Wa.wav", _tone(0.05, 16000), 16000)  # a 50 ms blip
    expect["11a03Wa.wav"] = "too short: "
    (root / "13a01Wa.wav").mkdir()  # a folder named like a clip
    expect["13a01Wa.wav"] = "not a readable file: a directory"
    (root / "13a01Wb.wav").symlink_to(root / "gone.wav")
    expect["13a01Wb.wav"] = "not a readable file: a dangling or looping symbolic link"
    (root / "11a02Wb.wav").write_text("not audio at all\n" * 10)
    expect["11a02Wb.wav"] = "unreadable: "
    shutil.copy(real[1], root / "12a01Fa.wav")  # same bytes, different name
    expect["12a01Fa.wav"] = "duplicate audio (same bytes as "
    shutil.copy(real[2], root / "12a01La.wav")
    expect["12a01La.wav"] = "unmappable label 'L'"
    (root / "notes.wav").write_text("x")
    expect["notes.wav"] = "name does not follow EmoDB naming"
    (root / "README.txt").write_text("not a wav, not listed")
    return expect


def test_bad_files_are_handled_or_rejected_never_dropped(tmp_path: Path, emodb_dir: Path) -> None:
    corpus = tmp_path / "bad"
    expect = build_bad_corpus(corpus, emodb_dir)
    out = tmp_path / "out"
    options = PrepareOptions(protocol="speaker", n_folds=3, augment_copies=1)
    report = prepare_corpora({"emodb": corpus}, out, options, progress=False)
    c = PreparedCorpus.load(out)
    rejects = pq.read_table(out / "rejects.parquet").to_pandas()
    reason = {Path(p).name: r for p, r in zip(rejects["path"], rejects["reason"])}
    prepared = set(Path(p).name for p in c.manifest.loc[~c.manifest["augmented"], "path"])

    for name, what in expect.items():
        if what.startswith("handled: "):
            assert name in prepared and name not in reason, name
            assert report.handled.get(what.removeprefix("handled: "), 0) >= 1, what
        else:
            assert name in reason and name not in prepared, name
            assert reason[name].startswith(what), (name, reason[name])
    assert "README.txt" not in reason  # not an audio file: not the adapter's business
    # every recognised file is accounted for: prepared or rejected
    unrecognised = sum(1 for r in rejects["reason"] if r.startswith(("name does not follow", "not a readable file")))
    assert report.found == report.prepared + len(rejects) - unrecognised
    assert sum(report.rejected.values()) == len(rejects)
    assert report.rejected["empty"] == 2 and report.rejected["unrecognised file name"] == 1
    assert report.rejected["truncated"] == 2 and report.rejected["too short"] == 1
    assert report.rejected["not a readable file"] == 2

    m = c.manifest
    long_row = m.index[(m["path"].str.endswith("10a02Wa.wav")) & ~m["augmented"]][0]
    assert m.at[long_row, "duration"] == pytest.approx(120.0)
    assert m.at[long_row, "valid_samples"] == 56000  # the long tone fills the segment
    assert c.waveforms.shape == (len(m), 56000) and np.isfinite(np.asarray(c.waveforms)).all()
    assert len(m) == 2 * report.prepared
    for fold in range(3):
        spk = speakers_by_subset(c, fold)
        assert not spk["train"] & spk["test"] and not spk["val"] & spk["test"] and not spk["train"] & spk["val"]


def test_process_pool_gives_identical_output(tmp_path: Path, emodb_dir: Path) -> None:
    corpus = tmp_path / "small"
    corpus.mkdir()
    for p in sorted(emodb_dir.glob("0[389]a0[12]*.wav")):
        shutil.copy(p, corpus / p.name)
    opts = dict(protocol="speaker", n_folds=3, augment_copies=1)
    prepare_corpora({"emodb": corpus}, tmp_path / "one", PrepareOptions(workers=1, **opts), progress=False)
    prepare_corpora({"emodb": corpus}, tmp_path / "two", PrepareOptions(workers=2, **opts), progress=False)
    a, b = PreparedCorpus.load(tmp_path / "one"), PreparedCorpus.load(tmp_path / "two")
    pd.testing.assert_frame_equal(a.manifest, b.manifest)
    np.testing.assert_array_equal(np.asarray(a.waveforms), np.asarray(b.waveforms))


# ------------------------------------------------------------------ errors

def test_missing_corpus_path_names_corpus_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(CorpusError) as err:
        prepare_corpora({"emodb": missing}, tmp_path / "out", PrepareOptions(), progress=False)
    assert "emodb" in str(err.value) and str(missing) in str(err.value)
    assert not (tmp_path / "out").exists()


def test_corpus_with_no_recognisable_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "hello.wav").write_text("x")
    with pytest.raises(CorpusError, match="no recognisable file"):
        prepare_corpora({"emodb": tmp_path / "c"}, tmp_path / "out", PrepareOptions(), progress=False)


def test_nothing_surviving_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "03a01Wa.wav").write_bytes(b"")
    sf.write(corpus / "03a01Fa.wav", np.zeros(8000, np.float32), 16000)
    with pytest.raises(PrepareError, match=r"no clip survived.*2 found, rejected all-silent 1, empty 1$"):
        prepare_corpora({"emodb": corpus}, tmp_path / "out", PrepareOptions(), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no half corpus, no temp dir


def test_too_few_speakers_for_the_folds_is_a_clear_error(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    for i, letter in enumerate("WFN"):
        sf.write(corpus / f"03a0{i + 1}{letter}a.wav", _tone(1.0, 16000), 16000)
    with pytest.raises(SplitError, match="5 folds need at least 5 distinct speakers, found 1"):
        prepare_corpora({"emodb": corpus}, tmp_path / "out", PrepareOptions(augment_copies=0), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def _tiny_corpus(root: Path) -> Path:
    root.mkdir()
    for j, spk in enumerate(("03", "08", "09")):  # distinct audio per file (identical bytes are rejected)
        for i, letter in enumerate("WFNT"):
            sf.write(root / f"{spk}a0{i + 1}{letter}a.wav", _tone(1.0 + 0.1 * i, 16000, 0.3 + 0.1 * j), 16000)
    return root


def test_existing_output_is_protected_and_replaced_only_on_request(tmp_path: Path) -> None:
    corpus = _tiny_corpus(tmp_path / "c")
    opts = PrepareOptions(n_folds=3, augment_copies=0)
    user_dir = tmp_path / "mine"
    user_dir.mkdir()
    (user_dir / "thesis.tex").write_text("precious")
    with pytest.raises(PrepareError, match="not a prepared corpus"):
        prepare_corpora({"emodb": corpus}, user_dir, opts, progress=False, overwrite=True)
    assert (user_dir / "thesis.tex").read_text() == "precious"

    out = tmp_path / "out"
    prepare_corpora({"emodb": corpus}, out, opts, progress=False)
    with pytest.raises(PrepareError, match="already holds a prepared corpus"):
        prepare_corpora({"emodb": corpus}, out, opts, progress=False)
    report = prepare_corpora({"emodb": corpus}, out, opts.model_copy(update={"protocol": "utterance"}),
                             progress=False, overwrite=True)
    assert PreparedCorpus.load(out).protocol["protocol"] == "utterance" and report.n_folds == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "mine", "out"]


def test_load_rejects_what_is_not_a_prepared_corpus(tmp_path: Path) -> None:
    with pytest.raises(CorpusFormatError, match="does not exist"):
        PreparedCorpus.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusFormatError, match="missing protocol.json, manifest.parquet, waveforms.npy"):
        PreparedCorpus.load(tmp_path / "empty")
    out = tmp_path / "out"
    prepare_corpora({"emodb": _tiny_corpus(tmp_path / "c")}, out, PrepareOptions(n_folds=3, augment_copies=1),
                    progress=False)
    c = PreparedCorpus.load(out)
    ram = c.in_memory()
    assert type(ram.waveforms) is np.ndarray and np.array_equal(ram.waveforms, c.waveforms)
    assert ram.labels == c.labels and {k: v.tolist() for k, v in ram.split_indices(1).items()} == \
        {k: v.tolist() for k, v in c.split_indices(1).items()}
    assert len(c) == 24 and c.labels == tuple(l for l in EMOTIONS if l in {"angry", "happy", "neutral", "sad"})
    with pytest.raises(ValueError, match=r"fold 3 out of range: .* has folds 0\.\.2"):
        c.split_indices(3)
    proto = json.loads((out / "protocol.json").read_text())
    proto["format_version"] = CORPUS_FORMAT_VERSION + 1
    (out / "protocol.json").write_text(json.dumps(proto))
    with pytest.raises(CorpusFormatError, match="format version"):
        PreparedCorpus.load(out)


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="extra"):
        PrepareOptions(sample_rte=8000)
    with pytest.raises(ValueError, match="max_source_seconds"):
        PrepareOptions(max_source_seconds=2.0, segment_seconds=3.5)
    with pytest.raises(ValueError):
        PrepareOptions(n_folds=2)
    with pytest.raises(ValueError):
        PrepareOptions(protocol="random")
    with pytest.raises(ValueError, match="session"):
        PrepareOptions(protocol="session", n_folds=5)


# ------------------------------------------------------------------ split functions

def test_group_folds_keep_groups_whole_balanced_and_deterministic() -> None:
    rng = np.random.default_rng(0)
    groups = [f"s{int(g)}" for g in rng.integers(0, 12, size=600)]
    folds = group_folds(groups, 5, seed=3)
    by_group = pd.Series(folds).groupby(pd.Series(groups)).nunique()
    assert (by_group == 1).all()
    counts = np.bincount(folds, minlength=5)
    assert counts.min() > 0 and counts.max() - counts.min() <= pd.Series(groups).value_counts().max()
    np.testing.assert_array_equal(folds, group_folds(groups, 5, seed=3))
    assert folds.dtype == np.int32
    # equal-size groups: the seed decides which goes where
    even = [f"g{i}" for i in range(10) for _ in range(4)]
    assert any(not np.array_equal(group_folds(even, 5, seed=0), group_folds(even, 5, seed=s)) for s in range(1, 6))
    with pytest.raises(SplitError, match="at least 5 distinct speakers, found 3"):
        group_folds(["a", "b", "c"], 5)


def test_stratified_folds_spread_every_class() -> None:
    labels = ["a"] * 200 + ["b"] * 100 + ["c"] * 30
    folds = stratified_folds(labels, 10, seed=0)
    for name, n in (("a", 200), ("b", 100), ("c", 30)):
        per_fold = np.bincount(folds[np.array(labels) == name], minlength=10)
        assert per_fold.max() - per_fold.min() <= 1 and per_fold.sum() == n


def test_session_folds_one_per_session() -> None:
    sessions = ["iemocap:Ses02", "iemocap:Ses01", "iemocap:Ses03", "iemocap:Ses01"]
    np.testing.assert_array_equal(session_folds(sessions), [1, 0, 2, 0])
    with pytest.raises(SplitError, match="1 of 2 clips have none"):
        session_folds(["Ses01", None])


def test_split_names_follow_the_val_rule() -> None:
    folds = np.array([0, 1, 2, 3, 4])
    assert list(split_names(folds, 4, 5)) == ["val", "train", "train", "train", "test"]
    with pytest.raises(SplitError, match="out of range"):
        split_names(folds, 5, 5)


def test_session_protocol_needs_sessions(tmp_path: Path) -> None:
    with pytest.raises(SplitError, match="session protocol needs a session for every clip; 12 of 12"):
        prepare_corpora({"emodb": _tiny_corpus(tmp_path / "c")}, tmp_path / "out",
                        PrepareOptions(protocol="session", augment_copies=0), progress=False)
    assert not (tmp_path / "out").exists()


def _iemocap_corpus(root: Path) -> Path:
    """Three sessions in the official IEMOCAP layout, four utterances each plus one 'fru'."""
    for s in (1, 2, 3):
        dialog = f"Ses0{s}F_impro01"
        wav_dir = root / f"Session{s}" / "sentences" / "wav" / dialog
        wav_dir.mkdir(parents=True)
        lines = []
        for i, code in enumerate(["neu", "hap", "sad", "ang", "exc", "fru"]):
            utt = f"{dialog}_{'FM'[i % 2]}{i:03d}"
            sf.write(wav_dir / f"{utt}.wav", _tone(1.0 + 0.05 * i, 16000, 0.2 + 0.1 * s), 16000)
            lines.append(f"[{i}.0 - {i}.9]\t{utt}\t{code}\t[2.5, 2.5, 2.5]")
        eval_dir = root / f"Session{s}" / "dialog" / "EmoEvaluation"
        eval_dir.mkdir(parents=True)
        (eval_dir / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_iemocap_leave_one_session_out_four_class(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = prepare_corpora({"iemocap": _iemocap_corpus(tmp_path / "iemocap")}, out,
                             PrepareOptions(protocol="session", iemocap_four_class=True, augment_copies=1),
                             progress=False)
    c = PreparedCorpus.load(out)
    assert report.found == 18 and report.prepared == 15 and report.rejected == {"unmappable label": 3}
    assert c.labels == ("neutral", "happy", "sad", "angry") and c.n_folds == 3
    orig = c.manifest[~c.manifest["augmented"]]
    assert orig.groupby("session")["fold"].nunique().eq(1).all()
    assert orig.groupby("fold")["session"].nunique().eq(1).all()  # one session per fold
    assert (orig["label"] == "happy").sum() == 6  # exc merged into happy
    for fold in range(3):
        idx = c.split_indices(fold)
        sessions = {k: set(c.manifest["session"].to_numpy()[v]) for k, v in idx.items()}
        assert len(sessions["test"]) == 1 and len(sessions["val"]) == 1
        assert not sessions["train"] & (sessions["test"] | sessions["val"])
