"""Embeddings of a finished trial on its test split, for the dashboard's 2-D view.

The center-loss paper claims tighter classes; a reader should be able to see that, not only
read a compactness number. So the trial's saved best weights (`best.pt`) are loaded with
ser_core's own Predictor (same frontend, normaliser and model as training) and `embed` runs on
the test split of the prepared corpus named in the trial's config (a speaker-normalised trial's
per-speaker statistics are not in the checkpoint: ser_core rebuilds its features as training
did). Compactness is recomputed on the full embedding with ser_core.metrics (it should equal
the figure recorded at training, a check that the view shows the right model); PCA
(scikit-learn) only makes it drawable.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

MAX_CLIPS = 2000  # embed at most this many test clips (a deterministic sample beyond that)
_BATCH = 128


class EmbeddingUnavailable(RuntimeError):
    """The view cannot be drawn for this trial; the message says why in plain words."""


class CheckpointMissing(EmbeddingUnavailable):
    """No weights for this trial here (none recorded, or written on another node): the next
    best trial may still have some, unlike a checkpoint that exists but cannot be used."""


@dataclass(frozen=True)
class EmbeddingView:
    checkpoint: str
    points: np.ndarray  # (n, 2) PCA coordinates
    labels: tuple[str, ...]  # emotion per point
    classes: tuple[str, ...]  # the model's label set, in its order
    explained: tuple[float, float]  # variance ratio of the two components
    compactness: float  # recomputed on the full-dimensional embedding
    n_clips: int
    n_test: int  # clips in the test split (n_clips < n_test when sampled)


def locate_checkpoint(path: str | None, sweep_dir: Path | None) -> Path:
    """The recorded checkpoint path, or the same file under the sweep's own `tune/` folder when
    the results were moved or copied from the machine that wrote them."""
    if not path:
        raise CheckpointMissing("the trial has no checkpoint recorded")
    p = Path(path)
    if p.is_file():
        return p
    parts = p.parts
    if sweep_dir is not None and "tune" in parts:
        moved = sweep_dir.joinpath(*parts[len(parts) - 1 - parts[::-1].index("tune"):])
        if moved.is_file():
            return moved
    raise CheckpointMissing(f"checkpoint {path} is not on this machine")


def embedding_view(checkpoint: Path) -> EmbeddingView:
    """Cached per checkpoint file version: a served dashboard rebuilds often, weights rarely change."""
    st = checkpoint.stat()
    return _view(str(checkpoint), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=8)
def _view(path: str, _mtime_ns: int, _size: int) -> EmbeddingView:
    from sklearn.decomposition import PCA  # noqa: PLC0415

    from ser_core.metrics import compactness  # noqa: PLC0415

    z, labels, classes, n_test = test_embeddings(Path(path))
    y = np.asarray(labels)
    if len(z) < 3:
        raise EmbeddingUnavailable(f"only {len(z)} test clip(s); a 2-D view needs at least 3")
    pca = PCA(n_components=2, random_state=0).fit(z)
    ratio = pca.explained_variance_ratio_
    return EmbeddingView(checkpoint=path, points=pca.transform(z), labels=tuple(labels), classes=classes,
                         explained=(float(ratio[0]), float(ratio[1])), compactness=compactness(z, y),
                         n_clips=len(z), n_test=n_test)


@torch.no_grad()
def test_embeddings(checkpoint: Path) -> tuple[np.ndarray, list[str], tuple[str, ...], int]:
    """(embeddings (n, d), emotion label per clip, label set, size of the test split) of a best.pt."""
    from ser_core.corpus import CorpusFormatError, PreparedCorpus  # noqa: PLC0415
    from ser_core.features import num_frames  # noqa: PLC0415
    from ser_core.predict import Predictor  # noqa: PLC0415

    try:
        # weights_only: the file holds tensors and plain values; never unpickle arbitrary objects
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        predictor = Predictor(state)
    except Exception as e:  # noqa: BLE001 - any unreadable/foreign file becomes a message
        raise EmbeddingUnavailable(f"checkpoint {checkpoint} cannot be loaded: {e}") from None
    cfg = predictor.config
    prepared = Path(cfg.data.prepared)
    try:
        corpus = PreparedCorpus.load(prepared)
        rows = corpus.evaluation_split(cfg.data.fold, **cfg.data.protocol_args()).rows["test"]
    except (CorpusFormatError, ValueError) as e:
        raise EmbeddingUnavailable(f"the trial's prepared corpus is not usable here: {e}") from None
    if tuple(corpus.labels) != tuple(predictor.labels):
        raise EmbeddingUnavailable(f"prepared corpus {prepared} has labels {list(corpus.labels)}, "
                                   f"the checkpoint {list(predictor.labels)}")
    n_test = len(rows)
    pos = np.arange(n_test)  # positions in the test split that are embedded
    if n_test > MAX_CLIPS:
        pos = np.sort(np.random.default_rng(0).choice(n_test, MAX_CLIPS, replace=False))
    rows = rows[pos]
    model = predictor.model.eval()
    parts = []
    if cfg.normalization == "speaker" or cfg.model.fuse_functionals != "off":
        # each row was normalised with its speaker's statistics, which the checkpoint does not
        # hold (and a fused model reads functionals too): ser_core rebuilds the split's inputs the
        # way the trial's training did
        from ser_core.train import trained_split_inputs  # noqa: PLC0415
        try:
            feats, lengths, functionals = trained_split_inputs(cfg, corpus, "test")
        except (ValueError, OSError) as e:
            raise EmbeddingUnavailable(f"the trial's test features cannot be rebuilt here: {e}") from None
        idx = torch.as_tensor(pos, dtype=torch.long)
        if lengths is not None:
            lengths = lengths[idx]
        for s in range(0, len(idx), _BATCH):
            batch = idx[s:s + _BATCH]
            extra = () if functionals is None else (functionals[batch],)
            parts.append(model.embed(feats[batch], None if lengths is None else lengths[s:s + _BATCH], *extra)
                         .float())
    else:
        lengths = None
        if cfg.variable_length:
            lengths = torch.as_tensor([num_frames(predictor.frontend_cfg, int(s))
                                       for s in corpus.manifest["valid_samples"].to_numpy()[rows]], dtype=torch.long)
        for s in range(0, len(rows), _BATCH):
            wave = torch.from_numpy(np.ascontiguousarray(corpus.waveforms[rows[s:s + _BATCH]]))
            feats = predictor.normalizer(predictor.frontend(wave))
            parts.append(model.embed(feats, None if lengths is None else lengths[s:s + _BATCH]).float())
    z = torch.cat(parts).numpy() if parts else np.zeros((0, 0), dtype=np.float32)
    ids = corpus.manifest["label_id"].to_numpy()[rows]
    return z, [corpus.labels[int(i)] for i in ids], tuple(corpus.labels), n_test
