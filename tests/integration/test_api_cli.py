"""The CLI twins of the API: background studies from the CLI, and the commands that talk to a
running service (health, settings)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

from tests.integration.conftest import REPO, needs_root, novatune, snapshot
from tests.integration.test_api_studies import _health, free_port, spec, wait_for


def test_health_and_runtime_settings_through_a_running_service(home):
    port = free_port()
    env = {**os.environ, "NOVATUNE_HOME": str(home), "NOVATUNE_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "experiments", "serve"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _health(f"http://127.0.0.1:{port}"), bool, 60, "the service")

        def cli(*args):
            return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=60)

        h = cli("health", "--json")
        assert h.returncode == 0 and json.loads(h.stdout)["status"] == "ok", h.stderr
        s = cli("settings", "set", "max_running_studies=1", "--json")  # uses the generated token file
        assert s.returncode == 0, s.stderr
        live = json.loads(cli("settings", "show", "--live", "--json").stdout)
        assert live["max_running_studies"] == 1
        bad = cli("settings", "set", "host=0.0.0.0")
        assert bad.returncode == 2 and "max_running_studies" in bad.stderr and "Traceback" not in bad.stderr
        bad = cli("settings", "set", "max_running_studies=0")
        assert bad.returncode == 2 and "422" in bad.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "API token: generated into" in stderr  # where it is, at first start
    assert (home / "api-token").read_text().strip() not in stderr.replace("\n", "")  # never the token itself


@needs_root
@pytest.mark.slow
def test_a_background_study_from_the_cli(tmp_path, home):
    before = snapshot()
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec("cli-bg", trials=3, knobs={"vm.vfs_cache_pressure": {"low": 50, "high": 200}})))
    started = novatune("study", "start", str(path), "--json", home=home, check=True)
    assert json.loads(started.stdout)["state"] in ("starting", "running")
    clash = novatune("study", "run", str(path), "--name", "cli-fg", home=home)  # same host knob, foreground
    assert clash.returncode == 2 and "vm.vfs_cache_pressure" in clash.stderr
    watched = novatune("study", "watch", "cli-bg", "--json", home=home, timeout=240, check=True)
    assert json.loads(watched.stdout)["state"] == "completed"
    listing = json.loads(novatune("study", "list", "--json", home=home, check=True).stdout)
    assert [(s["name"], s["trials_done"]) for s in listing] == [("cli-bg", 3)]
    pareto = json.loads(novatune("study", "pareto", "cli-bg", "--json", home=home, check=True).stdout)
    assert pareto["choice"]["trial"] in {t["trial"] for t in pareto["front"]}
    conv = json.loads(novatune("convergence", "cli-bg", "--json", home=home, check=True).stdout)
    assert conv[0]["stop_reason"] == "budget of 3 trials used"
    assert novatune("study", "stop", "cli-bg", home=home).returncode == 2  # not running any more
    assert novatune("study", "delete", "cli-bg", "--yes", home=home).returncode == 0
    assert json.loads(novatune("study", "list", "--json", home=home, check=True).stdout) == []
    assert snapshot() == before
