"""Which recipe elements help: the recipe's base configuration against itself with one element
switched off, on EmoDB (7 native classes, the standard leave-two-speakers-out folds), every arm
run on every test fold with the same seeds, judged by ser-search's claims machinery.

Why this script and not `confirm` + `claims` alone: `ser-search confirm` re-runs the top K
configurations a *search* sweep found; an ablation's configurations are given (a base and one
change each). So this script

1. builds the arms from one base config (`ablation_arms`: each named element switched off),
2. runs them exactly as `run_confirm` runs confirmation trials — one Ray Tune grid through
   `search.worker.trainable.make_trainable(search.driver.confirm_config)`, recorded by the
   ParquetRecorder as stage "confirm" of the lineage `recipe-ablation` on one prepared corpus,
   every arm on the same (seed, fold) units, no early stopping — only with the configurations
   given instead of chosen (seed-major order, so a run stopped early still holds every arm on
   every fold for the seeds it finished),
3. judges them with the claims file docs/recipe_ablation_claims.toml ("recipe beats
   recipe-without-X"), whose arms fix the recipe settings (claims arms with `settings`, read from
   each run's config_json): the same table as `ser-search claims RESULTS --claims FILE --format
   markdown` — pairs by (seed, fold), the interval over fold means (df = folds - 1, Nadeau &
   Bengio's correction for overlapping training sets), Holm over
   the rows;
4. prints the base arm's mean test UA with the same fold-level interval, and its test confusion
   matrix summed over every fold and seed (confusion.parquet).

    python benchmarks/recipe_ablation.py --emodb ../shared/data/emodb --out runs/ablation
    python benchmarks/recipe_ablation.py --out runs/ablation --report-only   # tables from what ran
    (run again to continue a stopped run: each batch that exists is resumed)

The reduced setting (2 shared CPU cores) is written out below: a smaller CNN-Transformer,
20-ms hop, 15 epochs, 2.0-s segments (the copy's clips are all 2.0 s), no noisy copies; see
docs/recipe-ablation.md.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLAIMS_FILE = REPO / "docs" / "recipe_ablation_claims.toml"
LINEAGE = "recipe-ablation"
SWEEP_NAME = f"{LINEAGE}-confirm"
BASE_ARM = "recipe"

# The base: every element on, at the values recipe_emodb.toml's own comments give as the papers'
# or common practice (none tuned on EmoDB, none chosen on a test fold). Reduced for 2 CPU cores:
# the CNN-Transformer at a quarter of its width/depth, a 20 ms hop (half the frames), 15 epochs.
BASE: dict[str, Any] = {
    "seed": 1,
    "device": "cpu",
    "variable_length": True,
    "normalization": "speaker",
    "frontend": {"kind": "mel", "n_mels": 64, "win_ms": 40.0, "hop_ms": 20.0},
    "model": {"name": "cnn_transformer", "channels": [16, 32, 32], "d_model": 32, "n_heads": 4, "n_layers": 1,
              "ff_dim": 128, "dropout": 0.3},
    "loss": {"family": "cross_entropy"},
    "optim": {"name": "adamw", "lr": 1e-3, "batch_size": 16, "epochs": 15, "weight_decay": 1e-2,
              "grad_clip": 5.0, "schedule": "cosine", "warmup_epochs": 2.0, "label_smoothing": 0.1,
              "class_weights": "balanced", "ema_decay": 0.99},
    # SpecAugment widths as recipe_emodb.toml: 8 of 64 bins, 0.3 s of time (15 frames at 20 ms)
    "augment": {"freq_masks": 2, "freq_mask_width": 8, "time_masks": 2, "time_mask_width": 15,
                "mixup_alpha": 0.2},
}

# Element -> the dotted keys that switch it off (to the train config's defaults).
ELEMENTS: dict[str, dict[str, Any]] = {
    "specaugment": {"augment.freq_masks": 0, "augment.time_masks": 0},
    "mixup": {"augment.mixup_alpha": 0.0},
    "ema": {"optim.ema_decay": 0.0},
    "class_weights": {"optim.class_weights": "none"},
    "speaker_norm": {"normalization": "global"},
    "cosine": {"optim.schedule": "constant", "optim.warmup_epochs": 0.0},
    "label_smoothing": {"optim.label_smoothing": 0.0},
}
# Two batches, run in this order (each its own confirmation sweep of the lineage; the claims pair
# across them by (seed, fold), as across any two confirmations of one lineage): the base with the
# four elements expected to matter most on a speaker-independent, imbalanced 7-class task, with
# seeds 1-3; then the other three against the same base runs, with seed 1 only (the time the
# 2 shared cores left; a fold-level interval needs folds, not seeds). A batch that exists is
# resumed (a finished one returns at once), so the one command continues a stopped run.
BATCHES: tuple[tuple[str, bool, tuple[str, ...], tuple[int, ...]], ...] = (
    (SWEEP_NAME, True, ("specaugment", "mixup", "class_weights", "speaker_norm"), (1, 2, 3)),
    (f"{SWEEP_NAME}-2", False, ("ema", "cosine", "label_smoothing"), (1,)),
)
DEFAULT_ELEMENTS = tuple(e for _, _, elements, _ in BATCHES for e in elements)


def _set(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = raw
    for p in parents:
        if not isinstance(node.get(p), dict):
            raise KeyError(f"{dotted}: {p!r} is not a section of the base config")
        node = node[p]
    if leaf not in node:
        raise KeyError(f"{dotted}: the base config does not set {leaf!r}, so switching it off changes nothing")
    node[leaf] = value


def arm_name(element: str) -> str:
    return f"no_{element}"


def ablation_arms(base: dict[str, Any], elements: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """{arm name: raw train config}: the base first, then the base with each element switched
    off — one at a time, nothing else changed. An element whose switch is already the base's
    value is an error: that arm would be the base under another name and its 'difference' 0."""
    arms = {BASE_ARM: copy.deepcopy(base)}
    for element in elements:
        if element not in ELEMENTS:
            raise KeyError(f"unknown element {element!r}; known: {', '.join(ELEMENTS)}")
        raw = copy.deepcopy(base)
        for dotted, value in ELEMENTS[element].items():
            _set(raw, dotted, value)
        if raw == base:
            raise ValueError(f"element {element!r} is already off in the base config")
        arms[arm_name(element)] = raw
    return arms


def _toml(value: Any) -> str:
    return json.dumps(value)  # a TOML scalar: "text", 0.2, 2, true


def _switch_keys() -> list[str]:
    """Every dotted key some element switches: an arm fixes all of them, so the base arm matches
    the base's runs only and each ablated arm only its own."""
    return list(dict.fromkeys(k for switch in ELEMENTS.values() for k in switch))


def _get(raw: dict[str, Any], dotted: str) -> Any:
    node: Any = raw
    for part in dotted.split("."):
        node = node[part]
    return node


def arm_settings(raw: dict[str, Any]) -> dict[str, Any]:
    """The arm's recipe settings, by sweep axis name (search.definition.space: dotted section fields and
    `normalization`), as a claims file's `settings` table."""
    return {k: _get(raw, k) for k in _switch_keys()}


def claims_toml(elements: list[str] | tuple[str, ...], base: dict[str, Any] | None = None) -> str:
    """The claims file: 'the recipe beats the recipe without X' for every element (E = 0: an
    ordering; the verdict says whether the interval lies above 0). Each arm fixes the recipe
    settings that tell the arms apart (claims arms with `settings`, read from config_json)."""
    base = BASE if base is None else base
    arms = ablation_arms(base, elements)
    family, model = base["loss"]["family"], base["model"]["name"]

    def arm(name: str) -> str:
        fields = ", ".join(f'"{k}" = {_toml(v)}' for k, v in arm_settings(arms[name]).items())
        return f'{{ loss_family = "{family}", settings = {{ {fields} }} }}'

    lines = ["# Written by benchmarks/recipe_ablation.py: one claim per recipe element, 'the full recipe",
             "# beats the recipe with that element switched off' (E = 0, an ordering). Each arm fixes every",
             "# recipe setting an element switches (README, Claims: ablations); see docs/recipe-ablation.md.",
             "#   ser-search claims runs/ablation/results --claims docs/recipe_ablation_claims.toml",
             'description = "recipe ablation on EmoDB (7 classes, standard speaker folds)"', ""]
    for element in elements:
        lines += ["[[claim]]", f'id = "{element}"',
                  f'statement = "the recipe with {element} beats the recipe without it"',
                  f"a = {arm(BASE_ARM)}", f"b = {arm(arm_name(element))}",
                  f'model = "{model}"', 'metrics = ["test_ua", "test_wa"]', "effect = 0.0",
                  'sweep_file = "benchmarks/recipe_ablation.py"', ""]
    return "\n".join(lines)


def unit_order(arms: dict[str, dict[str, Any]], seeds: list[int], folds: list[int]) -> list[tuple[str, int, int]]:
    """(arm, seed, fold) in run order: seed-major, then fold, then arm, so a run stopped early
    holds every arm on every fold of the seeds it finished (complete pairs)."""
    return [(arm, s, f) for s in seeds for f in folds for arm in arms]


def _unit_config(params: dict[str, Any]) -> Any:
    """A trial's TrainConfig: run_confirm's own confirm_config of the unit's (config, seed, fold)."""
    from search.driver.confirm import confirm_config  # noqa: PLC0415

    return confirm_config(params["unit"])


def run(prepared: Path, results: Path, name: str, arms: dict[str, dict[str, Any]], seeds: list[int],
        folds: list[int], *, num_cpus: int, max_concurrent: int, lineage: str = LINEAGE) -> None:
    """One batch as the confirmation sweep `name` of `lineage`; resumed when it exists."""
    from ray import tune  # noqa: PLC0415

    from search.driver.checkpoints import keep_latest_checkpoints  # noqa: PLC0415
    from search.recording.recorder import ParquetRecorder  # noqa: PLC0415
    from search.driver.confirm import check_confirmation_splits  # noqa: PLC0415
    from search.driver.run_record import check_existing  # noqa: PLC0415
    from search.driver.session import corpora_of, prepared_id_of, run_config, start  # noqa: PLC0415
    from search.results import ResultsStore  # noqa: PLC0415
    from search.results.location import TUNE_DIR  # noqa: PLC0415
    from search.worker.trainable import make_trainable  # noqa: PLC0415

    configs = {name: json.dumps({**raw, "data": {"prepared": str(prepared), "fold": 0}}, sort_keys=True)
               for name, raw in arms.items()}
    run_dir = results / name
    tune_path = str(run_dir / TUNE_DIR)
    resume = tune.Tuner.can_restore(tune_path)
    check_existing(tune_path, str(run_dir), resume, f"ablation {name!r}")
    corpus, resources, gpu_fraction = start(None, num_cpus, None, prepared, 1.0, 0.0)
    check_confirmation_splits(corpus, list(configs.values()), folds)
    units = [{"config_json": configs[a], "seed": s, "fold": f} for a, s, f in unit_order(arms, seeds, folds)]
    trainable = tune.with_resources(tune.with_parameters(make_trainable(_unit_config), corpus=corpus), resources)
    if resume:
        tuner = tune.Tuner.restore(tune_path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        recorder = ParquetRecorder(name, _unit_config, str(results), gpu_fraction, stage="confirm",
                                   corpora=corpora_of(corpus), prepared_id=prepared_id_of(corpus),
                                   source_sweep=lineage, n_folds=getattr(corpus, "n_folds", None))
        tuner = tune.Tuner(trainable, param_space={"unit": tune.grid_search(units)},
                           tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent),
                           run_config=run_config(str(run_dir), recorder, 2))
    print(f"ablation {name}{' (resumed)' if resume else ''}: {len(arms)} arms x {len(seeds)} seeds x {len(folds)} folds = {len(units)} runs; "
          f"results in {run_dir}", file=sys.stderr, flush=True)
    keep_latest_checkpoints(tuner.fit())
    if not resume:
        recorder.close()
    # the rows still in part files become the tables' files, as run_confirm does: pandas, DuckDB
    # or Polars reading trials.parquet would otherwise miss the last runs' rows
    ResultsStore(str(results), name).compact()


def arm_of_rows(trials: Any, arms: dict[str, dict[str, Any]]) -> Any:
    """The arm of each confirmed row, matched on the recipe keys its config_json holds (the
    prepared path and fold are a run's, not an arm's)."""
    def strip(raw: dict[str, Any]) -> str:
        keep = {k: v for k, v in raw.items() if k not in ("data", "seed", "output", "feature_cache_dir")}
        return json.dumps(keep, sort_keys=True)

    from ser_core.config import TrainConfig  # noqa: PLC0415

    known = {strip(TrainConfig.model_validate({**raw, "data": {"prepared": "x"}}).model_dump(mode="json")): name
             for name, raw in arms.items()}
    return [known.get(strip(json.loads(c))) for c in trials["config_json"]]


def report(results: Path, arms: dict[str, dict[str, Any]], claims_path: Path) -> str:
    import numpy as np  # noqa: PLC0415

    from search.analysis.claims import evaluate_claims  # noqa: PLC0415
    from search.analysis.claims.file import load_claims  # noqa: PLC0415
    from search.analysis.claims.report import render_claims  # noqa: PLC0415
    from search.analysis.claims.stats import design_interval  # noqa: PLC0415
    from search.results import read_confusion, read_trials  # noqa: PLC0415

    trials = read_trials(results)
    trials = trials[trials["source_sweep"] == LINEAGE]
    trials = trials.assign(arm=arm_of_rows(trials, arms))
    done = trials[(trials["status"] == "completed") & (trials["stage"] == "confirm")]
    counts = ", ".join(f"{a} {n}" for a, n in done["arm"].value_counts().sort_index().items())
    out = [f"runs completed: {len(done)} of {len(trials)} recorded ({counts})", ""]
    held = set(done["arm"].dropna())
    claims = [c for c in load_claims(claims_path) if arm_name(c.claim) in held]
    table = evaluate_claims(trials.drop(columns=["arm"]), claims)  # exactly what `ser-search claims` computes
    out += ["## Paired differences (recipe - ablated arm)", "", render_claims(table, "markdown"), ""]

    # Each arm's mean test UA / WA with the fold-level interval (seeds averaged within a fold,
    # Nadeau & Bengio's correction for the folds' overlapping training sets, as the claims use).
    out += ["## Every arm's mean (test folds x seeds; corrected interval over fold means)", "",
            "| arm | runs | folds x seeds | val UA | test UA | 95 % CI | test WA |", "|---|---|---|---|---|---|---|"]
    for name in arms:
        g = done[done["arm"] == name]
        if g.empty:
            out.append(f"| {name} | 0 | | | | | |")
            continue
        trained = g["n_train_folds"].astype("float64") if "n_train_folds" in g.columns else None
        ratio = float((1.0 / trained).mean()) if trained is not None and trained.notna().all() else None
        res = design_interval(g["fold"].astype(int).tolist(), g["seed"].astype(int).tolist(),
                              g["test_ua"].astype(float).tolist(), test_train_ratio=ratio)
        ci = "" if math.isnan(res.ci_low) else f"[{res.ci_low:.3f}, {res.ci_high:.3f}]"
        out.append(f"| {name} | {len(g)} | {res.n_folds} x {res.n_seeds} | {g['val_ua'].mean():.3f} | "
                   f"{res.mean_diff:.3f} | {ci} | {g['test_wa'].mean():.3f} |")
    out.append("")

    base = done[done["arm"] == BASE_ARM]
    if len(base):
        per_fold = base.groupby("fold")["test_ua"].agg(["mean", "min", "max", "count"])
        out += ["## Base (full recipe): test UA per test fold (mean, min, max over seeds)", "",
                "| test fold | speakers | runs | mean | min | max |", "|---|---|---|---|---|---|"]
        speakers = {0: "03, 08", 1: "09, 10", 2: "11, 13", 3: "12, 14", 4: "15, 16"}
        for f, r in per_fold.iterrows():
            out.append(f"| {int(f)} | {speakers.get(int(f), '?')} | {int(r['count'])} | {r['mean']:.3f} | "
                       f"{r['min']:.3f} | {r['max']:.3f} |")
        conf = read_confusion(results)
        keys = set(zip(base["sweep"], base["trial_id"]))
        conf = conf[(conf["split"] == "test").to_numpy() & np.array([k in keys for k in zip(conf["sweep"], conf["trial_id"])])]
        labels = list(dict.fromkeys(str(base["classes"].iloc[0]).split(",")))
        m = (conf.pivot_table(index="true_label", columns="pred_label", values="count", aggfunc="sum")
             .reindex(index=labels, columns=labels).fillna(0).astype(int))
        recall = np.diag(m.to_numpy()) / m.to_numpy().sum(axis=1)
        title = (f"## Base: test confusion matrix summed over its {len(base)} runs (rows true, columns "
                 "predicted; each clip counted once per seed)")
        out += ["", title, "",
                "| true \\ predicted | " + " | ".join(labels) + " | recall |",
                "|---" * (len(labels) + 2) + "|"]
        for i, t in enumerate(labels):
            out.append(f"| {t} | " + " | ".join(str(v) for v in m.loc[t]) + f" | {recall[i]:.3f} |")
        out.append(f"\nUA of the summed matrix: {recall.mean():.3f}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--emodb", type=Path, default=REPO.parent / "shared" / "data" / "emodb",
                   help="EmoDB folder (prepared once into OUT/prepared)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "ablation")
    p.add_argument("--batches", default=",".join(str(i + 1) for i in range(len(BATCHES))),
                   help="which of the batches to run, in order (1: base + " + ", ".join(BATCHES[0][2]) + "; 2: "
                        + ", ".join(BATCHES[1][2]) + ")")
    p.add_argument("--seeds", default="", help="comma-separated; default: each batch's own (BATCHES)")
    p.add_argument("--folds", default="0,1,2,3,4")
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--max-concurrent", type=int, default=2)
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)

    arms = ablation_arms(BASE, DEFAULT_ELEMENTS)
    out = args.out.resolve()
    prepared, results = out / "prepared", out / "results"
    claims_path = CLAIMS_FILE
    if not args.report_only:
        if not (prepared / "manifest.parquet").exists():
            subprocess.run([sys.executable, "-m", "search.cli", "prepare", "--corpus", f"emodb={args.emodb}",
                            "--out", str(prepared), "--labels", "native", "--folds", "standard",
                            "--segment-seconds", "2.0", "--augment-copies", "0"], check=True, cwd=REPO)
        for i in [int(b) for b in args.batches.split(",")]:
            name, with_base, elements, seeds = BATCHES[i - 1]
            names = ([BASE_ARM] if with_base else []) + [arm_name(e) for e in elements]
            seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else seeds
            run(prepared, results, name, {n: arms[n] for n in names}, list(seeds),
                [int(f) for f in args.folds.split(",")], num_cpus=args.num_cpus,
                max_concurrent=args.max_concurrent)
    text = report(results, arms, claims_path)
    (out / "report.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
