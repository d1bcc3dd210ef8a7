"""The driver: one process per sweep that holds the Ray session, the Optuna study and its
searcher, the ASHA schedulers, the checkpoint policy, the lock on the results directory and
the run record, seeds a study from earlier sweeps (warm start), and runs the sweep and the
confirmation runs it is told to run. What runs on the workers is search.worker.

    session      Ray, Tune's settings, the run's RunConfig, one driver per directory
    run_record   sweep.toml / sweep.json, the checks before a start or a resume
    study        where the Optuna study lives and how it outlives the driver
    searcher     Optuna's TPE as Tune's searcher, with pruned trials told as such
    asha         ASHA's rungs kept across a resume; mo_asha: the multi-objective scheduler
    checkpoints  which checkpoints are kept
    warm_start   an earlier sweep's trials as this study's history
    sweep        run_sweep: the search
    confirm      run_confirm: the confirmation runs of a ConfirmationPlan
"""
from .confirm import confirm_config, run_confirm
from .session import SweepError, SweepOutcome, connect, default_node_ip
from .sweep import METRIC, record_lost_trials, run_sweep

__all__ = ["METRIC", "SweepError", "SweepOutcome", "confirm_config", "connect", "default_node_ip",
           "record_lost_trials", "run_confirm", "run_sweep"]
