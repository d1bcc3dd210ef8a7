"""The dashboard page: every section of one results directory, built and written.

One self-contained HTML page per results directory (plotly.js inlined, opens offline): the
leaderboard, the Pareto front of a sweep with several objectives (search.dashboard.pareto),
the spread of val/test UA per loss family x frontend with the confirmed groups' design-aware
intervals and a matrix of their paired differences, the claims report (search.dashboard.claims),
learning curves with ASHA's stops, parallel coordinates and Optuna importances, the best trial's
confusion matrix, and center-loss vs softmax embeddings with their compactness.

Each section is built on its own: a missing piece (no optuna.db, no checkpoint, nothing
finished yet) becomes a sentence in that section, and an unexpected failure in one section
becomes a message there instead of costing the whole page. A section that does not apply to
these results (the Pareto front of sweeps with one objective) is left out of the page.
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from search.analysis.leaderboard import METRICS, display_view, leaderboard
from search.results import is_uri
from . import figures as figs
from .claims import claims_section
from .data import (
    CELL_KEYS,
    ConfirmedGroup,
    DashboardData,
    asha_rungs,
    best_trial,
    cell_text,
    confirmed_groups,
    confirmed_intervals,
    load_results,
    pairwise_differences,
    param_importances,
    search_trials,
    sweep_facts,
    trial_status,
)
from .embed import CheckpointMissing, EmbeddingUnavailable, EmbeddingView, embedding_view, locate_checkpoint
from .html import Figures, Section, data_table, esc, key_value_table, note, page
from .pareto import has_objectives, pareto_section

logger = logging.getLogger(__name__)

SOFTMAX_FAMILY = "cross_entropy"
CENTER_FAMILY = "center"


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs  # noqa: PLC0415

    js = get_plotlyjs()
    if "</script" in js.lower():  # would end the inline <script> early
        raise RuntimeError("the installed plotly.js bundle cannot be inlined (it contains '</script')")
    return js


# ---------------------------------------------------------------------------- sections


def _facts(data: DashboardData, f: Figures) -> str:
    if data.empty:
        return note(f"No trials yet in {data.source}. The dashboard fills in as soon as a sweep writes "
                    "trials.parquet or epochs.parquet there.", "empty")
    facts = sweep_facts(data)
    parts = []
    for _, r in facts.iterrows():
        status = (f"{r['completed']} completed, {r['pruned']} pruned by ASHA, {r['error']} failed, "
                  f"{r['running']} running")
        planned = "" if pd.isna(r["planned"]) else f" of {int(r['planned'])} planned"
        if r["epochs_full"] is None or pd.isna(r["epochs_full"]):
            epochs = f"{r['epochs_spent']} spent (max_epochs unknown: no sweep.toml or config)"
        else:
            saved = "" if pd.isna(r["epochs_saved"]) else f"; early stopping saved {r['epochs_saved']:.0%}"
            epochs = (f"{r['epochs_spent']} spent of {int(r['epochs_full'])} that a full search would have spent "
                      f"({r['trials']} trials × {int(r['max_epochs'])} epochs){saved}")
        wall = "–" if pd.isna(r["wall_seconds"]) else _duration(r["wall_seconds"])
        train = ("" if pd.isna(r["train_seconds"])
                 else f"; {_duration(r['train_seconds'])} of training summed over trials")
        nodes = ", ".join(f"{n} ({c} trial{'s' if c != 1 else ''})" for n, c in r["nodes"].items()) or "–"
        gpus = ", ".join("0 (CPU only)" if g == 0 else f"{g:g} of a GPU" for g in r["gpu_fractions"]) or "–"
        study = "optuna.db" if r["has_study"] else "none (confirmation runs and remote results have no study)"
        rows = [("stage", r["stage"] or "–")]
        if r["description"]:
            rows.append(("description", r["description"]))
        rows += [("trials", f"{r['trials']}{planned}: {status}"), ("epochs", epochs),
                 ("wall time", f"{wall} from first start to last finish{train}"), ("nodes", nodes),
                 ("GPU per trial", gpus), ("Optuna study", study)]
        spec_note = note(r["spec_error"], "warn") if r["spec_error"] else ""
        parts.append(f"<div><h3>{esc(r['sweep'])}</h3>{key_value_table(rows)}{spec_note}</div>")
    status = trial_status(data)
    chart = f.div(figs.status_figure(status)) if len(status) else ""
    return f'<div class="grid2">{"".join(parts)}<div>{chart}</div></div>'


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s} s" if s < 120 else f"{s // 60} min {s % 60} s" if s < 7200 else f"{s // 3600} h {s % 3600 // 60} min"


def _board_cells(board: pd.DataFrame) -> tuple[list[tuple[str, str]], list[list[tuple[str, Any]]]]:
    """The leaderboard's own display strings (search.analysis.leaderboard), each with its raw number for sorting."""
    shown = display_view(board)
    columns = [(c, c) for c in shown.columns]
    raw_of = {m: f"{m}_mean" for m in METRICS}
    cells = [[(shown.at[i, c], board.at[i, raw_of.get(c, c)]) for c in shown.columns] for i in shown.index]
    return columns, cells


def _leaderboard(data: DashboardData, f: Figures) -> str:
    if data.trials.empty:
        return note("No finished trials yet: the leaderboard lists trials once they complete, stop or fail.", "empty")
    board = leaderboard(data.trials)
    cols, cells = _board_cells(board)
    out = ["<h3>Configurations</h3>", data_table("table-configs", cols, cells, caption=(
        "Ranked by mean validation UA over each configuration's completed trials — the same numbers as "
        "`ser-search leaderboard`. Test UA/WA/F1 are shown beside it and never used to rank; ± is the half-width "
        "of the 95 % Student-t interval over seeds. After the parameters, a column per other setting the "
        "configurations differ in, by its dotted path in the configuration (e.g. normalization, "
        "optim.weight_decay; blank: none, or not recorded). Click a column to sort, type to filter."))]
    grouped = leaderboard(data.trials, group_by=["loss_family", "frontend"])
    cols, cells = _board_cells(grouped)
    out += ["<h3>Loss family × frontend</h3>", data_table("table-groups", cols, cells, caption=(
        "The same ranking per loss family and frontend (`ser-search leaderboard --group-by loss_family,frontend`); "
        "best_trial_id is the group's best completed trial by validation UA, best_test_ua its test score."))]
    return "".join(out)


def _families(data: DashboardData, f: Figures) -> str:
    done = data.trials[data.trials["status"] == "completed"] if len(data.trials) else data.trials
    if done.empty:
        return note("No completed trial yet: the distributions appear when trials run their full budget "
                    "(ASHA-stopped trials have no test score and are not comparable).", "empty")
    groups = confirmed_groups(data.trials)
    intervals = confirmed_intervals(groups)
    several = intervals[list(CELL_KEYS)].drop_duplicates().shape[0] > 1 if len(intervals) else False
    out = [f.div(figs.distribution_figure(data.trials, intervals),
                 "Every completed trial is a point (search and confirmation stages); boxes show the spread per "
                 "loss family and frontend. Black diamonds: per confirmed group, the mean ± 95 % interval of the "
                 "configuration the claims choose (best mean validation UA), over its units: seeds with one test "
                 "set (conditional on those test speakers), test folds (seeds averaged per fold, Nadeau & Bengio's "
                 "corrected t) with several."
                 + (" Groups are per sweep lineage, protocol, model and prepared corpus (in brackets), never pooled "
                    "across them." if several else ""))]
    if intervals.empty:
        out.append(note("No confirmed seeds yet, so no confidence intervals: run `ser-search confirm RESULTS_DIR` "
                        "to re-run the top configurations with several seeds (stage 'confirm').", "warn"))
        return "".join(out)
    single = intervals[intervals["test_ua_ci95"].isna()]["group"].tolist()
    if single:
        out.append(note(f"No test UA interval for {', '.join(single)}: fewer than two units (seeds on one test set, "
                        "or test folds), or no spread between them.", "warn"))
    exposed = intervals[intervals["selection_exposed"]]["group"].tolist()
    if exposed:
        out.append(note(f"NOT NESTED: {', '.join(exposed)} report(s) a test fold that the selection validated on, "
                        "so the test figure is optimistic; hold test folds out of the search ([data] test_folds).",
                        "warn"))
    out.append(_pairwise(groups, intervals, f))
    return "".join(out)


def _pairwise(groups: list[ConfirmedGroup], intervals: pd.DataFrame, f: Figures) -> str:
    """One matrix per metric over the groups instead of a sentence per pair: k groups give
    k(k-1)/2 pairs, too many to read one by one. A pair is the claims' paired comparison, and
    only groups of one cell are paired."""
    shown = intervals[(intervals["val_ua_n"] > 0) | (intervals["test_ua_n"] > 0)]
    pairs = {m: pairwise_differences(groups, m) for m in ("val_ua", "test_ua")}
    if len(shown) < 2 or all(p.empty for p in pairs.values()):
        return note("No two confirmed loss family × frontend groups share a sweep lineage, protocol, model and "
                    "prepared corpus, so there is no pair to compare.", "warn")
    counts = []
    for metric, name in (("test_ua", "test UA"), ("val_ua", "validation UA")):
        p = pairs[metric]
        known = p[p["ci_low"].notna() & p["ci_high"].notna()]
        apart = int(((known["ci_low"] > 0) | (known["ci_high"] < 0)).sum())
        counts.append(f"{apart // 2} of {len(known) // 2} on {name}")
    head = (f"Pairs of groups whose paired 95 % interval excludes 0: {'; '.join(counts)} "
            f"(pairs with an interval; only groups of one sweep lineage, protocol, model and prepared corpus are "
            f"paired).")
    cells = {g: cell_text(dict(zip(CELL_KEYS, c))) for g, *c in
             shown[["group", *CELL_KEYS]].itertuples(index=False, name=None)}
    return ("<h3>Pairwise differences</h3>" + note(head) + f.div(
        figs.pairwise_figure(shown["group"].tolist(), pairs, cells),
        "Each cell is the paired difference row − column: the two groups' chosen configurations compared run by run "
        "(same seed and test set), as a claim row 'row vs column' is (blue: the row is ahead, red: behind). "
        "* marks pairs whose paired 95 % interval excludes 0; † marks pairs with no interval (fewer than two units, "
        "or no spread); unmarked pairs are undecided. The interval is over seeds with one test set (conditional on "
        "those test speakers) and over test folds with several (corrected t). Blank cells pair groups of different "
        "sweep lineages, protocols, models or prepared corpora, which are never compared. Hover a cell for its "
        "interval, scope and design."))


def _curves(data: DashboardData, f: Figures) -> str:
    if data.epochs.empty:
        return note("No epochs recorded yet.", "empty")
    status = trial_status(data)
    out = []
    for name, info in data.sweeps.items():
        ep = data.epochs[data.epochs["sweep"] == name]
        if ep.empty:
            continue
        rungs = asha_rungs(info)
        st = status[status["sweep"] == name]
        n_stop = int((st["status"] == "pruned").sum())
        stops = (f"× marks the last epoch of the {n_stop} trial(s) ASHA stopped" if n_stop else
                 "no trial was stopped early")
        caption = (f"{ep['trial_id'].nunique()} trials; {stops}"
                   + (f"; dotted lines: ASHA rungs at epochs {', '.join(map(str, rungs))}" if rungs else ""))
        out.append(f"<h3>{esc(name)}</h3>" + f.div(
            figs.learning_curves_figure(ep, st, rungs, info.scheduler("max_epochs")), caption))
    return "".join(out)


def _params(data: DashboardData, f: Figures) -> str:
    out = []
    scored = search_trials(data.trials)
    scored = scored[scored["val_ua"].notna()] if len(scored) else scored
    if scored.empty:
        out.append(note("No trial with a validation score yet: nothing to draw in parallel coordinates.", "empty"))
    else:
        out.append(f.div(figs.parallel_figure(scored),
                         "One line per search trial (pruned trials at their best validation UA before the stop). "
                         "λ, α and the learning rate on a log10 scale; n/a: the trial's loss family has no such "
                         "parameter. Drag along an axis to select a range."))
    out.append("<h3>Parameter importance (Optuna, fANOVA)</h3>")
    studies = [(n, i.study_path) for n, i in data.sweeps.items() if i.study_path is not None]
    if not studies:
        out.append(note("No Optuna study (optuna.db) found next to these results, so no parameter importance.",
                        "warn"))
    for name, path in studies:
        results, notes = param_importances(path, name)
        if results:
            out.append(f"<h4>{esc(name)}</h4>" + f.div(figs.importance_figure(results),
                                                       "Share of the variance of best validation UA explained by "
                                                       "each parameter, over the study's completed trials."))
        out += [note(f"{name}: {n}", "warn") for n in notes]
    return "".join(out)


def _best(data: DashboardData, f: Figures) -> str:
    best = best_trial(data.trials) if len(data.trials) else None
    if best is None:
        return note("No completed trial yet, so no best trial.", "empty")
    head = (f"Best trial by validation UA: {best['trial_id']} of sweep {best['sweep']} — {best['loss_family']} on "
            f"{best['frontend']}, val UA {best['val_ua']:.3f}, test UA {_fmt3(best['test_ua'])}.")
    c = data.confusion
    cells = c[(c["sweep"] == best["sweep"]) & (c["trial_id"] == best["trial_id"])]
    if cells.empty:
        return note(head) + note("Its confusion matrix is not recorded (no confusion.parquet rows).", "warn")
    return note(head) + f.div(figs.confusion_figure(cells),
                              "Rows are true emotions and sum to 100 % (the diagonal is each class's recall).")


def _fmt3(v: Any) -> str:
    return "–" if v is None or pd.isna(v) else f"{float(v):.3f}"


def _view_for(data: DashboardData, family: str) -> tuple[pd.Series | None, EmbeddingView | None, str | None]:
    """Best completed trial of a family whose checkpoint is on this machine, and its view."""
    done = data.trials[(data.trials["status"] == "completed") & (data.trials["loss_family"] == family)]
    if done.empty:
        return None, None, f"no completed {family} trial"
    ranked = done[done["val_ua"].notna()].sort_values(["val_ua", "val_wa", "trial_id"],
                                                      ascending=[False, False, True], kind="stable")
    why = None
    for _, row in ranked.iterrows():
        info = data.sweeps.get(row["sweep"])
        try:
            path = locate_checkpoint(row["checkpoint"] if pd.notna(row["checkpoint"]) else None,
                                     info.directory if info else None)
            return row, embedding_view(path), None
        except CheckpointMissing as e:  # try the next best trial of the family
            why = why or f"best {family} trial {row['trial_id']}: {e}"
        except EmbeddingUnavailable as e:  # unusable weights: say so rather than show a worse trial
            return None, None, f"best {family} trial {row['trial_id']}: {e}"
    return None, None, why


def _embeddings(data: DashboardData, f: Figures) -> str:
    if data.trials.empty:
        return note("No completed trial yet, so no embeddings.", "empty")
    panels, out, figures = [], [], {}
    for family, name in ((CENTER_FAMILY, "center loss"), (SOFTMAX_FAMILY, "softmax (cross-entropy)")):
        row, view, why = _view_for(data, family)
        if view is None:
            out.append(note(f"No {name} view: {why}.", "warn"))
            continue
        recorded = row["compactness_test"]
        figures[family] = view.compactness
        title = f"{name}: trial {esc(row['trial_id'])} · compactness {view.compactness:.3f}"
        panels.append((title, view))
        sampled = f" (a sample of {view.n_clips} of {view.n_test})" if view.n_clips < view.n_test else ""
        out.append(note(f"{name}: trial {row['trial_id']} ({row['frontend']}, val UA {row['val_ua']:.3f}); "
                        f"test-split compactness {view.compactness:.3f} over {view.n_clips} clips{sampled}, "
                        f"recorded at training {_fmt3(recorded)}."))
    if len(figures) == 2:
        c, s = figures[CENTER_FAMILY], figures[SOFTMAX_FAMILY]
        if math.isfinite(c) and math.isfinite(s):
            verdict = ("these two trials show tighter classes with center loss, as the center-loss paper claims"
                       if c < s else "these two trials do not show tighter classes with center loss, "
                                     "against the center-loss paper's claim")
            out.insert(0, f'<p class="note"><b>Compactness (lower = tighter): center loss {c:.3f} vs softmax '
                          f"{s:.3f} — {esc(verdict)}.</b></p>")
    if panels:
        out.append(f.div(figs.embedding_figure(panels),
                         "PCA of embed(x) on the test split, one colour per emotion; compactness = mean distance "
                         "to the class center ÷ mean distance between class centers, on the full embedding."))
    return "".join(out)


SECTIONS: list[tuple[str, str, Callable[[DashboardData, Figures], str]]] = [
    ("facts", "Sweep facts", _facts),
    ("leaderboard", "Leaderboard", _leaderboard),
    ("pareto", "Pareto front", pareto_section),
    ("families", "Loss family × frontend", _families),
    ("claims", "Claims", claims_section),
    ("curves", "Learning curves", _curves),
    ("params", "Hyperparameters", _params),
    ("best", "Best trial", _best),
    ("embeddings", "Embeddings: center loss vs softmax", _embeddings),
]
# Sections drawn only where they apply; the rest are on every page (with a message when empty).
APPLIES: dict[str, Callable[[DashboardData], bool]] = {"pareto": has_objectives}


def _section(sid: str, title: str, build: Callable[[DashboardData, Figures], str], data: DashboardData,
             f: Figures) -> Section:
    try:
        return Section(sid, title, build(data, f))
    except Exception as e:  # noqa: BLE001 - one broken view must not cost the whole page
        logger.warning("dashboard section %r failed", sid, exc_info=True)
        return Section(sid, title, note(f"This section could not be drawn: {type(e).__name__}: {e}", "warn"))


def build_dashboard(results_dir: str | Path, *, title: str | None = None,
                    refresh_version: str | None = None) -> str:
    """The dashboard of every sweep under `results_dir` (or of one sweep directory) as one
    self-contained HTML page. `refresh_version`: set by the server; the page then polls
    `version` next to it and reloads when the results change. Raises ResultsError when the
    location does not exist or a results file is unreadable."""
    data = load_results(results_dir)
    where = str(results_dir) if is_uri(results_dir) else str(Path(results_dir).expanduser().resolve())
    name = title or f"ser-search dashboard · {Path(where).name or where}"
    built = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    subtitle = (f"results: {where} · {len(data.trials)} finished trial(s) in {len(data.sweeps)} sweep(s) · "
                f"built {built}" + (" · refreshes while the sweep writes" if refresh_version else ""))
    f = Figures()
    sections = [_section(sid, t, fn, data, f) for sid, t, fn in SECTIONS if sid not in APPLIES or APPLIES[sid](data)]
    return page(name, subtitle, sections, _plotly_js(), refresh_version=refresh_version)


# ---------------------------------------------------------------------------- writing


def write_dashboard(results_dir: str | Path, out: str | Path, *, title: str | None = None) -> Path:
    """Build and write the page atomically (a reader never sees half a file)."""
    html = build_dashboard(results_dir, title=title)
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
