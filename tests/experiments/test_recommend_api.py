"""/recommendations: the ranked list with its evidence, one recommendation, and accepting one (a validated apply
started in the background with the recommendation's own values; refused with nothing written when it cannot be)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from experiments.recommend.engine import RecommendationList, Recommendations
from experiments.service import create_app
from experiments.settings import Paths, Settings
from optimizer.advice import Advice, Change, Evidence

LOCAL, TOKEN = "http://127.0.0.1", "unit-token-abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SPEC = {"name": "v", "workload": {"kind": "fio", "rw": "read", "size": "4M"},
        "knobs": {"vm.dirty_ratio": {"low": 10, "high": 40}}, "objectives": {"throughput": "maximize"}}
KNOB = "block.loop0.wbt_lat_usec"
HOST = Advice(advisor="io", title="wbt 4000 on loop0", why="w", changes=(Change(KNOB, 4000, 2000),),
              expected_impact=0.1, confidence=0.8, risk=1.0, evidence=(Evidence("writes", 10, "1/s", "diskstats"),))
MANUAL = Advice(advisor="numa", title="bind db", why="w", manual="numactl --membind=0 db", expected_impact=0.2,
                confidence=0.9, risk=1.5, evidence=(Evidence("remote share", 0.7, "", "numa_maps"),))


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path / "home").ensure()
    Recommendations(p, Settings())._save(RecommendationList([MANUAL, HOST], time.time(), "/"))
    return p


@pytest.fixture
def client(paths: Paths):
    with TestClient(create_app(paths, Settings(api_token=TOKEN)), base_url=LOCAL) as c:
        yield c


def test_one_recommendation_with_its_evidence_and_404_for_an_unknown_id(client) -> None:
    r = client.get(f"/recommendations/{HOST.id}", headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["changes"] == [{"knob": KNOB, "value": 4000, "current": 2000}]
    assert body["evidence"][0]["source"] == "diskstats" and body["score"] > 0
    missing = client.get("/recommendations/0000000000", headers=AUTH)
    assert missing.status_code == 404 and HOST.id in missing.json()["detail"]  # the ids that exist are named


def test_the_list_is_ranked_and_an_unknown_source_is_422(client) -> None:
    r = client.get("/recommendations", params={"source": "studies"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["recommendations"] == []  # no study in this data directory
    bad = client.get("/recommendations", params={"source": "astrology"}, headers=AUTH)
    assert bad.status_code == 422


@pytest.mark.parametrize(("rec", "body", "status", "message"), [
    (MANUAL, {"spec": SPEC}, 409, "manual action: numactl"),
    (HOST, {}, 422, "needs 'spec'"),
    (HOST, {"spec": SPEC, "guards": ["nope"]}, 422, "METRIC:-N%"),
    (HOST, {"spec": SPEC, "window_s": 0}, 422, "greater than 0"),
])
def test_accept_refuses_with_nothing_written(client, paths, rec, body, status, message) -> None:
    r = client.post(f"/recommendations/{rec.id}/accept", json=body, headers=AUTH)
    assert r.status_code == status and message in r.text, r.text
    assert not paths.journal.exists() and not (paths.home / "validations").exists()


def test_accept_needs_the_token(client) -> None:
    assert client.post(f"/recommendations/{HOST.id}/accept", json={"spec": SPEC}).status_code == 401


def test_accept_starts_the_validated_apply_of_its_values(paths, monkeypatch) -> None:
    from tests.experiments.validation_stubs import stub_background_validation

    seen: dict[str, Any] = {}
    stub_background_validation(monkeypatch, knob=KNOB, old=2000, new=4000, seen=seen)
    with TestClient(create_app(paths, Settings(api_token=TOKEN)), base_url=LOCAL) as c:
        r = c.post(f"/recommendations/{HOST.id}/accept", json={"spec": SPEC, "window_s": 60}, headers=AUTH)
        assert r.status_code == 202, r.text
        assert seen == {"values": {KNOB: 4000}, "source": f"recommendation {HOST.id} (io)", "spec": "v"}
        vid = r.json()["validation"]
        assert c.get(r.json()["status"], headers=AUTH).json()["id"] == vid
