"""A stock TuneD profile (``throughput-performance``, ``network-latency``, ...) as novatune knob values.

What TuneD itself would set on this machine, so that novatune can apply it through its own journaled
actuators and measure it next to its own choice (``novatune bench gain``). :func:`resolve_profile` reads
``tuned.conf`` from the profile directories (``/etc/tuned`` before ``/usr/lib/tuned``, as TuneD searches),
follows ``include=`` (the included profile first, the including one overrides option by option, as TuneD
merges), expands ``${variables}``, skips a section whose ``uname_regex`` / ``cpuinfo_regex`` does not match
this machine, and maps every option novatune has a knob for: ``[sysctl]`` keys, ``[vm]`` and ``[cpu]``
options and ``[disk]`` options (for the block devices the caller names: TuneD's disk plugin applies to
every disk, a gain run to its own device). A ``>`` value only raises (TuneD's "at least"), a ``<`` only
lowers; a ``a|b`` value takes the first alternative. Everything else is listed in ``skipped`` with the
reason, never dropped silently. Profile names are plain names (no path).
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actuators.family import fill
from actuators.registry import REGISTRY
from collectors.errors import NovatuneError
from experiments.deploy.deployed import CaseKeepingParser, _tuned_inverse

__all__ = ["DEFAULT_DIRS", "STOCK_PROFILES", "TunedProfileError", "ResolvedProfile", "resolve_profile"]

#: where TuneD looks for profiles, in its order (a profile in /etc/tuned hides the packaged one)
DEFAULT_DIRS: tuple[Path, ...] = (Path("/etc/tuned"), Path("/usr/lib/tuned"))
#: the stock profiles a gain report compares with (issue 17), in TuneD's own names
STOCK_PROFILES: tuple[str, ...] = ("throughput-performance", "latency-performance", "network-latency",
                                   "network-throughput", "virtual-guest", "balanced")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_VAR = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
_MAX_DEPTH = 10


class TunedProfileError(NovatuneError, ValueError):
    """A profile that cannot be read (unknown name, not a TuneD profile, an include loop): exit 2, HTTP 422."""

    exit_code = 2
    http_status = 422


@dataclass
class ResolvedProfile:
    """``values``: knob -> value TuneD would set; ``skipped``: what novatune does not set, with why;
    ``chain``: the profiles read, included ones first."""

    name: str
    values: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    chain: list[str] = field(default_factory=list)


def _read(name: str, dirs: Sequence[Path]) -> configparser.ConfigParser:
    if not _NAME.fullmatch(name) or ".." in name:
        raise TunedProfileError(f"{name!r} is not a TuneD profile name (letters, digits, '_', '.', '-'; no path)")
    for d in dirs:
        conf = d / name / "tuned.conf"
        if conf.is_file():
            parser = CaseKeepingParser(interpolation=None, strict=False)
            try:
                parser.read_string(conf.read_text(encoding="utf-8"), source=str(conf))
            except (OSError, UnicodeDecodeError, configparser.Error) as err:
                raise TunedProfileError(f"{conf}: not a TuneD profile: {err}") from None
            return parser
    shown = ", ".join(map(str, dirs)) or "(none)"
    raise TunedProfileError(f"no TuneD profile {name!r} in {shown} (Debian package: tuned; or set tuned_profile_dirs)")


def _merged(name: str, dirs: Sequence[Path], chain: list[str], depth: int = 0) -> dict[str, dict[str, str]]:
    """Section -> options of ``name`` with its includes merged in (included first, then overridden)."""
    if depth > _MAX_DEPTH or name in chain:
        raise TunedProfileError(f"TuneD profile {name!r}: include loop or more than {_MAX_DEPTH} levels: "
                           f"{' -> '.join([*chain, name])}")
    parser = _read(name, dirs)
    out: dict[str, dict[str, str]] = {}
    includes = [i.strip() for i in parser.get("main", "include", fallback="").split(",") if i.strip()]
    for inc in includes:
        for section, opts in _merged(inc, dirs, chain, depth + 1).items():
            out.setdefault(section, {}).update(opts)
    chain.append(name)
    for section in parser.sections():
        opts = dict(parser[section])
        if opts.pop("replace", "0").strip() in ("1", "true", "True"):
            out[section] = {}
        out.setdefault(section, {}).update(opts)
    return out


def _expand(text: str, variables: dict[str, str]) -> str | None:
    """``${name}`` replaced; None when a variable is unknown or a ``${f:function}`` (not evaluated here)."""
    if "${f:" in text:
        return None
    missing = [v for v in _VAR.findall(text) if v not in variables]
    return None if missing else _VAR.sub(lambda m: variables[m.group(1)], text)


def _applies(opts: dict[str, str], variables: dict[str, str]) -> bool:
    """A section's ``uname_regex`` / ``cpuinfo_regex`` conditions on this machine (absent: applies)."""
    for key, read in (("uname_regex", lambda: " ".join(os.uname())),
                      ("cpuinfo_regex", lambda: Path("/proc/cpuinfo").read_text(errors="replace"))):
        if key not in opts:
            continue
        pattern = _expand(opts.pop(key), variables)
        try:
            if pattern is None or not re.search(pattern, read(), re.MULTILINE):
                return False
        except (re.error, OSError):
            return False
    return True


def _value(raw: str, name: str, current: Callable[[str], Any]) -> Any:
    """A TuneD value as the knob's: quotes stripped, ``a|b`` -> a, ``>N`` at least N, ``<N`` at most N."""
    text = raw.strip().strip('"').strip()
    if "|" in text:
        text = text.split("|", 1)[0].strip()
    if text[:1] in "<>" and text[1:].strip().lstrip("-").isdigit():
        want = int(text[1:].strip())
        try:
            now = int(str(current(name)).split()[0])
        except (ValueError, TypeError, IndexError, NovatuneError, OSError):
            return want
        return max(now, want) if text[0] == ">" else min(now, want)
    parts = text.split()
    if len(parts) > 1 and all(p.lstrip("-").isdigit() for p in parts):
        return [int(p) for p in parts]  # a triplet (tcp_rmem)
    return int(text) if text.lstrip("-").isdigit() else text


def resolve_profile(name: str, *, dirs: Sequence[Path] = DEFAULT_DIRS, devices: Sequence[str] = (),
                    current: Callable[[str], Any] = lambda knob: None) -> ResolvedProfile:
    """What TuneD profile ``name`` sets here, as knob values (see the module docstring).

    Args:
        devices: the ``block.<dev>`` names ``[disk]`` options apply to (none: they are skipped, said so).
        current: the knob's value now (for ``>``/``<`` values); raising or None: the profile's number.

    Raises:
        TunedProfileError: unknown profile, bad name, unreadable file, include loop.
    """
    out = ResolvedProfile(name)
    sections = _merged(name, dirs, out.chain)
    variables = dict(sections.pop("variables", {}))
    sections.pop("main", None)
    sysctls, inv = REGISTRY.sysctl_names(), _tuned_inverse()
    for section, merged in sections.items():
        opts = dict(merged)
        kind = opts.pop("type", section.split(".", 1)[0])
        if not _applies(opts, variables):
            out.skipped.append(f"[{section}]: not for this machine (uname_regex/cpuinfo_regex)")
            continue
        devs = opts.pop("devices", None)
        for key, raw in opts.items():
            text = _expand(raw, variables)
            if kind == "sysctl":
                knob = sysctls.get(key.strip())
            elif kind in ("vm", "cpu"):
                knob = inv.options.get((kind, key))
            elif kind == "disk":
                pattern = inv.disk.get(key)
                targets = [] if pattern is None else [fill(pattern, {"dev": d}) for d in devices]
                if devs is not None and pattern is not None:
                    out.skipped.append(f"[{section}] devices={devs}: applied to the run's own device(s) instead")
                for t in targets:
                    if text is not None:
                        out.values[t] = _value(text, t, current)
                if not targets:
                    out.skipped.append(f"[{section}] {key}: " + ("no novatune knob" if pattern is None
                                                                 else "no block device given"))
                continue
            else:
                out.skipped.append(f"[{section}] {key}: novatune does not tune the {kind} plugin")
                continue
            if knob is None or text is None:
                why = "no novatune knob" if knob is None else "a TuneD function or unknown variable"
                out.skipped.append(f"[{section}] {key}: {why}")
                continue
            out.values[knob] = _value(text, knob, current)
    return out
