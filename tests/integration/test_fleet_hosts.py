"""The host registry in a shared PostgreSQL started by the test on 127.0.0.1, and in today's SQLite data
directory: the schema is migrated once (agents starting together included), every registry instance sees
the others' hosts, and the service (``GET /hosts``, ``/metrics``) and ``novatune fleet hosts`` list them;
Optuna's schema and studies are left as they were.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from experiments.fleet.hosts import MIGRATION_LOCK, TABLE, VERSION_TABLE, HostRegistry, host_facts
from experiments.service import create_app
from experiments.settings import Paths
from tests.integration.conftest import REPO, needs_root, novatune

HEAD = "0002_novatune_fleet_state"
ALL = ["0001_novatune_hosts", HEAD]  # every revision, oldest first
LOCAL = "http://127.0.0.1"
needs_postgres = pytest.mark.skipif(not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
                                    reason="PostgreSQL not installed (.ci/run installs it)")


def _rows(url: str, sql: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql)).all()]
    finally:
        engine.dispose()


def _study(url: str, name: str, trials: int) -> list[float]:
    """A tiny study as today's novatune leaves one (user attrs objectives and state), its trials' values."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=url, sampler=optuna.samplers.RandomSampler(seed=1),
                                directions=["maximize"])
    study.set_user_attr("objectives", ["throughput"])
    study.set_user_attr("state", "completed")
    study.optimize(lambda t: t.suggest_int("vm.swappiness", 1, 100) * 1.5, n_trials=trials)
    return [t.value for t in study.trials]


def _open_in_threads(url: str, n: int) -> list[HostRegistry]:
    opened: list[HostRegistry] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(HostRegistry(url))
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=open_one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(opened) == n
    return opened


#: one agent's first open of the registry
_OPEN = """
import json
from experiments.fleet.hosts import HostRegistry
from experiments.storage import storage_from_env
print(json.dumps(HostRegistry(storage_from_env()).applied))
"""


def _open_in_processes_behind_the_lock(url: str, n: int) -> list[list[str]]:
    """``n`` agents (processes) opening an empty registry while the test holds novatune's migration lock: each
    must wait for it (seen in pg_locks, none finished), and once it is released exactly one migrates."""
    engine = sa.create_engine(url)
    with engine.connect() as holder:
        holder.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
        env = {**os.environ, "NOVATUNE_STORAGE": url}  # not on the command line: other users read argv
        procs = [subprocess.Popen([sys.executable, "-c", _OPEN], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(n)]
        waiting, deadline = 0, time.monotonic() + 60
        while waiting < n and time.monotonic() < deadline and all(p.poll() is None for p in procs):
            time.sleep(0.2)
            waiting = holder.execute(sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                             "AND NOT granted")).scalar_one()
        assert waiting == n, [p.communicate(timeout=60) for p in procs if p.poll() is not None]
        assert [p.poll() for p in procs] == [None] * n  # every agent waits for the lock before it migrates
        holder.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
        holder.commit()
    engine.dispose()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, outs
    return [json.loads(o) for o, _ in outs]


def _drop_registry(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # every table of novatune's revisions, and their version table
        for table in ("novatune_commands", "novatune_host_state", TABLE, VERSION_TABLE):
            conn.execute(sa.text(f"DROP TABLE {table}"))
    engine.dispose()


@pytest.fixture(scope="module")
def pg():
    from benchmarks.pgcluster import PgCluster

    with PgCluster() as cluster:
        yield cluster


@pytest.mark.slow
@needs_root
@needs_postgres
def test_the_registry_in_postgresql_is_shared_and_listed_by_every_face(pg, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    values = _study(pg.url, "shared", 3)  # Optuna's schema first, as a fleet's database already has it
    optuna_version = _rows(pg.url, "SELECT version_num FROM alembic_version")

    # registries opening at the same moment in one process (alembic's proxies are process-wide): one migrates
    opened = _open_in_threads(pg.url, 4)
    assert sorted(r.applied for r in opened) == [[], [], [], ALL]
    assert _rows(pg.url, f"SELECT version_num FROM {VERSION_TABLE}") == [(HEAD,)]
    # agents starting at the same moment on other hosts (processes): PostgreSQL's advisory lock lets one migrate,
    # the others wait and find the schema at head
    _drop_registry(pg.url)
    assert sorted(_open_in_processes_behind_the_lock(pg.url, 4)) == [[], [], [], ALL]
    assert _rows(pg.url, f"SELECT version_num FROM {VERSION_TABLE}") == [(HEAD,)]
    assert HostRegistry(pg.url).applied == []  # a later open is a no-op migration
    assert _rows(pg.url, "SELECT version_num FROM alembic_version") == optuna_version
    assert [t.value for t in optuna.load_study(study_name="shared", storage=pg.url).trials] == values

    a, b = opened[0], opened[1]  # two registry instances: two agents on two hosts
    a.register("agent-a", labels={"role": "db", "zone": "a"}, facts=host_facts())
    b.register("agent-b", labels={"role": "web"}, facts={"kernel": "6.8.0-other", "cpus": 4})
    b.heartbeat("agent-b", state="trial", study="shared", trial=3)
    assert [h.id for h in b.list()] == ["agent-a", "agent-b"]
    seen = a.get("agent-b")
    assert seen is not None and (seen.state, seen.study, seen.trial) == ("trial", "shared", 3)
    assert [h.id for h in a.matching({"role": "db"})] == ["agent-a"]

    monkeypatch.setenv("NOVATUNE_HOME", str(tmp_path / "home"))
    paths = Paths(tmp_path / "home", pg.url).ensure()
    with TestClient(create_app(paths), base_url=LOCAL) as client:
        listed = client.get("/hosts").json()
        assert [(h["id"], h["alive"], h["state"]) for h in listed] == [("agent-a", True, "idle"),
                                                                      ("agent-b", True, "trial")]
        assert client.get("/hosts/agent-a").json()["facts"]["cpus"] == host_facts()["cpus"]
        assert client.get("/hosts/agent-c").status_code == 404
        fams = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert {s.labels["host"]: s.value for s in fams["novatune_agent_up"].samples} == {"agent-a": 1.0, "agent-b": 1.0}
    assert {(s.labels["host"], s.labels["state"]) for s in fams["novatune_agent_info"].samples} == {
        ("agent-a", "idle"), ("agent-b", "trial")}
    assert len(fams["novatune_agent_last_seen_timestamp_seconds"].samples) == 2

    url = pg.url.replace("postgresql+psycopg://", "postgresql://")  # what a user types
    proc = novatune("--storage", url, "fleet", "hosts", "--json", home=tmp_path / "cli-home", check=True)
    assert [(h["id"], h["labels"]) for h in json.loads(proc.stdout)] == [
        ("agent-a", {"role": "db", "zone": "a"}), ("agent-b", {"role": "web"})]
    table = novatune("--storage", url, "fleet", "hosts", home=tmp_path / "cli-home", check=True)
    assert "shared/3" in table.stdout and "6.8.0-other" in table.stdout
    assert pg.password not in proc.stdout + proc.stderr + table.stdout + table.stderr
    for r in opened:
        r.close()


@pytest.mark.slow
def test_todays_sqlite_data_directory_gets_the_table_and_keeps_its_studies(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    paths = Paths(home, None)
    values = _study(paths.optuna_url, "before-fleet", 4)
    tables = set(sa.inspect(sa.create_engine(paths.optuna_url)).get_table_names())
    assert TABLE not in tables and VERSION_TABLE not in tables  # today's layout: Optuna's tables only
    listed = novatune("study", "list", "--json", home=home, check=True).stdout
    hosts = novatune("fleet", "hosts", "--json", home=home, check=True)  # a reader: no table made
    assert json.loads(hosts.stdout) == []
    assert set(sa.inspect(sa.create_engine(paths.optuna_url)).get_table_names()) == tables

    with HostRegistry(paths.optuna_url) as registry:  # what the agent does when it opens the data directory
        assert registry.applied == ALL
        registry.register("vm", labels={}, facts={"kernel": "6.1", "cpus": 2})
    after = set(sa.inspect(sa.create_engine(paths.optuna_url)).get_table_names())
    assert after == tables | {TABLE, VERSION_TABLE, "novatune_host_state", "novatune_commands"}
    assert [t.value for t in optuna.load_study(study_name="before-fleet", storage=paths.optuna_url).trials] == values
    assert novatune("study", "list", "--json", home=home, check=True).stdout == listed
    shown = json.loads(novatune("fleet", "hosts", "--json", home=home, check=True).stdout)
    assert [(h["id"], h["facts"]["cpus"]) for h in shown] == [("vm", 2)]
