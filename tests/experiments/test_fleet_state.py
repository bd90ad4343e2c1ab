"""The fleet state (:mod:`experiments.fleet.state`) in an SQLite study database: publications replaced
whole, commands taken once, expired never run, interrupted on restart; the schema upgrade from revision
0001 (the host registry alone, what earlier agents made) keeps the hosts. PostgreSQL: the integration tests."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from experiments.fleet.hosts import VERSION_TABLE, HostRegistry, HostStoreError
from experiments.fleet.state import KINDS, FleetState, InvalidCommand


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture()
def state(tmp_path: Path):
    registry = HostRegistry(_url(tmp_path / "optuna.db"))
    registry.register("db-1", labels={"role": "db"}, facts={})
    yield FleetState(registry)
    registry.close()


def test_a_publication_replaces_the_kind_whole_and_leaves_the_others(state: FleetState) -> None:
    state.publish("db-1", "applications", {"a1": {"id": "a1", "state": "applied"}, "a2": {"id": "a2"}})
    state.publish("db-1", "proposals", {"p1": {"id": "p1"}})
    state.publish("db-1", "applications", {"a3": {"id": "a3", "state": "applied"}})
    got = state.state("db-1")
    assert got["applications"] == [{"id": "a3", "state": "applied"}]
    assert got["proposals"] == [{"id": "p1"}]
    assert set(got["updated"]) == {"applications", "proposals"}
    assert state.state("db-2")["applications"] == [] and state.state("db-2")["updated"] == {}
    assert state.counts() == {"db-1": {"applications": 1, "proposals": 1}}
    state.publish("db-1", "applications", {})
    assert state.state("db-1")["applications"] == []


@pytest.mark.parametrize(("kind", "items", "names"), [
    ("passwords", {"k": {}}, "'passwords' is not published; allowed: " + ", ".join(KINDS)),
    ("profiles", {"": {}}, "1 to 256 characters"),
    ("profiles", {"k": {"x": float("nan")}}, "no NaN"),
])
def test_a_bad_publication_is_refused_and_changes_nothing(state: FleetState, kind: str, items: dict,
                                                          names: str) -> None:
    state.publish("db-1", "profiles", {"keep": {"id": "keep"}})
    with pytest.raises(InvalidCommand, match=names.replace("(", r"\(")):
        state.publish("db-1", kind, items)
    assert state.state("db-1")["profiles"] == [{"id": "keep"}]


def test_a_command_is_taken_once_in_order_and_answered(state: FleetState) -> None:
    first = state.submit("db-1", "rollback", {"application": "a1"}, by="alice", ttl_s=60)
    second = state.submit("db-1", "apply", {"config": {"vm.swappiness": 10}}, by="bob", ttl_s=60)
    state.submit("db-2", "apply", {"config": {}}, by="bob", ttl_s=60)
    assert first.state == "pending" and first.expires - first.created == pytest.approx(60)
    taken = state.take("db-1")
    assert taken is not None and taken.id == first.id and taken.state == "running" and taken.started
    state.finish(taken.id, result={"restored": 1})
    done = state.command(first.id)
    assert done is not None and done.state == "done" and done.result == {"restored": 1} and done.finished
    nxt = state.take("db-1")
    assert nxt is not None and nxt.id == second.id
    state.finish(nxt.id, error="knob held")
    failed = state.command(second.id)
    assert failed is not None and failed.state == "failed" and failed.error == "knob held"
    assert state.take("db-1") is None
    assert [c.id for c in state.commands("db-1")] == [second.id, first.id]


def test_threads_taking_the_same_hosts_commands_never_take_one_twice(state: FleetState) -> None:
    ids = {state.submit("db-1", "rollback", {"application": f"a{i}"}, by="t", ttl_s=60).id for i in range(20)}
    taken: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while (c := state.take("db-1")) is not None:
            with lock:
                taken.append(c.id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(taken) == sorted(ids)


def test_an_expired_command_is_never_run(state: FleetState) -> None:
    old = state.submit("db-1", "apply", {"config": {}}, by="t", ttl_s=0.05)
    time.sleep(0.1)
    assert state.take("db-1") is None
    got = state.command(old.id)
    assert got is not None and got.state == "expired" and "never run" in (got.error or "")


def test_a_restarted_agent_marks_its_running_commands_interrupted(state: FleetState) -> None:
    c = state.submit("db-1", "apply", {"config": {}}, by="t", ttl_s=60)
    assert state.take("db-1") is not None
    assert state.interrupt_running("db-1") == 1
    got = state.command(c.id)
    assert got is not None and got.state == "interrupted"
    state.finish(c.id, result={})  # a late answer of the dead run changes nothing
    got = state.command(c.id)
    assert got is not None and got.state == "interrupted"


@pytest.mark.parametrize(("action", "args", "ttl", "names"), [
    ("reboot", {}, 60, "'reboot' is not allowed; allowed: apply, rollback, rightsize"),
    ("apply", [], 60, "must be a JSON object"),
    ("apply", {}, 0, "time to live"),
    ("apply", {"x": "y" * 300_000}, 60, "at most"),
])
def test_a_bad_command_is_refused_and_nothing_is_queued(state: FleetState, action: str, args: object, ttl: float,
                                                        names: str) -> None:
    with pytest.raises(InvalidCommand, match=names):
        state.submit("db-1", action, args, by="t", ttl_s=ttl)  # type: ignore[arg-type]
    assert state.commands("db-1") == []


def test_a_reader_of_a_database_without_the_tables_sees_nothing_and_creates_nothing(tmp_path: Path) -> None:
    reader = FleetState(HostRegistry(_url(tmp_path / "none.db"), migrate=False))
    assert reader.state("db-1")["applications"] == [] and reader.commands("db-1") == [] and reader.counts() == {}
    with pytest.raises(HostStoreError, match="no fleet state yet"):
        reader.submit("db-1", "apply", {}, by="t", ttl_s=60)
    assert not (tmp_path / "none.db").exists()


def test_the_upgrade_from_the_registry_alone_keeps_the_hosts(tmp_path: Path) -> None:
    """A database an agent of revision 0001 made (the host registry only) is upgraded by the next agent."""
    from alembic import command
    from alembic.config import Config

    from experiments.fleet.hosts import MIGRATIONS

    db = tmp_path / "optuna.db"
    engine = sa.create_engine(_url(db))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001_novatune_hosts")
        conn.execute(sa.text("INSERT INTO novatune_hosts VALUES ('old', '{\"role\": \"db\"}', '{}', 1, 2, 'idle', "
                             "NULL, NULL)"))
    assert "novatune_commands" not in sa.inspect(engine).get_table_names()
    registry = HostRegistry(_url(db))
    assert registry.applied == ["0002_novatune_fleet_state"]
    old = registry.get("old")
    assert old is not None and old.labels == {"role": "db"} and old.last_seen == 2
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    assert rows == [("0002_novatune_fleet_state",)]
    FleetState(registry).publish("old", "profiles", {"p": {"id": "p"}})
    assert FleetState(registry).state("old")["profiles"] == [{"id": "p"}]
    engine.dispose()
    registry.close()
