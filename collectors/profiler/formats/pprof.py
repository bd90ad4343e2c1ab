"""pprof's ``perftools.profiles.Profile`` (google/pprof ``proto/profile.proto``), gzipped, written and read
by a small hand-written protobuf codec (varints and length-delimited fields; no generated code).

What :func:`dumps` writes:

- ``string_table[0] == ""``; ``sample_type`` ``[samples/count, cpu|wall/nanoseconds]`` (the second only when
  the rate is known; it is then the ``default_sample_type``), ``period_type`` ``cpu|wall/nanoseconds``,
  ``period = 1e9 / rate_hz``, ``time_nanos``, ``duration_nanos``;
- one ``Function`` per (name, file), one ``Location`` per frame (one ``Line``: function and line);
- one ``Sample`` per distinct stack, ``location_id`` leaf first, ``value`` ``[count, count * period]``;
  the stack's leading ``process``/``thread`` frames become sample labels ``process``/``thread`` (pprof's
  way of splitting by thread), not locations;
- a ``comment`` ``novatune-meta {json}`` carrying the metadata, so a file novatune wrote reads back exactly.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from collectors.profiler.formats._frames import frame_name, frame_of
from collectors.profiler.model import Frame, FrameKind, Profile, ProfileError, ProfileMeta

__all__ = ["dumps", "loads"]

#: a pprof file (decompressed) larger than this is refused
MAX_BYTES = 256 * 1024 * 1024
_META_COMMENT = "novatune-meta "
_ROOT_KINDS: tuple[FrameKind, ...] = ("process", "thread")  # the order they lead a stack in
_U64 = (1 << 64) - 1
_SMALL = [bytes((i,)) for i in range(0x80)]


# -- encoding ------------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _SMALL[n]
    n &= _U64  # an int64 below zero is its two's complement, ten bytes
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _int(field_no: int, value: int) -> bytes:
    """A varint field; proto3 leaves a zero out."""
    return _varint(field_no << 3) + _varint(value) if value else b""


def _len(field_no: int, payload: bytes) -> bytes:
    return _varint(field_no << 3 | 2) + _varint(len(payload)) + payload


def _packed(field_no: int, values: list[int]) -> bytes:
    return _len(field_no, b"".join(_varint(v) for v in values)) if values else b""


class _Strings:
    def __init__(self) -> None:
        self.table: list[str] = [""]
        self._index: dict[str, int] = {"": 0}

    def __call__(self, s: str) -> int:
        i = self._index.get(s)
        if i is None:
            i = self._index[s] = len(self.table)
            self.table.append(s)
        return i


def dumps(profile: Profile) -> bytes:
    """The profile as a gzipped ``perftools.profiles.Profile`` (see the module docstring).

    Raises:
        ProfileError: the metadata holds a NaN or an infinity (the JSON comment cannot carry it).
    """
    meta = profile.meta
    mode = meta.mode if meta.mode in ("cpu", "wall") else "cpu"
    period = round(1e9 / meta.rate_hz) if meta.rate_hz > 0 else 0
    s = _Strings()
    body = bytearray(_len(1, _int(1, s("samples")) + _int(2, s("count"))))
    if period:
        body += _len(1, _int(1, s(mode)) + _int(2, s("nanoseconds")))
    functions: dict[tuple[str, str], int] = {}
    locations: dict[int, bytes] = {}  # frame id -> its location id as a varint
    tail = bytearray()  # functions and locations, after the samples (field order is free)
    for key, count in profile.samples.items():
        lead = 0
        while lead < len(key) and profile.frames[key[lead]].kind in _ROOT_KINDS:
            lead += 1
        loc_ids = []
        for fid in reversed(key[lead:]):  # leaf first
            loc = locations.get(fid)
            if loc is None:
                loc_id = len(locations) + 1
                loc = locations[fid] = _varint(loc_id)
                tail += _location(profile.frames[fid], loc_id, functions, s)
            loc_ids.append(loc)
        labels = b"".join(_len(3, _int(1, s(profile.frames[fid].kind)) + _int(2, s(profile.frames[fid].function)))
                          for fid in key[:lead])
        values = [count, count * period] if period else [count]
        packed_locs = _len(1, b"".join(loc_ids)) if loc_ids else b""
        body += _len(2, packed_locs + _packed(2, values) + labels)
    body += tail
    try:
        comment = _META_COMMENT + json.dumps(meta.to_dict(), sort_keys=True, allow_nan=False)
    except ValueError as err:
        raise ProfileError(f"the profile's metadata holds a number JSON cannot carry: {err}") from err
    head = _int(9, int(meta.start * 1e9)) + _int(10, int(meta.duration_s * 1e9))
    if period:
        head += _len(11, _int(1, s(mode)) + _int(2, s("nanoseconds"))) + _int(12, period)
    head += _packed(13, [s(comment)])
    if period:
        head += _int(14, s(mode))
    strings = b"".join(_len(6, t.encode("utf-8", "surrogatepass")) for t in s.table)
    return gzip.compress(bytes(body) + strings + head, mtime=0)


def _location(frame: Frame, loc_id: int, functions: dict[tuple[str, str], int], s: _Strings) -> bytes:
    """The ``Location`` message of ``frame`` (and its ``Function`` message when new), as profile fields."""
    fkey = (frame_name(frame), frame.file)
    out = b""
    func_id = functions.get(fkey)
    if func_id is None:
        func_id = functions[fkey] = len(functions) + 1
        name = s(fkey[0])
        out += _len(5, _int(1, func_id) + _int(2, name) + _int(3, name) + _int(4, s(frame.file)))
    line = _len(4, _int(1, func_id) + _int(2, frame.line))
    return out + _len(4, _int(1, loc_id) + line)


# -- decoding ------------------------------------------------------------------------------------
def _fields(buf: bytes, what: str) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` per field: an int for varint/fixed, bytes for length-delimited.

    Raises:
        ProfileError: the message is truncated or uses a wire type protobuf does not have.
    """
    pos, end = 0, len(buf)

    def varint() -> int:
        nonlocal pos
        n = shift = 0
        while True:
            if pos >= end or shift > 63:
                raise ProfileError(f"pprof data is malformed: a varint in {what} is truncated or too long")
            b = buf[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n & _U64

    while pos < end:
        tag = varint()
        field_no, wire = tag >> 3, tag & 7
        if wire == 0:
            yield field_no, wire, varint()
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise ProfileError(f"pprof data is malformed: a fixed field in {what} is truncated")
            yield field_no, wire, int.from_bytes(buf[pos:pos + size], "little")
            pos += size
        elif wire == 2:
            size = varint()
            if pos + size > end:
                raise ProfileError(f"pprof data is malformed: field {field_no} of {what} runs past its end")
            yield field_no, wire, buf[pos:pos + size]
            pos += size
        else:
            raise ProfileError(f"pprof data is malformed: wire type {wire} in {what}")


def _packed_varints(buf: bytes, what: str) -> list[int]:
    """The varints of a packed repeated field, back to back with no tags.

    Raises:
        ProfileError: the last varint is truncated or one is longer than ten bytes.
    """
    if not any(b & 0x80 for b in buf):
        return list(buf)  # every value below 128: one byte each
    out: list[int] = []
    n = shift = 0
    for b in buf:
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            out.append(n & _U64)
            n = shift = 0
        elif shift > 63:
            raise ProfileError(f"pprof data is malformed: a packed varint in {what} is too long")
    if shift:
        raise ProfileError(f"pprof data is malformed: the packed field {what} is truncated")
    return out


def _ints(wire: int, value: int | bytes, what: str) -> list[int]:
    """A repeated integer field's values, packed or not (int64 read as signed)."""
    vals = _packed_varints(value, what) if isinstance(value, bytes) else [value]
    if wire not in (0, 2):
        raise ProfileError(f"pprof data is malformed: {what} is not a varint field")
    return [(v - (1 << 64) if v >= 1 << 63 else v) for v in vals]


def _message(value: int | bytes, what: str) -> dict[int, list[int]]:
    """A message whose fields are all integers: field number -> values (repeated or packed)."""
    if not isinstance(value, bytes):
        raise ProfileError(f"pprof data is malformed: {what} is not a message")
    out: dict[int, list[int]] = {}
    for no, wire, v in _fields(value, what):
        out.setdefault(no, []).extend(_ints(wire, v, what))
    return out


@dataclass
class _Raw:
    """The fields of a ``Profile`` message :func:`loads` uses."""

    strings: list[str] = field(default_factory=list)
    sample_types: list[tuple[int, int]] = field(default_factory=list)
    samples: list[tuple[list[int], list[int], list[tuple[int, int]]]] = field(default_factory=list)
    locations: dict[int, tuple[int, int, list[tuple[int, int]]]] = field(default_factory=dict)
    functions: dict[int, tuple[int, int]] = field(default_factory=dict)
    mappings: dict[int, int] = field(default_factory=dict)
    ints: dict[int, list[int]] = field(default_factory=dict)  # time, duration, period, comment, default type
    period_type: tuple[int, int] = (0, 0)

    def text(self, i: int) -> str:
        """Raises: ProfileError: ``i`` is past the string table."""
        if not 0 <= i < len(self.strings):
            raise ProfileError(f"pprof data is malformed: string index {i} is past the string table")
        return self.strings[i]


def _first(m: dict[int, list[int]], no: int) -> int:
    return m.get(no, [0])[-1]


def _parse(buf: bytes) -> _Raw:
    raw = _Raw()
    for no, wire, v in _fields(buf, "Profile"):
        if no == 6:
            if not isinstance(v, bytes):
                raise ProfileError("pprof data is malformed: a string_table entry is not a string")
            raw.strings.append(v.decode("utf-8", "replace"))
        elif no in (1, 11):
            m = _message(v, "ValueType")
            pair = (_first(m, 1), _first(m, 2))
            if no == 1:
                raw.sample_types.append(pair)
            else:
                raw.period_type = pair
        elif no == 2:
            raw.samples.append(_sample(v))
        elif no == 3:
            m = _message(v, "Mapping")
            raw.mappings[_first(m, 1)] = _first(m, 5)
        elif no == 4:
            _location_of(v, raw)
        elif no == 5:
            m = _message(v, "Function")
            raw.functions[_first(m, 1)] = (_first(m, 2), _first(m, 4))
        elif wire != 2 or no == 13:
            raw.ints.setdefault(no, []).extend(_ints(wire, v, "Profile"))
    return raw


def _sample(value: int | bytes) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    if not isinstance(value, bytes):
        raise ProfileError("pprof data is malformed: a Sample is not a message")
    locs: list[int] = []
    values: list[int] = []
    labels: list[tuple[int, int]] = []
    for no, wire, v in _fields(value, "Sample"):
        if no == 1:
            locs.extend(_ints(wire, v, "Sample.location_id"))
        elif no == 2:
            values.extend(_ints(wire, v, "Sample.value"))
        elif no == 3:
            m = _message(v, "Label")
            labels.append((_first(m, 1), _first(m, 2)))
    return locs, values, labels


def _location_of(value: int | bytes, raw: _Raw) -> None:
    if not isinstance(value, bytes):
        raise ProfileError("pprof data is malformed: a Location is not a message")
    ids: dict[int, int] = {}  # 1 id, 2 mapping_id, 3 address
    lines: list[tuple[int, int]] = []
    for no, wire, v in _fields(value, "Location"):
        if no == 4:
            m = _message(v, "Line")
            lines.append((_first(m, 1), _first(m, 2)))
        elif wire == 0 and isinstance(v, int):
            ids[no] = v
    raw.locations[ids.get(1, 0)] = (ids.get(2, 0), ids.get(3, 0), lines)


def _decompress(data: bytes) -> bytes:
    if data[:2] != b"\x1f\x8b":
        return data  # pprof reads an uncompressed profile too
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(data, MAX_BYTES + 1)
    except zlib.error as err:
        raise ProfileError(f"pprof file is not valid gzip: {err}") from err
    if len(out) > MAX_BYTES:
        raise ProfileError(f"pprof file holds more than {MAX_BYTES} bytes once decompressed; refused")
    if not d.eof:
        raise ProfileError("pprof file is truncated (the gzip stream does not end)")
    return out


def loads(data: bytes) -> Profile:
    """The profile a pprof file (gzipped or not) holds.

    Counts come from the first ``count`` sample type (``samples/count`` first), else from the default (or
    last) value divided by the period. The sample labels ``process`` and ``thread`` become root frames.

    Raises:
        ProfileError: the data is not gzip/protobuf, ``string_table[0]`` is not empty, an index points
            past the string table or to a location or function that does not exist, or it holds no samples.
    """
    raw = _parse(_decompress(bytes(data)))
    if not raw.strings or raw.strings[0] != "":
        raise ProfileError("not a pprof profile: string_table[0] must be the empty string")
    if not raw.sample_types:
        raise ProfileError("not a pprof profile: it declares no sample_type")
    text = raw.text
    prof = Profile(_meta(raw))
    pick, divide = _count_index(raw)
    ids: dict[int, tuple[int, ...]] = {}  # location id -> its profile frame ids, root-most first
    for locs, values, labels in raw.samples:
        if len(values) != len(raw.sample_types):
            raise ProfileError(f"pprof data is malformed: a sample has {len(values)} values for "
                               f"{len(raw.sample_types)} sample types")
        count = values[pick] // divide
        roots = {text(k): text(v) for k, v in labels}
        key = tuple(prof.intern(Frame(function=roots[k], kind=k)) for k in _ROOT_KINDS if roots.get(k))
        for loc in reversed(locs):
            key += ids[loc] if loc in ids else ids.setdefault(loc, _frame_ids(loc, raw, prof))
        if count > 0 and key:
            prof.samples[key] = prof.samples.get(key, 0) + count
    if not prof.samples:
        raise ProfileError("pprof profile holds no samples with a positive count")
    return prof


def _meta(raw: _Raw) -> ProfileMeta:
    text = raw.text
    for i in raw.ints.get(13, []):
        comment = text(i)
        if comment.startswith(_META_COMMENT):
            try:
                doc = json.loads(comment[len(_META_COMMENT):])
            except json.JSONDecodeError:
                break
            if isinstance(doc, dict):
                return ProfileMeta.from_dict(doc)
    kind, unit = text(raw.period_type[0]), text(raw.period_type[1])
    period = _first(raw.ints, 12)
    meta = ProfileMeta(engine="file", start=_first(raw.ints, 9) / 1e9, duration_s=_first(raw.ints, 10) / 1e9)
    if kind in ("cpu", "wall"):
        meta.mode = kind
    if unit == "nanoseconds" and period > 0:
        meta.rate_hz = 1e9 / period
    return meta


def _count_index(raw: _Raw) -> tuple[int, int]:
    """Which value is the sample count, and what to divide it by (the period when it is not a count)."""
    text = raw.text
    types = [(text(t), text(u)) for t, u in raw.sample_types]
    for i, (t, u) in enumerate(types):
        if u == "count" and t == "samples":
            return i, 1
    for i, (_, u) in enumerate(types):
        if u == "count":
            return i, 1
    default = text(_first(raw.ints, 14))
    idx = next((i for i, (t, _) in enumerate(types) if default and t == default), len(types) - 1)
    period = _first(raw.ints, 12)
    return idx, period if period > 0 and types[idx][1] == text(raw.period_type[1]) else 1


def _frame_ids(loc_id: int, raw: _Raw, prof: Profile) -> tuple[int, ...]:
    """A location's frames interned in ``prof``, caller first (pprof lists the inlined callee first)."""
    text = raw.text
    if loc_id not in raw.locations:
        raise ProfileError(f"pprof data is malformed: a sample names location {loc_id}, which does not exist")
    mapping, address, lines = raw.locations[loc_id]
    out = []
    for func_id, line in lines:
        if func_id not in raw.functions:
            raise ProfileError(f"pprof data is malformed: location {loc_id} names function {func_id}, "
                               "which does not exist")
        name, file = raw.functions[func_id]
        out.append(frame_of(text(name), text(file), line))
    if not lines:  # not symbolised: the address in its mapping
        out.append(Frame(function=f"0x{address:x}", file=text(raw.mappings.get(mapping, 0)), kind="native"))
    return tuple(prof.intern(f) for f in reversed(out))
