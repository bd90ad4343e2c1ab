"""`novatune ui` as a user meets it: the link novatune prints opens the study's runs in a real browser
(headless Chromium renders MLflow's own UI), and stopping novatune stops every process MLflow started.

MLflow 3's UI opens in its GenAI view by default, where a novatune experiment shows no runs; the
link novatune prints selects the model-training view. The study here is recorded through the same
Tracker the runner uses (no knob is touched).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from experiments.settings import Paths, mlflow_ui_url
from experiments.study.tracking import Tracker
from tests.integration.conftest import REPO

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _record_study(home: Path) -> str:
    paths = Paths(home).ensure()
    tracker = Tracker(paths.mlflow_uri, artifact_root=paths.artifacts)
    tracker.start_study("uitest", description="a study for the UI test", tags={})
    now = time.time()
    for i in range(3):
        tracker.log_trial(i, params={"vm.swappiness": 10 + i}, metrics={"throughput_rps": 100.0 + i},
                          tags={"state": "complete"}, started=now - 40 + 10 * i, finished=now - 31 + 10 * i)
    tracker.finish_study(metrics={}, step_metrics={}, artifacts=[], tags={"state": "completed"})
    return str(tracker.experiment_id)


def _page_text(url: str, profile: Path) -> str:
    """What Chromium shows at ``url`` once MLflow's scripts ran: the DOM with the tags stripped."""
    proc = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000",
                           "--window-size=1400,900", "--dump-dom", url],
                          capture_output=True, text=True, timeout=120)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", proc.stdout))


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer 200 in {timeout:.0f} s")


def test_the_printed_link_opens_the_runs_and_stopping_novatune_stops_mlflow(tmp_path: Path, home: Path) -> None:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    experiment = _record_study(home)
    port = _free_port()
    log = tmp_path / "ui.log"
    with open(log, "w") as out:
        ui = subprocess.Popen([sys.executable, "-m", "experiments", "ui", "--port", str(port)], cwd=REPO,
                              env={**os.environ, "NOVATUNE_HOME": str(home), "COLUMNS": "300"},
                              stdout=out, stderr=subprocess.STDOUT)
    group: list[psutil.Process] = []
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(base + "/", 180)
        assert mlflow_ui_url(base=base) in log.read_text()  # `novatune ui` prints the link to the right view
        group = psutil.Process(ui.pid).children(recursive=True)
        assert group, "novatune ui started no MLflow process"

        shown = _page_text(mlflow_ui_url(experiment, base=base), tmp_path / "chromium")
        assert "4 matching runs" in shown and "uitest (study)" in shown, shown[:2000]
        # MLflow's default view of the same experiment: no run at all (what users saw before)
        assert "matching runs" not in _page_text(f"{base}/#/experiments/{experiment}", tmp_path / "chromium2")

        ui.send_signal(signal.SIGTERM)  # as `kill PID` does: not Ctrl-C in its terminal
        ui.wait(timeout=60)
    finally:
        if ui.poll() is None:
            ui.kill()
            ui.wait()
    deadline = time.monotonic() + 10
    left = group
    while left and time.monotonic() < deadline:
        left = [p for p in group if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.2)
    for p in left:  # do not leave them to the rest of the suite
        p.kill()
    assert not left, f"still running after novatune ui stopped: {[' '.join(p.cmdline()[:4]) for p in left]}"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the MLflow port still answers"
