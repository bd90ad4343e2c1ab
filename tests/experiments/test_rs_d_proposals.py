"""ProposalStore: the approval state machine, its history, its refusals and its database file."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest

from experiments.rightsizing.proposals import (
    STATES,
    TRANSITIONS,
    InvalidTransition,
    ProposalError,
    ProposalStore,
    UnknownProposal,
    UnsafeProposalStore,
)

REC = {"target": "cgroup:/svc", "finding": "over-provisioned", "cpu": {"recommended": 1.5}}
VALUES = {"rightsize.cpu_cores": 1.5, "rightsize.memory_gib": 2.0}


@pytest.fixture
def store(tmp_path: Path) -> ProposalStore:
    return ProposalStore(tmp_path / "home" / "rightsizing.db")


def _new(store: ProposalStore, **kw: Any) -> str:
    args: dict[str, Any] = {"target": "cgroup:/svc", "profile": "balanced", "recommendation": REC, "values": VALUES,
                            "plan": {"offers": [{"instance_type": "m5.large", "usd_per_month": 70.1}]}, **kw}
    return store.create(**args).id


def _walk_to(store: ProposalStore, pid: str, state: str) -> None:
    path = {"proposed": [], "approved": ["approved"], "applied": ["approved", "applied"],
            "validated": ["approved", "applied", "validated"], "rolled_back": ["approved", "applied", "rolled_back"],
            "rejected": ["rejected"]}[state]
    for to in path:
        store.transition(pid, to, who="alice")


def test_lifecycle_records_who_when_and_why(store: ProposalStore) -> None:
    pid = _new(store, who="recommender", note="14 days of history")
    p = store.get(pid)
    assert p.state == "proposed" and p.values == VALUES and p.recommendation == REC
    assert p.plan["offers"][0]["instance_type"] == "m5.large"
    assert p.allowed_next == ("approved", "rejected")
    store.transition(pid, "approved", who="alice", note="looks right")
    store.transition(pid, "applied", who="bob", application="apply-20260101-000000-abcd")
    store.transition(pid, "validated", who="novatune", note="no degradation")
    p = store.transition(pid, "rolled_back", who="carol", note="manual")
    assert p.state == "rolled_back" and p.application == "apply-20260101-000000-abcd"
    assert [(h.state, h.who, h.note) for h in p.history] == [
        ("proposed", "recommender", "14 days of history"), ("approved", "alice", "looks right"),
        ("applied", "bob", None), ("validated", "novatune", "no degradation"), ("rolled_back", "carol", "manual")]
    ats = [h.at for h in p.history]
    assert ats == sorted(ats) and all(a.endswith("+00:00") for a in ats)
    d = p.to_dict()
    assert d["allowed_next"] == [] and d["history"][1]["who"] == "alice"


ILLEGAL = [(s, to) for s in STATES for to in STATES if to not in TRANSITIONS[s]]


@pytest.mark.parametrize(("state", "to"), ILLEGAL)
def test_illegal_transitions_refused_and_nothing_recorded(store: ProposalStore, state: str, to: str) -> None:
    pid = _new(store)
    _walk_to(store, pid, state)
    before = store.get(pid)
    with pytest.raises(InvalidTransition) as err:
        store.transition(pid, to, who="mallory")
    assert err.value.http_status == 409 and err.value.exit_code == 2
    nxt = ", ".join(TRANSITIONS[state]) or "none (a final state)"
    assert f"is {state}: it cannot become {to}; allowed next: {nxt}" in str(err.value)
    assert store.get(pid) == before


def test_the_allowed_moves_are_exactly_the_workflow() -> None:
    assert TRANSITIONS == {
        "proposed": ("approved", "rejected"), "approved": ("applied", "rejected"),
        "applied": ("validated", "rolled_back"), "validated": ("rolled_back",), "rolled_back": (), "rejected": ()}


def test_unknown_id_and_unknown_state(store: ProposalStore) -> None:
    with pytest.raises(UnknownProposal) as err:
        store.get("rs-nope")
    assert err.value.http_status == 404
    with pytest.raises(UnknownProposal):
        store.transition("rs-nope", "approved", who="alice")
    pid = _new(store)
    with pytest.raises(ProposalError, match="allowed: proposed, approved"):
        store.transition(pid, "deployed", who="alice")
    with pytest.raises(ProposalError, match="allowed"):
        store.list(state="deployed")


@pytest.mark.parametrize("bad", [
    {"values": {"vm.swappiness": 10}},
    {"values": {"rightsize.cpu_cores": -1}},
    {"values": {"rightsize.cpu_cores": math.nan}},
    {"values": {"rightsize.memory_gib": True}},
    {"values": {}},
    {"values": {"rightsize.cpuset_cpus": "0\n1\x00"}},
    {"recommendation": {"x": math.inf}},
    {"recommendation": ["not", "a", "mapping"]},
    {"target": ""},
    {"who": "a\x1b[31mb"},
    {"who": "x" * 201},
])
def test_create_refuses_bad_fields(store: ProposalStore, bad: dict[str, Any]) -> None:
    with pytest.raises(ProposalError):
        _new(store, **bad)
    assert store.list() == []


def test_list_filters_newest_first(store: ProposalStore) -> None:
    a = _new(store, target="cgroup:/a")
    b = _new(store, target="cgroup:/b")
    store.transition(b, "rejected", who="alice")
    assert [p.id for p in store.list()] == [b, a]
    assert [p.id for p in store.list(state="rejected")] == [b]
    assert [p.id for p in store.list(target="cgroup:/a")] == [a]
    assert store.list(state="approved", target="cgroup:/a") == []


def test_database_is_private_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "home" / "rightsizing.db"
    pid = _new(ProposalStore(path))
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert ProposalStore(path).get(pid).state == "proposed"


def test_symlinked_database_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    target = tmp_path / "elsewhere.db"
    target.write_bytes(b"")
    (home / "rightsizing.db").symlink_to(target)
    with pytest.raises(UnsafeProposalStore, match="symbolic link"):
        ProposalStore(home / "rightsizing.db")
    assert target.read_bytes() == b""


def _rec(finding: str = "over-provisioned", cpu: float = 1.234, mem: float = 2.0001) -> Any:
    from optimizer.rightsizing.model import Recommendation, ResourceRecommendation

    def rr(resource: str, target: float) -> ResourceRecommendation:
        return ResourceRecommendation(resource=resource, target=target, lower=target * 0.8, upper=target * 1.2,
                                      current=8.0, finding=finding)

    return Recommendation(target="cgroup:/svc", profile="savings", cpu=rr("cpu", cpu), memory=rr("memory", mem),
                          finding=finding, confidence=0.8, risk=1.0, history_hours=72.0,
                          needs_hours=18.0 if finding == "insufficient-data" else 0.0,
                          reasons=("cpu: p95 1.1 + 10 %",))


def test_propose_from_a_recommendation(store: ProposalStore) -> None:
    from experiments.rightsizing import workflow

    p = workflow.propose(store, _rec(), plan={"usd_per_month": 12.5}, cpuset_cpus="0-1")
    assert p.state == "proposed" and p.target == "cgroup:/svc" and p.profile == "savings"
    assert p.values == {"rightsize.cpu_cores": 1.24, "rightsize.memory_gib": 2.0009765625,
                        "rightsize.cpuset_cpus": "0-1"}  # rounded up: never below the recommendation
    assert p.recommendation["risk_label"] == "low" and p.history[0].note == "cpu: p95 1.1 + 10 %"
    with pytest.raises(ProposalError, match="needs 18.0 more hours"):
        workflow.propose(store, _rec("insufficient-data"))
    assert len(store.list()) == 1
