"""Routing a command to a host's agent (:func:`experiments.fleet.commands.route`) and the agent's side
(:class:`~experiments.fleet.commands.HostDuties`) on an SQLite study database: what is refused before anything
is queued, and a queued rollback of an unknown application answered ``failed`` with the reason. A real apply
and rollback on a namespace's knob: tests/integration/test_fleet_routing.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from experiments.fleet.commands import HostAway, HostDuties, check_args, route
from experiments.fleet.hosts import HostRegistry, UnknownHost
from experiments.fleet.state import FleetState, InvalidCommand
from experiments.settings import Paths

FACTS = {"knobs": {"available": ["vm.swappiness"], "unavailable": {"net.core.rps_sock_flow_entries": "read-only"}}}


@pytest.fixture()
def fleet(tmp_path: Path):
    registry = HostRegistry(f"sqlite:///{tmp_path / 'optuna.db'}")
    registry.register("db-1", labels={}, facts=FACTS)
    yield registry, FleetState(registry)
    registry.close()


def test_a_routed_command_is_queued_for_that_host_only(fleet) -> None:
    registry, state = fleet
    cmd = route(registry, state, "db-1", "apply", {"config": {"vm.swappiness": 10}}, by="t", ttl_s=60,
                dead_after_s=60)
    assert cmd.state == "pending" and cmd.host_id == "db-1" and cmd.args == {"config": {"vm.swappiness": 10}}
    assert [c.id for c in state.commands("db-1")] == [cmd.id]


@pytest.mark.parametrize(("host", "action", "args", "error", "names"), [
    ("nobody", "apply", {"config": {"vm.swappiness": 10}}, UnknownHost, "no host 'nobody' is registered"),
    ("db-1", "apply", {"config": {"net.core.rps_sock_flow_entries": 1}}, InvalidCommand,
     "not available on host 'db-1'.*read-only"),
    ("db-1", "apply", {"config": {"vm.swappiness": 1}, "study": "s"}, InvalidCommand, "not both"),
    ("db-1", "apply", {}, InvalidCommand, "not both and not neither"),
    ("db-1", "apply", {"config": {"vm.swappiness": 1}, "shell": "rm"}, InvalidCommand, "not shell"),
    ("db-1", "apply", {"study": "s", "trial": -1}, InvalidCommand, "trial number >= 0"),
    ("db-1", "rollback", {"application": "../../etc"}, InvalidCommand, "application id"),
    ("db-1", "rollback", {"application": "a", "force": "yes"}, InvalidCommand, "'force' must be true or false"),
    ("db-1", "reboot", {}, InvalidCommand, "allowed: apply, rollback, rightsize"),
])
def test_what_cannot_be_run_is_refused_and_nothing_is_queued(fleet, host: str, action: str, args: dict,
                                                             error: type[Exception], names: str) -> None:
    registry, state = fleet
    with pytest.raises(error, match=names):
        route(registry, state, host, action, args, by="t", ttl_s=60, dead_after_s=60)
    assert state.commands("db-1") == []


def test_a_host_whose_agent_stopped_or_went_silent_is_refused(fleet) -> None:
    registry, state = fleet
    registry.heartbeat("db-1", state="stopped")
    with pytest.raises(HostAway, match="not alive.*it stopped.*nothing was queued"):
        route(registry, state, "db-1", "rollback", {"application": "a"}, by="t", ttl_s=60, dead_after_s=60)
    registry.heartbeat("db-1")
    time.sleep(0.05)
    with pytest.raises(HostAway, match="last heartbeat"):
        route(registry, state, "db-1", "rollback", {"application": "a"}, by="t", ttl_s=60, dead_after_s=0.01)
    assert state.commands("db-1") == []


def test_check_args_keeps_good_arguments() -> None:
    assert check_args("apply", {"study": "s", "trial": 3, "dry_run": True}) == {"study": "s", "trial": 3,
                                                                                  "dry_run": True}
    assert check_args("rollback", {"application": "apply-20261207-101010-ab12"})["application"].startswith("apply-")


def test_the_agent_answers_a_rollback_it_cannot_do_with_the_reason(fleet, tmp_path: Path) -> None:
    registry, state = fleet
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    cmd = route(registry, state, "db-1", "rollback", {"application": "apply-20260101-000000-abcd"}, by="t",
                ttl_s=60, dead_after_s=60)
    duties = HostDuties(state, "db-1", Paths(home, None), poll_s=0.1, publish_s=3600)
    assert duties.tick() is True
    got = state.command(cmd.id)
    assert got is not None and got.state == "failed" and "apply-20260101-000000-abcd" in (got.error or "")
    assert duties.tick() is False  # nothing left
    published = state.state("db-1")
    assert published["applications"] == [] and "applications" in published["updated"]


def test_a_routed_right_sizing_step_moves_the_hosts_proposal_and_a_wrong_one_says_why(fleet, tmp_path: Path) -> None:
    from experiments.rightsizing.proposals import ProposalStore

    registry, state = fleet
    paths = Paths(tmp_path / "home").ensure()
    store = ProposalStore(paths.rightsizing_db)
    p = store.create(target="cgroup:/svc", profile="balanced", recommendation={"finding": "over-provisioned"},
                     values={"rightsize.memory_gib": 1.0})
    approve = route(registry, state, "db-1", "rightsize", {"proposal": p.id, "move": "approve", "note": "ok"}, by="t",
                    ttl_s=60, dead_after_s=60)
    again = route(registry, state, "db-1", "rightsize", {"proposal": p.id, "move": "approve"}, by="t", ttl_s=60,
                  dead_after_s=60)
    duties = HostDuties(state, "db-1", paths, poll_s=0.1, publish_s=3600)
    try:
        assert duties.tick() is True
    finally:
        duties.stop()
    done, refused = state.command(approve.id), state.command(again.id)
    assert done is not None and done.state == "done" and done.result is not None
    assert done.result["state"] == "approved" and done.result["history"][-1]["who"].startswith("fleet command")
    assert store.get(p.id).state == "approved"
    assert refused is not None and refused.state == "failed" and "approved" in (refused.error or "")
    published = state.state("db-1")["proposals"]
    assert [(x["id"], x["state"]) for x in published] == [(p.id, "approved")]


@pytest.mark.parametrize(("args", "names"), [
    ({"proposal": "rs-1", "move": "approve"}, "proposal id"),
    ({"proposal": "rs-20261207-101010-abcdef", "move": "delete"}, "'delete' is not allowed; allowed: approve"),
    ({"proposal": "rs-20261207-101010-abcdef", "move": "apply", "validate_s": 0}, "1 to 604800"),
    ({"proposal": "rs-20261207-101010-abcdef", "move": "apply", "note": "x" * 501}, "at most 500"),
])
def test_a_bad_right_sizing_step_is_refused_here(fleet, args: dict, names: str) -> None:
    registry, state = fleet
    with pytest.raises(InvalidCommand, match=names):
        route(registry, state, "db-1", "rightsize", args, by="t", ttl_s=60, dead_after_s=60)
    assert state.commands("db-1") == []


def test_a_restarted_agent_rolls_back_what_a_fleet_command_applied_and_no_validation_finished(tmp_path: Path) -> None:
    from experiments.fleet.commands import roll_back_unvalidated
    from experiments.rightsizing.proposals import ProposalStore

    paths = Paths(tmp_path / "home").ensure()
    assert roll_back_unvalidated(paths) == [] and not paths.rightsizing_db.exists()  # nothing made
    store = ProposalStore(paths.rightsizing_db)
    ids = []
    for who in ("fleet command 3 from api:10.0.0.1", "api:127.0.0.1"):
        p = store.create(target="cgroup:/svc", profile="balanced", recommendation={}, values={"rightsize.cpu_cores": 1})
        store.transition(p.id, "approved", who="alice")
        store.transition(p.id, "applied", who=who)  # (no application: the rollback only records it)
        ids.append(p.id)
    assert roll_back_unvalidated(paths) == [ids[0]]
    assert store.get(ids[0]).state == "rolled_back" and "stopped during the validation" in (
        store.get(ids[0]).history[-1].note or "")
    assert store.get(ids[1]).state == "applied"  # the service's own: its validation is not the agent's
