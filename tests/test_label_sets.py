"""Label sets: `prepare --labels native` keeps each corpus's own classes (EmoDB's boredom,
IEMOCAP's 4-class standard), records the choice, keeps rejecting what has no class, and the
labels round-trip through prepare, train and predict; cross-corpus runs still score only the
classes both sides share, matched by name."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from search.cli import main
from ser_core.corpora import get_adapter
from ser_core.corpora.label_maps import NATIVE_LABELS, NATIVE_MAPS
from ser_core.corpus import PreparedCorpus
from ser_core.labels import EMOTIONS, IEMOCAP_4, LABEL_ORDER, ordered
from ser_core.prepare import PrepareOptions, prepare_corpora
from ser_core.synthetic import generate_corpus


def _tone(seconds: float, sr: int, freq: float, amp: float) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def emodb_layout(root: Path, speakers=("03", "08", "09"), letters="WLEAFTN") -> Path:
    """An EmoDB-named corpus of distinct tones: every speaker, every letter (boredom L included)."""
    root.mkdir(parents=True)
    for j, spk in enumerate(speakers):
        for i, letter in enumerate(letters):
            sf.write(root / f"{spk}a0{i + 1}{letter}a.wav",
                     _tone(0.8 + 0.05 * i, 16000, 180 + 20 * i, 0.2 + 0.05 * j), 16000)
    return root


# ---------------------------------------------------------------- the per-corpus native sets

def test_native_label_sets_are_each_corpus_own_classes() -> None:
    assert NATIVE_LABELS["emodb"] == ("neutral", "happy", "sad", "angry", "fear", "disgust", "boredom")
    assert NATIVE_LABELS["cremad"] == ("neutral", "happy", "sad", "angry", "fear", "disgust")
    assert NATIVE_LABELS["iemocap"] == IEMOCAP_4
    assert NATIVE_LABELS["ravdess"] == EMOTIONS
    assert len(NATIVE_LABELS["tess"]) == len(NATIVE_LABELS["savee"]) == 7 and "calm" not in NATIVE_LABELS["tess"]
    assert NATIVE_LABELS["synthetic"] == EMOTIONS
    assert set(NATIVE_LABELS) == {"ravdess", "tess", "savee", "cremad", "emodb", "iemocap", "synthetic"}
    # excited merged into happy; IEMOCAP's other classes have no native place
    iemocap = NATIVE_MAPS["iemocap"]
    assert iemocap["exc"] == iemocap["hap"] == "happy" and iemocap["fea"] is None and iemocap["fru"] is None
    assert NATIVE_MAPS["emodb"]["L"] == "boredom"


def test_label_order_gives_native_sets_stable_ids() -> None:
    assert LABEL_ORDER[:len(EMOTIONS)] == EMOTIONS and "boredom" in LABEL_ORDER
    assert ordered({"boredom", "angry", "neutral"}) == ("neutral", "angry", "boredom")
    with pytest.raises(ValueError, match="excitement"):
        ordered({"excitement"})


def test_adapters_give_the_native_label_beside_the_shared_one(tmp_path: Path) -> None:
    utts = {u.raw_label: u for u in get_adapter("emodb").scan(emodb_layout(tmp_path / "e", speakers=("03",)))}
    assert (utts["L"].label, utts["L"].native_label) == (None, "boredom")
    assert all(utts[c].native_label == utts[c].label for c in "WEAFTN")


# ---------------------------------------------------------------- prepare

def test_native_keeps_boredom_and_records_the_label_set(tmp_path: Path) -> None:
    corpus = emodb_layout(tmp_path / "c")
    out = tmp_path / "native"
    report = prepare_corpora({"emodb": corpus}, out, PrepareOptions(labels="native", n_folds=3, augment_copies=0),
                             progress=False)
    c = PreparedCorpus.load(out)
    assert c.labels == NATIVE_LABELS["emodb"] and report.labels == c.labels
    assert report.prepared == 21 and report.rejected == {} and report.class_counts["boredom"] == 3
    assert "labels (7, native)" in report.summary()
    boredom = c.manifest[c.manifest["label"] == "boredom"]
    assert set(boredom["raw_label"]) == {"L"} and set(boredom["label_id"]) == {c.labels.index("boredom")}
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["label_set"] == "native" and protocol["native_labels"] == {"emodb": list(c.labels)}
    assert pq.read_schema(out / "manifest.parquet").metadata[b"ser_search.label_set"] == b"native"

    shared = tmp_path / "shared"  # the default is unchanged: boredom rejected and counted
    report = prepare_corpora({"emodb": corpus}, shared, PrepareOptions(n_folds=3, augment_copies=0), progress=False)
    assert "boredom" not in PreparedCorpus.load(shared).labels and report.rejected == {"unmappable label": 3}
    assert json.loads((shared / "protocol.json").read_text())["label_set"] == "shared"
    assert pq.read_schema(shared / "manifest.parquet").metadata[b"ser_search.label_set"] == b"shared"


def _iemocap(root: Path) -> Path:
    """Three sessions in IEMOCAP's layout, one utterance of each code that matters here."""
    codes = ["neu", "hap", "exc", "sad", "ang", "fea", "fru"]
    for s in (1, 2, 3):
        dialog = f"Ses0{s}F_impro01"
        wav_dir = root / f"Session{s}" / "sentences" / "wav" / dialog
        wav_dir.mkdir(parents=True)
        lines = []
        for i, code in enumerate(codes):
            utt = f"{dialog}_{'FM'[i % 2]}{i:03d}"
            sf.write(wav_dir / f"{utt}.wav", _tone(0.8 + 0.05 * i, 16000, 200 + 15 * i, 0.2 + 0.1 * s), 16000)
            lines.append(f"[{i}.0 - {i}.9]\t{utt}\t{code}\t[2.5, 2.5, 2.5]")
        eval_dir = root / f"Session{s}" / "dialog" / "EmoEvaluation"
        eval_dir.mkdir(parents=True)
        (eval_dir / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_native_iemocap_is_the_four_class_standard_and_rejects_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = prepare_corpora({"iemocap": _iemocap(tmp_path / "iemocap")}, out,
                             PrepareOptions(labels="native", protocol="session", augment_copies=0), progress=False)
    c = PreparedCorpus.load(out)
    assert c.labels == IEMOCAP_4
    assert report.prepared == 15 and report.rejected == {"unmappable label": 6}  # fea and fru, 3 sessions
    assert (c.manifest["label"] == "happy").sum() == 6  # hap + exc
    rejects = pq.read_table(out / "rejects.parquet").to_pandas()
    assert set(rejects["reason"]) == {"unmappable label 'fea'", "unmappable label 'fru'"}


def test_native_labels_on_several_corpora_and_cross_corpus_uses_shared_classes(tmp_path: Path) -> None:
    synthetic = generate_corpus(tmp_path / "syn", n_speakers=3, clips_per_emotion=2, seed=0,
                                emotions=("neutral", "angry", "sad", "calm"))
    out = tmp_path / "out"
    prepare_corpora({"emodb": emodb_layout(tmp_path / "e"), "synthetic": synthetic}, out,
                    PrepareOptions(labels="native", n_folds=3, augment_copies=0, segment_seconds=1.0),
                    progress=False)
    c = PreparedCorpus.load(out)
    # the union of the corpora's own classes present, in LABEL_ORDER
    assert c.labels == ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "boredom")
    split = c.evaluation_split(0, train_corpora=["emodb"], eval_corpora=["synthetic"])
    assert split.classes == ("neutral", "sad", "angry")  # matched by name across corpora
    assert split.dropped["boredom"] == "only in the training corpora"
    assert split.dropped["calm"] == "only in the evaluation corpora"
    assert {"happy", "fear", "disgust"} <= set(split.dropped)
    tested = set(c.manifest["label"].to_numpy()[split.rows["test"]])
    trained = set(c.manifest["label"].to_numpy()[split.rows["train"]])
    assert tested == trained == {"neutral", "sad", "angry"}


def test_cli_labels_flag(tmp_path: Path) -> None:
    corpus = emodb_layout(tmp_path / "c")
    assert main(["prepare", "--corpus", f"emodb={corpus}", "--out", str(tmp_path / "o"), "--labels", "native",
                 "--folds", "3", "--augment-copies", "0"]) == 0
    assert "boredom" in PreparedCorpus.load(tmp_path / "o").labels
    with pytest.raises(SystemExit):
        main(["prepare", "--corpus", f"emodb={corpus}", "--out", str(tmp_path / "p"), "--labels", "own"])


# ---------------------------------------------------------------- prepare -> train -> predict

TINY_TRAIN = """seed = 0
[data]
prepared = "{prepared}"
fold = 0
[frontend]
n_mels = 32
[model]
name = "cnn_transformer"
channels = [8, 16, 16, 16]
d_model = 32
n_heads = 2
n_layers = 1
ff_dim = 64
[optim]
epochs = 1
batch_size = 32
"""


def test_native_labels_round_trip_through_prepare_train_and_predict(tmp_path: Path, emodb_dir: Path) -> None:
    """The real EmoDB clips with their 7 classes: the checkpoint knows boredom and predict answers
    among the 7, boredom included."""
    prepared = tmp_path / "emodb7"
    assert main(["prepare", "--corpus", f"emodb={emodb_dir}", "--out", str(prepared), "--labels", "native",
                 "--folds", "standard", "--augment-copies", "0", "--segment-seconds", "1.0"]) == 0
    corpus = PreparedCorpus.load(prepared)
    assert corpus.labels == NATIVE_LABELS["emodb"] and (corpus.manifest["label"] == "boredom").sum() == 81
    cfg = tmp_path / "train.toml"
    cfg.write_text(TINY_TRAIN.format(prepared=prepared))
    run = subprocess.run([sys.executable, "-m", "search.cli", "train", str(cfg), "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1

    boredom_wav = next(Path(p) for p, lab in zip(corpus.manifest["path"], corpus.manifest["label"]) if lab == "boredom")
    run = subprocess.run([sys.executable, "-m", "search.cli", "predict", str(tmp_path / "run" / "checkpoint.pt"),
                          str(boredom_wav)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    path, label, probs = run.stdout.strip().split("\t")
    assert label in NATIVE_LABELS["emodb"]
    scores = dict(kv.split("=") for kv in probs.split())
    assert set(scores) == set(NATIVE_LABELS["emodb"])  # all 7 classes, boredom among them
    assert sum(map(float, scores.values())) == pytest.approx(1.0, abs=0.01)
