"""Verdicts on the two papers' claims, from confirmed runs (`ser-search claims RESULTS_DIR`).

Both papers report single runs with no interval, so a claim like "center loss adds 3 UA points"
is only checkable by repeating both arms over seeds (and folds) and looking at the *paired*
differences: runs that share a seed and fold share the data split and initial draw, so pairing
removes that shared noise from the comparison.

How a row is computed
---------------------
1. Only `stage == "confirm"`, `status == "completed"` trials are read (pruned and search-stage
   trials have different budgets; mixing them would bias the arms).
2. Each arm is a (loss_family, frontend[, model]) cell. When the cell holds several
   configurations (sweep, config_key), the one with the best mean **validation** UA (then
   validation WA, then its name) is used. Test numbers never take part in this choice;
   otherwise the verdict would be tuned on the test set.
3. The two chosen configurations' test metrics are paired by (seed, fold); a pair lacking the
   metric on either side is left out. The difference is oriented so that positive means "arm a
   is better": a - b for accuracies, b - a for compactness (lower is tighter).
4. `paired_difference` gives the mean difference and its Student-t interval (scipy.stats.t).
5. Runs are compared only within one protocol (training corpora -> evaluation corpora): each
   claim gets a row per protocol found, so "does it hold on EmoDB when trained elsewhere?"
   is its own row (`protocol` "within" where the runs train and test on the same corpora).

The verdict rule (each claim says "arm a beats arm b by more than E", E = stated effect)
---------------------------------------------------------------------------------------
- **supported**: the whole interval lies above E (ci_low > E);
- **contradicted**: the whole interval lies at or below E (ci_high <= E): with 95 % confidence
  the effect is not larger than claimed. This includes "no difference" and "arm b is better",
  but also "a real but smaller effect" (e.g. [0.005, 0.02] against a claimed 0.03);
- **inconclusive**: the interval contains E, or fewer than two pairs (no interval). In
  particular an interval covering both zero and E is inconclusive.

Stated effects: claim 1 0.03 (Dai et al.: > 3 points on Mel), claim 2 0.04 (> 4 points on STFT),
claim 3 0.10 for "a wide margin" (the paper gives no number; ten points is our reading) and 0
for the orderings "SmoothL1 in between", claim 4 0 (any decrease of compactness).
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pandas/scipy are imported lazily so `ser-search --help` stays fast
    import pandas as pd

Verdict = Literal["supported", "contradicted", "inconclusive"]
FORMATS = ("table", "markdown", "csv", "json")
PAIR_KEYS = ("seed", "fold")
COLUMNS = ("claim", "protocol", "statement", "arm_a", "arm_b", "metric", "n_pairs", "mean_diff", "ci_low", "ci_high",
           "stated_effect", "verdict", "config_a", "config_b")
# Metrics where a lower value is the better one; their difference is taken b - a.
LOWER_IS_BETTER = frozenset({"compactness_val", "compactness_test"})


class ClaimsError(ValueError):
    """The trials table or the arguments cannot give claim verdicts; the message says why."""


@dataclass(frozen=True)
class PairedResult:
    """Mean of the paired differences a - b, its confidence interval (None for n < 2), n."""
    mean_diff: float
    interval: tuple[float, float] | None
    n: int
    confidence: float = 0.95


@dataclass(frozen=True)
class Arm:
    loss_family: str
    frontend: str
    model: str | None = None  # None: any model

    def label(self) -> str:
        return f"{self.loss_family}/{self.frontend}" + (f" ({self.model})" if self.model else "")


@dataclass(frozen=True)
class Claim:
    """'arm_a beats arm_b on each metric by more than stated_effect'."""
    claim: str
    statement: str
    arm_a: Arm
    arm_b: Arm
    metrics: tuple[str, ...]
    stated_effect: float
    sweep: str  # the example sweep that produces the runs this claim needs


_DAI = "search/sweeps/center_loss_dai2019.toml"
_CNNT = "search/sweeps/loss_functions_cnn_transformer.toml"
_ACC = ("test_ua", "test_wa")


def _ct(family: str) -> Arm:
    return Arm(family, "mel", "cnn_transformer")


CLAIMS: tuple[Claim, ...] = (
    Claim("1", "center + softmax beats softmax on Mel by > 3 points", Arm("center", "mel"),
          Arm("cross_entropy", "mel"), _ACC, 0.03, _DAI),
    Claim("2", "center + softmax beats softmax on STFT by > 4 points", Arm("center", "stft"),
          Arm("cross_entropy", "stft"), _ACC, 0.04, _DAI),
    Claim("3a", "CNN-Transformer: cross-entropy beats L1 by a wide margin (> 10 points)", _ct("cross_entropy"),
          _ct("l1"), _ACC, 0.10, _CNNT),
    Claim("3b", "CNN-Transformer: BCE beats L1 by a wide margin (> 10 points)", _ct("bce"), _ct("l1"),
          _ACC, 0.10, _CNNT),
    Claim("3c", "CNN-Transformer: SmoothL1 beats L1 (in between, lower end)", _ct("smooth_l1"), _ct("l1"),
          _ACC, 0.0, _CNNT),
    Claim("3d", "CNN-Transformer: cross-entropy beats SmoothL1 (in between, upper end)", _ct("cross_entropy"),
          _ct("smooth_l1"), _ACC, 0.0, _CNNT),
    Claim("3e", "CNN-Transformer: BCE beats SmoothL1 (in between, upper end)", _ct("bce"), _ct("smooth_l1"),
          _ACC, 0.0, _CNNT),
    Claim("4a", "center loss makes classes more compact on Mel (lower test compactness)", Arm("center", "mel"),
          Arm("cross_entropy", "mel"), ("compactness_test",), 0.0, _DAI),
    Claim("4b", "center loss makes classes more compact on STFT (lower test compactness)", Arm("center", "stft"),
          Arm("cross_entropy", "stft"), ("compactness_test",), 0.0, _DAI),
)


def claim_arms(claims: Sequence[Claim] = CLAIMS) -> list[dict[str, str]]:
    """Every arm the claims compare, in first-mention order: what `ser-search confirm
    --for-claims` confirms, so no claim lacks an arm. An arm tied to a model (the
    CNN-Transformer claims) carries `model`, so a sweep over several models confirms that
    model's configuration; an arm without one matches any model."""
    seen: dict[tuple[tuple[str, str], ...], None] = {}
    for c in claims:
        for arm in (c.arm_a, c.arm_b):
            cell = {"loss_family": arm.loss_family, "frontend": arm.frontend}
            if arm.model is not None:
                cell["model"] = arm.model
            seen.setdefault(tuple(cell.items()), None)
    return [dict(cell) for cell in seen]


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedResult:
    """Mean of a[i] - b[i] with its Student-t interval on the n paired differences
    (mean ± t.ppf((1+confidence)/2, n-1) · sd / √n); interval None when n < 2."""
    from scipy import stats  # noqa: PLC0415 - heavy, see the module note on imports

    if len(a) != len(b):
        raise ClaimsError(f"paired_difference: a has {len(a)} values but b has {len(b)}; pairs must line up")
    if not 0.0 < confidence < 1.0:
        raise ClaimsError(f"paired_difference: confidence must be in (0, 1), got {confidence}")
    d = [float(x) - float(y) for x, y in zip(a, b)]
    bad = [i for i, v in enumerate(d) if not math.isfinite(v)]
    if bad:
        raise ClaimsError(f"paired_difference: pair(s) at position {bad} are not finite numbers; drop them first")
    n = len(d)
    if n == 0:
        return PairedResult(math.nan, None, 0, confidence)
    mean = sum(d) / n
    if n < 2:
        return PairedResult(mean, None, n, confidence)
    sd = math.sqrt(sum((v - mean) ** 2 for v in d) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * sd / math.sqrt(n)
    return PairedResult(mean, (mean - half, mean + half), n, confidence)


def verdict(result: PairedResult, stated_effect: float) -> Verdict:
    """The module docstring's rule: supported when the interval lies wholly above the stated
    effect, contradicted when wholly at or below it, otherwise (or with no interval) inconclusive."""
    if result.interval is None:
        return "inconclusive"
    low, high = result.interval
    if low > stated_effect:
        return "supported"
    if high <= stated_effect:
        return "contradicted"
    return "inconclusive"


# ---------------------------------------------------------------------------- from trials


def _confirmed(trials: pd.DataFrame) -> pd.DataFrame:
    required = {"stage", "status", "loss_family", "frontend", "seed", "val_ua"}
    missing = sorted(required - set(trials.columns))
    if missing:
        raise ClaimsError(f"trials table lacks column(s) {missing}; is it from read_trials()?")
    df = trials[(trials["stage"] == "confirm") & (trials["status"] == "completed")].copy()
    for c in ("sweep", "config_key", "fold", "model", "val_wa"):
        if c not in df.columns:
            df[c] = None
    if "trial_id" not in df.columns:
        df["trial_id"] = [f"row{i}" for i in range(len(df))]
    # A row without a config key stands alone rather than being merged with other rows.
    df["config_key"] = df["config_key"].astype("object").where(
        df["config_key"].notna(), "trial:" + df["trial_id"].astype(str))
    df["_config"] = df["sweep"].astype(str) + "/" + df["config_key"].astype(str)
    df["protocol"] = [_protocol(t, e) for t, e in zip(df.get("train_corpora", [None] * len(df)),
                                                      df.get("eval_corpora", [None] * len(df)))]
    return df


def _protocol(train: Any, evaluate: Any) -> str:
    missing = lambda v: v is None or (isinstance(v, float) and math.isnan(v))  # noqa: E731
    if missing(train) and missing(evaluate):
        return "within"  # rows written before the corpora were recorded
    if train == evaluate:
        return f"within {train}"
    return f"{'(all but the evaluation corpora)' if missing(train) else train} -> {evaluate}"


def _choose_config(df: pd.DataFrame, arm: Arm) -> tuple[str | None, pd.DataFrame]:
    """The arm's configuration with the best mean validation UA (then WA, then name)."""
    rows = df[(df["loss_family"] == arm.loss_family) & (df["frontend"] == arm.frontend)]
    if arm.model is not None:
        rows = rows[rows["model"] == arm.model]
    if rows.empty:
        return None, rows
    score = rows.groupby("_config")[["val_ua", "val_wa"]].mean().fillna(-math.inf).reset_index()
    score = score.sort_values(["val_ua", "val_wa", "_config"], ascending=[False, False, True], kind="stable")
    best = str(score["_config"].iloc[0])
    return best, rows[rows["_config"] == best]


def _per_pair(rows: pd.DataFrame, metric: str) -> pd.Series:
    keyed = rows.assign(fold=rows["fold"].astype("float64").fillna(-1.0))  # no folds: pair by seed only
    return keyed.dropna(subset=[metric]).groupby(list(PAIR_KEYS))[metric].mean()


def evaluate_claims(trials: pd.DataFrame, claims: Sequence[Claim] = CLAIMS, confidence: float = 0.95) -> pd.DataFrame:
    """One row per claim × metric (columns: COLUMNS) from the confirmed, completed trials."""
    import pandas as pd  # noqa: PLC0415

    confirmed = _confirmed(trials)
    out = []
    protocols = sorted(confirmed["protocol"].unique()) or ["within"]
    for claim, protocol in ((c, p) for c in claims for p in protocols):
        df = confirmed[confirmed["protocol"] == protocol]
        cfg_a, rows_a = _choose_config(df, claim.arm_a)
        cfg_b, rows_b = _choose_config(df, claim.arm_b)
        for metric in claim.metrics:
            if metric not in confirmed.columns:
                raise ClaimsError(f"claim {claim.claim}: trials table lacks column {metric!r}")
            a = _per_pair(rows_a, metric) if cfg_a else pd.Series(dtype="float64")
            b = _per_pair(rows_b, metric) if cfg_b else pd.Series(dtype="float64")
            common = a.index.intersection(b.index).sort_values()
            x, y = a.loc[common].tolist(), b.loc[common].tolist()
            res = paired_difference(y, x, confidence) if metric in LOWER_IS_BETTER else paired_difference(x, y, confidence)
            low, high = res.interval if res.interval else (math.nan, math.nan)
            out.append({"claim": claim.claim, "protocol": protocol, "statement": claim.statement, "arm_a": claim.arm_a.label(),
                        "arm_b": claim.arm_b.label(), "metric": metric, "n_pairs": res.n, "mean_diff": res.mean_diff,
                        "ci_low": low, "ci_high": high, "stated_effect": claim.stated_effect,
                        "verdict": verdict(res, claim.stated_effect), "config_a": cfg_a, "config_b": cfg_b})
    return pd.DataFrame(out, columns=list(COLUMNS))


def render_claims(df: pd.DataFrame, fmt: Literal["table", "markdown", "csv", "json"] = "table") -> str:
    """Same formats as the leaderboard; csv/json keep every number raw."""
    from .leaderboard import render  # noqa: PLC0415

    if fmt not in FORMATS:
        raise ClaimsError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if df.empty and fmt in ("table", "markdown"):
        return "no claims evaluated"
    return render(df, fmt)


def add_claims_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register `ser-search claims RESULTS_DIR [--format F]` on the `ser-search` sub-parsers."""
    c = subparsers.add_parser("claims", help="verdicts on the papers' claims from confirmed runs")
    c.add_argument("results_dir", help="results directory (all sweeps) or one sweep's directory")
    c.add_argument("--format", choices=FORMATS, default="table")

    def run(args: argparse.Namespace) -> int:
        from .results import read_trials  # noqa: PLC0415 - pandas/pyarrow only when the command runs

        trials = read_trials(args.results_dir)
        table = evaluate_claims(trials)
        print(render_claims(table, args.format))
        if args.format in ("table", "markdown") and table["n_pairs"].lt(2).any():
            need = sorted({cl.sweep for cl in CLAIMS if cl.claim in set(table.loc[table["n_pairs"] < 2, "claim"])})
            print(f"\nclaims with fewer than 2 paired runs are inconclusive; run `ser-search confirm` "
                  f"(several seeds) on the results of: {', '.join(need)}")
        return 0

    c.set_defaults(func=run)
    return c
