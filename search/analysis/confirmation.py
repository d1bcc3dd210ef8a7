"""Which configurations a confirmation re-runs, and with which seeds: the ranking part of a
confirmation, done on the results so the driver is told what to run and ranks nothing itself.
"""
from __future__ import annotations

import json
import sys
from typing import Any


from search.definition.confirmation import ConfirmationPlan
from search.results.location import join
from search.results import read_trials

from .claims.settings import setting_equal, with_setting_columns
from .leaderboard import leaderboard


class ConfirmationError(ValueError):
    """The confirmation asked for cannot be chosen from the sweep's results (a user error)."""


def confirmation_seeds(trials: Any, n: int) -> list[int]:
    """The n smallest seeds no search trial of the sweep used. A configuration was chosen
    because its searched run scored well; that run's seed would carry the selection's luck into
    the confirmed mean. The same n seeds for every configuration of a sweep keep the runs of
    two arms paired by seed (search/analysis/claims/)."""
    used = {int(s) for s in trials.loc[trials["stage"] == "search", "seed"].dropna()}
    seeds: list[int] = []
    candidate = 0
    while len(seeds) < n:
        if candidate not in used:
            seeds.append(candidate)
        candidate += 1
    return seeds


def choose_for_confirmation(trials: Any, top: int, per: list[str] | None,
                             arms: list[dict[str, Any]] | None = None) -> Any:
    """The best trial of each of the `top` configurations by validation UA (search stage only).

    With `per` (e.g. loss_family,frontend) the `top` best of each group are taken, so every
    arm a comparison needs is confirmed, not only the overall winners; `arms` keeps only the
    groups listed (a key an arm leaves out matches any value). Within a group completed
    configurations rank first (mean validation UA);
    a group where ASHA stopped every trial is represented by its best stopped trial — ASHA
    judged it on fewer epochs, and confirmation now gives it the full budget."""
    search = trials[trials["stage"] == "search"]
    if arms:
        per = list(dict.fromkeys(k for arm in arms for k in arm))
        search = with_setting_columns(search, per)  # recipe settings an arm fixes, from config_json
    if not per:
        ranked = leaderboard(search, group_by=["config_key"])
        ranked = ranked[ranked["rank"].notna()].sort_values("rank").head(top)
        return search[search["trial_id"].isin(ranked["best_trial_id"])]
    unknown = [c for c in per if c not in search.columns]
    if unknown:
        raise ConfirmationError(f"unknown column(s) {unknown} to choose configurations per group; e.g. loss_family,frontend")
    runs = search[search["status"].isin(["completed", "pruned"])].dropna(subset=["val_ua"])
    runs = runs.assign(_done=runs["status"].eq("completed"))
    # Per configuration: its completed runs if it has any, else its stopped ones.
    runs = runs[runs["_done"] | ~runs.groupby("config_key")["_done"].transform("any")]
    configs = runs.groupby("config_key").agg(_done=("_done", "any"), _score=("val_ua", "mean"),
                                             **{c: (c, "first") for c in per}).reset_index()
    best = runs.sort_values(["val_ua", "trial_id"], ascending=[False, True]).drop_duplicates("config_key")
    configs = configs.merge(best[["config_key", "trial_id"]], on="config_key")
    configs = configs.sort_values(["_done", "_score", "config_key"], ascending=[False, False, True])
    chosen = configs.groupby(per, sort=False, dropna=False).head(top)
    if arms:
        cells = chosen[per].to_dict("records")
        matches = [[all(setting_equal(cell[k], v) for k, v in arm.items()) for cell in cells] for arm in arms]
        missing = [arm for arm, hits in zip(arms, matches) if not any(hits)]
        if missing:
            print(f"confirm: the sweep has no trial for {', '.join('/'.join(map(str, m.values())) for m in missing)}; "
                  "those arms are not confirmed (their claims stay inconclusive)", file=sys.stderr, flush=True)
        chosen = chosen[[any(hits) for hits in zip(*matches)]] if cells else chosen
    return search[search["trial_id"].isin(chosen["trial_id"])][list(trials.columns)]


def plan_confirmation(results: str, sweep_name: str, *, top: int, seeds: int, per: list[str] | None = None,
                      arms: list[dict[str, Any]] | None = None) -> ConfirmationPlan:
    """The `top` configurations of a sweep by validation UA (with `per`, the top of each group;
    with `arms`, of those groups only), each to run with `seeds` seeds no search trial used."""
    for flag, value in (("--top", top), ("--seeds", seeds)):
        if value < 1:
            raise ConfirmationError(f"confirm {flag} must be at least 1, got {value}")
    trials = read_trials(join(results, sweep_name))
    chosen = choose_for_confirmation(trials, top, per, arms)
    if chosen.empty:
        raise ConfirmationError(f"sweep {sweep_name!r} in {results} has no completed trial to confirm")
    configs = [json.dumps(json.loads(c), sort_keys=True) for c in chosen["config_json"]]
    return ConfirmationPlan(sweep=sweep_name, configs=configs, seeds=confirmation_seeds(trials, seeds))
