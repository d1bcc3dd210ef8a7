"""`ser-search`: one command line for preparing corpora, training one model, running,
resuming and reading sweeps. Sub-commands import what they need lazily, so `--help` and
the quick commands never pay for importing Ray."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _corpus_arg(text: str) -> tuple[str, Path]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--corpus expects NAME=PATH (e.g. emodb=/data/emodb), got {text!r}")
    name, path = text.split("=", 1)
    return name.strip(), Path(path).expanduser()


def cmd_generate(args: argparse.Namespace) -> int:
    from ser_core.synthetic import generate_corpus

    root = generate_corpus(args.out, n_speakers=args.speakers, clips_per_emotion=args.clips_per_emotion,
                           seed=args.seed, progress=True)
    print(f"synthetic corpus in {root}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from ser_core.prepare import PrepareOptions, prepare_corpora

    standard = args.folds == "standard"
    options = PrepareOptions(
        sample_rate=args.sample_rate, segment_seconds=args.segment_seconds, protocol=args.protocol,
        n_folds=None if standard else args.folds, augment_copies=args.augment_copies, augment_snr_db=args.snr_db,
        iemocap_four_class=args.iemocap_four_class, seed=args.seed, labels=args.labels,
        standard_folds=standard, folds_from=tuple(args.folds_from or ()),
    )
    report = prepare_corpora(dict(args.corpus), args.out, options, overwrite=args.force)
    print(report.summary())
    return 0


def _folds_arg(text: str) -> int | str:
    if text == "standard":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--folds expects a number of folds or 'standard', got {text!r}") from None


def _corpus_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated corpus names, e.g. ravdess,tess")
    return names


def _fold_list(text: str) -> list[int]:
    try:
        return [int(f) for f in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fold numbers, e.g. 0,1,2; got {text!r}") from None


def _with_data_overrides(cfg, args: argparse.Namespace):
    """--fold / --train-corpora / --eval-corpora / --leave-out replace the config's [data] keys
    (validated like the file: leave_out excludes the other two)."""
    from ser_core.config import ConfigError, DataConfig, format_validation_error
    from pydantic import ValidationError

    data = cfg.data.model_dump()
    if args.leave_out is not None:
        data.update(leave_out=args.leave_out, train_corpora=None, eval_corpora=None)
    if args.fold is not None:
        data["fold"] = args.fold
    for key in ("train_corpora", "eval_corpora"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
            if args.leave_out is None:  # naming corpora replaces the file's leave_out
                data["leave_out"] = None
    try:
        return cfg.model_copy(update={"data": DataConfig.model_validate(data)})
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, "the command line")) from None


def cmd_train(args: argparse.Namespace) -> int:
    from ser_core.config import load_train_config
    from ser_core.corpus import PreparedCorpus
    from ser_core.train import fit, save_checkpoint

    cfg = _with_data_overrides(load_train_config(args.config), args)
    out = Path(args.out or cfg.output or Path("runs") / args.config.stem)
    corpus = PreparedCorpus.load(cfg.data.prepared)
    d = cfg.data
    split = corpus.evaluation_split(d.fold, **d.protocol_args())
    print(f"training {cfg.model.name} with {cfg.loss.family} on {cfg.frontend.kind} for {cfg.optim.epochs} epochs; "
          f"fold {d.fold}, train on {'+'.join(split.train_corpora)}, test on {'+'.join(split.eval_corpora)}, "
          f"{len(split.classes)} classes ({', '.join(split.classes)})"
          + "".join(f"; dropped {k} ({v})" for k, v in split.dropped.items()))

    def on_epoch(r, _state) -> None:
        print(f"epoch {r.epoch:3d}  train_loss {r.train_loss:.4f}  val_loss {r.val_loss:.4f}  "
              f"val_ua {r.val_ua:.3f}  val_wa {r.val_wa:.3f}  ({r.seconds:.1f}s)", flush=True)

    result = fit(cfg, corpus, on_epoch=on_epoch)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = result.checkpoint | {"preprocessing": corpus.protocol}
    save_checkpoint(ckpt, out / "checkpoint.pt")
    metrics = result.metrics() | {"labels": list(result.labels),
                                  "train_corpora": list(result.train_corpora),
                                  "eval_corpora": list(result.eval_corpora), "classes": list(result.classes),
                                  "classes_dropped": result.classes_dropped,
                                  "confusion_test": result.test.confusion.tolist()}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"best epoch {result.best_epoch}: val UA {result.val.ua:.3f} WA {result.val.wa:.3f} | "
          f"test UA {result.test.ua:.3f} WA {result.test.wa:.3f} F1 {result.test.f1_macro:.3f} | "
          f"compactness test {result.compactness_test:.3f}")
    print(f"checkpoint and metrics in {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ser_core.predict import Predictor

    predictor = Predictor(args.checkpoint)
    status = 0
    for p in predictor.predict(args.files):
        if p.error:
            print(f"{p.path}\tERROR\t{p.error}")
            status = 1
            continue
        probs = "  ".join(f"{k}={v:.3f}" for k, v in sorted(p.probabilities.items(), key=lambda kv: -kv[1]))
        print(f"{p.path}\t{p.label}\t{probs}")
    return status


def cmd_sweep(args: argparse.Namespace) -> int:
    from search.definition import load_sweep
    from search.analysis.leaderboard import leaderboard, render
    from search.results import read_trials
    from search.driver import run_sweep

    sweep = load_sweep(args.sweep)
    if args.prepared:
        sweep = sweep.with_prepared(args.prepared)
    if args.outer_fold is not None:  # the fold count is the prepared data's, so one file fits any corpus
        from ser_core.corpus import PreparedCorpus

        sweep = sweep.with_outer_fold(args.outer_fold, PreparedCorpus.load(sweep.data.prepared).n_folds)
    if args.optuna_storage:
        sweep = sweep.with_optuna_storage(args.optuna_storage)
    outcome = run_sweep(sweep, args.results, address=args.address, resume=args.resume)
    print(f"\n{outcome.num_trials} trials ({outcome.num_errors} errors); results in {outcome.sweep_dir}")
    dashboard = f" (optuna-dashboard sqlite:///{outcome.study_path})" if outcome.study_path else ""
    print(f"Optuna study: {outcome.study_location}{dashboard}\n")
    print(render(leaderboard(read_trials(outcome.sweep_dir)), "table"))
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    from search.analysis.leaderboard import leaderboard, render
    from search.results import read_trials
    from search.analysis.claims import arms_of_sweep, claim_arms
    from search.analysis.confirmation import plan_confirmation
    from search.driver import run_confirm

    results = Path(args.results_dir)
    if args.claims and not args.for_claims:
        print("ser-search confirm: error: --claims FILE names the claims whose arms --for-claims confirms; "
              "add --for-claims", file=sys.stderr)
        return 2
    arms = None
    if args.for_claims:
        from search.analysis.claims import ClaimsError, load_claims

        try:
            arms = claim_arms(load_claims(args.claims) if args.claims else None)
        except ClaimsError as e:
            print(f"ser-search confirm: error: {e}", file=sys.stderr)
            return 2
    sweep = args.sweep
    if sweep is None:
        names = sorted({p.parent.name for p in results.glob("*/trials.parquet")} - {
            p.parent.name for p in results.glob("*-confirm/trials.parquet")})
        if len(names) != 1:
            print(f"ser-search confirm: error: {results} holds sweeps {names or 'none'}; name one with --sweep",
                  file=sys.stderr)
            return 2
        sweep = names[0]
    if arms:  # an arm tied to another sweep (a baseline's, in a claim against it) is that sweep's to confirm
        arms, elsewhere = arms_of_sweep(arms, sweep)
        if elsewhere:
            print(f"ser-search confirm: {len(elsewhere)} arm(s) belong to other sweeps and are confirmed there: "
                  + "; ".join(f"{a['sweep'] if isinstance(a['sweep'], str) else ','.join(a['sweep'])}: {a}"
                              for a in elsewhere), file=sys.stderr)
        if not arms:
            print(f"ser-search confirm: error: no arm of these claims belongs to sweep {sweep!r}", file=sys.stderr)
            return 2
    # the analysis chooses what to confirm; the driver runs what it is told
    plan = plan_confirmation(str(results), sweep, top=args.top, seeds=args.seeds, per=args.per, arms=arms)
    outcome = run_confirm(str(results), plan, address=args.address, resume=args.resume,
                          max_concurrent=args.max_concurrent, cpus_per_trial=args.cpus_per_trial,
                          gpus_per_trial=args.gpus_per_trial, folds=args.folds,
                          leave_one_corpus_out=args.leave_one_corpus_out, name=args.name)
    print(f"\n{outcome.num_trials} confirmation trials ({outcome.num_errors} errors); results in {outcome.sweep_dir}\n")
    print(render(leaderboard(read_trials(outcome.sweep_dir)), "table"))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from search.analysis.leaderboard import LeaderboardError, leaderboard, render
    from search.results import explain_no_trials, read_trials

    group_by = [c.strip() for c in args.group_by.split(",")] if args.group_by else None
    trials = read_trials(args.results_dir)
    if not len(trials):
        # An empty table with status 0 would read as "nothing ranked yet" when the path is wrong.
        started, message = explain_no_trials(args.results_dir)
        if not started:
            raise LeaderboardError(message)  # an input error: status 2, like every other
        print(message, file=sys.stderr)
    if args.pareto:
        from search.analysis.pareto import pareto_leaderboard, sweep_objectives

        if group_by:
            raise LeaderboardError("--pareto lists configurations; it cannot be combined with --group-by")
        front, skipped = pareto_leaderboard(trials, sweep_objectives(args.results_dir))
        if skipped:
            print(f"--pareto: {', '.join(skipped)} {'has' if len(skipped) == 1 else 'have'} no [sweep] objectives; "
                  "left out", file=sys.stderr)
        print(render(front, args.format))
        return 0
    print(render(leaderboard(trials, group_by=group_by), args.format))
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from search.driver.session import one_driver
    from search.results import ResultsStore, sweep_dirs
    from search.results.location import ResultsError, join

    dirs = sweep_dirs(args.results_dir)
    if not dirs:
        raise ResultsError(f"no sweep found in {args.results_dir}")
    for results, name in dirs:
        run_dir = join(results, name)
        with one_driver(results, run_dir, f"compact of {name!r}"):  # refused while a driver writes it
            ResultsStore(results, name).compact()
        print(f"compacted {run_dir}: trials.parquet, epochs.parquet, confusion.parquet hold every row")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out), fresh=args.fresh)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ser-search", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write the synthetic emotional-speech corpus as WAV files")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--speakers", type=int, default=8)
    g.add_argument("--clips-per-emotion", type=int, default=20)
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=cmd_generate)

    pr = sub.add_parser("prepare", help="corpora on disk -> manifest.parquet + one waveform array")
    pr.add_argument("--corpus", type=_corpus_arg, action="append", required=True, metavar="NAME=PATH",
                    help="corpus adapter name and its root folder; repeat for several corpora")
    pr.add_argument("--out", type=Path, required=True)
    pr.add_argument("--protocol", choices=["speaker", "utterance", "session"], default="speaker",
                    help="speaker-independent k-fold (default), stratified 80/10/10 by utterance, "
                         "or IEMOCAP leave-one-session-out")
    pr.add_argument("--folds", type=_folds_arg, default=None, metavar="K|standard",
                    help="number of folds (default: 5 speaker folds, 10 utterance folds, one per session); "
                         "'standard' (speaker protocol): fixed leave-speakers-out folds, EmoDB 5 x 2 speakers "
                         "(one male, one female), RAVDESS 6 x 4 actors (ser_core.splits.STANDARD_SPEAKER_FOLDS)")
    pr.add_argument("--folds-from", type=Path, action="append", metavar="PATH",
                    help="take the folds from a benchmark's lists: an EmoBox data/<corpus>/ folder (fold_N/"
                         "<corpus>_test_fold_N.jsonl) or test-fold .jsonl files; repeat for several corpora")
    pr.add_argument("--labels", choices=["shared", "native"], default="shared",
                    help="shared: every corpus on the 8 shared classes (default); native: each corpus's own "
                         "classes (EmoDB 7 with boredom, CREMA-D 6, IEMOCAP 4, ...)")
    pr.add_argument("--force", action="store_true", help="replace an existing prepared corpus in --out")
    pr.add_argument("--sample-rate", type=int, default=16000)
    pr.add_argument("--segment-seconds", type=float, default=3.5)
    pr.add_argument("--augment-copies", type=int, default=2, help="noisy copies per clip (train only)")
    pr.add_argument("--snr-db", type=float, default=20.0)
    pr.add_argument("--iemocap-four-class", action="store_true")
    pr.add_argument("--seed", type=int, default=0)
    pr.set_defaults(func=cmd_prepare)

    t = sub.add_parser("train", help="train and evaluate one configuration (TOML)")
    t.add_argument("config", type=Path)
    t.add_argument("--out", type=Path, help="checkpoint/metrics directory (default: config's output)")
    t.add_argument("--fold", type=int, help="test fold (overrides data.fold)")
    t.add_argument("--train-corpora", type=_corpus_list, metavar="A,B",
                   help="cross-corpus: train on these prepared corpora (overrides data.train_corpora)")
    t.add_argument("--eval-corpora", type=_corpus_list, metavar="C",
                   help="cross-corpus: test on these (overrides data.eval_corpora)")
    t.add_argument("--leave-out", metavar="C", help="leave-one-corpus-out: test on C, train on the other corpora")
    t.set_defaults(func=cmd_train)

    pd_ = sub.add_parser("predict", help="label audio files with a trained checkpoint")
    pd_.add_argument("checkpoint", type=Path)
    pd_.add_argument("files", type=Path, nargs="+")
    pd_.set_defaults(func=cmd_predict)

    s = sub.add_parser("sweep", help="run a sweep file on Ray Tune (Optuna TPE + ASHA)")
    s.add_argument("sweep", type=Path)
    s.add_argument("--results", default="results", help="results directory or pyarrow filesystem URI")
    s.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    s.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    s.add_argument("--prepared", type=Path, help="override the sweep file's data.prepared")
    s.add_argument("--outer-fold", type=int, metavar="F",
                   help="nested cross-validation: hold fold F out of the whole sweep (data.test_folds = [F]), "
                        "select on every other fold of the prepared data, and name the sweep <name>-fF; "
                        "replaces the file's fold design (repeat with --resume and the same F)")
    s.add_argument("--optuna-storage", metavar="URL",
                   help="Optuna storage URL for the study (postgresql://..., sqlite:////path/optuna.db); "
                        "overrides [sweep] optuna_storage; default: optuna.db with the results")
    s.set_defaults(func=cmd_sweep)

    lb = sub.add_parser("leaderboard", help="rank trials by validation UA")
    lb.add_argument("results_dir")
    lb.add_argument("--group-by", help="comma-separated columns, e.g. loss_family,frontend")
    lb.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
    lb.add_argument("--pareto", action="store_true",
                    help="the non-dominated configurations over the sweep's [sweep] objectives (completed trials)")
    lb.set_defaults(func=cmd_leaderboard)

    cp = sub.add_parser("compact", help="fold a results directory's part files into its Parquet tables")
    cp.add_argument("results_dir", help="a --results directory (every sweep in it) or one sweep's directory")
    cp.set_defaults(func=cmd_compact)

    c = sub.add_parser("confirm", help="re-run the top-K configurations with N seeds (no early stopping)")
    c.add_argument("results_dir")
    c.add_argument("--top", type=int, default=3)
    c.add_argument("--seeds", type=int, default=3)
    pick = c.add_mutually_exclusive_group()
    pick.add_argument("--per", type=lambda t: [c.strip() for c in t.split(",") if c.strip()], metavar="COLS",
                   help="take the top K within each group of these columns, e.g. loss_family,frontend "
                        "(every arm of a claim gets confirmed)")
    c.add_argument("--name", help="results name of this confirmation (default: SWEEP-confirm)")
    pick.add_argument("--for-claims", action="store_true",
                   help="confirm the top K of every loss family x frontend the claims compare "
                        "(then run `ser-search claims`)")
    c.add_argument("--claims", metavar="FILE.toml",
                   help="with --for-claims: the arms of this claims file instead of the papers' claims")
    c.add_argument("--folds", type=_fold_list, metavar="0,1,2",
                   help="repeat every run on these test folds (the claims pair runs by seed and fold)")
    c.add_argument("--leave-one-corpus-out", action="store_true",
                   help="repeat every run with each prepared corpus held out in turn")
    c.add_argument("--sweep", help="which sweep under RESULTS_DIR (needed when there are several)")
    c.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    c.add_argument("--resume", action="store_true")
    c.add_argument("--max-concurrent", type=int, default=2)
    c.add_argument("--cpus-per-trial", type=float, default=1.0)
    c.add_argument("--gpus-per-trial", type=float, default=0.25, help="used only where the cluster has GPUs")
    c.set_defaults(func=cmd_confirm)

    d = sub.add_parser("demo", help="generate, prepare, sweep on a local Ray, confirm, print leaderboard and claims")
    d.add_argument("--out", default="demo-out")
    d.add_argument("--fresh", action="store_true", help="discard a previous demo sweep in --out")
    d.set_defaults(func=cmd_demo)

    # both import only the standard library at load time, so --help stays fast
    from search.analysis.claims import add_claims_command
    from search.dashboard.cli import add_dashboard_command
    from .jobs import add_job_commands
    add_job_commands(sub)
    add_dashboard_command(sub)
    add_claims_command(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - known user errors print cleanly, others re-raise
        if type(e).__name__ in _USER_ERRORS:
            print(f"ser-search {args.command}: error: {e}", file=sys.stderr)
            return 2
        raise


# Errors that are the user's input, not our bug: printed without a traceback.
_USER_ERRORS = {"ConfigError", "SweepConfigError", "SweepError", "CorpusError", "AudioError",
                "PrepareError", "SplitError", "LossConfigError", "NonFiniteLossError", "ResultsError", "ProtocolError",
                "CorpusFormatError", "FileNotFoundError", "ValidationError", "LeaderboardError",
                "ClaimsError", "ConfirmationError"}


if __name__ == "__main__":
    sys.exit(main())
