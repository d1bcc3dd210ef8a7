"""Corpus adapters on tiny fake trees in each corpus's official layout (real WAV files),
plus the EmoDB adapter on the real clips in shared/data/emodb."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_core.corpora import CorpusError, Utterance, adapter_names, get_adapter
from ser_core.corpora import label_maps
from ser_core.labels import EMOTIONS, IEMOCAP_4

REAL_CORPORA = ("ravdess", "tess", "savee", "cremad", "emodb", "iemocap")
REPO = Path(__file__).resolve().parents[1]
EMODB_CANDIDATES = (REPO / "shared" / "data" / "emodb", Path("/work/shared/data/emodb"))


def write_wav(path: Path, sr: int = 16_000, seconds: float = 0.05) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    sf.write(path, (0.1 * rng.standard_normal(int(sr * seconds))).astype(np.float32), sr, subtype="PCM_16")
    return path


def make_tree(root: Path, names: list[str]) -> Path:
    for name in names:
        write_wav(root / name)
    return root


def by_name(utts: list[Utterance]) -> dict[str, Utterance]:
    return {u.path.name: u for u in utts}


def rejected(adapter) -> dict[str, str]:
    return {p.name: why for p, why in adapter.unrecognised}


def assert_sorted(utts: list[Utterance]) -> None:
    assert [u.path for u in utts] == sorted(u.path for u in utts)


# ---------------------------------------------------------------- registry and label maps

def test_registry_builds_every_real_corpus_adapter():
    assert set(REAL_CORPORA) <= set(adapter_names())
    for name in REAL_CORPORA:
        adapter = get_adapter(name)
        assert adapter.name == name
        assert adapter.unrecognised == []


@pytest.mark.parametrize("table", ["RAVDESS", "TESS", "SAVEE", "CREMAD", "EMODB", "IEMOCAP"])
def test_label_maps_target_the_shared_set_and_are_documented(table):
    mapping = getattr(label_maps, table)
    assert mapping
    doc = label_maps.__doc__ or ""
    for code, label in mapping.items():
        assert label is None or label in EMOTIONS, f"{table}[{code!r}] = {label!r}"
        assert code in doc, f"{table} code {code!r} missing from the label_maps docstring table"


def test_iemocap_four_class_map_is_the_four_class_protocol():
    four = label_maps.IEMOCAP_FOUR_CLASS
    assert set(four) == set(label_maps.IEMOCAP)
    assert {v for v in four.values() if v is not None} == set(IEMOCAP_4)
    assert four["exc"] == four["hap"] == "happy"
    assert four["fea"] is None and four["sur"] is None and four["fru"] is None


# ---------------------------------------------------------------- bad roots, for every adapter

@pytest.mark.parametrize("name", REAL_CORPORA)
def test_missing_root_raises_naming_corpus_and_path(name, tmp_path):
    missing = tmp_path / "no_such_corpus"
    with pytest.raises(CorpusError, match="does not exist") as err:
        get_adapter(name).scan(missing)
    assert name in str(err.value) and str(missing) in str(err.value)


@pytest.mark.parametrize("name", REAL_CORPORA)
def test_root_without_recognisable_files_raises_with_example(name, tmp_path):
    root = tmp_path / "junk"
    write_wav(root / "some" / "recording.wav")
    (root / "README.txt").write_text("not audio")
    adapter = get_adapter(name)
    with pytest.raises(CorpusError, match="no recognisable") as err:
        adapter.scan(root)
    message = str(err.value)
    assert name in message and str(root) in message and "expected" in message
    assert [p.name for p, _ in adapter.unrecognised] == ["recording.wav"]


def test_root_that_is_a_file_raises(tmp_path):
    f = write_wav(tmp_path / "03a01Fa.wav")
    with pytest.raises(CorpusError, match="not a directory"):
        get_adapter("emodb").scan(f)


# ---------------------------------------------------------------- RAVDESS

def test_ravdess_parses_speech_counts_song_and_collects_bad_names(tmp_path):
    root = make_tree(tmp_path / "Audio_Speech_Actors_01-24", [
        "Actor_01/03-01-05-01-02-01-01.wav",   # speech, angry, actor 1 (male)
        "Actor_02/03-01-06-02-01-02-02.wav",   # speech, fearful, actor 2 (female)
        "Actor_02/03-01-02-01-01-01-02.wav",   # calm
        "Actor_01/03-02-03-01-01-01-01.wav",   # song: excluded and counted
        "Actor_01/01-01-05-01-02-01-01.wav",   # modality 01 (AV), not the audio-only release
        "Actor_01/03-01-09-01-01-01-01.wav",   # emotion 09 does not exist
        "Actor_01/03-01-05-01-01-01-25.wav",   # actor 25 does not exist
        "Actor_01/take1.wav",
    ])
    (root / "Actor_01" / "03-01-05-01-02-01-01.mp4").write_bytes(b"video")  # never looked at
    adapter = get_adapter("ravdess")
    utts = adapter.scan(tmp_path)
    got = by_name(utts)
    assert set(got) == {"03-01-05-01-02-01-01.wav", "03-01-06-02-01-02-02.wav",
                        "03-01-02-01-01-01-02.wav", "03-02-03-01-01-01-01.wav"}
    angry = got["03-01-05-01-02-01-01.wav"]
    assert (angry.corpus, angry.speaker, angry.gender, angry.raw_label, angry.label, angry.session) == (
        "ravdess", "Actor_01", "male", "05", "angry", None)
    fear = got["03-01-06-02-01-02-02.wav"]
    assert (fear.speaker, fear.gender, fear.label) == ("Actor_02", "female", "fear")
    assert got["03-01-02-01-01-01-02.wav"].label == "calm"
    song = got["03-02-03-01-01-01-01.wav"]
    assert (song.label, song.raw_label) == (None, "song:03")
    bad = rejected(adapter)
    assert set(bad) == {"01-01-05-01-02-01-01.wav", "03-01-09-01-01-01-01.wav",
                        "03-01-05-01-01-01-25.wav", "take1.wav"}
    assert "audio-only" in bad["01-01-05-01-02-01-01.wav"]
    assert "09" in bad["03-01-09-01-01-01-01.wav"]
    assert "naming" in bad["take1.wav"]
    assert_sorted(utts)


# ---------------------------------------------------------------- TESS

def test_tess_parses_both_speakers_and_pleasant_surprise_spellings(tmp_path):
    root = make_tree(tmp_path / "TESS Toronto emotional speech set data", [
        "OAF_angry/OAF_back_angry.wav",
        "OAF_Pleasant_surprise/OAF_bite_ps.wav",
        "YAF_pleasant_surprised/YAF_back_pleasant_surprised.wav",
        "YAF_fear/YAF_chair_fear.wav",
        "YAF_neutral/YAF_germ_neutral.wav",
        "OAF_angry/XYZ_back_angry.wav",        # unknown speaker
        "OAF_angry/OAF_back_bored.wav",        # unknown emotion
        "OAF_angry/OAF_back.wav",              # not the naming
    ])
    adapter = get_adapter("tess")
    utts = adapter.scan(root)
    got = by_name(utts)
    assert {n: u.label for n, u in got.items()} == {
        "OAF_back_angry.wav": "angry",
        "OAF_bite_ps.wav": "surprise",
        "YAF_back_pleasant_surprised.wav": "surprise",
        "YAF_chair_fear.wav": "fear",
        "YAF_germ_neutral.wav": "neutral",
    }
    assert {u.speaker for u in utts} == {"OAF", "YAF"}
    assert {u.gender for u in utts} == {"female"}
    assert got["OAF_bite_ps.wav"].raw_label == "ps"
    bad = rejected(adapter)
    assert set(bad) == {"XYZ_back_angry.wav", "OAF_back_bored.wav", "OAF_back.wav"}
    assert "speaker" in bad["XYZ_back_angry.wav"] and "emotion" in bad["OAF_back_bored.wav"]
    assert_sorted(utts)


# ---------------------------------------------------------------- SAVEE

def test_savee_reads_flat_and_nested_layouts_and_drops_cross_layout_duplicates(tmp_path):
    make_tree(tmp_path, [
        "ALL/DC_a01.wav",
        "ALL/JE_sa03.wav",
        "AudioData/KL/su15.wav",
        "AudioData/JK/n30.wav",
        "AudioData/DC/a01.wav",     # same clip as ALL/DC_a01.wav
        "ALL/XX_a01.wav",           # unknown speaker
        "AudioData/DC/x01.wav",     # unknown emotion code
        "AudioData/Other/a01.wav",  # folder is not a speaker
    ])
    adapter = get_adapter("savee")
    utts = adapter.scan(tmp_path)
    got = {str(u.path.relative_to(tmp_path)): u for u in utts}
    assert {k: (u.speaker, u.raw_label, u.label) for k, u in got.items()} == {
        "ALL/DC_a01.wav": ("DC", "a", "angry"),
        "ALL/JE_sa03.wav": ("JE", "sa", "sad"),
        "AudioData/KL/su15.wav": ("KL", "su", "surprise"),
        "AudioData/JK/n30.wav": ("JK", "n", "neutral"),
    }
    assert {u.gender for u in utts} == {"male"}
    bad = {str(p.relative_to(tmp_path)): why for p, why in adapter.unrecognised}
    assert set(bad) == {"AudioData/DC/a01.wav", "ALL/XX_a01.wav", "AudioData/DC/x01.wav",
                        "AudioData/Other/a01.wav"}
    assert "duplicate" in bad["AudioData/DC/a01.wav"] and "ALL/DC_a01.wav" in bad["AudioData/DC/a01.wav"]
    assert "speaker" in bad["AudioData/Other/a01.wav"]
    assert_sorted(utts)


# ---------------------------------------------------------------- CREMA-D

CREMAD_NAMES = [
    "AudioWAV/1001_DFA_ANG_XX.wav",
    "AudioWAV/1002_IEO_HAP_HI.wav",
    "AudioWAV/1091_TSI_NEU_LO.wav",
    "AudioWAV/1001_DFA_BOR_XX.wav",   # unknown emotion
    "AudioWAV/0999_DFA_ANG_XX.wav",   # actor out of range
    "AudioWAV/1001-DFA-ANG-XX.wav",   # not the naming
]


def write_demographics(path: Path) -> None:
    path.write_text("ActorID,Age,Sex,Race,Ethnicity\n"
                    "1001,51,Male,Caucasian,Not Hispanic\n"
                    "1002,21,Female,Caucasian,Not Hispanic\n")


def test_cremad_genders_from_demographics_file(tmp_path):
    make_tree(tmp_path, CREMAD_NAMES)
    write_demographics(tmp_path / "VideoDemographics.csv")
    adapter = get_adapter("cremad")
    utts = adapter.scan(tmp_path)
    got = by_name(utts)
    assert {n: (u.speaker, u.gender, u.raw_label, u.label) for n, u in got.items()} == {
        "1001_DFA_ANG_XX.wav": ("1001", "male", "ANG", "angry"),
        "1002_IEO_HAP_HI.wav": ("1002", "female", "HAP", "happy"),
        "1091_TSI_NEU_LO.wav": ("1091", None, "NEU", "neutral"),  # not in the csv
    }
    bad = rejected(adapter)
    assert set(bad) == {"1001_DFA_BOR_XX.wav", "0999_DFA_ANG_XX.wav", "1001-DFA-ANG-XX.wav"}
    assert "BOR" in bad["1001_DFA_BOR_XX.wav"] and "0999" in bad["0999_DFA_ANG_XX.wav"]
    assert_sorted(utts)


def test_cremad_demographics_beside_audiowav_root_and_absent(tmp_path):
    make_tree(tmp_path, CREMAD_NAMES[:2])
    adapter = get_adapter("cremad")
    assert {u.gender for u in adapter.scan(tmp_path / "AudioWAV")} == {None}
    write_demographics(tmp_path / "VideoDemographics.csv")
    assert [u.gender for u in adapter.scan(tmp_path / "AudioWAV")] == ["male", "female"]


def test_cremad_malformed_demographics_raises(tmp_path):
    make_tree(tmp_path, CREMAD_NAMES[:1])
    bad_csv = tmp_path / "VideoDemographics.csv"
    bad_csv.write_text("Actor,Gender\n1001,Male\n")
    with pytest.raises(CorpusError, match="ActorID and Sex") as err:
        get_adapter("cremad").scan(tmp_path)
    assert str(bad_csv) in str(err.value)


# ---------------------------------------------------------------- EmoDB (fake tree)

def test_emodb_fake_tree_boredom_unmapped_and_bad_names_collected(tmp_path):
    make_tree(tmp_path, [
        "wav/03a01Fa.wav",
        "wav/08b02Lb.wav",      # boredom
        "16a05Tc.wav",          # flat copy style
        "wav/backup/03a01Fa.wav",  # second copy of the same utterance
        "wav/07a01Fa.wav",      # speaker 07 is not in EmoDB
        "wav/03a01Xa.wav",      # no emotion X
        "wav/foo.wav",
    ])
    adapter = get_adapter("emodb")
    utts = adapter.scan(tmp_path)
    got = {str(u.path.relative_to(tmp_path)): u for u in utts}
    assert {k: (u.speaker, u.gender, u.raw_label, u.label) for k, u in got.items()} == {
        "wav/03a01Fa.wav": ("03", "male", "F", "happy"),
        "wav/08b02Lb.wav": ("08", "female", "L", None),
        "16a05Tc.wav": ("16", "female", "T", "sad"),
    }
    bad = {str(p.relative_to(tmp_path)): why for p, why in adapter.unrecognised}
    assert set(bad) == {"wav/backup/03a01Fa.wav", "wav/07a01Fa.wav", "wav/03a01Xa.wav", "wav/foo.wav"}
    assert "duplicate" in bad["wav/backup/03a01Fa.wav"]
    assert_sorted(utts)


def test_unrecognised_is_reset_by_each_scan(tmp_path):
    dirty = make_tree(tmp_path / "dirty", ["03a01Fa.wav", "foo.wav"])
    clean = make_tree(tmp_path / "clean", ["03a01Fa.wav"])
    adapter = get_adapter("emodb")
    adapter.scan(dirty)
    assert len(adapter.unrecognised) == 1
    assert adapter.scan(clean)[0].path == clean / "03a01Fa.wav"
    assert adapter.unrecognised == []


# ---------------------------------------------------------------- EmoDB (real clips)

def _real_emodb() -> Path:
    for candidate in EMODB_CANDIDATES:
        if candidate.is_dir():
            return candidate
    pytest.skip(f"real EmoDB clips not found in any of {[str(c) for c in EMODB_CANDIDATES]}")


def test_emodb_real_clips():
    root = _real_emodb()
    adapter = get_adapter("emodb")
    utts = adapter.scan(root)
    assert len(utts) == 535
    assert adapter.unrecognised == []
    # Per-emotion counts from shared/data/emodb/README.md; boredom (81) is unmapped.
    assert Counter(u.label for u in utts) == {
        "angry": 127, None: 81, "disgust": 46, "fear": 69, "happy": 71, "sad": 62, "neutral": 79}
    assert Counter(u.raw_label for u in utts)["L"] == 81
    genders = {u.speaker: u.gender for u in utts}
    assert genders == {**{s: "male" for s in ("03", "10", "11", "12", "15")},
                       **{s: "female" for s in ("08", "09", "13", "14", "16")}}
    assert {u.corpus for u in utts} == {"emodb"} and {u.session for u in utts} == {None}
    assert_sorted(utts)
    assert adapter.scan(root) == utts  # deterministic


# ---------------------------------------------------------------- IEMOCAP

EMO_EVAL_1 = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()
C-E3:\tNeutral;\t()
A-E3:\tval 3; act 2; dom  2;\t()

[10.0100 - 11.3925]\tSes01F_impro01_M000\texc\t[3.0000, 3.5000, 3.0000]

[14.8872 - 18.0175]\tSes01F_impro01_F001\tfru\t[2.0000, 3.5000, 3.5000]

[19.2900 - 20.7875]\tSes01F_impro01_M001\tfea\t[2.0000, 3.0000, 2.0000]

[21.0000 - 22.0000]\tSes01F_impro01_F002\tang\t[1.5000, 4.0000, 4.0000]

[23.0000 - 24.0000]\tSes01F_impro01_M002\tzzz\t[2.5000, 2.5000, 2.5000]
"""

EMO_EVAL_2 = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[1.0000 - 2.5000]\tSes02M_script01_1_F000\tsur\t[3.0000, 3.0000, 3.0000]

[3.0000 - 4.5000]\tSes02M_script01_1_M000\thap\t[4.0000, 3.0000, 3.0000]
"""


def make_iemocap(root: Path) -> Path:
    s1 = root / "Session1"
    (s1 / "dialog" / "EmoEvaluation" / "Categorical").mkdir(parents=True)
    (s1 / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").write_text(EMO_EVAL_1)
    # other formats in subfolders must not be parsed as label files
    (s1 / "dialog" / "EmoEvaluation" / "Categorical" / "Ses01F_impro01_e1_cat.txt").write_text(
        "Ses01F_impro01_F000 :Neutral state; ()\n")
    for utt in ("F000", "M000", "F001", "M001", "M002", "F009"):  # F002 has no audio; F009 no label
        write_wav(s1 / "sentences" / "wav" / "Ses01F_impro01" / f"Ses01F_impro01_{utt}.wav")
    write_wav(s1 / "dialog" / "wav" / "Ses01F_impro01.wav")  # whole-dialog recording, skipped
    s2 = root / "Session2"
    (s2 / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (s2 / "dialog" / "EmoEvaluation" / "Ses02M_script01_1.txt").write_text(EMO_EVAL_2)
    for utt in ("F000", "M000"):
        write_wav(s2 / "sentences" / "wav" / "Ses02M_script01_1" / f"Ses02M_script01_1_{utt}.wav")
    return root


def test_iemocap_eight_class(tmp_path):
    root = make_iemocap(tmp_path / "IEMOCAP_full_release")
    adapter = get_adapter("iemocap")
    utts = adapter.scan(root)
    got = {u.path.stem: u for u in utts}
    assert {k: (u.speaker, u.gender, u.session, u.raw_label, u.label) for k, u in got.items()} == {
        "Ses01F_impro01_F000": ("Ses01F", "female", "Session1", "neu", "neutral"),
        "Ses01F_impro01_M000": ("Ses01M", "male", "Session1", "exc", "happy"),
        "Ses01F_impro01_F001": ("Ses01F", "female", "Session1", "fru", None),
        "Ses01F_impro01_M001": ("Ses01M", "male", "Session1", "fea", "fear"),
        "Ses02M_script01_1_F000": ("Ses02F", "female", "Session2", "sur", "surprise"),
        "Ses02M_script01_1_M000": ("Ses02M", "male", "Session2", "hap", "happy"),
    }
    assert got["Ses01F_impro01_F000"].path == (
        root / "Session1" / "sentences" / "wav" / "Ses01F_impro01" / "Ses01F_impro01_F000.wav")
    assert {u.corpus for u in utts} == {"iemocap"}
    bad = rejected(adapter)
    assert set(bad) == {"Ses01F_impro01_F002.wav", "Ses01F_impro01_F009.wav",
                        "Ses01F_impro01_M002.wav", "Ses01F_impro01.txt"}
    assert "no audio" in bad["Ses01F_impro01_F002.wav"]   # labelled, wav missing
    assert "no label" in bad["Ses01F_impro01_F009.wav"]   # wav, label missing
    assert "no label" in bad["Ses01F_impro01_M002.wav"]   # its label line had an unknown code
    assert "zzz" in bad["Ses01F_impro01.txt"]
    assert_sorted(utts)


def test_iemocap_four_class(tmp_path):
    root = make_iemocap(tmp_path)
    utts = get_adapter("iemocap").scan(root, iemocap_four_class=True)
    labels = {u.path.stem: u.label for u in utts}
    assert labels == {
        "Ses01F_impro01_F000": "neutral",
        "Ses01F_impro01_M000": "happy",
        "Ses01F_impro01_F001": None,
        "Ses01F_impro01_M001": None,
        "Ses02M_script01_1_F000": None,
        "Ses02M_script01_1_M000": "happy",
    }


def test_iemocap_labels_without_any_audio_raise(tmp_path):
    eval_dir = tmp_path / "Session1" / "dialog" / "EmoEvaluation"
    eval_dir.mkdir(parents=True)
    (eval_dir / "Ses01F_impro01.txt").write_text(EMO_EVAL_1)
    with pytest.raises(CorpusError, match="no recognisable utterance") as err:
        get_adapter("iemocap").scan(tmp_path)
    assert "found 5 labelled utterance(s) in 1 EmoEvaluation file(s), 0 of them with audio" in str(err.value)


# ---------------------------------------------------------------- native labels (prepare --labels native)

def test_native_label_maps_are_documented_and_cover_every_code():
    doc = label_maps.__doc__ or ""
    assert "Native label sets" in doc and "L → boredom" in doc
    for name, mapping in label_maps.NATIVE_MAPS.items():
        shared = getattr(label_maps, {"cremad": "CREMAD"}.get(name, name.upper()))
        assert set(mapping) == set(shared), name  # the same codes; only their classes differ
        assert {v for v in mapping.values() if v is not None} == set(label_maps.NATIVE_LABELS[name])


def test_every_adapter_gives_its_native_label(tmp_path):
    def native(name: str, root: Path) -> dict[str, tuple[str | None, str | None]]:
        return {u.path.stem: (u.label, u.native_label) for u in get_adapter(name).scan(root)}

    assert native("ravdess", make_tree(tmp_path / "r", ["Actor_01/03-01-02-01-01-01-01.wav",
                                                        "Actor_01/03-02-03-01-01-01-01.wav"])) == {
        "03-01-02-01-01-01-01": ("calm", "calm"), "03-02-03-01-01-01-01": (None, None)}  # song stays excluded
    assert native("tess", make_tree(tmp_path / "t", ["YAF_ps/YAF_back_ps.wav"])) == {
        "YAF_back_ps": ("surprise", "surprise")}
    assert native("savee", make_tree(tmp_path / "s", ["ALL/DC_su01.wav"])) == {"DC_su01": ("surprise", "surprise")}
    assert native("cremad", make_tree(tmp_path / "c", ["AudioWAV/1001_DFA_NEU_XX.wav"])) == {
        "1001_DFA_NEU_XX": ("neutral", "neutral")}
    assert native("emodb", make_tree(tmp_path / "e", ["wav/03a01La.wav", "wav/03a01Wa.wav"])) == {
        "03a01La": (None, "boredom"), "03a01Wa": ("angry", "angry")}
    # IEMOCAP's native set is its 4-class standard whatever iemocap_four_class says
    assert native("iemocap", make_iemocap(tmp_path / "i")) == {
        "Ses01F_impro01_F000": ("neutral", "neutral"), "Ses01F_impro01_M000": ("happy", "happy"),
        "Ses01F_impro01_F001": (None, None), "Ses01F_impro01_M001": ("fear", None),
        "Ses02M_script01_1_F000": ("surprise", None), "Ses02M_script01_1_M000": ("happy", "happy")}
