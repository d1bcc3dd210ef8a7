"""Evaluation protocols: which clips a trial trains, validates and is tested on.

A prepared directory can hold several corpora, each clip with a speaker-grouped fold. One rule
covers every protocol: for test fold f the validation fold is f+1 (mod n_folds), and

- **within-corpus** (the default; training corpora = evaluation corpora): test = fold f,
  validation = fold f+1, train = the rest — exactly `PreparedCorpus.split_indices(f)`;
- **cross-corpus** (`train_corpora` and `eval_corpora` differ): a corpus used only for
  evaluation is tested on all its clips; a corpus used only for training gives all its clips
  except the validation fold to training; a corpus on both sides follows the within rule;
- **leave-one-corpus-out** (`leave_out = "emodb"`): cross-corpus with the named corpus as the
  only evaluation corpus and every other corpus as training corpora.

Validation always comes from the training corpora: choosing the best epoch on the evaluation
corpus would leak the target domain into model selection. Cross-corpus evaluation uses the
emotions both sides share — a model cannot be scored on a class it never saw, and a class the
evaluation corpus lacks would only inflate chance — so training, validation and test clips are
restricted to those classes and the dropped ones are recorded with the reason. Noisy copies
stay in training only, as in every protocol. Speaker ids are "corpus:speaker", so speakers of
different corpora never coincide and speaker-independence across corpora holds by
construction; within a corpus it holds because folds are speaker-grouped.

**Held-out test folds** (`test_folds`, within-corpus only) give nested selection: the listed
folds are the test set and nothing else — never trained on, never validated on — and the fold
`fold` is the validation fold; training takes every other fold. A cross-validated trial
(`data.folds` with `data.test_folds`) runs one such split per selection fold, so everything the
selection reads comes from folds whose test figures are never reported for that choice
(`design_folds`, `FoldDesign.exposed`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

CORPUS_SEPARATOR = "+"  # how a list of corpora is written in one Parquet cell: "ravdess+tess"


class ProtocolError(ValueError):
    """The requested corpora or fold cannot form an evaluation split; the message says why."""


@dataclass(frozen=True)
class EvaluationSplit:
    """Row indices per subset and what the protocol kept and dropped."""

    rows: dict[str, np.ndarray]              # "train" / "val" / "test" -> sorted row indices
    train_corpora: tuple[str, ...]
    eval_corpora: tuple[str, ...]
    classes: tuple[str, ...]                 # labels trained and scored on
    dropped: dict[str, str] = field(default_factory=dict)  # label -> why it was left out

    @property
    def cross_corpus(self) -> bool:
        return set(self.train_corpora) != set(self.eval_corpora)


def join_corpora(corpora: Sequence[str]) -> str:
    return CORPUS_SEPARATOR.join(corpora)


def resolve_corpora(available: Sequence[str], train_corpora: Sequence[str] | None = None,
                    eval_corpora: Sequence[str] | None = None,
                    leave_out: str | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training corpora, evaluation corpora), each sorted, from a data config's three keys.

    None means: train on every available corpus (minus `leave_out`), evaluate on the training
    corpora (or on `leave_out`)."""
    available = sorted(set(available))
    named = list(train_corpora or []) + list(eval_corpora or []) + ([leave_out] if leave_out else [])
    unknown = sorted({c for c in named if c not in available})
    if unknown:
        raise ProtocolError(f"corpus {', '.join(map(repr, unknown))} is not in the prepared data "
                            f"(it holds: {', '.join(available)})")
    if leave_out is not None:
        if train_corpora is not None or eval_corpora is not None:
            raise ProtocolError("leave_out cannot be combined with train_corpora or eval_corpora")
        if len(available) < 2:
            raise ProtocolError(f"leave-one-corpus-out needs at least two corpora; the prepared data "
                                f"holds only {available[0] if available else 'none'}")
        return tuple(c for c in available if c != leave_out), (leave_out,)
    train = tuple(sorted(set(train_corpora))) if train_corpora is not None else tuple(available)
    evaluate = tuple(sorted(set(eval_corpora))) if eval_corpora is not None else train
    return train, evaluate


def subset_masks(manifest: pd.DataFrame, n_folds: int, fold: int, train_corpora: Sequence[str] | None = None,
                 eval_corpora: Sequence[str] | None = None,
                 test_folds: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Boolean row masks of train / val / test under the module's fold rule, before any class
    restriction; corpora None = every corpus (the within-corpus split). With `test_folds`
    (within-corpus only) `fold` is the validation fold and the listed folds the test set."""
    corpus = manifest["corpus"].to_numpy().astype(str)
    folds = manifest["fold"].to_numpy()
    original = ~manifest["augmented"].to_numpy(dtype=bool)
    if test_folds is not None:
        held = np.isin(folds, np.asarray(list(test_folds)))
        val_fold = folds == fold
        return {"train": ~held & ~val_fold, "val": original & val_fold, "test": original & held}
    in_train = np.ones(len(corpus), dtype=bool) if train_corpora is None else np.isin(corpus, train_corpora)
    in_eval = np.ones(len(corpus), dtype=bool) if eval_corpora is None else np.isin(corpus, eval_corpora)
    test_fold = folds == fold
    val_fold = folds == (fold + 1) % n_folds
    # A corpus on both sides keeps its test fold out of training; an eval-only corpus is all test.
    return {"train": in_train & ~val_fold & ~(in_eval & test_fold),
            "val": in_train & original & val_fold,
            "test": in_eval & original & (test_fold | ~in_train)}


def evaluation_split(manifest: pd.DataFrame, labels: Sequence[str], n_folds: int, fold: int = 0, *,
                     train_corpora: Sequence[str] | None = None, eval_corpora: Sequence[str] | None = None,
                     leave_out: str | None = None, test_folds: Sequence[int] | None = None) -> EvaluationSplit:
    """The rows of each subset under the module's rule (manifest: a prepared corpus's)."""
    if not isinstance(fold, (int, np.integer)) or not 0 <= fold < n_folds:
        raise ProtocolError(f"fold {fold!r} out of range: the prepared data has folds 0..{n_folds - 1}")
    if test_folds is not None:
        bad = [f for f in test_folds if not 0 <= f < n_folds]
        if bad:
            raise ProtocolError(f"test_folds {bad} out of range: the prepared data has folds 0..{n_folds - 1}")
        if fold in test_folds:
            raise ProtocolError(f"fold {fold} is both the validation fold and a held-out test fold")
        if train_corpora is not None or eval_corpora is not None or leave_out is not None:
            raise ProtocolError("test_folds needs the within-corpus protocol")
    train_c, eval_c = resolve_corpora(manifest["corpus"].astype(str).unique(), train_corpora, eval_corpora,
                                      leave_out)
    masks = subset_masks(manifest, n_folds, fold, train_c, eval_c, test_folds)
    train, val, test = masks["train"], masks["val"], masks["test"]

    label_ids = manifest["label_id"].to_numpy()
    dropped: dict[str, str] = {}
    if set(train_c) != set(eval_c):
        seen_train = set(np.unique(label_ids[train]).tolist())
        seen_test = set(np.unique(label_ids[test]).tolist())
        for i in sorted(seen_train ^ seen_test):
            side = "training" if i in seen_train else "evaluation"
            dropped[labels[i]] = f"only in the {side} corpora"
        for i in sorted(set(np.unique(label_ids[val]).tolist()) - seen_train - seen_test):
            dropped[labels[i]] = "only in the validation rows (neither trained on nor tested)"
        keep = np.array(sorted(seen_train & seen_test), dtype=label_ids.dtype)
        if len(keep) < 2:
            raise ProtocolError(f"training corpora {join_corpora(train_c)} and evaluation corpora "
                                f"{join_corpora(eval_c)} share {len(keep)} emotion class(es); at least 2 are needed")
        shared = np.isin(label_ids, keep)
        train, val, test = train & shared, val & shared, test & shared
        classes = tuple(labels[i] for i in keep)
    else:
        classes = tuple(labels[i] for i in sorted(set(np.unique(label_ids[train | val | test]).tolist())))

    rows = {"train": np.flatnonzero(train).astype(np.int64), "val": np.flatnonzero(val).astype(np.int64),
            "test": np.flatnonzero(test).astype(np.int64)}
    for name, idx in rows.items():
        if len(idx) == 0:
            where = join_corpora(eval_c if name == "test" else train_c)
            design = (f"validation fold {fold}, held-out test folds {list(test_folds)}" if test_folds is not None
                      else f"validation uses fold {(fold + 1) % n_folds} of the training corpora")
            raise ProtocolError(f"the {name} split of fold {fold} is empty for corpora {where} "
                                f"({design}); try another fold")
    return EvaluationSplit(rows=rows, train_corpora=train_c, eval_corpora=eval_c, classes=classes, dropped=dropped)


@dataclass(frozen=True)
class FoldDesign:
    """Which folds a trial validated on (what selection reads) and which it reports test
    figures for. `test_folds` None: the test set is whole corpora (cross-corpus protocols)."""

    val_folds: tuple[int, ...]
    test_folds: tuple[int, ...] | None

    def exposed(self, selected_on: Sequence[int] = ()) -> tuple[int, ...]:
        """The test folds that were also validation folds of this design or of `selected_on`
        (the validation folds of the trial a confirmation re-runs): speakers whose test figure
        is reported although selection read their validation score."""
        if self.test_folds is None:
            return ()
        return tuple(sorted(set(self.test_folds) & (set(self.val_folds) | {int(f) for f in selected_on})))


def design_folds(n_folds: int, fold: int, folds: Sequence[int] | None = None,
                 test_folds: Sequence[int] | None = None, cross_corpus: bool = False) -> FoldDesign:
    """The validation and test folds of a data section (`fold`, `folds`, `test_folds`) on data
    with `n_folds` folds, by the module's rule:

    - one fold: validation f+1, test f;
    - cross-validated over test folds (`folds` alone, the design before held-out folds): each
      listed fold is a test fold and the next one its validation fold, so a fold can be the
      validation fold of one run and the test fold of another — not nested;
    - held-out (`test_folds`): validation = `folds` (or `fold`), test = `test_folds`: nested.
    """
    if test_folds is not None:
        val = tuple(folds) if folds else (fold,)
        return FoldDesign(tuple(int(f) for f in val), tuple(sorted(int(f) for f in test_folds)))
    tests = tuple(folds) if folds else (fold,)
    vals = tuple(sorted({(int(f) + 1) % n_folds for f in tests}))
    if cross_corpus:
        return FoldDesign(vals, None)
    return FoldDesign(vals, tuple(sorted(int(f) for f in tests)))
