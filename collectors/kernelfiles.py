"""The vocabulary of kernel files, parsed in one place (as psutil's ``_common.py``).

Pure text in, plain values out; nothing here opens a file (that is
:class:`collectors.rootfs.RootReader`'s job). Used by the collectors and, for
what they observe before they change it, by the actuators.

* CPU lists (``"0-3,8,10-11"``, ``cpulist`` / ``online`` / ``smp_affinity_list``
  files): :func:`parse_cpu_list` -> a sorted tuple of CPU numbers,
  :func:`format_cpu_list` back; hex CPU masks (``smp_affinity``,
  ``default_smp_affinity``): :func:`parse_cpu_mask`, :func:`format_cpu_mask`.
* Sizes as sysfs writes them (``"48K"``, ``"32M"``): :func:`parse_size`.
* ``/proc/meminfo`` and a node's ``meminfo``: :func:`parse_meminfo`.
* Selector files (``none [mq-deadline] kyber``): :func:`bracketed`,
  :func:`selector_value`, :func:`selector_words`.
* ``key value`` lines (``cpu.stat``, ``memory.events``): :func:`parse_kv`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TypeVar

__all__ = [
    "MAX_CPU",
    "bracketed",
    "format_cpu_list",
    "format_cpu_mask",
    "parse_cpu_list",
    "parse_cpu_mask",
    "parse_kv",
    "parse_meminfo",
    "parse_size",
    "psi_some_avg10",
    "selector_value",
    "selector_words",
]

T = TypeVar("T")

#: the highest CPU number a strictly parsed CPU list may name
MAX_CPU = 65535

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_BRACKET = re.compile(r"\[([^\[\]\s]+)\]")


# ------------------------------------------------------------------ CPU lists
def parse_cpu_list(text: str, *, strict: bool = False) -> tuple[int, ...]:
    """``"0-3,8,10-11"`` -> ``(0, 1, 2, 3, 8, 10, 11)``: sorted, each CPU once.

    As the kernel writes them (default): blanks around parts and empty parts
    are skipped, so ``""`` (an empty cpuset) is ``()``. ``strict`` is for a
    list a user gave: every part must be ``N`` or ``N-M`` in digits, none
    empty (so ``""`` is refused), and no CPU above :data:`MAX_CPU`.

    Raises:
        ValueError: not a CPU list (a range that goes down, a non-number, and in
            ``strict`` mode the cases above).
    """
    out: set[int] = set()
    for raw in text.strip().split(","):
        part = raw if strict else raw.strip()
        if not part:
            if strict:
                raise ValueError(text)
            continue
        lo, sep, hi = part.partition("-")
        if strict and (not lo.isdigit() or (sep and not hi.isdigit())):
            raise ValueError(text)
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a or (strict and b > MAX_CPU):
            raise ValueError(f"bad cpu range {part!r}" if not strict else text)
        out.update(range(a, b + 1))
    return tuple(sorted(out))


def format_cpu_list(cpus: Iterable[int]) -> str:
    """``{0, 1, 2, 5}`` -> ``"0-2,5"`` (the kernel's canonical form; ``""`` for none)."""
    runs: list[list[int]] = []
    for c in sorted(set(cpus)):
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in runs)


def parse_cpu_mask(raw: str) -> tuple[int, ...]:
    """A hex CPU mask (``"3"``, ``"ff,00000000"``) -> the CPUs it sets, sorted.

    Raises:
        ValueError: not hex.
    """
    bits = int(raw.strip().replace(",", ""), 16)
    return tuple(i for i in range(bits.bit_length()) if bits >> i & 1)


def format_cpu_mask(cpus: Iterable[int]) -> str:
    """CPUs -> the hex mask the kernel accepts (``{0, 1}`` -> ``"3"``)."""
    return format(sum(1 << c for c in set(cpus)), "x")


# ---------------------------------------------------------------------- sizes
def parse_size(text: str) -> int:
    """``"48K"`` -> 49152, ``"2048K"``, ``"32M"``, ``"512"`` (binary units, as sysfs writes them).

    Raises:
        ValueError: not a size.
    """
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"bad size {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` (or a NUMA node's ``meminfo``) -> ``{field: bytes}``.

    A value with a unit (``kB``) is multiplied by 1024, one without
    (``HugePages_Total``) is a count; the ``Node N`` prefix of a node's file
    is dropped. Lines that are not ``Field: number [unit]`` are skipped.
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "Node":  # "Node 0 MemTotal:       6121688 kB"
            parts = parts[2:]
        if len(parts) < 2 or not parts[0].endswith(":"):
            continue
        try:
            value = int(parts[1])
        except ValueError:
            continue
        out[parts[0][:-1]] = value * (1024 if len(parts) > 2 else 1)
    return out


# ------------------------------------------------------------------ selectors
def bracketed(raw: str) -> str | None:
    """The ``[selected]`` word of a kernel selector file (``none [mq-deadline] kyber``), or None."""
    m = _BRACKET.search(raw)
    return m.group(1) if m else None


def selector_value(raw: str) -> str:
    """Current value of a selector file: the bracketed word, else the single bare word.

    Raises:
        ValueError: the content is neither form.
    """
    word = bracketed(raw)
    if word is not None:
        return word
    parts = raw.split()
    if len(parts) == 1:
        return parts[0]
    raise ValueError(f"cannot tell the selected value in {raw!r}")


def selector_words(raw: str) -> tuple[str, ...]:
    """Every word of a selector file, brackets removed (``"a [b] c"`` -> ``("a", "b", "c")``)."""
    return tuple(w.strip("[]") for w in raw.split())


# --------------------------------------------------------------- key / value
def parse_kv(text: str, convert: Callable[[str], T]) -> dict[str, T]:
    """``key value`` lines (``cpu.stat``, ``memory.events``, ``memory.oom_control``) -> ``{key: convert(value)}``.

    Lines of another shape, or whose value ``convert`` refuses (``ValueError``), are skipped.
    """
    out: dict[str, T] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = convert(parts[1])
            except ValueError:
                continue
    return out


def psi_some_avg10(text: str) -> float | None:
    """The ``some avg10=`` value of a pressure file (``/proc/pressure/cpu``, a v2 cgroup's ``memory.pressure``),
    percent; None when the file has no such field."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "some":
            kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            try:
                return float(kv["avg10"])
            except (KeyError, ValueError):
                return None
    return None
