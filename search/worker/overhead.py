"""Where a trial's wall time goes outside its epochs, measured inside the trial.

Why: with ASHA most trials run one or two epochs, so what a trial pays before its first step
(process start, imports, the corpus hand-over, spectrograms, the normaliser, the model) and
around its epochs (a checkpoint and a report each, the final evaluation) is a large share of
a sweep. The trainable records each phase here and sends the running totals with every report
(`overhead_json`, one JSON string: Tune's loggers take scalars and strings), so a stopped trial's
last report carries them too; benchmarks/sweep.py and benchmarks/answer.py print the breakdown.

What a trial pays before it enters the trainable (Tune scheduling it, the actor's process,
unpickling the trainable — which imports torch and ser_core —, the corpus from the object store)
is not visible from inside: the benchmarks take it as `entered_at` minus the driver's start stamp.
Ray may run a trial in a process it started earlier (its worker pool), so the process's own start
time says nothing about the trial's and is reported only for reference.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any

_TRIALS_IN_PROCESS = 0  # > 1 when Tune reuses the actor for another trial

OVERHEAD_JSON = "overhead_json"
PEAK_RSS = "peak_rss_mib"


def process_started_at() -> float | None:
    """This process's start in epoch seconds (Linux /proc), or None where it cannot be read."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            # field 22 (starttime, clock ticks since boot); the command name (field 2) may hold spaces
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat", encoding="ascii") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def reset_peak_rss() -> bool:
    """Start a new resident-set high-water mark for this process (Linux >= 4.0: clear_refs 5), so
    a trial in a reused actor reports its own peak, not an earlier trial's. False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """This process's resident-set high-water mark since the last reset (VmHWM), else since it
    started (getrusage; KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def memory_now_mib() -> dict[str, float]:
    """Resident and proportional set size now (Linux smaps_rollup). RSS counts every shared page
    a process maps (a shared feature cache, the object store's corpus) in full; PSS divides them
    among the processes that map them, so N trials sharing one copy show it once in total."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                    out[key.lower()] = int(rest.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


class TrialClock:
    """The phases of one trial, in seconds. Start it on entering the trainable."""

    def __init__(self) -> None:
        global _TRIALS_IN_PROCESS
        _TRIALS_IN_PROCESS += 1
        self.entered = time.time()
        self.trial_in_process = _TRIALS_IN_PROCESS
        self.reused = _TRIALS_IN_PROCESS > 1  # the process, its imports were paid by an earlier trial
        self.phases: dict[str, float] = {}
        self.process_started_at = process_started_at()
        reset_peak_rss()
        self.setup: dict[str, float] = {}  # filled by ser_core.train.fit (its `timings`)
        self._mark = self.entered
        self.checkpoint_report = 0.0
        self.between_epochs = 0.0
        self.final_eval = 0.0
        self._setup_counted = False

    def add(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    def fit_started(self) -> None:
        now = time.time()
        self.add("config", now - self._mark)  # the trial's config, its resume checkpoint read
        self._mark = now

    def lap(self, phase: str) -> None:
        """The time since the previous mark (fit_started, or an earlier lap) as `phase`: a step the
        trainable takes itself before fit, e.g. "cost" (ser_core.cost's measurement)."""
        now = time.time()
        self.add(phase, now - self._mark)
        self._mark = now

    def epoch_reported(self, epoch_seconds: float, final: bool) -> float:
        """At on_epoch's entry: the time since fit's setup or the previous report that the epoch
        itself did not account for (the final evaluation on the last epoch). Returns now."""
        now = time.time()
        since = now - self._mark
        if not self._setup_counted:  # the first report's interval holds fit's setup
            since -= sum(self.setup.values())
            self._setup_counted = True
        gap = max(0.0, since - epoch_seconds)
        if final:
            self.final_eval += gap
        else:
            self.between_epochs += gap
        return now

    def report_done(self, started: float) -> None:
        now = time.time()
        self.checkpoint_report += now - started
        self._mark = now

    def as_dict(self, since: float | None = None) -> dict[str, Any]:
        """The totals so far; `since` (epoch_reported's return) counts the report being written
        up to now (its checkpoint files), so the last report carries its own saves."""
        phases = dict(self.phases)
        phases.update({f"fit_{k}": v for k, v in self.setup.items()})
        pending = 0.0 if since is None else time.time() - since
        phases.update(checkpoint_report=self.checkpoint_report + pending, fit_between_epochs=self.between_epochs,
                      final_eval=self.final_eval)
        return {"phases": {k: round(v, 4) for k, v in phases.items()}, "reused": self.reused,
                "trial_in_process": self.trial_in_process, "pid": os.getpid(),
                "process_started_at": self.process_started_at, "entered_at": self.entered,
                "peak_rss_mib": round(peak_rss_mib(), 1),
                "memory_mib": {k: round(v, 1) for k, v in memory_now_mib().items()}}

    def metrics(self, since: float | None = None) -> dict[str, Any]:
        d = self.as_dict(since)
        # reported_at: wall clock of this report, so a benchmark can place every epoch in time
        return {OVERHEAD_JSON: json.dumps(d), PEAK_RSS: d["peak_rss_mib"], "reported_at": time.time()}
