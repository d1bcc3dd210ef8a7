"""Evaluation metrics. UA is balanced accuracy (mean per-class recall), WA plain accuracy,
as SER papers report them; all from scikit-learn so the numbers match everyone else's."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)


@dataclass(frozen=True)
class ClassificationReport:
    ua: float
    wa: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    confusion: np.ndarray  # (C, C), rows = true, cols = predicted, over the full label set

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}_ua": self.ua,
            f"{prefix}_wa": self.wa,
            f"{prefix}_precision_macro": self.precision_macro,
            f"{prefix}_recall_macro": self.recall_macro,
            f"{prefix}_f1_macro": self.f1_macro,
        }


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> ClassificationReport:
    """Macro figures are taken over the classes present in y_true (sklearn's `labels=` of
    present classes), so a class absent from a split does not drag macro-F1 to zero."""
    present = np.unique(y_true)
    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=present, average="macro", zero_division=0
    )
    return ClassificationReport(
        ua=float(balanced_accuracy_score(y_true, y_pred)),
        wa=float(accuracy_score(y_true, y_pred)),
        precision_macro=float(p),
        recall_macro=float(r),
        f1_macro=float(f),
        confusion=confusion_matrix(y_true, y_pred, labels=np.arange(num_classes)),
    )


# Two UAs closer than this are one score reached by two confusion matrices: UA is a mean of
# per-class recalls, and equal means summed from other recalls can differ in the last bit
# (0.5208333333333333 vs ...334: the float error is ~1e-16). A real difference below 1e-12
# would need per-class recall changes that cancel to 12 digits.
SAME_SCORE = 1e-12


def improves(score: float, best: float) -> bool:
    """Model selection's rule: a later epoch replaces the best only by a higher score; on a tie
    the earlier epoch stays (the fewer epochs, and the same rule whatever the rounding)."""
    return score > best + SAME_SCORE


def compactness(embeddings: np.ndarray, y: np.ndarray) -> float:
    """Mean distance of each embedding to its class center divided by the mean distance
    between class centers: lower means tighter, better separated classes (the center-loss
    paper's claim). NaN when fewer than two classes are present."""
    classes = np.unique(y)
    if len(classes) < 2:
        return float("nan")
    z = embeddings.astype(np.float64)
    centers = np.stack([z[y == c].mean(axis=0) for c in classes])
    center_of = {c: i for i, c in enumerate(classes)}
    intra = np.linalg.norm(z - centers[[center_of[c] for c in y]], axis=1).mean()
    diffs = centers[:, None, :] - centers[None, :, :]
    pair = np.linalg.norm(diffs, axis=-1)[np.triu_indices(len(classes), k=1)]
    return float(intra / pair.mean())
