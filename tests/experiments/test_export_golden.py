"""The exports of one fixed recorded study, byte for byte (reproducible with ``SOURCE_DATE_EPOCH``).

The study is built here from fixed numbers (every knob family of the catalog, a baseline, a front, an
infeasible and a failed trial), as the runner records a study: ``objectives``, ``knobs``,
``sysctl_keys``, per-trial ``applied`` values and constraints. Each format is rendered for the study's
choice, for a trial named by the user, and the TuneD profile with a stock profile included; the files
in ``golden/`` are what novatune rendered when this test was written. A refactoring keeps them
byte-identical; a deliberate change of an export regenerates them with ``NOVATUNE_REGEN_GOLDEN=1``
(and the diff is reviewed).
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest

from experiments.deploy.export import FORMATS, render
from experiments.study.results import load_view

GOLDEN = Path(__file__).parent / "golden"
EPOCH = "1796515200"  # 2026-12-06T00:00:00+00:00

KNOBS = {
    "vm.swappiness": 30, "vm.dirty_ratio": 25, "vm.dirty_background_ratio": 10, "kernel.sched_autogroup_enabled": 0,
    "kernel.numa_balancing": 0, "net.core.somaxconn": 1024, "net.ipv4.tcp_fin_timeout": 30,
    "net.ipv4.tcp_rmem": [4096, 131072, 8388608], "net.ipv4.tcp_wmem": 6291456,
    "net.ipv4.tcp_congestion_control": "bbr", "thp.enabled": "madvise", "thp.defrag": "defer+madvise", "ksm.run": 0,
    "block.vda.read_ahead_kb": 256, "block.vda.scheduler": "mq-deadline", "block.vda.nr_requests": 64,
    "block.vda.wbt_lat_usec": 2000, "block.vdb.scheduler": "none", "block.vdb.read_ahead_kb": 512,
    "cpufreq.governor": "performance", "cpufreq.epp": "balance_performance", "irq.24.affinity": "0",
    "irq.default_affinity": "0-1", "nic.eth0.tso": "off", "nic.eth0.gro": "on", "nic.eth0.rx_ring": 512,
    "nic.eth1.rx_usecs": 8, "sizing.vcpus": 1.5, "sizing.cpu_weight": 200, "sizing.memory_gib": 2.5,
    "sizing.cpuset_cpus": "0-1", "sizing.cpuset_mems": "0", "affinity.cpus": 2, "affinity.placement": "compact",
    "sched.policy": "batch", "sched.nice": -5, "ioprio.class": "best-effort", "ioprio.level": 4,
    "instance.type": "m5.large",
}
SYSCTL = ("vm.", "kernel.", "net.core.", "net.ipv4.")
#: (throughput, cost, constraint violation, changes from KNOBS); trial 0 is the baseline
TRIALS = [
    (1000.0, 0.050, -1.0, {}),
    (1250.0, 0.040, -2.0, {"vm.swappiness": 10, "sizing.vcpus": 1.2, "thp.enabled": "never"}),
    (900.0, 0.020, -0.5, {"vm.swappiness": 60, "sizing.vcpus": 0.6, "block.vda.scheduler": "none"}),
    (1300.0, 0.060, -3.0, {"vm.dirty_ratio": 40, "affinity.cpus": 1, "affinity.placement": "spread"}),
    (2000.0, 0.010, 4.0, {"vm.swappiness": 1}),  # would dominate, but violates the SLA
]


def _study(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'golden.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="golden", storage=url, directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["throughput_rps", "cost_usd_per_hour"])
    study.set_user_attr("knobs", list(KNOBS))
    study.set_user_attr("sysctl_keys", {k: k for k in KNOBS if k.startswith(SYSCTL)})
    study.set_user_attr("constraints", {"latency_p95_ms": {"max": 50}})
    dist = optuna.distributions.FloatDistribution(0, 100)
    for i, (thr, cost, viol, change) in enumerate(TRIALS):
        t = study.ask({"x": dist})
        t.set_user_attr("applied", {**KNOBS, **change})
        t.set_user_attr("metrics", {"throughput_rps": thr, "cost_usd_per_hour": cost, "latency_p95_ms": 50 + viol})
        if i == 0:
            t.set_user_attr("baseline", True)
        t.set_constraint("latency_p95_ms", viol)
        study.tell(t, [thr, cost])
    study.tell(study.ask({"x": dist}), state=optuna.trial.TrialState.FAIL)
    return load_view(url, "golden")


CASES = [(fmt, None, None) for fmt in FORMATS] + [(fmt, 3, None) for fmt in FORMATS] + [("tuned", None, "balanced")]


@pytest.mark.parametrize(("fmt", "trial", "include"), CASES,
                         ids=[f"{f}-{'choice' if t is None else f'trial{t}'}{'-' + i if i else ''}"
                              for f, t, i in CASES])
def test_exports_are_byte_identical_to_the_recorded_ones(tmp_path, monkeypatch, fmt, trial, include):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    text = render(_study(tmp_path), fmt, trial=trial, include=include)
    name = f"{fmt}-{'choice' if trial is None else f'trial{trial}'}{'-' + include if include else ''}.txt"
    path = GOLDEN / name
    if os.environ.get("NOVATUNE_REGEN_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path.name}: run once with NOVATUNE_REGEN_GOLDEN=1 and review it"
    assert text == path.read_text(), f"the {fmt} export differs from {path.name}"
