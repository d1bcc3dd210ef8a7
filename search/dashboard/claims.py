"""The dashboard's claims view: the claims report (search.analysis.claims, the same numbers as
`ser-search claims`) as a figure, one row per claim x metric (and per sweep, protocol and
prepared corpus where several hold the arms), each row's paired 95 % interval against a line
at 0 and a line at the stated effect E with the verdict beside it, and as a sortable table.

The rows, their figure and the section live together here so a change to what the report
says reaches all three in one place.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .data import CONFIRM_STAGE, DashboardData, is_missing
from .figures import _fmt, _style
from .html import Figures, data_table, esc, note

# ---------------------------------------------------------------------------- rows

# What tells two rows of one claim and metric apart, in the order a label names them.
_CLAIM_CELL = ("sweep", "protocol", "model", "prepared_id")


@dataclass
class ClaimsView:
    """The claims report as the dashboard draws it: every row of search.analysis.claims.evaluate_claims
    in its own order, with a unique `label` and `why` (a short reason a row has no interval,
    else None); `message` instead when there is nothing to evaluate."""

    rows: pd.DataFrame
    message: str | None = None


def _no_interval_reason(r: pd.Series) -> str | None:
    """Short enough to stand beside the row; the report's own `note` (where it has one) goes
    into the hover and the table."""
    if not (is_missing(r["ci_low"]) or is_missing(r["ci_high"])):
        return None
    n = 0 if is_missing(r["n_pairs"]) else int(r["n_pairs"])
    if n == 0:
        for side in ("a", "b"):
            if is_missing(r.get(f"config_{side}")):
                return f"no pairs: {r[f'arm_{side}']} not confirmed"
        return "no pairs: no shared seed and fold"
    if n >= 2:  # enough pairs, no interval: every difference was the same (the report's note says so)
        return f"no spread: all {n} paired differences equal"
    return f"too few pairs: {n} paired run(s)"


def _claim_labels(df: pd.DataFrame) -> list[str]:
    """'claim C · metric', plus the sweep, protocol, model or prepared corpus where the report
    holds rows that differ in them."""
    parts = ["claim", "metric"] + [c for c in _CLAIM_CELL
                                   if c in df.columns and df[c].dropna().astype(str).nunique() > 1]
    labels = ["claim " + " · ".join(str(r[c]) for c in parts if not is_missing(r[c])) for _, r in df.iterrows()]
    seen: dict[str, int] = {}
    for i, lab in enumerate(labels):  # never two rows on one tick
        seen[lab] = seen.get(lab, 0) + 1
        if seen[lab] > 1:
            labels[i] = f"{lab} ({seen[lab]})"
    return labels


def claims_view(trials: pd.DataFrame) -> ClaimsView:
    """Verdicts on the shipped claims from the confirmed, completed trials (search.analysis.claims, the
    same numbers as `ser-search claims`); a message instead of rows when no run is confirmed
    or the trials cannot give verdicts."""
    from search.analysis.claims import ClaimsError, evaluate_claims  # noqa: PLC0415 - scipy only for this section

    empty = pd.DataFrame()
    done = (trials[(trials["stage"] == CONFIRM_STAGE) & (trials["status"] == "completed")]
            if len(trials) else trials)
    if done.empty:
        return ClaimsView(empty, "No confirmed runs yet, so no claim can be checked: run `ser-search confirm "
                                 "RESULTS_DIR --for-claims` to re-run each arm the claims compare with several seeds.")
    try:
        df = evaluate_claims(trials)
    except ClaimsError as e:
        return ClaimsView(empty, f"The claims could not be evaluated on these trials: {e}")
    if df.empty:
        return ClaimsView(empty, "The confirmed runs hold no arm of any claim.")
    df = df.reset_index(drop=True)
    df["label"] = _claim_labels(df)
    df["why"] = [_no_interval_reason(r) for _, r in df.iterrows()]
    return ClaimsView(df)


# ---------------------------------------------------------------------------- figure

VERDICT_COLORS = {"exceeds E": "#1a7f37", "consistent with E": "#2ca02c", "real but smaller than E": "#7fb33f",
                  "not detected": "#7f7f7f", "opposite": "#d62728", "inconclusive": "#e08a00",
                  "supported": "#2ca02c", "contradicted": "#d62728"}  # the last two: older reports
_OTHER_VERDICT = "#1f77b4"
NO_INTERVAL = "no interval (too few pairs, or no spread)"
E_HALF_HEIGHT = 0.38  # a row's E line spans its band, y ± this


def _claim_hover(r: pd.Series) -> str:
    """Every number of a claims row; the optional columns (sweep, folds, seeds, p-values, pairs
    needed) only where the report has them."""
    def has(col: str) -> bool:
        return col in r.index and not is_missing(r[col])

    def text(col: str) -> str:
        return esc(r[col]) if has(col) else "–"

    design = " = ".join([f"{int(r['n_pairs'])} paired run(s)" if has("n_pairs") else "no pairs"]
                        + ([f"{int(r['n_folds'])} fold(s) × {int(r['n_seeds'])} seed(s)"]
                           if has("n_folds") and has("n_seeds") else []))
    if has("unit"):
        design += f"; interval over {text('unit')}s"
    if has("scope") and str(r["scope"]):
        design += f" ({text('scope')})"
    if has("selection_exposed") and bool(r["selection_exposed"]):
        design += "; NOT NESTED: a paired test fold was a validation fold of the selection"
    where = " · ".join([f"{c.replace('_', ' ')} {text(c)}" for c in ("sweep", "protocol", "model", "prepared_id")
                        if has(c)])
    interval = f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if has("ci_low") and has("ci_high") else "none"
    p = " · ".join(([f"p = {_fmt(r['p_value'], 4)}"] if has("p_value") else [])
                   + ([f"Holm-adjusted p = {_fmt(r['p_holm'], 4)}"] if has("p_holm") else []))
    lines = [f"claim {text('claim')}: {text('statement')}", f"{text('arm_a')} vs {text('arm_b')} · {text('metric')}",
             where, design,
             f"mean difference {_fmt(r['mean_diff'])} · 95 % interval {interval} · E = {_fmt(r['stated_effect'])}",
             p, f"verdict: {text('verdict')}", text("note") if has("note") and str(r["note"]) else "",
             f"arm a: {text('config_a')}", f"arm b: {text('config_b')}"]
    return "<br>".join(line for line in lines if line)


def claim_side_text(r: pd.Series) -> str:
    """What stands beside a row: its verdict and how much more data an open question needs, or,
    without an interval, why there is none."""
    if "why" in r.index and not is_missing(r["why"]):
        return str(r["why"])
    text = str(r["verdict"])
    if "more_pairs_needed" in r.index and not is_missing(r["more_pairs_needed"]):
        unit = str(r["unit"]) if "unit" in r.index and not is_missing(r["unit"]) else "pair"
        text += f" · ~{int(r['more_pairs_needed'])} more {unit}s"
    return text


def claims_figure(rows: pd.DataFrame) -> go.Figure:
    """One row per claim report row: the paired difference's mean (point) and 95 % interval
    (bar), a vertical line at 0 across all rows, a vertical line at the row's stated effect E
    across its own band, and the verdict beside it. Rows go top to bottom in report order (y =
    row index on a reversed axis), coloured by verdict."""
    fig = go.Figure()
    y = np.arange(len(rows))
    has_iv = rows["ci_low"].notna() & rows["ci_high"].notna()
    hover = [_claim_hover(r) for _, r in rows.iterrows()]
    for verdict in dict.fromkeys(rows.loc[has_iv, "verdict"].astype(str)):
        m = (has_iv & (rows["verdict"].astype(str) == verdict)).to_numpy()
        g = rows[m]
        mean = g["mean_diff"].astype(float).to_numpy()
        fig.add_trace(go.Scatter(
            x=mean, y=y[m], mode="markers", name=esc(verdict), legendgroup="interval",
            marker=dict(size=10, color=VERDICT_COLORS.get(verdict, _OTHER_VERDICT)),
            error_x=dict(type="data", symmetric=False, array=g["ci_high"].astype(float).to_numpy() - mean,
                         arrayminus=mean - g["ci_low"].astype(float).to_numpy(), thickness=3, width=6,
                         color=VERDICT_COLORS.get(verdict, _OTHER_VERDICT)),
            text=[hover[i] for i in np.flatnonzero(m)], hovertemplate="%{text}<extra></extra>"))
    point_only = (~has_iv & rows["mean_diff"].notna()).to_numpy()
    if point_only.any():
        fig.add_trace(go.Scatter(x=rows.loc[point_only, "mean_diff"].astype(float).to_numpy(), y=y[point_only],
                                 mode="markers", name=NO_INTERVAL, legendgroup="point",
                                 marker=dict(size=10, symbol="circle-open", color="#555", line=dict(width=2)),
                                 text=[hover[i] for i in np.flatnonzero(point_only)],
                                 hovertemplate="%{text}<extra></extra>"))
    # the row's E across its band, and 0 across every row
    for i, e in zip(y, rows["stated_effect"].astype(float)):
        fig.add_shape(type="line", x0=e, x1=e, y0=i - E_HALF_HEIGHT, y1=i + E_HALF_HEIGHT, xref="x", yref="y",
                      line=dict(color="#8b1a1a", width=2), name="stated effect E")
    fig.add_shape(type="line", x0=0, x1=0, y0=0, y1=1, xref="x", yref="paper", line=dict(color="#111", width=1),
                  name="zero")
    for i, (_, r) in zip(y, rows.iterrows()):
        color = "#555" if "why" in r.index and not is_missing(r["why"]) else VERDICT_COLORS.get(str(r["verdict"]),
                                                                                            _OTHER_VERDICT)
        fig.add_annotation(x=1.01, y=i, xref="paper", yref="y", xanchor="left", showarrow=False,
                           text=esc(claim_side_text(r)), font=dict(size=11, color=color), hovertext=hover[i])
    values = [0.0, *rows["stated_effect"].astype(float), *rows["ci_low"].astype(float),
              *rows["ci_high"].astype(float), *rows["mean_diff"].astype(float)]
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    pad = max(hi - lo, 0.02) * 0.08
    fig.update_xaxes(range=[lo - pad, hi + pad], zeroline=False,
                     title_text="paired difference, arm a − arm b (positive: arm a better; compactness: b − a)")
    fig.update_yaxes(tickmode="array", tickvals=y.tolist(), ticktext=[esc(v) for v in rows["label"]],
                     range=[len(rows) - 0.5, -0.5], zeroline=False, showgrid=False)
    fig = _style(fig, max(260, 150 + 30 * len(rows)))
    fig.update_layout(margin=dict(l=60, r=360, t=60, b=60), showlegend=True,
                      legend=dict(orientation="h", x=0, y=1.0, yanchor="bottom"))
    return fig


# ---------------------------------------------------------------------------- section


def claims_section(data: DashboardData, f: Figures) -> str:
    """The Claims section: a tally, the figure, and the report as a sortable table."""
    view = claims_view(data.trials)
    if view.message:
        return note(view.message, "empty")
    rows = view.rows
    has_iv = rows["ci_low"].notna() & rows["ci_high"].notna()
    verdicts = rows.loc[has_iv, "verdict"].astype(str).value_counts(sort=False)
    tally = ", ".join(f"{n} {v}" for v, n in verdicts.items())
    head = (f"{len(rows)} row(s), one per claim and metric (and per sweep, protocol and prepared corpus where "
            f"several hold the arms): {tally or 'none with an interval'}"
            + (f"; {int((~has_iv).sum())} without an interval (too few paired runs, or no spread)" if (~has_iv).any() else "")
            + ". The same numbers as `ser-search claims`.")
    out = [note(head), f.div(claims_figure(rows), (
        "Each row: the mean paired difference between the claim's two arms (point) and its 95 % interval (bar). "
        "Black line: 0, no difference. Dark red line on each row: E, the stated effect. The verdict "
        "beside a row reads the interval against both: above E, containing E, above 0 but below E, containing 0 "
        "but not E, below 0, or containing both (inconclusive). Hover a row for its runs and numbers."))]
    out.append(_claims_table(rows))
    return "".join(out)


def _claims_table(rows: pd.DataFrame) -> str:
    """Every row's numbers and the report's own note, sortable; optional columns of the report
    (sweep, model, folds × seeds, Holm p, runs still needed) where it has them."""
    def has(col: str) -> bool:
        return col in rows.columns and rows[col].notna().any()

    def word(col: str) -> Callable[[pd.Series], tuple[str, Any]]:
        return lambda r: (_text(r[col]), _text(r[col]))

    def number(col: str, show: Callable[[Any], str]) -> Callable[[pd.Series], tuple[str, Any]]:
        return lambda r: (show(r[col]), None if pd.isna(r[col]) else float(r[col]))

    spec: list[tuple[str, str, Callable[[pd.Series], tuple[str, Any]]]] = [
        ("claim", "claim", word("claim")), ("statement", "statement", word("statement"))]
    spec += [(c, c.replace("_", " "), word(c)) for c in ("sweep", "protocol", "model") if has(c)]
    spec += [("metric", "metric", word("metric")), ("arm_a", "arm a", word("arm_a")), ("arm_b", "arm b", word("arm_b")),
             ("n_pairs", "pairs", number("n_pairs", _int))]
    if has("n_folds") and has("n_seeds"):
        spec.append(("design", "folds × seeds", lambda r: (f"{_int(r['n_folds'])} × {_int(r['n_seeds'])}",
                                                          None if pd.isna(r["n_folds"]) else float(r["n_folds"]))))
    if has("scope"):
        spec.append(("scope", "scope", lambda r: (
            ("NOT NESTED; " if "selection_exposed" in r.index and r["selection_exposed"] is True else "")
            + _text(r["scope"]), _text(r["scope"]))))
    spec += [("mean_diff", "mean difference", number("mean_diff", _fmt)),
             ("ci", "95 % interval", lambda r: ("–" if pd.isna(r["ci_low"]) or pd.isna(r["ci_high"]) else
                                               f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]",
                                               None if pd.isna(r["ci_low"]) else float(r["ci_low"]))),
             ("stated_effect", "E", number("stated_effect", _fmt))]
    if has("p_holm"):
        spec.append(("p_holm", "p (Holm)", number("p_holm", lambda v: _fmt(v, 4))))
    spec.append(("verdict", "verdict", word("verdict")))
    if has("more_pairs_needed"):
        spec.append(("more_pairs_needed", "more runs needed", number("more_pairs_needed", _int)))
    if has("note"):
        spec.append(("note", "note", word("note")))
    cells = [[fn(r) for _, _, fn in spec] for _, r in rows.iterrows()]
    return data_table("table-claims", [(k, h) for k, h, _ in spec], cells, caption=(
        "The claims report row by row (`ser-search claims`); \"more runs needed\", where shown, is how many further "
        "paired runs (seeds, or folds with several folds) would likely decide an inconclusive row at 80 % power."))


def _text(v: Any) -> str:
    return "–" if is_missing(v) else str(v)


def _int(v: Any) -> str:
    return "–" if is_missing(v) else str(int(v))
