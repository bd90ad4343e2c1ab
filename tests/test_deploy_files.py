"""deploy/: the Prometheus config and alert rules pass promtool (check config, check rules, test rules), the
rule tests catch a broken rule, the systemd units pass ``systemd-analyze verify``, and the dashboard and the
rules only use metric names ``GET /metrics`` serves (or the agent family, exposed by the agent's collector).

promtool is $PROMTOOL or on PATH (.ci/run unpacks Debian's prometheus package); systemd-analyze comes with
systemd (.ci/run installs it). A missing tool skips, except under CI, where it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
PROM = DEPLOY / "prometheus"
UNITS = ("novatune-serve.service", "novatune-agent.service")
#: exposed by the agent's collector (issue 19, another part): the rules and the dashboard use them already
AGENT_FAMILIES = {"novatune_agent_up", "novatune_agent_last_seen_timestamp_seconds"}


def _tool(env: str, name: str) -> str:
    found = os.environ.get(env)
    path = found if found and os.access(found, os.X_OK) else shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: .ci/run provides it (${env} or PATH)")
        pytest.skip(f"{name} not installed (set {env}=/path or put it on PATH; .ci/run provides it)")
    return path


def _run(*cmd: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, cwd=cwd, env=env)
    return proc.returncode, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------- prometheus
def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = _tool("PROMTOOL", "promtool")
    rc, out = _run(promtool, "check", "config", "--syntax-only", str(PROM / "prometheus.yml"))
    assert rc == 0, out
    # the full check also opens the files it names: the rules beside it, and the token file, which an
    # installation creates (docs/fleet.md): here a copy names a token file of the test
    token = tmp_path / "novatune-token"
    token.write_text("x" * 43)
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "novatune"]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "/etc/prometheus/novatune-token"}
    job["authorization"]["credentials_file"] = str(token)
    shutil.copy(PROM / "novatune-alerts.yml", tmp_path)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    rc, out = _run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert rc == 0 and "SUCCESS: 3 rules found" in out, out


def test_alert_rules_check_and_unit_tests_pass() -> None:
    promtool = _tool("PROMTOOL", "promtool")
    rc, out = _run(promtool, "check", "rules", str(PROM / "novatune-alerts.yml"))
    assert rc == 0 and "SUCCESS: 3 rules found" in out, out
    rules = yaml.safe_load((PROM / "novatune-alerts.yml").read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {"NovatuneChangeRolledBack", "NovatuneAgentDown", "NovatuneDrift"}
    for r in rules:
        assert "for" in r and r["labels"]["severity"] in ("warning", "critical"), r
        assert r["annotations"]["summary"] and r["annotations"]["description"], r
    rc, out = _run(promtool, "test", "rules", "novatune-alerts.test.yml", cwd=PROM)
    assert rc == 0 and "SUCCESS" in out, out


#: a broken variant of each rule, which the rule tests must catch (each test checks "fires" AND "does not fire")
BROKEN = {
    "fires on a stored count, not on a new rollback": (
        "increase(novatune_changes_rolled_back_total[15m]) > 0", "novatune_changes_rolled_back_total > 0"),
    "misses an agent that died without saying so": (
        "novatune_agent_up == 0\n          or (time() - novatune_agent_last_seen_timestamp_seconds) > 180",
        "novatune_agent_up == 0"),
    "pages on a short drift": ("for: 10m", "for: 1m"),
    "never fires on drift": ("novatune_drift_knobs > 0", "novatune_drift_knobs > 5"),
}


@pytest.mark.parametrize("why", list(BROKEN))
def test_rule_tests_catch_a_broken_rule(tmp_path: Path, why: str) -> None:
    promtool = _tool("PROMTOOL", "promtool")
    good, bad = BROKEN[why]
    text = (PROM / "novatune-alerts.yml").read_text()
    assert text.count(good) == 1, good
    (tmp_path / "novatune-alerts.yml").write_text(text.replace(good, bad))
    shutil.copy(PROM / "novatune-alerts.test.yml", tmp_path)
    rc, out = _run(promtool, "check", "rules", "novatune-alerts.yml", cwd=tmp_path)
    assert rc == 0, out  # still a valid rule: only its behaviour is wrong
    rc, out = _run(promtool, "test", "rules", "novatune-alerts.test.yml", cwd=tmp_path)
    assert rc != 0 and "FAILED" in out, f"the rule tests did not notice a rule that {why}:\n{out}"


# ----------------------------------------------------------------------------------------------- systemd
def _verify(tmp_path: Path, unit: str, text: str) -> tuple[int, str]:
    """``systemd-analyze verify`` on ``text`` as ``unit``; its ExecStart binary is a script of the test (verify
    checks that the command exists and is executable; /usr/local/bin/novatune is where an install puts it)."""
    binary = tmp_path / "bin" / "novatune"
    binary.parent.mkdir(exist_ok=True)
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    assert text.count("ExecStart=/usr/local/bin/novatune ") == 1
    path = tmp_path / unit
    path.write_text(text.replace("ExecStart=/usr/local/bin/novatune ", f"ExecStart={binary} "))
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:", "SYSTEMD_LOG_LEVEL": "info"}
    return _run(_tool("SYSTEMD_ANALYZE", "systemd-analyze"), "verify", "--man=no", "--generators=no", str(path),
                cwd=tmp_path, env=env)


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_units_verify(tmp_path: Path, unit: str) -> None:
    text = (DEPLOY / "systemd" / unit).read_text()
    rc, out = _verify(tmp_path, unit, text)
    assert rc == 0 and out.strip() == "", out
    rc, out = _verify(tmp_path, unit, text.replace("[Service]\n", "[Service]\nBogusKey=1\nTimeoutStopSec=soon\n"))
    assert "Unknown key 'BogusKey'" in out and "Failed to parse time value, ignoring: soon" in out, out  # can fail


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_units_let_the_tuner_restore(unit: str) -> None:
    """What the units must say for a root tuner that writes /proc/sys and /sys and restores on SIGTERM."""
    keys: dict[str, list[str]] = {}
    for line in (DEPLOY / "systemd" / unit).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, _, v = line.partition("=")
            keys.setdefault(k, []).append(v)
    assert "ProtectKernelTunables" not in keys and "ProtectControlGroups" not in keys  # knobs stay writable
    assert "PrivateDevices" not in keys and "ReadOnlyPaths" not in keys  # block knobs; nothing made read-only
    assert keys["KillMode"] == ["mixed"] and keys["Restart"] == ["on-failure"]
    assert int(keys["TimeoutStopSec"][0].removesuffix("s")) >= 120  # > serve's stop_timeout_s (60 s) + restores
    assert keys["After"] == ["network-online.target"] and keys["Wants"] == ["network-online.target"]
    assert keys["Environment"] == ["NOVATUNE_HOME=/var/lib/novatune"]
    if unit == "novatune-agent.service":
        assert keys["EnvironmentFile"] == ["/etc/novatune/agent.env"]
        assert keys["ExecStart"] == ["/usr/local/bin/novatune agent --labels ${NOVATUNE_LABELS}"]
        assert "STORAGE" not in keys["ExecStart"][0]  # a password on a command line is readable by every user


# ---------------------------------------------------------------------------------- names the files use
def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expr) of every target of deploy/grafana/novatune.json."""
    dash = json.loads((DEPLOY / "grafana" / "novatune.json").read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] if p["type"] != "row" for t in p["targets"]]


def _names(text: str) -> set[str]:
    return set(re.findall(r"\bnovatune_[a-z0-9_]+", text))


def test_dashboard_shape() -> None:
    dash = json.loads((DEPLOY / "grafana" / "novatune.json").read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    titles = {p["title"] for p in dash["panels"]}
    for want in ("Studies by state", "Trials over time", "Best objective values", "Pareto front size",
                 "Knobs applied: applications by state", "Rolled-back changes (last hour)", "Drifted knobs",
                 "CPU utilisation", "Profiler overhead", "Agents up"):
        assert want in titles, want
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert p["targets"] and all(t["datasource"] == p["datasource"] for t in p["targets"]), p["title"]


def test_files_use_only_names_the_service_exposes(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from experiments.service import create_app
    from experiments.settings import Paths

    body = TestClient(create_app(Paths(tmp_path / "home")), base_url="http://127.0.0.1").get("/metrics").text
    declared = {line.split()[2] for line in body.splitlines() if line.startswith("# TYPE ")}
    exposed = declared | {f"{n}_total" for n in declared} | AGENT_FAMILIES
    used = _names(" ".join(e for _, e in dashboard_exprs())) | _names((PROM / "novatune-alerts.yml").read_text())
    assert used - exposed == set()
    assert used >= AGENT_FAMILIES
