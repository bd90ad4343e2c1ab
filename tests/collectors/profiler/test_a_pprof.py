"""pprof output: decoded by the real reader (``protoc --decode perftools.profiles.Profile`` with google/pprof's
profile.proto), and novatune's own decoder checked on files protoc encoded."""

from __future__ import annotations

import gzip
import shutil
import subprocess

import pytest

from benchmarks._readers import pprof_proto, pprof_stacks, protoc_decode
from collectors.profiler.formats import pprof
from collectors.profiler.model import Frame, ProfileError
from tests.collectors.profiler.a_samples import known_profile, need_protoc, stack_counts


@pytest.fixture(autouse=True)
def _reader() -> None:
    need_protoc()


def _protoc_encode(text: str) -> bytes:
    """A Profile in protobuf's text format, encoded by protoc (an encoder novatune did not write)."""
    proto = pprof_proto()
    protoc = shutil.which("protoc")
    assert protoc is not None
    res = subprocess.run([protoc, f"-I{proto.parent}", "--encode=perftools.profiles.Profile", proto.name],
                         input=text.encode(), capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout


def _expected(prof) -> dict[tuple[str, ...], int]:
    """What protoc should show per sample: thread label, then function names leaf first."""
    out: dict[tuple[str, ...], int] = {}
    for stack, count in prof.stacks():
        thread = stack[0].function if stack[0].kind == "thread" else ""
        names = [f.function + ("_[k]" if f.kind == "kernel" else "") for f in stack if f.kind != "thread"]
        key = (thread, *reversed(names))
        out[key] = out.get(key, 0) + count
    return out


def test_protoc_reads_the_output_string_table_types_period_and_counts() -> None:
    prof = known_profile(rate_hz=100.0)
    data = pprof.dumps(prof)
    assert data[:2] == b"\x1f\x8b"  # gzipped, as profile.proto asks
    decoded = protoc_decode(data)
    strings = decoded["string_table"]
    assert strings[0] == ""
    types = [(strings[t["type"][0]], strings[t["unit"][0]]) for t in decoded["sample_type"]]
    assert types == [("samples", "count"), ("cpu", "nanoseconds")]
    period_type = decoded["period_type"][0]
    assert (strings[period_type["type"][0]], strings[period_type["unit"][0]]) == ("cpu", "nanoseconds")
    assert decoded["period"] == [10_000_000]
    assert strings[decoded["default_sample_type"][0]] == "cpu"
    assert decoded["duration_nanos"] == [10_000_000_000]
    assert abs(decoded["time_nanos"][0] - 1_700_000_000_250_000_000) < 1_000
    assert pprof_stacks(decoded) == _expected(prof)
    for sample in decoded["sample"]:
        count, nanos = sample["value"]
        assert nanos == count * 10_000_000
    functions = {strings[f["name"][0]]: strings[f.get("filename", [0])[0]] for f in decoded["function"]}
    assert functions["parse"] == "/srv/app/app.py" and functions['na"me\\ é;x'] == "/srv/app/weird path.py"
    assert len(decoded["function"]) == 9  # fib at two lines is one function ...
    assert len(decoded["location"]) == 10  # ... and two locations


def test_wall_mode_and_an_unknown_rate() -> None:
    wall = known_profile(rate_hz=50.0)
    wall.meta.mode = "wall"
    decoded = protoc_decode(pprof.dumps(wall))
    strings = decoded["string_table"]
    assert [strings[t["type"][0]] for t in decoded["sample_type"]] == ["samples", "wall"]
    assert decoded["period"] == [20_000_000]
    unknown = known_profile(rate_hz=0.0)
    decoded = protoc_decode(pprof.dumps(unknown))
    strings = decoded["string_table"]
    assert [(strings[t["type"][0]], strings[t["unit"][0]]) for t in decoded["sample_type"]] == [("samples", "count")]
    assert "period" not in decoded and "period_type" not in decoded
    assert pprof_stacks(decoded) == _expected(unknown)


@pytest.mark.parametrize("rate_hz,threads", [(100.0, True), (0.0, False), (99.0, True)])
def test_round_trip_keeps_every_stack_count_and_the_metadata(rate_hz: float, threads: bool) -> None:
    prof = known_profile(rate_hz=rate_hz, threads=threads)
    back = pprof.loads(pprof.dumps(prof))
    assert stack_counts(back) == stack_counts(prof)
    assert back.meta == prof.meta


_FOREIGN = """
sample_type { type: 1 unit: 2 }
sample_type { type: 3 unit: 4 }
sample { location_id: 2 location_id: 1 value: 7 value: 70000000 label { key: 7 str: 8 } }
sample { location_id: 1 value: 3 value: 30000000 }
location { id: 1 line { function_id: 1 line: 10 } }
location { id: 2 address: 4096 line { function_id: 3 line: 5 } line { function_id: 2 line: 20 } }
function { id: 1 name: 5 filename: 6 }
function { id: 2 name: 9 filename: 6 }
function { id: 3 name: 10 filename: 11 }
string_table: ""
string_table: "samples"
string_table: "count"
string_table: "cpu"
string_table: "nanoseconds"
string_table: "main"
string_table: "/x/app.py"
string_table: "thread"
string_table: "thread (0x10): T"
string_table: "outer"
string_table: "memcpy"
string_table: "libc.so.6"
time_nanos: 1500000000000000000
duration_nanos: 2000000000
period_type { type: 3 unit: 4 }
period: 10000000
"""


def test_reads_a_profile_protoc_encoded_with_inlined_lines_and_a_thread_label() -> None:
    back = pprof.loads(_protoc_encode(_FOREIGN))  # uncompressed: pprof reads those too
    main, outer = Frame("main", "/x/app.py", 10), Frame("outer", "/x/app.py", 20)
    memcpy = Frame("memcpy", "libc.so.6", 5, "native")
    thread = Frame("thread (0x10): T", kind="thread")
    assert stack_counts(back) == {(thread, main, outer, memcpy): 7, (main,): 3}
    assert back.meta.rate_hz == 100.0 and back.meta.mode == "cpu" and back.meta.engine == "file"
    assert back.meta.start == 1.5e9 and back.meta.duration_s == 2.0
    again = pprof.loads(gzip.compress(_protoc_encode(_FOREIGN)))
    assert stack_counts(again) == stack_counts(back)


def test_counts_from_a_time_only_sample_type_are_divided_by_the_period() -> None:
    text = _FOREIGN.replace("sample_type { type: 1 unit: 2 }\n", "").replace("value: 7 ", "").replace(
        "value: 3 ", "")
    back = pprof.loads(_protoc_encode(text))
    assert sorted(back.samples.values()) == [3, 7]


def test_reads_unpacked_repeated_fields() -> None:
    """proto3 packs repeated integers, but a reader must take them unpacked too."""
    def field(no: int, payload: bytes) -> bytes:
        return bytes([no << 3 | 2, len(payload)]) + payload
    sample = bytes([0x08, 1, 0x10, 4])  # location_id: 1, value: 4, each with its own tag
    data = (field(1, bytes([0x08, 1, 0x10, 2])) + field(2, sample)
            + field(4, bytes([0x08, 1]) + field(4, bytes([0x08, 1, 0x10, 3])))
            + field(5, bytes([0x08, 1, 0x10, 3])) + b"".join(field(6, s) for s in (b"", b"samples", b"count", b"f")))
    back = pprof.loads(data)
    assert stack_counts(back) == {(Frame("f", "", 3, "other"),): 4}


@pytest.mark.parametrize("data,message", [
    (b"not a profile", "malformed"),
    (pprof.dumps(known_profile())[:40], "truncated|not valid gzip"),
    (b"\x1f\x8b\x08\x00garbage-garbage", "not valid gzip"),
    (b"", "string_table\\[0\\] must be the empty string"),
])
def test_malformed_data_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(ProfileError, match=message) as err:
        pprof.loads(data)
    assert err.value.exit_code == 2


@pytest.mark.parametrize("edit,message", [
    (lambda t: t.replace('string_table: ""\n', 'string_table: "x"\n', 1), "string_table\\[0\\] must be"),
    (lambda t: t.replace("location_id: 2 location_id: 1", "location_id: 9"), "location 9, which does not exist"),
    (lambda t: t.replace("function_id: 3", "function_id: 8"), "function 8, which does not exist"),
    (lambda t: t.replace("name: 10", "name: 99"), "string index 99 is past the string table"),
    (lambda t: t.replace("value: 7 value: 70000000", "value: 7"), "1 values for 2 sample types"),
    (lambda t: "\n".join(ln for ln in t.splitlines() if not ln.startswith("sample_type")), "no sample_type"),
    (lambda t: t.replace("value: 7 ", "value: 0 ").replace("value: 3 ", "value: 0 "), "no samples"),
])
def test_inconsistent_profiles_are_refused(edit, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        pprof.loads(_protoc_encode(edit(_FOREIGN)))


def test_a_decompression_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pprof, "MAX_BYTES", 1000)
    with pytest.raises(ProfileError, match="more than 1000 bytes once decompressed"):
        pprof.loads(gzip.compress(b"\x00" * 5000))
