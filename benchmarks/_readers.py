"""Readers written by someone else, for checking what novatune's profile formats say.

Each ``shares_*`` function answers, for one profile file, the self share of every leaf function: percent of
all samples (by weight) whose leaf frame is that function, keyed by the bare function name. Each reads the
file with an external reader where one exists, not with novatune's own loader:

- pprof: ``protoc --decode perftools.profiles.Profile`` with google/pprof's ``profile.proto`` (Debian
  ``protobuf-compiler`` and ``golang-github-google-pprof-dev``; ``NOVATUNE_PPROF_PROTO`` names another copy);
- speedscope: ``json`` and speedscope's published schema (``jsonschema``; the schema is vendored under
  ``tests/collectors/profiler/data``);
- collapsed stacks: no reader exists, so a ten-line parser of the folded format, independent of
  :mod:`collectors.profiler.formats.collapsed`.

Used by ``benchmarks/profiler_overhead.py`` (the synthetic-mix check) and the tests.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["ReaderError", "SPEEDSCOPE_SCHEMA", "parse_text_format", "pprof_proto", "protoc_decode",
           "shares_collapsed", "shares_pprof", "shares_speedscope", "validate_speedscope"]

REPO = Path(__file__).resolve().parents[1]
SPEEDSCOPE_SCHEMA = REPO / "tests" / "collectors" / "profiler" / "data" / "speedscope-file-format-schema.json"
DEBIAN_PROFILE_PROTO = Path("/usr/share/gocode/src/github.com/google/pprof/proto/profile.proto")
_LABEL_TAIL = re.compile(r" \([^()]*\)$")


class ReaderError(RuntimeError):
    """An external reader is missing, refused the file, or the file says something unexpected."""


def _percent(weights: dict[str, float], total: float) -> dict[str, float]:
    return {name: 100.0 * w / total for name, w in weights.items()} if total > 0 else {}


# -- collapsed ---------------------------------------------------------------------------------------------
def shares_collapsed(path: str | Path) -> dict[str, float]:
    """Self shares from collapsed stacks (``a;b;c COUNT`` per line; ``#`` lines skipped).

    Raises:
        ReaderError: a line is neither a comment nor a stack with a count.
    """
    weights: dict[str, float] = {}
    total = 0.0
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            raise ReaderError(f"{path}:{n}: not 'frame;...;frame COUNT'")
        leaf = _LABEL_TAIL.sub("", stack.split(";")[-1])
        weights[leaf] = weights.get(leaf, 0.0) + int(count)
        total += int(count)
    return _percent(weights, total)


# -- speedscope --------------------------------------------------------------------------------------------
def validate_speedscope(doc: Any) -> None:
    """Checks ``doc`` against speedscope's published file-format schema.

    Raises:
        ReaderError: it does not conform (the validator's message says where).
    """
    import jsonschema  # dev extra; imported here so the other readers work without it

    schema = json.loads(SPEEDSCOPE_SCHEMA.read_text())
    try:
        jsonschema.Draft7Validator(schema).validate(doc)
    except jsonschema.ValidationError as err:
        raise ReaderError(f"not a valid speedscope file: {err.message} at {list(err.absolute_path)}") from err


def shares_speedscope(path: str | Path) -> dict[str, float]:
    """Self shares from a speedscope file, validated against the published schema first; every ``sampled``
    profile counts, by weight.

    Raises:
        ReaderError: the file does not conform to the schema, or holds an evented profile.
    """
    doc = json.loads(Path(path).read_text())
    validate_speedscope(doc)
    names = [f["name"] for f in doc["shared"]["frames"]]
    weights: dict[str, float] = {}
    total = 0.0
    for prof in doc["profiles"]:
        if prof["type"] != "sampled":
            raise ReaderError(f"{path}: profile {prof.get('name')!r} is {prof['type']}, not sampled")
        for stack, weight in zip(prof["samples"], prof["weights"], strict=True):
            total += weight
            if stack:
                leaf = names[int(stack[-1])]
                weights[leaf] = weights.get(leaf, 0.0) + weight
    return _percent(weights, total)


# -- pprof -------------------------------------------------------------------------------------------------
def pprof_proto() -> Path:
    """google/pprof's ``profile.proto``: ``NOVATUNE_PPROF_PROTO``, else Debian's copy.

    Raises:
        ReaderError: neither exists.
    """
    named = os.environ.get("NOVATUNE_PPROF_PROTO")
    path = Path(named) if named else DEBIAN_PROFILE_PROTO
    if not path.is_file():
        raise ReaderError(f"no profile.proto at {path} (apt-get install golang-github-google-pprof-dev, "
                          "or set NOVATUNE_PPROF_PROTO)")
    return path


def protoc_decode(data: bytes) -> dict[str, list[Any]]:
    """A pprof file (gzipped or not) decoded by ``protoc --decode perftools.profiles.Profile``, its text
    output parsed into ``field -> [values]`` (nested messages are dicts of the same shape).

    Raises:
        ReaderError: protoc or profile.proto is missing, or protoc refused the data.
    """
    protoc = shutil.which("protoc")
    if protoc is None:
        raise ReaderError("protoc is not installed (apt-get install protobuf-compiler)")
    proto = pprof_proto()
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    res = subprocess.run([protoc, f"-I{proto.parent}", "--decode=perftools.profiles.Profile", proto.name],
                         input=raw, capture_output=True, timeout=120)
    if res.returncode != 0:
        raise ReaderError(f"protoc --decode failed: {res.stderr.decode(errors='replace').strip()}")
    return parse_text_format(res.stdout.decode())


def parse_text_format(text: str) -> dict[str, list[Any]]:
    """protobuf's text format as protoc prints it: ``name: value`` and ``name {`` ... ``}`` lines.

    Raises:
        ReaderError: a line has neither shape or the braces do not balance.
    """
    stack: list[dict[str, list[Any]]] = [{}]
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line == "}":
            if len(stack) == 1:
                raise ReaderError(f"text format line {n}: '}}' closes nothing")
            stack.pop()
        elif line.endswith(" {"):
            child: dict[str, list[Any]] = {}
            stack[-1].setdefault(line[:-2], []).append(child)
            stack.append(child)
        elif ": " in line:
            name, _, value = line.partition(": ")
            stack[-1].setdefault(name, []).append(_scalar(value))
        else:
            raise ReaderError(f"text format line {n}: {line!r}")
    if len(stack) != 1:
        raise ReaderError("text format: a message is not closed")
    return stack[0]


def _scalar(value: str) -> Any:
    if value.startswith('"') and value.endswith('"') and len(value) >= 2:
        return _unescape(value[1:-1])
    try:
        return int(value)
    except ValueError:
        return value  # an enum name or a bool


_ESCAPES = {"n": 10, "r": 13, "t": 9, '"': 34, "'": 39, "\\": 92, "a": 7, "b": 8, "f": 12, "v": 11}


def _unescape(body: str) -> str:
    """The text a C-escaped protobuf string stands for (octal ``\\NNN`` and ``\\xHH`` are bytes)."""
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in "01234567":
            digits = re.match(r"[0-7]{1,3}", body[i + 1:])
            assert digits is not None
            out.append(int(digits.group(), 8) & 0xFF)
            i += 1 + len(digits.group())
        elif nxt == "x":
            digits = re.match(r"[0-9A-Fa-f]{1,2}", body[i + 2:])
            if digits is None:
                raise ReaderError(f"bad \\x escape in {body!r}")
            out.append(int(digits.group(), 16))
            i += 2 + len(digits.group())
        else:
            out.append(_ESCAPES.get(nxt, ord(nxt)))
            i += 2
    return out.decode("utf-8", "replace")


def pprof_stacks(decoded: dict[str, list[Any]]) -> dict[tuple[str, ...], int]:
    """``(thread label or "", leaf function, ..., root function) -> sample count`` from a decoded
    profile: names through Location -> Line -> Function -> string_table; the count is the value of the
    ``count`` sample type."""
    strings: list[str] = decoded.get("string_table", [])
    types = [(strings[t.get("type", [0])[0]], strings[t.get("unit", [0])[0]]) for t in decoded["sample_type"]]
    pick = next(i for i, (_, unit) in enumerate(types) if unit == "count")
    funcs = {f["id"][0]: strings[f.get("name", [0])[0]] for f in decoded.get("function", [])}
    locs = {loc["id"][0]: [funcs[ln["function_id"][0]] for ln in loc.get("line", [])]
            for loc in decoded.get("location", [])}
    out: dict[tuple[str, ...], int] = {}
    for sample in decoded.get("sample", []):
        labels = {strings[lb["key"][0]]: strings[lb.get("str", [0])[0]] for lb in sample.get("label", [])}
        names = [name for loc in sample.get("location_id", []) for name in locs[loc]]
        key = (labels.get("thread", ""), *names)
        out[key] = out.get(key, 0) + sample["value"][pick]
    return out


def shares_pprof(path: str | Path) -> dict[str, float]:
    """Self shares from a pprof file, decoded by protoc (see :func:`protoc_decode`).

    Raises:
        ReaderError: protoc is missing or refused the file, or it declares no ``count`` sample type.
    """
    decoded = protoc_decode(Path(path).read_bytes())
    try:
        stacks = pprof_stacks(decoded)
    except StopIteration as err:
        raise ReaderError(f"{path}: no sample type of unit 'count'") from err
    weights: dict[str, float] = {}
    for key, count in stacks.items():
        if len(key) > 1:
            weights[key[1]] = weights.get(key[1], 0.0) + count
    return _percent(weights, float(sum(stacks.values())))
