"""Rendering the claim rows and the `ser-search claims` command."""
from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING, Any, Literal

from .model import ClaimsError

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("table", "markdown", "csv", "json")


def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:+.{digits}f}" if isinstance(v, float) else str(v)


def _p(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def display_view(df: pd.DataFrame) -> pd.DataFrame:
    """The people-facing columns of the claim rows: the design (folds x seeds), the mean
    difference a - b with its interval, E, the Holm-adjusted p, the verdict and, for undecided
    rows, the extra units that would likely decide them."""
    import pandas as pd  # noqa: PLC0415

    level = df.attrs.get("confidence", 0.95)
    more = [("" if pd.isna(m) else f"+{int(m)} {u}{'s' if int(m) != 1 else ''}")
            for m, u in zip(df["more_pairs_needed"], df["unit"])]
    return pd.DataFrame({
        "claim": df["claim"], "sweep": df["sweep"].fillna(""), "protocol": df["protocol"].fillna(""),
        "model": df["model"].fillna(""), "metric": df["metric"],
        "folds x seeds": [f"{f} x {s}" for f, s in zip(df["n_folds"], df["n_seeds"])],
        "scope": [("NOT NESTED; " if exp else "") + (sc or "") for sc, exp in
                  zip(df["scope"].fillna(""), df["selection_exposed"].fillna(False).astype(bool))],
        "a - b": [_num(v) for v in df["mean_diff"]],
        f"{level:.0%} CI": ["" if math.isnan(lo) else f"[{lo:+.3f}, {hi:+.3f}]"
                            for lo, hi in zip(df["ci_low"], df["ci_high"])],
        "E": [f"{e:.3g}" for e in df["stated_effect"]],
        "p (Holm)": [_p(v) for v in df["p_holm"]],
        "verdict": df["verdict"], "more runs": more,
    })


def _legend(df: pd.DataFrame) -> list[str]:
    """Each claim's statement and arms, then the notes of rows whose table cells say too little
    (no interval, no estimate of the runs needed)."""
    import pandas as pd  # noqa: PLC0415

    claims = dict.fromkeys(f"  {r.claim}: {r.statement}  (a = {r.arm_a}, b = {r.arm_b})"
                           for r in df.itertuples(index=False))
    # one line per distinct note, naming the rows it is about (claim, and sweep/protocol/model if any)
    notes: dict[str, dict[str, None]] = {}
    for r in df.itertuples(index=False):
        if r.note and pd.isna(r.more_pairs_needed):
            where = " ".join(str(x) for x in (r.sweep, r.protocol, r.model) if not pd.isna(x) and x)
            notes.setdefault(r.note, {}).setdefault(r.claim + (f" ({where})" if where else ""), None)
    lines = [f"  {', '.join(rows)}: {note}" for note, rows in notes.items()]
    level = df.attrs.get("confidence", 0.95)
    scope = [f"verdicts: each row's own {level:.0%} interval, unadjusted; p_holm: Holm-adjusted over "
             f"these {len(df)} rows (family-wise)",
             "scope: several test folds = the interval over fold means with Nadeau & Bengio's correction for "
             "overlapping training sets; one test fold = the interval over seeds, conditional on those test "
             "speakers (it says nothing about other speakers); NOT NESTED = a paired test fold was a validation "
             "fold of the selection, so the row is optimistic"]
    return ["claims:", *claims] + (["notes:", *lines] if lines else []) + scope


def render_claims(df: pd.DataFrame, fmt: Literal["table", "markdown", "csv", "json"] = "table") -> str:
    """table/markdown for people (the display view, then each claim's statement and the notes of
    rows that lack an interval); csv/json keep every column and number raw."""
    from ..leaderboard import markdown_table, render  # noqa: PLC0415

    if fmt not in FORMATS:
        raise ClaimsError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt in ("csv", "json"):
        return render(df, fmt)
    if df.empty:
        return "no claims evaluated"
    view = display_view(df)
    body = markdown_table(view) if fmt == "markdown" else view.to_string(index=False)
    return body + "\n\n" + "\n".join(_legend(df))


def add_claims_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register `ser-search claims RESULTS_DIR [--claims FILE.toml] [--format F]`."""
    c = subparsers.add_parser("claims", help="verdicts on the papers' (or your own) claims from confirmed runs")
    c.add_argument("results_dir", help="results directory (all sweeps) or one sweep's directory")
    c.add_argument("--claims", metavar="FILE.toml",
                   help="your own hypotheses (format: search/analysis/claims/papers.toml); default: the papers' claims")
    c.add_argument("--format", choices=FORMATS, default="table")

    def run(args: argparse.Namespace) -> int:
        from search.results import explain_no_trials, read_trials  # noqa: PLC0415 - pandas/pyarrow only when the command runs
        from .arms import check_arms_held, evaluate_claims  # noqa: PLC0415
        from .file import load_claims, papers_claims  # noqa: PLC0415

        claims = load_claims(args.claims) if args.claims else papers_claims()
        trials = read_trials(args.results_dir)
        if not len(trials):
            # Placeholder rows would read as "nothing confirmed yet" when the path is wrong.
            started, message = explain_no_trials(args.results_dir)
            if not started:
                raise ClaimsError(message)
            print(message, file=sys.stderr)
        if args.claims:
            check_arms_held(trials, claims, args.results_dir)
        table = evaluate_claims(trials, claims)
        print(render_claims(table, args.format))
        if args.format in ("table", "markdown"):
            short = set(table.loc[table["n_pairs"] < 2, "claim"])
            need = sorted({cl.sweep for cl in claims if cl.claim in short and cl.sweep})
            if short:
                print("\nrows with fewer than 2 paired runs have no interval; run `ser-search confirm` (several "
                      "seeds) on the sweep" + (f" of: {', '.join(need)}" if need else "s that hold the arms"))
        return 0

    c.set_defaults(func=run)
    return c
