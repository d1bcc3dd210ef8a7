"""search: turns a sweep file into a Ray Tune experiment (Optuna TPE + ASHA) and every trial
into Parquet rows. Knows nothing of spectrogram maths: it drives ser_core.

The packages, in the order a sweep's data flows (each imports only those it names):

    definition  the sweep file → a validated SweepConfig: the space, objectives, [logging]
    driver      the Ray session, the Optuna study and searcher, the ASHA schedulers, checkpoints,
                the driver lock, the run record, warm start, the sweep and confirmation runs
                (→ worker, recording, results, definition)
    worker      what runs on a Ray worker: the trainable and its wire format (→ ser_core)
    recording   Tune callbacks: the Parquet recorder, MLflow / W&B / TensorBoard (→ worker, results)
    results     results on disk: Parquet schemas, the store, path-or-URI locations
    analysis    leaderboard, Pareto fronts, claims, which configurations a confirmation re-runs
    dashboard   the HTML dashboard (→ analysis, results)
    cli         the command-line doors: `ser-search`, the demo, cluster jobs (→ everything)

definition, results, analysis and dashboard never import Ray (tests/test_layout.py).

Modules that moved keep their old import paths (`search.driver`, `search.driver.searcher`, ...):
Ray Tune's snapshots pickle classes and functions by module path, and a sweep started before
the move must still `--resume` (search/moved.py).
"""
from search import moved as _moved

_moved.install()
