"""The one canonical profile: interned frames, stacks of frame ids with sample counts, and metadata.

Every profile novatune holds — a py-spy window, a perf window, an hourly aggregate, a file a user hands
to ``novatune flamegraph diff`` — is a :class:`Profile`. Each output format is a function of it
(:mod:`collectors.profiler.formats`), and so are the analyses (hotspots, diffs, off-CPU classes).

Stacks run root first, leaf last. When the sampler recorded thread ids, the root frame of every stack
is a ``thread`` frame (``Frame(kind="thread", function="thread (TID): NAME")``); analyses that do not
care about threads call :meth:`Profile.without_threads`.

The canonical JSON (:meth:`Profile.to_dict`) is what the store compresses::

    {"version": 1, "meta": {...}, "frames": [[function, file, line, kind], ...],
     "samples": [[[frame id, ...], count], ...]}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from collectors.errors import CollectorError

__all__ = ["FORMAT_VERSION", "Frame", "FrameKind", "Profile", "ProfileError", "ProfileMeta", "parse_frame"]

#: the canonical JSON's version (bumped on an incompatible change)
FORMAT_VERSION = 1

FrameKind = Literal["python", "native", "kernel", "thread", "process", "other"]
_KINDS: frozenset[str] = frozenset({"python", "native", "kernel", "thread", "process", "other"})

#: ``function (file:line)``, ``function (file)`` (native frames), or a bare label
_LABEL = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_THREAD = re.compile(r"^thread \((?:0x)?[0-9A-Fa-f]+\)")
_PROCESS = re.compile(r"^process \d+")


class ProfileError(CollectorError):
    """A profile (or a file said to hold one) cannot be read or is not what was asked (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


@dataclass(frozen=True, slots=True, order=True)
class Frame:
    """One frame: what ran (``function``), where (``file``, ``line``; 0 when unknown), and its kind."""

    function: str
    file: str = ""
    line: int = 0
    kind: FrameKind = "python"

    @property
    def label(self) -> str:
        """The collapsed-stack label: ``function (file:line)``, ``function (file)`` or ``function``."""
        if self.kind == "kernel":
            return f"{self.function}_[k]"  # perf's (and flamegraph.pl's) mark, so a round trip keeps the kind
        if self.kind in ("thread", "process", "other") or not self.file:
            return self.function
        return f"{self.function} ({self.file}:{self.line})" if self.line else f"{self.function} ({self.file})"

    @property
    def key(self) -> tuple[str, str]:
        """The function this frame belongs to, whatever its line: ``(function, file)``."""
        return (self.function, self.file)


def parse_frame(label: str) -> Frame:
    """The frame a collapsed-stack label names (py-spy's ``func (file:line)``, ``thread (TID): name``, perf's
    ``func`` with ``[k]``/``_[k]`` kernel suffixes).

    Never raises: a label that follows no known shape is a bare function name.
    """
    label = label.strip()
    if _THREAD.match(label):
        return Frame(function=label, kind="thread")
    if _PROCESS.match(label):
        return Frame(function=label, kind="process")
    if label.endswith(("_[k]", "[k]")):
        return Frame(function=label.removesuffix("_[k]").removesuffix("[k]"), kind="kernel")
    m = _LABEL.match(label)
    if m is None:
        return Frame(function=label, kind="other")
    file = m["file"]
    line = int(m["line"]) if m["line"] else 0
    kind: FrameKind = "python" if file.endswith((".py", ".pyx", ">")) or line else "native"
    return Frame(function=m["function"], file=file, line=line, kind=kind)


@dataclass(slots=True)
class ProfileMeta:
    """What a profile is of and how it was taken. Every field has a neutral default so a collapsed file from
    elsewhere is a profile too.

    ``labels`` are free ``str -> str`` labels (study, trial, configuration hash, ...); ``overhead`` holds
    the window's measured figures (``pyspy_cpu_pct``, ``est_slowdown_pct``, ...); ``threads`` the per-thread
    accounting from ``/proc`` (tid -> figures) when the sampler took it.
    """

    mode: str = "cpu"  # cpu | wall
    engine: str = ""  # py-spy | perf | merged | file
    rate_hz: float = 0.0
    start: float = 0.0  # epoch seconds
    duration_s: float = 0.0
    pid: int | None = None
    cmdline: str = ""
    cgroup: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    overhead: dict[str, float] = field(default_factory=dict)
    threads: dict[str, dict[str, float]] = field(default_factory=dict)
    memory: list[dict[str, float]] = field(default_factory=list)
    errors: int = 0
    native: bool = False
    #: top allocation sites of a launched process (tracemalloc): ``{"file", "line", "size_bytes", "count"}``
    allocations: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileMeta:
        """Raises: ProfileError: a field has the wrong type."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            meta = cls(**known)
            meta.rate_hz, meta.start, meta.duration_s = float(meta.rate_hz), float(meta.start), float(meta.duration_s)
            meta.labels = {str(k): str(v) for k, v in dict(meta.labels).items()}
        except (TypeError, ValueError) as err:
            raise ProfileError(f"profile metadata is malformed: {err}") from err
        return meta


class Profile:
    """Interned frames and ``stack -> count``; stacks are tuples of frame ids, root first.

    Counts are sample counts (one sample = one ``1/rate_hz`` s of one thread); they stay integers so
    aggregates and diffs stay exact.
    """

    __slots__ = ("_index", "frames", "meta", "samples")

    def __init__(self, meta: ProfileMeta | None = None) -> None:
        self.meta = meta if meta is not None else ProfileMeta()
        self.frames: list[Frame] = []
        self._index: dict[Frame, int] = {}
        self.samples: dict[tuple[int, ...], int] = {}

    # -- building ---------------------------------------------------------------------------------
    def intern(self, frame: Frame) -> int:
        """The id of ``frame``, added when new."""
        fid = self._index.get(frame)
        if fid is None:
            fid = self._index[frame] = len(self.frames)
            self.frames.append(frame)
        return fid

    def add(self, stack: Sequence[Frame], count: int = 1) -> None:
        """Adds ``count`` samples of ``stack`` (root first). An empty stack or a count < 1 adds nothing."""
        if count < 1 or not stack:
            return
        key = tuple(self.intern(f) for f in stack)
        self.samples[key] = self.samples.get(key, 0) + int(count)

    def merge(self, other: Profile) -> Profile:
        """Adds every sample of ``other`` into this profile (frames re-interned); returns self."""
        for stack, count in other.stacks():
            self.add(stack, count)
        return self

    # -- reading ----------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        """Samples in all."""
        return sum(self.samples.values())

    def stacks(self) -> Iterator[tuple[tuple[Frame, ...], int]]:
        """``(frames root first, count)`` per distinct stack, in insertion order."""
        frames = self.frames
        for key, count in self.samples.items():
            yield tuple(frames[i] for i in key), count

    def threads(self) -> dict[str, int]:
        """Samples per root ``thread`` frame label (empty when the profile has no thread frames)."""
        out: dict[str, int] = {}
        for key, count in self.samples.items():
            root = self.frames[key[0]]
            if root.kind == "thread":
                out[root.function] = out.get(root.function, 0) + count
        return out

    def without_threads(self) -> Profile:
        """A copy without ``thread``/``process`` root frames (samples of every thread merged)."""
        out = Profile(replace(self.meta))
        for stack, count in self.stacks():
            out.add([f for f in stack if f.kind not in ("thread", "process")], count)
        return out

    def filtered(self, keep: Iterable[str]) -> Profile:
        """A copy with only the stacks whose root ``thread`` frame label is in ``keep``."""
        wanted = set(keep)
        out = Profile(replace(self.meta))
        for stack, count in self.stacks():
            if stack and stack[0].kind == "thread" and stack[0].function in wanted:
                out.add(stack, count)
        return out

    # -- canonical JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON document (see the module docstring)."""
        return {
            "version": FORMAT_VERSION,
            "meta": self.meta.to_dict(),
            "frames": [[f.function, f.file, f.line, f.kind] for f in self.frames],
            "samples": [[list(k), c] for k, c in self.samples.items()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """The profile a canonical JSON document holds.

        Raises:
            ProfileError: it is not a version-1 document, or a frame id, count or field is malformed.
        """
        if not isinstance(data, Mapping) or data.get("version") != FORMAT_VERSION:
            raise ProfileError(f"not a novatune profile document (version {FORMAT_VERSION} expected)")
        prof = cls(ProfileMeta.from_dict(data.get("meta") or {}))
        try:
            for function, file, line, kind in data["frames"]:
                if kind not in _KINDS:
                    raise ValueError(f"unknown frame kind {kind!r}")
                prof.intern(Frame(str(function), str(file), int(line), kind))
            n = len(prof.frames)
            for ids, count in data["samples"]:
                key = tuple(int(i) for i in ids)
                if not key or any(i < 0 or i >= n for i in key) or int(count) < 1:
                    raise ValueError(f"stack {ids!r} x {count!r} is malformed")
                prof.samples[key] = prof.samples.get(key, 0) + int(count)
        except (KeyError, TypeError, ValueError) as err:
            raise ProfileError(f"profile document is malformed: {err}") from err
        return prof

    def __repr__(self) -> str:
        return f"Profile({len(self.samples)} stacks, {len(self.frames)} frames, {self.total} samples, {self.meta.mode})"
