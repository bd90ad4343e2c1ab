"""speedscope output: checked against speedscope's published file-format schema (jsonschema), and read back."""

from __future__ import annotations

import copy
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks._readers import ReaderError, validate_speedscope
from collectors.profiler.formats import speedscope
from collectors.profiler.model import Frame, Profile, ProfileError
from tests.collectors.profiler.a_samples import (
    HANDLE,
    MAIN,
    ODD,
    PARSE,
    SCHED,
    T1,
    T2,
    known_profile,
    stack_counts,
)


def test_output_conforms_to_the_published_schema_and_names_it() -> None:
    doc = json.loads(speedscope.dumps(known_profile()))
    validate_speedscope(doc)
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert doc["exporter"] == "novatune"
    assert all(p["type"] == "sampled" for p in doc["profiles"])


@pytest.mark.parametrize("mutate", [
    lambda d: d["profiles"][0].pop("weights"),
    lambda d: d["shared"]["frames"][0].pop("name"),
    lambda d: d["profiles"][0].__setitem__("unit", "ticks"),
    lambda d: d.__setitem__("$schema", "https://example.invalid/schema.json"),
])
def test_the_schema_check_can_fail(mutate) -> None:
    """The validator the tests rely on does reject a broken document (so the test above can fail)."""
    doc = json.loads(speedscope.dumps(known_profile()))
    mutate(doc)
    with pytest.raises(ReaderError, match="not a valid speedscope file"):
        validate_speedscope(doc)


def test_one_sampled_profile_per_thread_with_seconds_weights() -> None:
    prof = known_profile(rate_hz=100.0)
    doc = json.loads(speedscope.dumps(prof))
    assert [p["name"] for p in doc["profiles"]] == [T1.function, T2.function]
    names = [f["name"] for f in doc["shared"]["frames"]]
    assert T1.function not in names and T2.function not in names  # the thread is the profile, not a frame
    per_thread = prof.threads()
    for p in doc["profiles"]:
        assert p["unit"] == "seconds"
        assert math.isclose(sum(p["weights"]), per_thread[p["name"]] / 100.0)
        assert math.isclose(p["endValue"], sum(p["weights"]))
    first = doc["profiles"][0]
    stack = [doc["shared"]["frames"][i] for i in first["samples"][0]]
    assert [f["name"] for f in stack] == ["main", "handle", "parse"]  # root first
    assert stack[-1] == {"name": "parse", "file": PARSE.file, "line": PARSE.line}
    assert math.isclose(first["weights"][0], 4.0)  # 400 samples at 100 Hz


def test_without_threads_one_profile_and_unit_none_when_the_rate_is_unknown() -> None:
    prof = known_profile(rate_hz=0.0, threads=False)
    doc = json.loads(speedscope.dumps(prof))
    validate_speedscope(doc)
    assert len(doc["profiles"]) == 1
    only = doc["profiles"][0]
    assert only["unit"] == "none" and sum(only["weights"]) == prof.total == 1000
    assert only["name"] == "python app.py"


@pytest.mark.parametrize("rate_hz,threads", [(100.0, True), (0.0, True), (97.0, False), (0.0, False)])
def test_round_trip_keeps_every_stack_count_and_the_metadata(rate_hz: float, threads: bool) -> None:
    prof = known_profile(rate_hz=rate_hz, threads=threads)
    back = speedscope.loads(speedscope.dumps(prof))
    assert stack_counts(back) == stack_counts(prof)
    assert back.meta == prof.meta
    assert (ODD in back.frames) and (SCHED in back.frames)  # odd characters and the kernel kind survive


def test_a_mixed_profile_keeps_its_threadless_stacks_threadless() -> None:
    prof = Profile()
    prof.add([T1, MAIN, HANDLE], 3)
    prof.add([MAIN, PARSE], 2)
    back = speedscope.loads(speedscope.dumps(prof))
    assert stack_counts(back) == stack_counts(prof)


def _foreign(profiles: list[dict], frames: list[dict]) -> str:
    return json.dumps({"$schema": speedscope.SCHEMA_URL, "shared": {"frames": frames}, "profiles": profiles})


def test_reads_a_py_spy_style_file_one_profile_per_thread() -> None:
    """py-spy writes unit "none", weight 1 per sample, every profile named "py-spy"."""
    frames = [{"name": "main", "file": "/a.py", "line": 3}, {"name": "work", "file": "/a.py", "line": 9},
              {"name": "PyObject_Malloc", "file": "/usr/bin/python3.11"}]
    prof = {"type": "sampled", "name": "py-spy", "unit": "none", "startValue": 0, "endValue": 3,
            "samples": [[0, 1], [0, 1], [0, 2]], "weights": [1, 1, 1]}
    text = _foreign([prof, copy.deepcopy(prof)], frames)
    validate_speedscope(json.loads(text))
    back = speedscope.loads(text)
    assert back.total == 6 and back.meta.engine == "file"
    assert back.threads() == {"thread (0): py-spy": 3, "thread (1): py-spy": 3}
    assert Frame("PyObject_Malloc", "/usr/bin/python3.11", 0, "native") in back.frames


def test_time_weights_from_elsewhere_become_counts_of_the_smallest_weight() -> None:
    frames = [{"name": "a"}, {"name": "b"}]
    prof = {"type": "sampled", "name": "x", "unit": "milliseconds", "startValue": 0, "endValue": 50,
            "samples": [[0], [0, 1]], "weights": [10, 40]}
    back = speedscope.loads(_foreign([prof], frames))
    assert sorted(back.samples.values()) == [1, 4]
    assert math.isclose(back.meta.rate_hz, 100.0)


@pytest.mark.parametrize("text,message", [
    ("{not json", "not JSON"),
    ("[]", "its '\\$schema' must be"),
    (json.dumps({"$schema": "https://example.invalid"}), "its '\\$schema' must be"),
    (_foreign([], []), "no 'profiles'"),
    (json.dumps({"$schema": speedscope.SCHEMA_URL, "profiles": [{}]}), "no 'shared.frames'"),
    (_foreign([{"type": "evented", "name": "e", "unit": "none", "startValue": 0, "endValue": 1, "events": []}],
              [{"name": "a"}]), "only 'sampled' profiles"),
    (_foreign([{"type": "sampled", "unit": "none", "samples": [[0, 5]], "weights": [1]}], [{"name": "a"}]),
     "frame indices in 0..0"),
    (_foreign([{"type": "sampled", "unit": "none", "samples": [[0]], "weights": []}], [{"name": "a"}]),
     "same length"),
    (_foreign([{"type": "sampled", "unit": "none", "samples": [[0]], "weights": [-1]}], [{"name": "a"}]),
     "finite numbers >= 0"),
    (_foreign([{"type": "sampled", "unit": "ticks", "samples": [[0]], "weights": [1]}], [{"name": "a"}]),
     "unit 'ticks'; allowed: none, seconds"),
    (_foreign([{"type": "sampled", "unit": "none", "samples": [], "weights": []}], [{"name": "a"}]),
     "no samples"),
    (_foreign([], [{"file": "a.py"}]), "frame 0 is not an object with a string 'name'"),
])
def test_malformed_files_are_refused_with_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message) as err:
        speedscope.loads(text)
    assert err.value.exit_code == 2 and err.value.http_status == 422


def test_metadata_json_cannot_carry_is_a_clear_error() -> None:
    prof = known_profile()
    prof.meta.overhead["est_slowdown_pct"] = math.nan
    with pytest.raises(ProfileError, match="number JSON cannot carry"):
        speedscope.dumps(prof)


def test_py_spy_thread_profiles_become_its_raw_thread_labels() -> None:
    """py-spy names each profile ``Thread TID "NAME"``; with ``--threads`` its stacks also start with a
    ``thread (TID): NAME`` frame, which must not be doubled."""
    frames = [{"name": "thread (77): worker"}, {"name": "run", "file": "/a.py", "line": 2}]
    plain = {"type": "sampled", "name": 'Thread 76 "MainThread"', "unit": "seconds", "startValue": 0,
             "endValue": 0.02, "samples": [[1], [1]], "weights": [0.01, 0.01]}
    rooted = dict(plain, name='Thread 77 "worker"', samples=[[0, 1]], weights=[0.01])
    back = speedscope.loads(_foreign([plain, rooted], frames))
    assert back.threads() == {"thread (76): MainThread": 2, "thread (77): worker": 1}
    assert all(len([f for f in s if f.kind == "thread"]) == 1 for s, _ in back.stacks())


@pytest.fixture
def py_spy_speedscope(tmp_path: Path) -> str:
    """py-spy's own speedscope output of a short two-thread Python program (bounded; always reaped)."""
    py_spy = Path(sys.executable).with_name("py-spy")
    exe = str(py_spy) if py_spy.exists() else shutil.which("py-spy")
    if exe is None:
        pytest.skip("py-spy is not installed")
    script = tmp_path / "target.py"
    script.write_text("import threading, time\n"
                      "def spin():\n    end = time.time() + 8\n    while time.time() < end:\n        sum(range(1000))\n"
                      "threading.Thread(target=spin, name='worker', daemon=True).start()\nspin()\n")
    target = subprocess.Popen([sys.executable, str(script)])
    out = tmp_path / "py-spy.json"
    try:
        time.sleep(0.3)
        res = subprocess.run([exe, "record", "-p", str(target.pid), "-d", "1", "-r", "100", "-f", "speedscope",
                              "-o", str(out), "--full-filenames"], capture_output=True, timeout=30)
        assert res.returncode == 0, res.stderr.decode()
    finally:
        target.kill()
        target.wait(timeout=10)
    return out.read_text()


def test_reads_py_spys_own_speedscope_output(py_spy_speedscope: str) -> None:
    prof = speedscope.loads(py_spy_speedscope)
    names = {label.split(": ", 1)[1] for label in prof.threads()}
    assert names == {"MainThread", "worker"}
    assert 50 <= prof.total <= 250 and prof.meta.rate_hz == pytest.approx(100.0)
    assert any(f.function == "spin" and f.file.endswith("target.py") for f in prof.frames)
    validate_speedscope(json.loads(speedscope.dumps(prof)))  # and what novatune writes of it conforms
