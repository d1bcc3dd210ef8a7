"""Standard leave-speakers-out folds (EmoDB 5 x 2 speakers, RAVDESS 6 x 4 actors) and fold
lists from a benchmark's metadata (EmoBox's per-fold jsonl), through `prepare` and its CLI."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from search.cli import main
from ser_core.corpora.emodb import SPEAKER_GENDER
from ser_core.corpus import PreparedCorpus
from ser_core.fold_lists import match_folds, read_fold_lists
from ser_core.prepare import PrepareOptions, prepare_corpora
from ser_core.splits import (EMODB_SPEAKER_PAIRS, RAVDESS_ACTOR_GROUPS, SplitError, split_names,
                             standard_folds)

EMODB_SPEAKERS = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")


def _tone(seconds: float, freq: float, amp: float, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def emodb_layout(root: Path, speakers=EMODB_SPEAKERS, letters="WFNT") -> Path:
    """An EmoDB-named corpus of distinct tones (identical audio would be rejected as a duplicate)."""
    root.mkdir(parents=True)
    for j, spk in enumerate(speakers):
        for i, letter in enumerate(letters):
            sf.write(root / f"{spk}a0{i + 1}{letter}a.wav", _tone(0.6 + 0.05 * i, 170 + 25 * i, 0.1 + 0.07 * j), 16000)
    return root


def emobox_entry(corpus: str, name: str, emo: str) -> dict:
    """One line of an EmoBox fold list, with the fields EmoBox writes (data/<corpus>/fold_N/*.jsonl)."""
    return {"key": f"{corpus}-{name}", "dataset": corpus, "wav": f"downloads/{corpus}/wav/{name}.wav",
            "type": "raw", "sample_rate": 16000, "num_frame": 16000.0, "task": "category", "length": 1.0,
            "emo": emo, "channel": 1}


def write_emobox(root: Path, corpus: str, folds: list[list[dict]], old_name_too: bool = False) -> Path:
    """EmoBox's layout: <root>/fold_N/<corpus>_test_fold_N.jsonl (+ the train lists it ships)."""
    every = [e for fold in folds for e in fold]
    for n, entries in enumerate(folds, start=1):
        d = root / f"fold_{n}"
        d.mkdir(parents=True)
        (d / f"{corpus}_test_fold_{n}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
        train = [e for e in every if e not in entries]
        (d / f"{corpus}_train_fold_{n}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in train))
        if old_name_too:  # EmoBox also ships the older name with `audio`/`label` keys: ignored when both exist
            (d / f"{corpus}_test_fold{n}.jsonl").write_text(json.dumps({"key": "x", "audio": "elsewhere/zz.wav"}) + "\n")
    return root


# ---------------------------------------------------------------- standard speaker folds

def test_emodb_pairs_are_one_male_one_female_and_cover_every_speaker_once() -> None:
    assert len(EMODB_SPEAKER_PAIRS) == 5
    assert sorted(s for pair in EMODB_SPEAKER_PAIRS for s in pair) == sorted(SPEAKER_GENDER)
    for pair in EMODB_SPEAKER_PAIRS:
        assert sorted(SPEAKER_GENDER[s] for s in pair) == ["female", "male"]
    assert EMODB_SPEAKER_PAIRS[0] == ("03", "08")  # the documented rule: i-th male with i-th female


def test_ravdess_groups_are_four_consecutive_actors_two_of_each_gender() -> None:
    assert len(RAVDESS_ACTOR_GROUPS) == 6
    assert [int(a[-2:]) for g in RAVDESS_ACTOR_GROUPS for a in g] == list(range(1, 25))
    for g in RAVDESS_ACTOR_GROUPS:
        assert Counter(int(a[-2:]) % 2 for a in g) == {0: 2, 1: 2}  # odd actors male, even female
    actors = ["Actor_04", "Actor_05", "Actor_24", "Actor_09", "Actor_16", "Actor_17"]
    folds, n = standard_folds(["ravdess"] * 6, actors)
    assert n == 6 and folds.tolist() == [0, 1, 5, 2, 3, 4]


def test_standard_folds_on_the_real_emodb_speakers(emodb_dir: Path) -> None:
    speakers = [p.name[:2] for p in sorted(emodb_dir.glob("*.wav"))]
    folds, n = standard_folds(["emodb"] * len(speakers), speakers)
    assert n == 5 and Counter(folds.tolist()) == {0: 107, 1: 81, 2: 116, 3: 104, 4: 127}  # as documented


def test_standard_folds_refuse_what_they_cannot_split() -> None:
    with pytest.raises(SplitError, match="no standard speaker folds for corpus tess"):
        standard_folds(["emodb", "tess"], ["03", "OAF"])
    with pytest.raises(SplitError, match="emodb has 5, ravdess has 6"):
        standard_folds(["emodb", "ravdess"], ["03", "Actor_01"])
    with pytest.raises(SplitError, match=r"fold\(s\) without a clip: fold 1 \(emodb 10 09\)"):
        standard_folds(["emodb"] * 8, ["03", "08", "11", "13", "12", "14", "15", "16"])
    with pytest.raises(SplitError, match="speaker '99' is in no standard fold"):
        standard_folds(["emodb"], ["99"])


def test_prepare_standard_folds_follow_the_table_and_default_is_unchanged(tmp_path: Path) -> None:
    corpus = emodb_layout(tmp_path / "c")
    out = tmp_path / "std"
    report = prepare_corpora({"emodb": corpus}, out, PrepareOptions(standard_folds=True, augment_copies=0),
                             progress=False)
    c = PreparedCorpus.load(out)
    expected = {f"emodb:{s}": f for f, pair in enumerate(EMODB_SPEAKER_PAIRS) for s in pair}
    assert dict(zip(c.manifest["speaker"], c.manifest["fold"])) == expected
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["protocol"] == "speaker" and protocol["fold_assignment"] == "standard speaker folds"
    assert protocol["standard_speaker_folds"]["emodb"][1] == ["10", "09"] and c.n_folds == 5
    assert "standard speaker folds" in report.summary()
    test = set(c.manifest.loc[c.split_indices(2)["test"], "speaker"])
    assert test == {"emodb:11", "emodb:13"}

    default = tmp_path / "greedy"  # without the flag: the greedy balanced speaker folds, as before
    prepare_corpora({"emodb": corpus}, default, PrepareOptions(augment_copies=0), progress=False)
    d = PreparedCorpus.load(default)
    assert json.loads((default / "protocol.json").read_text())["fold_assignment"] == "greedy balanced speaker groups"
    assert dict(zip(d.manifest["speaker"], d.manifest["fold"])) != expected


def test_standard_folds_options_are_validated() -> None:
    with pytest.raises(ValueError, match="standard_folds is a speaker protocol"):
        PrepareOptions(standard_folds=True, protocol="utterance")
    with pytest.raises(ValueError, match="standard_folds is a speaker protocol"):
        PrepareOptions(standard_folds=True, n_folds=4)


def test_cli_folds_standard_and_clean_split_errors(tmp_path: Path, capsys) -> None:
    corpus = emodb_layout(tmp_path / "c")
    assert main(["prepare", "--corpus", f"emodb={corpus}", "--out", str(tmp_path / "o"), "--folds", "standard",
                 "--augment-copies", "0"]) == 0
    assert PreparedCorpus.load(tmp_path / "o").protocol["fold_assignment"] == "standard speaker folds"
    # A split that cannot be made is the user's input: one line, exit 2, no traceback.
    assert main(["prepare", "--corpus", f"emodb={corpus}", "--out", str(tmp_path / "p"), "--folds", "11",
                 "--augment-copies", "0"]) == 2
    assert "11 folds need at least 11 distinct speakers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["prepare", "--corpus", f"emodb={corpus}", "--out", str(tmp_path / "q"), "--folds", "standrad"])
    tess = tmp_path / "tess" / "OAF_angry"
    tess.mkdir(parents=True)
    sf.write(tess / "OAF_back_angry.wav", _tone(0.5, 300, 0.2), 16000)
    assert main(["prepare", "--corpus", f"tess={tess.parent}", "--out", str(tmp_path / "t"), "--folds", "standard"]) == 2
    assert "no standard speaker folds for corpus tess" in capsys.readouterr().err


# ---------------------------------------------------------------- EmoBox fold lists

def _emodb_lists(speakers=EMODB_SPEAKERS) -> list[list[dict]]:
    """Five EmoBox-style test folds over the corpus of `emodb_layout`, by utterance (as EmoBox's
    EmoDB lists are): clip k of every speaker goes to fold k's list, k = 0..3, and fold 5 gets
    the remaining half of fold 4."""
    folds: list[list[dict]] = [[] for _ in range(5)]
    for spk in speakers:
        for i, letter in enumerate("WFNT"):
            folds[i if i < 3 or spk < "12" else 4].append(emobox_entry("emodb", f"{spk}a0{i + 1}{letter}a", letter))
    return folds


def test_read_fold_lists_reads_emobox_layout_and_numbering(tmp_path: Path) -> None:
    root = write_emobox(tmp_path / "emodb", "emodb", _emodb_lists(), old_name_too=True)
    entries, n, sources = read_fold_lists([root])
    assert n == 5 and len(entries) == 40
    assert [Path(s).name for s in sources] == [f"emodb_test_fold_{k}.jsonl" for k in range(1, 6)]
    first = entries[0]
    assert (first.fold, first.dataset, first.name) == (0, "emodb", "03a01wa")  # EmoBox fold 1 -> fold 0
    assert first.source.endswith("emodb_test_fold_1.jsonl:1")
    # a single test list is accepted too; its number comes from its name
    one = read_fold_lists([root / f"fold_{k}" / f"emodb_test_fold_{k}.jsonl" for k in (1, 2, 3)])
    assert one[1] == 3 and {e.fold for e in one[0]} == {0, 1, 2}


def test_read_fold_lists_errors_name_the_file(tmp_path: Path) -> None:
    root = write_emobox(tmp_path / "emodb", "emodb", _emodb_lists())
    with pytest.raises(SplitError, match="train/valid list"):
        read_fold_lists([root / "fold_1" / "emodb_train_fold_1.jsonl"])
    with pytest.raises(SplitError, match="at least 3 are needed"):
        read_fold_lists([root / "fold_1" / "emodb_test_fold_1.jsonl", root / "fold_2" / "emodb_test_fold_2.jsonl"])
    with pytest.raises(SplitError, match=r"numbered 1..K without gaps, found \[1, 2, 4\]"):
        read_fold_lists([root / f"fold_{k}" / f"emodb_test_fold_{k}.jsonl" for k in (1, 2, 4)])
    with pytest.raises(SplitError, match="listed twice"):
        read_fold_lists([root, root / "fold_1" / "emodb_test_fold_1.jsonl"])
    bad = root / "fold_3" / "emodb_test_fold_3.jsonl"
    bad.write_text(bad.read_text() + '{"key": "emodb-x", "dataset": "emodb"}\nnot json\n')
    with pytest.raises(SplitError, match=r"emodb_test_fold_3.jsonl:\d+: entry has no audio path \(key wav or audio\)"):
        read_fold_lists([root])
    with pytest.raises(SplitError, match="no such file or directory"):
        read_fold_lists([tmp_path / "nowhere"])


def test_match_folds_by_file_name_and_reports_both_kinds_of_miss(tmp_path: Path) -> None:
    lists = _emodb_lists()
    lists[1].append(emobox_entry("emodb", "16b10Wb", "anger"))       # no such clip
    lists[2].append(emobox_entry("ravdess", "03-01-05-01-02-01-01", "Angry"))  # corpus not prepared
    root = write_emobox(tmp_path / "emodb", "emodb", lists)
    paths = [Path("/data/emodb/wav/03a01Wa.wav"), Path("/data/emodb/wav/16a04Ta.wav"),
             Path("/data/emodb/wav/03a09Lb.wav"), Path("/data/emodb/wav/08a02Fa.wav")]
    m = match_folds(paths, ["emodb"] * 4, [root], rejected=[(Path("/data/emodb/wav/09a02Fa.wav"), "emodb", "empty file")])
    assert m.fold_of == {0: 0, 1: 4, 3: 1} and m.n_folds == 5 and m.n_entries == 42
    assert m.clips_in_no_fold == [2]
    why = {e.name: reason for e, reason in m.entries_without_clip}
    assert why["16b10wb"] == "no clip named 16b10wb in emodb"
    assert why["09a02fa"] == "clip rejected: empty file"
    assert why["03-01-05-01-02-01-01"].startswith("dataset 'ravdess' is not among the prepared corpora")
    assert len(m.entries_without_clip) == 42 - 3


def test_match_folds_knows_savee_folder_names_and_flags_ambiguity(tmp_path: Path) -> None:
    folds = [[{"key": "savee-DC-a01", "dataset": "savee", "wav": "downloads/savee/DC_a01.wav", "emo": "a"}],
             [{"key": "savee-JE-a01", "dataset": "savee", "wav": "downloads/savee/JE_a01.wav", "emo": "a"}],
             [{"key": "savee-x", "dataset": "savee", "wav": "a01.wav", "emo": "a"}]]
    root = write_emobox(tmp_path / "savee", "savee", folds)
    paths = [Path("/s/AudioData/DC/a01.wav"), Path("/s/AudioData/JE/a01.wav")]  # nested layout
    m = match_folds(paths, ["savee", "savee"], [root])
    assert m.fold_of == {0: 0, 1: 1}
    [(entry, reason)] = m.entries_without_clip
    assert entry.name == "a01" and reason.startswith("ambiguous: 2 clips are named a01")


def test_prepare_folds_from_emobox_lists(tmp_path: Path) -> None:
    corpus = emodb_layout(tmp_path / "c")
    sf.write(corpus / "16a09Wb.wav", _tone(0.9, 400, 0.3), 16000)   # a clip no list names
    lists = _emodb_lists()
    lists[0].append(emobox_entry("emodb", "16b10Wb", "anger"))     # an entry with no clip
    root = write_emobox(tmp_path / "emobox" / "emodb", "emodb", lists)
    out = tmp_path / "out"
    report = prepare_corpora({"emodb": corpus}, out, PrepareOptions(folds_from=(root,), augment_copies=1),
                             progress=False)
    c = PreparedCorpus.load(out)
    want = {f"{e['wav'].rsplit('/', 1)[1]}": k for k, fold in enumerate(lists) for e in fold}
    orig = c.manifest[~c.manifest["augmented"]]
    assert {Path(p).name: f for p, f in zip(orig["path"], orig["fold"])} == {
        n: f for n, f in want.items() if n != "16b10Wb.wav"}
    assert c.n_folds == 5 and (c.manifest.groupby("source_row")["fold"].nunique() == 1).all()  # copies follow
    # never silently dropped: the unlisted clip is a reject, the clip-less entry is in the report and protocol.json
    rejects = pq.read_table(out / "rejects.parquet").to_pandas()
    assert list(rejects["path"].map(lambda p: Path(p).name)) == ["16a09Wb.wav"]
    assert rejects["reason"][0].startswith("in no test fold of --folds-from")
    assert report.rejected == {"in no listed fold": 1}
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["protocol"] == "folds-from" and protocol["fold_assignment"] == "fold lists"
    info = protocol["fold_lists"]
    assert info["entries"] == 41 and info["matched"] == 40
    assert info["entries_without_clip"] == [{"wav": "downloads/emodb/wav/16b10Wb.wav", "fold": 0,
                                             "source": info["entries_without_clip"][0]["source"],
                                             "reason": "no clip named 16b10wb in emodb"}]
    assert info["clips_in_no_fold"] == [str(corpus / "16a09Wb.wav")]
    text = report.summary()
    assert "41 entries, 40 matched" in text and "16b10Wb.wav" in text and "16a09Wb.wav" in text
    # the benchmark's test fold is ser-search's test fold; validation is the next one
    assert set(split_names(orig["fold"].to_numpy(), 0, 5)[orig["fold"].to_numpy() == 1]) == {"val"}


def test_prepare_folds_from_reports_entries_of_rejected_clips_and_options(tmp_path: Path) -> None:
    corpus = emodb_layout(tmp_path / "c", letters="WFNL")  # L: boredom, rejected under the shared labels
    lists = [[emobox_entry("emodb", f"{spk}a0{i + 1}{letter}a", letter) for spk in EMODB_SPEAKERS]
             for i, letter in enumerate("WFNL")]
    lists.append([emobox_entry("emodb", "03a09Wz", "anger")])
    root = write_emobox(tmp_path / "emodb", "emodb", lists)
    with pytest.raises(SplitError, match="test fold.s. 4, 5 of the lists hold no prepared clip"):
        prepare_corpora({"emodb": corpus}, tmp_path / "o", PrepareOptions(folds_from=(root,), augment_copies=0),
                        progress=False)
    lists[4] = [emobox_entry("emodb", "03a01Wa", "anger")]
    lists[0] = lists[0][1:]
    root = write_emobox(tmp_path / "emodb2", "emodb", lists)
    out = tmp_path / "native"
    report = prepare_corpora({"emodb": corpus}, out, PrepareOptions(folds_from=(root,), labels="native",
                                                                    augment_copies=0), progress=False)
    assert report.fold_lists["entries_without_clip"] == [] and report.n_folds == 5
    out = tmp_path / "shared"
    with pytest.raises(SplitError, match="fold.s. 4 of the lists hold no prepared clip"):
        prepare_corpora({"emodb": corpus}, out, PrepareOptions(folds_from=(root,), augment_copies=0), progress=False)
    with pytest.raises(ValueError, match="folds_from replaces the protocol's folds"):
        PrepareOptions(folds_from=(root,), standard_folds=True)


def test_cli_folds_from(tmp_path: Path, capsys) -> None:
    corpus = emodb_layout(tmp_path / "c")
    root = write_emobox(tmp_path / "emobox" / "emodb", "emodb", _emodb_lists())
    assert main(["prepare", "--corpus", f"emodb={corpus}", "--out", str(tmp_path / "o"), "--folds-from", str(root),
                 "--augment-copies", "0"]) == 0
    assert "folds from 5 list(s): 40 entries, 40 matched" in capsys.readouterr().out
    assert main(["prepare", "--corpus", f"emodb={corpus}", "--out", str(tmp_path / "p"), "--folds-from",
                 str(root / "fold_1" / "emodb_train_fold_1.jsonl")]) == 2
    assert "train/valid list" in capsys.readouterr().err
