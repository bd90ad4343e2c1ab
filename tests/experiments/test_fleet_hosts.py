"""The fleet's host registry on SQLite: registration, heartbeats, labels, ids, and its alembic schema beside
Optuna's in the same database (``experiments/fleet/hosts.py``). PostgreSQL: tests/integration/test_fleet_hosts.py."""

from __future__ import annotations

import fnmatch
import json
import os
import time
import tomllib
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

from experiments.fleet import hosts as hosts_mod
from experiments.fleet.hosts import (
    HOSTS,
    MIGRATIONS,
    TABLE,
    VERSION_TABLE,
    Host,
    HostRegistry,
    HostStoreError,
    InvalidHost,
    UnknownHost,
    check_host_id,
    default_host_id,
    host_facts,
    matches,
    parse_labels,
)

REPO = Path(__file__).resolve().parents[2]
HEAD = "0002_novatune_fleet_state"
ALL = ["0001_novatune_hosts", HEAD]  # every revision, oldest first


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _tables(path: Path) -> set[str]:
    engine = sa.create_engine(_url(path))
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _scalar_rows(path: Path, sql: str) -> list[tuple]:
    engine = sa.create_engine(_url(path))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql)).all()]
    finally:
        engine.dispose()


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return tmp_path / "optuna.db"


@pytest.fixture()
def registry(db: Path):
    with HostRegistry(_url(db)) as r:
        yield r


# ------------------------------------------------------------------ register, heartbeat, list, matching
def test_register_then_get_and_list(registry: HostRegistry) -> None:
    before = time.time()
    host = registry.register("db-1", labels={"zone": "a", "role": "db"}, facts={"kernel": "6.1", "cpus": 8})
    assert (host.id, host.labels, host.facts, host.state, host.study, host.trial) == (
        "db-1", {"role": "db", "zone": "a"}, {"kernel": "6.1", "cpus": 8}, "idle", None, None)
    assert before <= host.registered_at == host.last_seen <= time.time()
    assert registry.get("db-1") == host
    assert registry.get("nobody") is None
    registry.register("app-1", labels={}, facts={})
    assert [h.id for h in registry.list()] == ["app-1", "db-1"]


def test_a_restarted_agent_re_registers_its_host_in_place(registry: HostRegistry, db: Path) -> None:
    first = registry.register("db-1", labels={"role": "db"}, facts={"kernel": "6.1"})
    registry.heartbeat("db-1", state="trial", study="oltp", trial=4)
    time.sleep(0.01)
    again = registry.register("db-1", labels={"role": "db", "zone": "b"}, facts={"kernel": "6.8"})
    assert again.labels == {"role": "db", "zone": "b"} and again.facts == {"kernel": "6.8"}
    assert (again.state, again.study, again.trial) == ("idle", None, None)
    assert again.registered_at > first.registered_at
    assert _scalar_rows(db, f"SELECT id FROM {TABLE}") == [("db-1",)]


def test_heartbeat_records_what_the_host_runs(registry: HostRegistry) -> None:
    registered = registry.register("db-1", labels={}, facts={})
    time.sleep(0.01)
    registry.heartbeat("db-1", state="trial", study="oltp", trial=3)
    host = registry.get("db-1")
    assert host is not None
    assert (host.state, host.study, host.trial) == ("trial", "oltp", 3)
    assert host.last_seen > registered.last_seen and host.registered_at == registered.registered_at
    registry.heartbeat("db-1")
    host = registry.get("db-1")
    assert host is not None and (host.state, host.study, host.trial) == ("idle", None, None)
    registry.heartbeat("db-1", state="stopped")
    assert registry.get("db-1").state == "stopped"  # type: ignore[union-attr]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"state": "busy"}, "host state 'busy' is not allowed; allowed: idle, trial, stopped"),
    ({"state": "trial"}, "state 'trial' needs the study's name and the trial's number"),
    ({"state": "trial", "study": "oltp"}, "state 'trial' needs the study's name and the trial's number"),
    ({"state": "trial", "study": "oltp", "trial": -1}, "state 'trial' needs the study's name and the trial's number"),
    ({"state": "idle", "study": "oltp", "trial": 1}, "state 'idle' runs no trial"),
])
def test_a_bad_heartbeat_is_refused_and_changes_nothing(registry: HostRegistry, kwargs: dict, message: str) -> None:
    registry.register("db-1", labels={}, facts={})
    before = registry.get("db-1")
    with pytest.raises(InvalidHost, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        registry.heartbeat("db-1", **kwargs)
    assert registry.get("db-1") == before


def test_a_heartbeat_of_an_unregistered_host_is_unknown(registry: HostRegistry) -> None:
    with pytest.raises(UnknownHost, match="host 'ghost' is not registered"):
        registry.heartbeat("ghost")
    assert registry.list() == []


def test_matching_needs_every_selector_label_equal(registry: HostRegistry) -> None:
    registry.register("db-a", labels={"role": "db", "zone": "a"}, facts={})
    registry.register("db-b", labels={"role": "db", "zone": "b"}, facts={})
    registry.register("web-a", labels={"role": "web", "zone": "a"}, facts={})
    registry.register("bare", labels={}, facts={})
    ids = lambda sel: [h.id for h in registry.matching(sel)]  # noqa: E731
    assert ids({"role": "db"}) == ["db-a", "db-b"]
    assert ids({"role": "db", "zone": "a"}) == ["db-a"]
    assert ids({"zone": "a"}) == ["db-a", "web-a"]
    assert ids({"role": "cache"}) == []
    assert ids({}) == ["bare", "db-a", "db-b", "web-a"]
    assert ids({"role": ""}) == []  # an empty value matches only a label set to "", not a missing one
    with pytest.raises(InvalidHost, match="key 'Role' is not allowed"):
        registry.matching({"Role": "db"})


def test_matches() -> None:
    assert matches({"a": "1", "b": "2"}, {"a": "1"})
    assert matches({"a": "1"}, {})
    assert not matches({"a": "1"}, {"a": "2"})
    assert not matches({}, {"a": ""})


# ------------------------------------------------------------------ labels and ids
@pytest.mark.parametrize(("text", "labels"), [
    ("", {}), ("   ", {}), ("role=db", {"role": "db"}), ("role=db,zone=a", {"role": "db", "zone": "a"}),
    (" role = db , zone=a ", {"role": "db", "zone": "a"}), ("gpu=", {"gpu": ""}),
    ("k8s.io_x-y=A.b_C-1", {"k8s.io_x-y": "A.b_C-1"}),
])
def test_parse_labels(text: str, labels: dict[str, str]) -> None:
    assert parse_labels(text) == labels


@pytest.mark.parametrize(("text", "names"), [
    ("role", "label 'role' has no '='"),
    ("role=db,,zone=a", "label '' has no '='"),
    ("Role=db", "key 'Role' is not allowed"),
    ("=db", "key '' is not allowed"),
    ("role=d b", "value 'd b' is not allowed"),
    ("role=db/1", "value 'db/1' is not allowed"),
    ("role=a=b", "value 'a=b' is not allowed"),
    (f"{'k' * 64}=v", f"key '{'k' * 64}' is not allowed"),
    (f"k={'v' * 64}", f"value '{'v' * 64}' is not allowed"),
    ("role=db,role=web", "label key 'role' is given twice"),
])
def test_bad_labels_name_the_part_and_the_allowed_form(text: str, names: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_labels(text)
    assert names in str(info.value)
    assert "labels are KEY=VALUE pairs separated by commas" in str(info.value)


@pytest.mark.parametrize("host_id", ["", "a/b", "../x", "a b", "x" * 65, "vm\n1", "é", None, 7])
def test_bad_host_ids_are_refused_and_nothing_is_written(registry: HostRegistry, host_id: object) -> None:
    for call in (lambda: registry.register(host_id, labels={}, facts={}),  # type: ignore[arg-type]
                 lambda: registry.heartbeat(host_id),  # type: ignore[arg-type]
                 lambda: registry.get(host_id)):  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="a host id is 1 to 64 letters, digits"):
            call()
    assert registry.list() == []


@pytest.mark.parametrize("host_id", ["a", "x" * 64, "vm-1.zone_a", "10.0.0.1", "-"])
def test_good_host_ids(host_id: str) -> None:
    assert check_host_id(host_id) == host_id


@pytest.mark.parametrize(("facts", "message"), [
    ([1, 2], "facts must be a JSON object"), ({1: "x"}, "facts must be a JSON object"),
    ({"t": object()}, "facts must be JSON"), ({"load": float("nan")}, "facts must be JSON"),
])
def test_facts_must_be_a_json_object(registry: HostRegistry, facts: object, message: str) -> None:
    with pytest.raises(InvalidHost, match=message):
        registry.register("db-1", labels={}, facts=facts)  # type: ignore[arg-type]
    with pytest.raises(InvalidHost, match="value 'a b' is not allowed"):
        registry.register("db-1", labels={"role": "a b"}, facts={})
    assert registry.list() == []


@pytest.mark.parametrize(("hostname", "expected"), [
    ("vm", "vm"), ("db 1.example.com", "db-1.example.com"), ("x" * 80, "x" * 64), ("ééé", "host"),
])
def test_default_host_id_is_the_host_name_made_valid(monkeypatch, hostname: str, expected: str) -> None:
    monkeypatch.setattr(hosts_mod.socket, "gethostname", lambda: hostname)
    assert default_host_id() == expected
    assert check_host_id(default_host_id())


# ------------------------------------------------------------------ alive, to_dict
def _host(last_seen: float, state: str = "idle") -> Host:
    return Host(id="h", labels={"role": "db"}, facts={"kernel": "6.1"}, registered_at=last_seen - 5,
                last_seen=last_seen, state=state, study=None, trial=None)


def test_alive_means_a_recent_heartbeat_and_not_stopped() -> None:
    assert _host(100.0).alive(160.0, 60.0)
    assert not _host(100.0).alive(160.5, 60.0)
    assert _host(200.0).alive(160.0, 60.0)  # a clock a little ahead of ours is still alive
    assert not _host(100.0, "stopped").alive(101.0, 60.0)
    d = _host(100.0).to_dict(130.0, 60.0)
    assert json.loads(json.dumps(d)) == d
    assert (d["alive"], d["last_seen_ago_s"], d["labels"], d["facts"]["kernel"]) == (True, 30.0, {"role": "db"}, "6.1")
    assert _host(100.0).to_dict(200.0, 60.0)["alive"] is False


# ------------------------------------------------------------------ schema: alembic, beside Optuna
def test_the_migration_makes_the_table_the_queries_address(registry: HostRegistry, db: Path) -> None:
    assert registry.applied == ALL
    columns = {c["name"] for c in sa.inspect(sa.create_engine(_url(db))).get_columns(TABLE)}
    assert columns == set(HOSTS.c.keys())
    assert _scalar_rows(db, f"SELECT version_num FROM {VERSION_TABLE}") == [(HEAD,)]
    again = HostRegistry(_url(db))
    assert again.applied == []  # a second open is a no-op migration
    assert _scalar_rows(db, f"SELECT version_num FROM {VERSION_TABLE}") == [(HEAD,)]
    again.close()


def test_the_migration_leaves_optunas_schema_and_studies_alone(db: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="before", storage=_url(db), sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    optuna_version = _scalar_rows(db, "SELECT version_num FROM alembic_version")
    values = [t.value for t in study.trials]
    with HostRegistry(_url(db)) as registry:
        assert registry.applied == ALL
        registry.register("db-1", labels={}, facts={})
    assert _scalar_rows(db, "SELECT version_num FROM alembic_version") == optuna_version
    loaded = optuna.load_study(study_name="before", storage=_url(db))
    assert [t.value for t in loaded.trials] == values
    loaded.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)  # Optuna still writes its schema
    assert len(optuna.load_study(study_name="before", storage=_url(db)).trials) == 4
    assert _scalar_rows(db, f"SELECT id FROM {TABLE}") == [("db-1",)]


def test_a_schema_newer_than_this_novatune_is_refused(registry: HostRegistry, db: Path) -> None:
    engine = sa.create_engine(_url(db))
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0099_from_the_future'"))
    engine.dispose()
    with pytest.raises(HostStoreError, match="revision '0099_from_the_future', which this novatune does not know"):
        HostRegistry(_url(db))


# ------------------------------------------------------------------ readers create nothing
def test_a_reader_never_creates_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    reader = HostRegistry(_url(path), migrate=False)
    assert reader.list() == [] and reader.get("db-1") is None and reader.matching({"role": "db"}) == []
    assert not path.exists()


def test_a_reader_of_a_database_without_the_table_sees_no_host_and_creates_nothing(db: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="s", storage=_url(db))
    tables = _tables(db)
    reader = HostRegistry(_url(db), migrate=False)
    assert reader.list() == [] and reader.get("db-1") is None
    assert _tables(db) == tables and TABLE not in tables and VERSION_TABLE not in tables
    with pytest.raises(HostStoreError, match="opened read-only"):
        reader.register("db-1", labels={}, facts={})
    with pytest.raises(HostStoreError, match="opened read-only"):
        reader.heartbeat("db-1")
    assert _tables(db) == tables
    with HostRegistry(_url(db)) as writer:  # an agent arrives later: the same reader now sees its host
        writer.register("db-1", labels={}, facts={})
    assert [h.id for h in reader.list()] == ["db-1"]


def test_an_unreachable_store_is_a_clear_error_without_the_password() -> None:
    reader = HostRegistry("postgresql://novatune:s3cret-pass@127.0.0.1:1/novatune", migrate=False)
    with pytest.raises(HostStoreError) as info:
        reader.list()
    assert "cannot read the host registry in postgresql+psycopg://novatune:***@127.0.0.1:1/novatune" in str(info.value)
    assert "s3cret-pass" not in str(info.value)
    with pytest.raises(HostStoreError, match="cannot open the host registry") as info:
        HostRegistry("postgresql://novatune:s3cret-pass@127.0.0.1:1/novatune")
    assert "s3cret-pass" not in str(info.value)


def test_a_bad_url_is_refused_with_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="allowed: postgresql://USER:PASSWORD@HOST:PORT/DATABASE"):
        HostRegistry("mysql://x@y/z", migrate=False)


# ------------------------------------------------------------------ facts and packaging
def test_host_facts_describe_this_host() -> None:
    from actuators import Catalog, KnobContext
    from collectors.topology import online_cpus

    facts = host_facts()
    assert json.loads(json.dumps(facts)) == facts
    assert facts["kernel"] == os.uname().release
    assert facts["cpus"] == len(online_cpus())
    assert facts["numa"]["nodes"] == len(facts["numa"]["layout"]) >= 1
    assert facts["memory_bytes"] > 0
    knobs = facts["knobs"]
    names = {k.name for k in Catalog(context=KnobContext()).knobs()}
    assert set(knobs["available"]) | set(knobs["unavailable"]) == names
    assert not set(knobs["available"]) & set(knobs["unavailable"])
    assert "sizing.memory_gib" in knobs["unavailable"]  # bound to a run's cgroup: never available to a host
    if os.geteuid() == 0 and Path("/proc/sys/vm/swappiness").exists():
        assert "vm.swappiness" in knobs["available"]


def test_every_migration_file_is_package_data() -> None:
    """A wheel without env.py or a revision could not create the table on a fresh host."""
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["experiments"]
    base = REPO / "experiments"
    files = [p.relative_to(base).as_posix() for p in MIGRATIONS.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts]
    assert "fleet/migrations/env.py" in files and f"fleet/migrations/versions/{HEAD}.py" in files
    missing = [f for f in files if not any(fnmatch.fnmatchcase(f, g) and f.count("/") == g.count("/") for g in globs)]
    assert missing == []
