"""The validated apply on a fake /proc + /sys tree with a scripted workload (no machine changes): the
procedure (interleaving, extension, stop), keep as an ordinary application, byte-exact restore, the refusals,
the CLI's options and exit codes, the API's shapes."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from actuators import Catalog, Journal, SysRoot
from experiments.deploy.applications import ApplyConflict, ApplyError, history
from experiments.deploy.apply import apply_config
from experiments.deploy.rollback import rollback
from experiments.settings import Paths
from experiments.spec import SpecError
from experiments.validate import engine
from experiments.validate.checks import ValidationRefused, check_request, pair_counts
from experiments.validate.model import ValidationRequest
from experiments.validate.store import ValidationNotFound, list_reports, load_report
from tests.actuators.conftest import build_fake_tree, tree_bytes

KNOB, FILE, OLD, NEW = "block.loop0.wbt_lat_usec", "sys/block/loop0/queue/wbt_lat_usec", 2000, 4000


@pytest.fixture
def root(tmp_path: Path) -> SysRoot:
    return SysRoot(build_fake_tree(tmp_path / "root"))


@pytest.fixture
def cat(root: SysRoot) -> Catalog:
    return Catalog(root)


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "home")


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text("name: v\nworkload: {kind: fio, rw: read, size: 4M}\nknobs: {vm.dirty_ratio: {low: 10, high: 40}}\n"
                 "objectives: {throughput: maximize}\ntrial: {warmup_s: 1, measure_s: 4}\n")
    return p


class _Scripted:
    """Stands for the workload: throughput 1000 with the old value, ``effect`` x that with the change
    (+-1 % alternating noise); records the order of the phases it saw."""

    def __init__(self, root: SysRoot, effect: float, stop: threading.Event | None = None, stop_after: int = 0):
        self.root, self.effect, self.phases = root, effect, []
        self.stop, self.stop_after = stop, stop_after

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        script = self

        class Ctx:
            def __init__(self, *a: Any, **k: Any) -> None: ...
            def __enter__(self) -> Ctx: return self
            def __exit__(self, *exc: Any) -> None: ...

        class Meas:
            def __init__(self, plan: Any, ctx: Any) -> None: ...

            def window(self, n: int, *_: Any) -> dict[str, float]:
                changed = script.root.read(FILE).strip() != str(OLD)
                script.phases.append("B" if changed else "A")
                if script.stop is not None and len(script.phases) >= script.stop_after:
                    script.stop.set()
                base = 1000.0 * (1.01 if n % 2 else 0.99)
                return {"throughput": base * (script.effect if changed else 1.0), "latency_p95_ms": 1.0}

            def reduce(self, per_repeat: list[dict[str, float]], *_: Any, **__: Any) -> dict[str, float]:
                return per_repeat[0]

        monkeypatch.setattr(engine, "_WorkloadContext", Ctx)
        monkeypatch.setattr(engine, "Measurer", Meas)


def _req(spec: Path, **kw: Any) -> ValidationRequest:
    return ValidationRequest(**{"values": {KNOB: NEW}, "source": "test", "spec_path": str(spec),
                                "window_s": 60, **kw})


def test_a_degrading_change_is_rolled_back_byte_exact(root, cat, paths, spec, monkeypatch) -> None:
    before = tree_bytes(root.root)
    script = _Scripted(root, effect=0.5)
    script.install(monkeypatch)
    events: list[str] = []
    r = engine.validated_apply(_req(spec), paths=paths, catalog=cat, on_event=lambda k, f: events.append(k))
    assert r.decision == "rolled_back" and "throughput" in r.reason and r.application is None
    assert tree_bytes(root.root) == before and r.restored == {KNOB: OLD} == r.old
    assert script.phases[:6] == ["A", "B", "B", "A", "A", "B"]  # interleaved A B B A A B
    assert [m["verdict"] for m in r.metrics if m["metric"] == "throughput"] == ["worse"]
    assert events[0] == "start" and events.count("window") == len(r.windows) and events[-1] == "end"
    assert load_report(paths, r.id).as_dict() == r.as_dict()
    assert not Journal.open_entries(Journal(paths.journal).records())
    assert history(paths) == []  # a validation is not an application unless kept


def test_a_harmless_change_is_kept_as_an_ordinary_application(root, cat, paths, spec, monkeypatch) -> None:
    _Scripted(root, effect=1.0).install(monkeypatch)
    r = engine.validated_apply(_req(spec), paths=paths, catalog=cat)
    assert r.decision == "kept" and r.application is not None and r.restored is None
    assert root.read(FILE).strip() == str(NEW)
    assert [a.id for a in history(paths)] == [r.application]
    rollback(r.application, paths=paths, catalog=cat)
    assert root.read(FILE).strip() == str(OLD)


def test_without_interleaving_every_before_window_comes_first(root, cat, paths, spec, monkeypatch) -> None:
    script = _Scripted(root, effect=1.0)
    script.install(monkeypatch)
    r = engine.validated_apply(_req(spec, interleave=False), paths=paths, catalog=cat)
    n = r.windows and sum(1 for w in r.windows if w["phase"] == "before")
    assert script.phases == ["A"] * n + ["B"] * (len(script.phases) - n)


def test_inconclusive_extends_to_the_longest_window_then_restores(root, cat, paths, spec, monkeypatch) -> None:
    _Scripted(root, effect=0.9).install(monkeypatch)  # -10 % +- noise: straddles the limit
    r = engine.validated_apply(_req(spec, window_s=30, max_window_s=60), paths=paths, catalog=cat)
    assert r.decision == "inconclusive" and "longest window" in r.reason
    assert len(r.windows) == 2 * pair_counts(30, 60, 6.0)[1] and root.read(FILE).strip() == str(OLD)


def test_stop_restores_and_reports_stopped(root, cat, paths, spec, monkeypatch) -> None:
    stop = threading.Event()
    _Scripted(root, effect=1.0, stop=stop, stop_after=2).install(monkeypatch)
    r = engine.validated_apply(_req(spec), paths=paths, catalog=cat, stop=stop)
    assert r.decision == "rolled_back" and r.reason.startswith("stopped") and len(r.windows) == 2
    assert root.read(FILE).strip() == str(OLD)


@pytest.mark.parametrize(("kw", "error", "message"), [
    ({"values": {KNOB: -5}}, ApplyError, KNOB),
    ({"values": {"no.such.knob": 1}}, ApplyError, "no.such.knob"),
    ({"values": {KNOB: OLD}}, ValidationRefused, "already has its value"),
    ({"guards": (("bogus", -0.1),)}, ValidationRefused, "allowed.*throughput"),
    ({"window_s": 0}, ValidationRefused, "window"),
    ({"window_s": 60, "max_window_s": 30}, ValidationRefused, "longest"),
    ({"spec_path": "/nonexistent/spec.yaml"}, SpecError, "not found"),
])
def test_bad_requests_measure_and_write_nothing(root, cat, paths, spec, kw, error, message) -> None:
    before = tree_bytes(root.root)
    with pytest.raises(error, match=message):
        engine.validated_apply(_req(spec, **kw), paths=paths, catalog=cat)
    assert tree_bytes(root.root) == before and not paths.home.exists()


def test_a_held_knob_is_refused(root, cat, paths, spec, monkeypatch) -> None:
    _Scripted(root, effect=1.0).install(monkeypatch)
    apply_config({KNOB: 3000}, paths=paths, source="other", catalog=cat)
    with pytest.raises(ApplyConflict, match="held by application"):
        engine.validated_apply(_req(spec), paths=paths, catalog=cat)


def test_default_guards_and_pair_counts(cat, paths, spec) -> None:
    c = check_request(_req(spec), paths=paths, catalog=cat)
    assert [(g.metric, g.direction, g.limit) for g in c.guards] == [
        ("throughput", "maximize", -0.1), ("latency_p95_ms", "minimize", -0.1)]
    assert (c.initial_pairs, c.max_pairs) == pair_counts(60, None, c.window_len_s) == (5, 15)
    assert pair_counts(1, None, 6.0) == (3, 3)  # never fewer than the test decides on


def test_unknown_report_id_is_not_found(paths) -> None:
    with pytest.raises(ValidationNotFound, match="no validation"):
        load_report(paths, "../../etc/passwd")
    assert list_reports(paths) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--validate", "SPEC", "--guard", "foo"], "expected METRIC"),
    (["--validate", "SPEC", "--window", "0"], "--window must be > 0"),
    (["--validate", "SPEC", "--dry-run"], "--dry-run"),
    (["--validate", "/nonexistent.yaml"], "no such spec"),
    (["--window", "60"], "only go with --validate"),
])
def test_cli_bad_options_exit_2_and_write_nothing(tmp_path, spec, monkeypatch, capsys, args, message) -> None:
    from experiments.cli import main

    home = tmp_path / "h"
    monkeypatch.setenv("NOVATUNE_HOME", str(home))
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"format": "novatune.config/v1", "knobs": {KNOB: NEW}}))
    code = main(["apply", str(cfg), *[str(spec) if a == "SPEC" else a for a in args]])
    printed = capsys.readouterr().err
    assert code == 2 and message in printed and len(printed.strip().splitlines()) == 1
    assert not home.exists()


# ------------------------------------------------------------------------ API
LOCAL, TOKEN = "http://127.0.0.1", "unit-token-abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SPEC = {"name": "v", "workload": {"kind": "fio", "rw": "read", "size": "4M"},
        "knobs": {"vm.dirty_ratio": {"low": 10, "high": 40}}, "objectives": {"throughput": "maximize"}}


@pytest.fixture
def client(paths):
    from fastapi.testclient import TestClient

    from experiments.service import create_app
    from experiments.settings import Settings

    with TestClient(create_app(paths.ensure(), Settings(api_token=TOKEN)), base_url=LOCAL) as c:
        yield c


def _body(**validate: Any) -> dict[str, Any]:
    return {"config": {"format": "novatune.config/v1", "knobs": {KNOB: NEW}}, "validate": {"spec": SPEC, **validate}}


@pytest.mark.parametrize(("body", "status", "message"), [
    (_body(guards=["foo"]), 422, "expected METRIC"),
    (_body(window_s=0), 422, "greater than 0"),
    ({**_body(), "study": "s"}, 422, "not with 'study'"),
    (_body(spec={**SPEC, "workload": {"kind": "nope"}}), 422, "unknown workload kind"),
    (_body(guards=["bogus:-10%"]), 422, "allowed"),
    ({"config": {"format": "novatune.config/v1", "knobs": {"no.such.knob": 1}}, "validate": {"spec": SPEC}}, 422,
     "no.such.knob"),
])
def test_api_refuses_bad_validations_without_writing(client, paths, body, status, message) -> None:
    r = client.post("/tuning/apply", json=body, headers=AUTH)
    assert r.status_code == status and message in r.text
    assert client.get("/tuning/validations", headers=AUTH).json() == []
    assert not paths.journal.exists()


def test_api_unknown_validation_is_404_and_writes_need_the_token(client) -> None:
    r = client.get("/tuning/validations/val-20260101-000000-abcd", headers=AUTH)
    assert r.status_code == 404 and "no validation" in r.json()["detail"]
    assert client.get("/tuning/validations/..%2F..%2Fx", headers=AUTH).status_code in (404, 422)
    assert client.post("/tuning/apply", json=_body()).status_code == 401


def test_api_runs_it_in_the_background_and_shutdown_stops_it(paths, monkeypatch) -> None:
    """202 and an id at once; the report is 'running'; stopping the service stops the validation (which
    restores and reports rolled_back / stopped)."""
    from fastapi.testclient import TestClient

    from experiments.service import create_app
    from experiments.settings import Settings
    from tests.experiments.validation_stubs import stub_background_validation

    seen: dict[str, Any] = {}
    stub_background_validation(monkeypatch, knob=KNOB, old=OLD, new=NEW, seen=seen)
    with TestClient(create_app(paths.ensure(), Settings(api_token=TOKEN)), base_url=LOCAL) as c:
        r = c.post("/tuning/apply", json=_body(window_s=60), headers=AUTH)
        assert r.status_code == 202 and seen["spec"] == "v"
        vid = r.json()["validation"]
        got = c.get(f"/tuning/validations/{vid}", headers=AUTH).json()
        assert (got["decision"], got["values"], got["old"]) == ("running", {KNOB: NEW}, {KNOB: OLD})
    final = load_report(paths, vid)
    assert final.decision == "rolled_back" and final.reason.startswith("stopped")
