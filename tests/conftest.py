"""Shared fixtures: the real EmoDB clips and a small prepared synthetic corpus."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def find_emodb() -> Path | None:
    """shared/ sits beside the checkout (CI: a fresh clone with shared/ next to it)."""
    env = os.environ.get("SER_SEARCH_EMODB")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data" / "emodb",
                                                  REPO / "shared" / "data" / "emodb",
                                                  Path("/work/shared/data/emodb")]:
        if cand.is_dir() and any(cand.glob("*.wav")):
            return cand
    return None


@pytest.fixture(scope="session")
def emodb_dir() -> Path:
    path = find_emodb()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("EmoDB clips not found beside the checkout (../shared/data/emodb); CI must have them")
        pytest.skip("EmoDB clips not available")
    return path


@pytest.fixture(scope="session")
def synthetic_prepared(tmp_path_factory) -> Path:
    """A small synthetic corpus, generated and prepared once per test session."""
    from ser_core.prepare import PrepareOptions, prepare_corpora
    from ser_core.synthetic import generate_corpus

    base = tmp_path_factory.mktemp("synthetic")
    root = generate_corpus(base / "wav", n_speakers=6, clips_per_emotion=8, seed=0)
    out = base / "prepared"
    prepare_corpora({"synthetic": root}, out,
                    PrepareOptions(segment_seconds=1.5, n_folds=3, augment_copies=1), progress=False)
    return out


@pytest.fixture(scope="session")
def small_prepared(tmp_path_factory) -> Path:
    """96 synthetic clips (6 speakers x 4 emotions x 4), no noisy copies, 3 speaker folds; 2.5 s
    segments, so clips end in zero padding: the utterance frontends' tests (functionals, ssl)."""
    from ser_core.prepare import PrepareOptions, prepare_corpora
    from ser_core.synthetic import generate_corpus

    base = tmp_path_factory.mktemp("small")
    root = generate_corpus(base / "wav", n_speakers=6, clips_per_emotion=4,
                           emotions=("neutral", "happy", "sad", "angry"), seed=3)
    out = base / "prepared"
    prepare_corpora({"synthetic": root}, out, PrepareOptions(segment_seconds=2.5, n_folds=3, augment_copies=0),
                    progress=False)
    return out


@pytest.fixture(scope="session")
def mixed_prepared(tmp_path_factory, emodb_dir) -> Path:
    """The real EmoDB clips and a small synthetic corpus prepared together (speaker folds
    over both): the cross-corpus tests' data."""
    from ser_core.prepare import PrepareOptions, prepare_corpora
    from ser_core.synthetic import generate_corpus

    base = tmp_path_factory.mktemp("mixed")
    root = generate_corpus(base / "wav", n_speakers=6, clips_per_emotion=8, seed=0)
    out = base / "prepared"
    prepare_corpora({"synthetic": root, "emodb": emodb_dir}, out,
                    PrepareOptions(segment_seconds=1.5, n_folds=3, augment_copies=1), progress=False)
    return out


def pytest_sessionfinish(session, exitstatus):
    """Leave no Ray session to the interpreter's exit: a local Ray's threads torn down by atexit
    beside torch's can crash the process after every test has passed (seen once: exit 139)."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
