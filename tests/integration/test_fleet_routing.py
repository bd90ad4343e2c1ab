"""Apply and rollback routed to the agent that owns a host, and each host's state published for the central
service, with a real PostgreSQL, a real ``novatune serve --storage`` and two agents, each in its own network
namespace (a host of its own: the ``net.*`` knob it changes is that namespace's).

The central service queues; only the named host's agent writes, through its own journal, and answers. The
other host and this machine are never touched. A refused command changes nothing and says why; a host whose
agent is gone is refused at once (409) and nothing is queued. A data directory of today's layout (SQLite) is
carried into the fleet's PostgreSQL by ``novatune fleet publish``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2 as httpx  # the dev extra declares httpx2 (same API)
import pytest

from tests.integration.conftest import REPO, needs_root, novatune, snapshot
from tests.integration.test_api_studies import free_port
from tests.integration.test_fleet_agents import Agent, namespaces, serve, wait_for

pytestmark = [pytest.mark.slow, needs_root,
              pytest.mark.skipif(not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
                                 reason="PostgreSQL not installed (.ci/run installs it)")]

KNOB = "net.core.somaxconn"


@pytest.fixture(scope="module")
def pg():
    from benchmarks.pgcluster import PgCluster

    with PgCluster(socket=True) as cluster:
        yield cluster


def somaxconn(ns: str) -> int:
    return int(subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/sys/net/core/somaxconn"], capture_output=True,
                              text=True, check=True, timeout=30).stdout)


class Api:
    def __init__(self, home: Path, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.headers = {"Authorization": f"Bearer {(home / 'api-token').read_text().strip()}"}

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.base + path, headers=self.headers, timeout=30)

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return httpx.post(self.base + path, headers=self.headers, json=body, timeout=30)

    def answered(self, host: str, cid: int) -> dict[str, Any]:
        return wait_for(f"command {cid} to be answered", lambda: (c := self.get(f"/hosts/{host}/commands/{cid}").json())
                        ["state"] not in ("pending", "running") and c, timeout=60)


def test_apply_and_rollback_reach_only_the_owning_hosts_agent(pg, tmp_path: Path) -> None:
    url = pg.socket_url
    before = snapshot()
    central = tmp_path / "central"
    central.mkdir(mode=0o700)
    with namespaces(2) as (ns_a, ns_b):
        found = {ns_a: somaxconn(ns_a), ns_b: somaxconn(ns_b)}
        agents = [Agent(ns, host, url, tmp_path, exit_when_idle=False).start() for ns, host in
                  ((ns_a, "web-a"), (ns_b, "web-b"))]
        service = serve(central, port := free_port(), url)
        try:
            api = Api(central, port)
            wait_for("both agents registered", lambda: {h["id"] for h in api.get("/hosts").json()
                                                        if h["alive"]} == {"web-a", "web-b"})
            target = 1024 if found[ns_a] != 1024 else 2048
            r = api.post("/hosts/web-a/apply", {"config": {KNOB: target}})
            assert r.status_code == 202, r.text
            done = api.answered("web-a", r.json()["id"])
            assert done["state"] == "done", done
            app_id = done["result"]["id"]
            assert done["result"]["state"] == "applied"
            assert somaxconn(ns_a) == target and somaxconn(ns_b) == found[ns_b]  # only the owner's namespace

            # its state is published: the application is listed by the central service and the CLI
            published = wait_for("the application published", lambda: [
                a for a in api.get("/hosts/web-a/state").json()["applications"] if a["id"] == app_id])
            assert published[0]["state"] == "applied"
            shown = json.loads(novatune("--storage", url, "fleet", "show", "web-a", "--json", home=central,
                                        check=True).stdout)
            assert app_id in {a["id"] for a in shown["applications"]}
            assert api.get("/hosts/web-b/state").json()["applications"] == []

            # refused on the host: out of the knob's hard bounds; nothing changed there, the reason comes back
            r = api.post("/hosts/web-a/apply", {"config": {KNOB: 10**9}})
            assert r.status_code == 202, r.text
            refused = api.answered("web-a", r.json()["id"])
            assert refused["state"] == "failed" and KNOB in refused["error"] and "bound" in refused["error"]
            assert somaxconn(ns_a) == target

            # refused here: bad arguments (422), an unknown host (404); nothing queued
            assert api.post("/hosts/web-a/apply", {"config": {KNOB: 1}, "study": "x"}).status_code == 422
            assert api.post("/hosts/nohost/apply", {"config": {KNOB: 1}}).status_code == 404
            assert len(api.get("/hosts/web-a/commands").json()) == 2

            # rollback through the CLI, routed the same way
            rb = novatune("--storage", url, "fleet", "rollback", app_id, "--host", "web-a", "--json", home=central)
            assert rb.returncode == 0, rb.stdout + rb.stderr
            assert json.loads(rb.stdout)["state"] == "done"
            assert somaxconn(ns_a) == found[ns_a]

            # a host whose agent is gone: 409 at once, nothing queued
            agents[1].stop()
            assert agents[1].wait(60) in (0, 130)
            r = api.post("/hosts/web-b/apply", {"config": {KNOB: target}})
            assert r.status_code == 409 and "not alive" in r.json()["detail"], r.text
            assert api.get("/hosts/web-b/commands").json() == []
            conf = tmp_path / "b.conf"  # a sysctl.d file, as `novatune apply` reads it
            conf.write_text(f"{KNOB} = {target}\n")
            cli = novatune("--storage", url, "fleet", "apply", str(conf), "--host", "web-b", home=central)
            assert cli.returncode == 2 and "not alive" in cli.stderr and "Traceback" not in cli.stderr
        finally:
            service.terminate()
            service.wait(timeout=60)
            for a in agents:
                a.stop()
            for a in agents:
                a.wait(60)
                assert "Traceback" not in a.output(), a.output()
        assert {ns: somaxconn(ns) for ns in (ns_a, ns_b)} == found
    assert snapshot() == before


def test_todays_sqlite_data_directory_is_carried_into_the_fleets_postgresql(pg, tmp_path: Path) -> None:
    """A host used on its own until now (studies in its optuna.db, an application in its journal, a right-sizing
    store) joins the fleet: ``fleet publish`` upgrades the fleet schema and copies its state; nothing local changes."""
    home, central = tmp_path / "standalone", tmp_path / "central"
    home.mkdir(mode=0o700)
    central.mkdir(mode=0o700)
    env = {**os.environ, "NOVATUNE_HOME": str(home), "NOVATUNE_LOCK_DIR": str(tmp_path / "locks")}
    with namespaces(1) as (ns,):
        found = somaxconn(ns)

        def local(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "experiments", *args], cwd=REPO,
                                  env=env, capture_output=True, text=True, timeout=120)

        conf = tmp_path / "c.conf"
        conf.write_text(f"{KNOB} = {1000 if found != 1000 else 1001}\n")
        applied = local("apply", str(conf), "--json")
        assert applied.returncode == 0, applied.stderr
        app_id = json.loads(applied.stdout)["id"]
        files = {p.name: p.stat().st_mtime_ns for p in home.iterdir()}
        pub = novatune("--storage", pg.socket_url, "fleet", "publish", "--host-id", "old-host", "--labels", "role=db",
                       home=home)
        assert pub.returncode == 0, pub.stdout + pub.stderr
        assert "applications: 1 published" in pub.stdout
        assert {p.name: p.stat().st_mtime_ns for p in home.iterdir() if p.name in files} == files
        shown = json.loads(novatune("--storage", pg.socket_url, "fleet", "show", "old-host", "--json", home=central,
                                    check=True).stdout)
        assert [a["id"] for a in shown["applications"]] == [app_id]
        hosts = json.loads(novatune("--storage", pg.socket_url, "fleet", "hosts", "--json", home=central,
                                    check=True).stdout)
        old = next(h for h in hosts if h["id"] == "old-host")
        assert old["alive"] is False and old["labels"] == {"role": "db"}
        # no agent runs there: a routed rollback is refused at once, and the host's own rollback still works
        routed = novatune("--storage", pg.socket_url, "fleet", "rollback", app_id, "--host", "old-host", home=central)
        assert routed.returncode == 2 and "not alive" in routed.stderr and "Traceback" not in routed.stderr
        rb = local("rollback", app_id)
        assert rb.returncode == 0, rb.stderr
        assert somaxconn(ns) == found


def test_a_right_sizing_proposal_is_approved_applied_validated_and_rolled_back_through_its_hosts_agent(
        pg, tmp_path: Path) -> None:
    """The host's agent takes each step of its proposal on a cgroup of this test's own: the apply writes the cgroup
    (journaled), the validation runs in the agent, the rollback restores the files byte for byte."""
    from experiments.rightsizing.proposals import ProposalStore
    from experiments.settings import Paths
    from tests.actuators.rightsize_target import real_target

    url, central = pg.socket_url, tmp_path / "central"
    central.mkdir(mode=0o700)
    with real_target("idle") as t:
        target = f"cgroup:{t.cgroup}"
        quota, limit = t.file("cpu", "cpu.cfs_quota_us"), t.file("memory", "memory.limit_in_bytes")
        before = quota.read_bytes(), limit.read_bytes()
        home = tmp_path / "db-host"
        home.mkdir(mode=0o700)
        proposal = ProposalStore(Paths(home, None).ensure().rightsizing_db).create(
            target=target, profile="balanced", recommendation={"finding": "over-provisioned"},
            values={"rightsize.cpu_cores": 1.0})
        env = {**os.environ, "NOVATUNE_HOME": str(home), "NOVATUNE_LOCK_DIR": str(home / "locks"),
               "NOVATUNE_ALLOWED_TARGETS": json.dumps([target]), "NOVATUNE_RIGHTSIZING_VALIDATION_S": "10"}
        log = (home / "agent.log").open("wb")
        agent = subprocess.Popen([sys.executable, "-m", "experiments", "--storage", url, "agent", "--host-id", "db-1",
                                  "--poll-s", "0.3", "--publish-s", "1"], cwd=REPO, env=env, stdout=log,
                                 stderr=subprocess.STDOUT)
        try:
            wait_for("the agent registered", lambda: "db-1" in {h["id"] for h in json.loads(novatune(
                "--storage", url, "fleet", "hosts", "--json", home=central, check=True).stdout) if h["alive"]})

            def step(move: str) -> dict[str, Any]:
                got = novatune("--storage", url, "fleet", "rightsize", move, proposal.id, "--host", "db-1", "--json",
                               home=central)
                assert got.returncode == 0, got.stdout + got.stderr
                cmd = json.loads(got.stdout)
                assert cmd["state"] == "done", cmd
                return dict(cmd["result"])

            assert step("approve")["state"] == "approved"
            applied = step("apply")
            assert applied["state"] == "applied" and int(quota.read_text()) == 100_000
            shown = wait_for("the validation published", lambda: [
                p for p in json.loads(novatune("--storage", url, "fleet", "show", "db-1", "--json", home=central,
                                               check=True).stdout)["proposals"] if p["state"] == "validated"], 60)
            assert shown[0]["id"] == proposal.id
            assert step("rollback")["state"] == "rolled_back"
            assert (quota.read_bytes(), limit.read_bytes()) == before
        finally:
            agent.terminate()
            agent.wait(timeout=60)
            log.close()
        text = (home / "agent.log").read_text()
        assert "Traceback" not in text, text
        assert (quota.read_bytes(), limit.read_bytes()) == before
