"""Does the recipe's deep model, fused with openSMILE functionals, reach the functionals baselines on EmoDB?

Issue 22 asks for deep configurations that beat the field's cheapest baseline on the same speakers.
The recipe's deep base (docs/recipe-ablation.md) is 13-18 points below it (docs/baselines.md). This
measures the first step towards closing the gap: the same deep base with `model.fuse_functionals`
(its embedding joined with the clip's ComParE or eGeMAPS functionals, trained end to end), against
the deep base alone and against the baselines, on the same prepared corpus, folds and seeds.

A second batch runs the papers' loss families on the fused model (issue 22, part 4: does center
loss help a model that beats the baseline?), claims P1-P4a.

There is no search. Each arm is one configuration fixed before any run: the ablation's base with
one setting changed. Each run's only choice is its best epoch, read on its validation fold f+1,
never on its test fold f. The claims (docs/fusion_claims.toml) pair the runs by fold and take the
corrected fold-level interval. The baselines come from `search/sweeps/baselines.toml` on the same
preparation, confirmed with seed 1. Their epoch is read on validation folds that are other runs'
test folds, so their rows say NOT NESTED.

    python benchmarks/fusion_emodb.py            # prepares, runs (3 + 4 arms x 5 folds x 3 seeds), confirms, prints the claims
    python benchmarks/fusion_emodb.py --report-only
"""
from __future__ import annotations

import argparse
import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_ablation import BASE, REPO, run  # noqa: E402

CLAIMS_FILE = REPO / "docs" / "fusion_claims.toml"
LINEAGE = "fusion"


def fused(kind: str) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    raw["model"]["fuse_functionals"] = kind  # fuse_hidden: the default 128
    return raw


ARMS: dict[str, dict[str, Any]] = {"deep": copy.deepcopy(BASE), "fused_compare": fused("compare"),
                                   "fused_egemaps": fused("egemaps")}


def with_loss(raw: dict[str, Any], family: str, **params: float) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    raw["loss"] = {"family": family, **params}
    return raw


# The papers' loss families on the fused model (issue 22, part 4), as a second batch of the same
# lineage: they pair by (seed, fold) with the fused model's cross-entropy runs of the first (claims
# P1-P4a of docs/fusion_claims.toml: the papers' statements and stated effects, each arm one
# configuration). Center loss at its defaults (λ 0.01, α 0.5; not tuned on EmoDB).
LOSS_ARMS: dict[str, dict[str, Any]] = {
    "fused_compare_center": with_loss(fused("compare"), "center", center_lambda=0.01, center_lr=0.5),
    **{f"fused_compare_{family}": with_loss(fused("compare"), family) for family in ("l1", "smooth_l1", "bce")},
}


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "search.cli", *args], check=True, cwd=REPO)


def report(results: Path) -> str:
    from search.analysis.claims import evaluate_claims, load_claims, render_claims  # noqa: PLC0415
    from search.results import read_trials  # noqa: PLC0415

    return render_claims(evaluate_claims(read_trials(results), load_claims(CLAIMS_FILE)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--emodb", type=Path, default=REPO.parent / "shared" / "data" / "emodb")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "fusion")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds of every arm")
    p.add_argument("--folds", default="0,1,2,3,4")
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--max-concurrent", type=int, default=2)
    p.add_argument("--no-losses", action="store_true", help="skip the second batch (the papers' loss families)")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)

    out = args.out.resolve()
    prepared, results = out / "prepared", out / "results"
    seeds = [int(s) for s in args.seeds.split(",")]
    if not args.report_only:
        if not (prepared / "manifest.parquet").exists():
            _cli("prepare", "--corpus", f"emodb={args.emodb}", "--out", str(prepared), "--labels", "native",
                 "--folds", "standard", "--segment-seconds", "2.0", "--augment-copies", "0")
        folds = [int(f) for f in args.folds.split(",")]
        for seed in seeds:  # one confirmation sweep of the lineage per seed: a stopped run resumes by seed
            run(prepared, results, f"{LINEAGE}-confirm-s{seed}", ARMS, [seed], folds,
                num_cpus=args.num_cpus, max_concurrent=args.max_concurrent, lineage=LINEAGE)
        if not args.no_losses:
            for seed in seeds:
                run(prepared, results, f"{LINEAGE}-losses-s{seed}", LOSS_ARMS, [seed], folds,
                    num_cpus=args.num_cpus, max_concurrent=args.max_concurrent, lineage=LINEAGE)
        if not (results / "baselines" / "trials.parquet").exists():
            _cli("sweep", "search/sweeps/baselines.toml", "--prepared", str(prepared), "--results", str(results))
        if not (results / "baselines-confirm" / "trials.parquet").exists():
            _cli("confirm", str(results), "--sweep", "baselines", "--for-claims", "--claims", str(CLAIMS_FILE),
                 "--top", "1", "--seeds", str(len(seeds)))
    text = report(results)
    (out / "report.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
