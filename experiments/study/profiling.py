"""Profiles tied to trials: the spec's ``profile:`` section.

In every measurement window of a trial, :class:`TrialProfiler` samples the tuned processes (the
workload's Python processes, each root with its children) with py-spy for the measured part of the
window (after the warm-up), merges the windows of the trial's repeats into one profile and, after the
trial, stores it in the profile store with the labels ``study``, ``trial``, ``config_hash``, ``mode``
and ``rate_hz``, and writes beside the trial's series:

- ``trial-NNN-flamegraph.svg`` and ``.html`` (the trial's flamegraph),
- ``trial-NNN-diff-vs-baseline.svg``, ``.html`` and ``.json`` (against trial 0, the baseline),

which the trial's MLflow run logs under ``profile/``. At the study's end :meth:`summary` names the
hotspots that changed most between the baseline and the chosen configuration.

Profiling never decides a trial: a window that cannot be profiled (a non-Python workload, py-spy
missing, a process that exits) is logged and noted in the trial's tags; the trial is measured as usual.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.errors import NovatuneError
from collectors.profiler.diff import diff, render_diff_html, render_diff_svg
from collectors.profiler.flamegraph import render_html, render_svg
from collectors.profiler.model import Profile, ProfileMeta
from collectors.profiler.sampler import SamplerOptions, record_pid
from collectors.profiler.store import ProfileStore
from experiments.spec import ProfileSpec

__all__ = ["TrialProfiler", "config_hash"]

log = logging.getLogger(__name__)

#: the profile starts this long after the warm-up and stops this long before the window ends, so py-spy's
#: own start and the end of the workload's run stay out of it
_MARGIN_S = 0.5


def config_hash(params: dict[str, Any]) -> str:
    """12 hex digits naming a configuration (its knob values, order-independent)."""
    text = json.dumps({k: params[k] for k in sorted(params)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _roots(pids: list[int]) -> list[int]:
    """The pids whose parent is not one of ``pids`` (py-spy follows their children with --subprocesses)."""
    import psutil

    wanted = set(pids)
    roots = []
    for pid in pids:
        try:
            if psutil.Process(pid).ppid() not in wanted:
                roots.append(pid)
        except psutil.Error:
            continue
    return roots


@dataclass
class _Trial:
    number: int
    profile: Profile | None = None
    notes: list[str] = field(default_factory=list)


class TrialProfiler:
    """Profiles the tuned processes in each measurement window of a study's trials (see the module)."""

    def __init__(self, spec: ProfileSpec, *, study: str, workdir: Path, store: ProfileStore | None) -> None:
        self.spec = spec
        self.study = study
        self.workdir = workdir
        self.store = store
        self.options = SamplerOptions(mode=spec.mode, rate_hz=int(spec.rate_hz), native=spec.native, subprocesses=True)
        self._trial: _Trial | None = None
        self._profiles: dict[int, Profile] = {}  # trial number -> its merged profile (this run's trials)

    # -- one trial ---------------------------------------------------------------------------------
    def start_trial(self, number: int) -> None:
        self._trial = _Trial(number)

    @contextmanager
    def window(self, pids: list[int], *, warmup_s: float, measure_s: float) -> Iterator[None]:
        """Samples ``pids`` (their roots, with children) for the measured part of a window while the body
        runs the workload's measurement. Never raises for the profile's sake."""
        trial = self._trial
        duration = measure_s - 2 * _MARGIN_S
        if trial is None or duration < 1:
            if trial is not None:
                least = 1 + 2 * _MARGIN_S
                trial.notes.append(f"measure_s {measure_s:g} s is too short to profile (at least {least:g} s)")
            yield
            return
        stop = threading.Event()
        worker = threading.Thread(target=self._sample, args=(trial, pids, warmup_s + _MARGIN_S, duration, stop),
                                  name=f"profile-trial-{trial.number}", daemon=True)
        worker.start()
        try:
            yield
        finally:
            stop.set()
            worker.join(timeout=duration + 30)

    def _sample(self, trial: _Trial, pids: list[int], delay_s: float, duration_s: float,
                stop: threading.Event) -> None:
        if stop.wait(delay_s):
            return
        for pid in _roots(pids):
            try:  # the workload's own process: no allow-list (pid 1, kernel threads, novatune never), Python, alive
                prof = record_pid(pid, duration_s, self.options, partial_ok=True, stop=stop)
            except NovatuneError as err:
                trial.notes.append(f"pid {pid}: {err}")
                continue
            if trial.profile is None:  # this window's thread is the trial's only writer
                trial.profile = prof
            else:
                trial.profile.merge(prof)
            break  # one root: the workload's server and its workers; several would profile the loader too

    def finish_trial(self, params: dict[str, Any]) -> tuple[list[Path], dict[str, str]]:
        """Stores the trial's profile and writes its flamegraph and its diff against the baseline; returns
        the files (for the trial's MLflow run) and tags (``profile_id``, ``profile_note``)."""
        trial, self._trial = self._trial, None
        if trial is None:
            return [], {}
        tags: dict[str, str] = {}
        if trial.notes:
            tags["profile_note"] = "; ".join(trial.notes)[:4000]
        prof = trial.profile
        if prof is None or not prof.total:
            tags.setdefault("profile_note", "no samples")
            return [], tags
        prof.meta = self._meta(prof.meta, trial.number, params)
        self._profiles[trial.number] = prof
        try:
            return self._write(trial.number, prof, tags), tags
        except (NovatuneError, OSError) as err:
            log.warning("trial %d: could not store or render its profile: %s", trial.number, err)
            tags["profile_note"] = f"not stored: {err}"[:4000]
            return [], tags

    def _meta(self, meta: ProfileMeta, number: int, params: dict[str, Any]) -> ProfileMeta:
        meta.labels.update({"study": self.study, "trial": str(number), "config_hash": config_hash(params),
                            "mode": self.spec.mode, "rate_hz": f"{self.spec.rate_hz:g}", "source": "study"})
        return meta

    def _write(self, number: int, prof: Profile, tags: dict[str, str]) -> list[Path]:
        out = self.workdir / "trials"
        out.mkdir(parents=True, exist_ok=True)
        if self.store is not None:
            tags["profile_id"] = self.store.put(prof)
        title = f"{self.study} trial {number}"
        files = []
        for suffix, text in (("svg", render_svg(prof, title=title)), ("html", render_html(prof, title=title))):
            path = out / f"trial-{number:03d}-flamegraph.{suffix}"
            path.write_text(text, encoding="utf-8")
            files.append(path)
        base = self._profiles.get(0)
        if base is not None and number != 0:
            d = diff(base, prof, noise_pct=self.spec.noise_pct)  # threads merged: their ids differ by run
            dtitle = f"{self.study}: trial {number} against the baseline (trial 0)"
            for suffix, text in (("svg", render_diff_svg(d, title=dtitle)), ("html", render_diff_html(d, title=dtitle)),
                                 ("json", json.dumps(d.to_dict(), indent=1))):
                path = out / f"trial-{number:03d}-diff-vs-baseline.{suffix}"
                path.write_text(text, encoding="utf-8")
                files.append(path)
        return files

    # -- the study's end ---------------------------------------------------------------------------
    def summary(self, chosen: int | None, *, top: int = 5) -> dict[str, Any] | None:
        """The functions whose share of the samples changed most between the baseline (trial 0) and the
        ``chosen`` trial, both profiled in this run; None when either is missing."""
        base, target = self._profiles.get(0), self._profiles.get(chosen) if chosen is not None else None
        if base is None or target is None or chosen is None:
            return None
        d = diff(base, target, noise_pct=self.spec.noise_pct)
        changed = [f for f in d.functions() if abs(f["delta_pct"]) >= self.spec.noise_pct][:top]
        return {"baseline_trial": 0, "chosen_trial": chosen, "noise_pct": self.spec.noise_pct, "changed": changed}
