"""Entries named like audio that are not readable files (a folder called x.wav, a dangling
symlink, a named pipe) are reported by every kind of adapter scan, never skipped silently."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from ser_core.corpora import get_adapter
from ser_core.corpora._scan import NOT_A_FILE, not_a_file_reason, wav_entries


def _wav(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(1600, 0.1, np.float32), 16000)
    return path


def _odd_entries(folder: Path, stem: str) -> dict[str, str]:
    """A folder, a dangling symlink, a FIFO and a symlink to a folder, all named <stem>N.wav."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}1.wav").mkdir()
    (folder / f"{stem}2.wav").symlink_to(folder / "missing-target.wav")
    os.mkfifo(folder / f"{stem}3.wav")
    (folder / f"{stem}4.wav").symlink_to(folder / f"{stem}1.wav")
    return {f"{stem}1.wav": f"{NOT_A_FILE}: a directory",
            f"{stem}2.wav": f"{NOT_A_FILE}: a dangling or looping symbolic link (to {folder / 'missing-target.wav'})",
            f"{stem}3.wav": f"{NOT_A_FILE}: a named pipe",
            f"{stem}4.wav": f"{NOT_A_FILE}: a symbolic link to a directory"}


def test_wav_entries_splits_files_from_what_is_not(tmp_path: Path) -> None:
    good = _wav(tmp_path / "a.WAV")
    linked = tmp_path / "b.wav"
    linked.symlink_to(good)  # a link to a real file is a file
    loop = tmp_path / "loop.wav"
    loop.symlink_to(loop)
    expect = _odd_entries(tmp_path / "sub", "x")
    files, unusable = wav_entries(tmp_path)
    assert files == [good, linked]
    reasons = {p.name: why for p, why in unusable}
    assert reasons == expect | {"loop.wav": f"{NOT_A_FILE}: a dangling or looping symbolic link (to {loop})"}
    assert not_a_file_reason(good) is None and not_a_file_reason(linked) is None


def test_emodb_adapter_lists_them(tmp_path: Path) -> None:
    _wav(tmp_path / "03a01Fa.wav")
    expect = _odd_entries(tmp_path, "03a01W")
    adapter = get_adapter("emodb")
    assert [u.path.name for u in adapter.scan(tmp_path)] == ["03a01Fa.wav"]
    assert {p.name: why for p, why in adapter.unrecognised} == expect


def test_iemocap_adapter_lists_them(tmp_path: Path) -> None:
    wav_dir = tmp_path / "Session1" / "sentences" / "wav" / "Ses01F_impro01"
    _wav(wav_dir / "Ses01F_impro01_F000.wav")
    expect = _odd_entries(wav_dir, "Ses01F_impro01_M00")
    eval_dir = tmp_path / "Session1" / "dialog" / "EmoEvaluation"
    eval_dir.mkdir(parents=True)
    (eval_dir / "Ses01F_impro01.txt").write_text("[0.0 - 1.0]\tSes01F_impro01_F000\tneu\t[2.5, 2.5, 2.5]\n")
    adapter = get_adapter("iemocap")
    assert [u.path.name for u in adapter.scan(tmp_path)] == ["Ses01F_impro01_F000.wav"]
    assert {p.name: why for p, why in adapter.unrecognised} == expect


def test_synthetic_adapter_lists_them(tmp_path: Path) -> None:
    _wav(tmp_path / "spk01_female" / "angry" / "spk01_angry_000.wav")
    expect = _odd_entries(tmp_path / "spk01_female" / "angry", "spk01_angry_00")
    adapter = get_adapter("synthetic")
    assert [u.path.name for u in adapter.scan(tmp_path)] == ["spk01_angry_000.wav"]
    assert {p.name: why for p, why in adapter.unrecognised} == expect
