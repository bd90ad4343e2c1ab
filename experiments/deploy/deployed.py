"""Reading an installed export back: a sysctl.d file or a TuneD profile as knob values.

The inverse of the ``sysctl`` and ``tuned`` exports, so that ``novatune
verify`` compares an installed file with the live state: sysctl keys map to
knob names through the catalog's table, TuneD options through the knob
families' export mappings (:mod:`actuators.family`).
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass
from pathlib import Path

from actuators.family import fill
from actuators.registry import REGISTRY
from experiments.deploy.export import ExportError

__all__ = ["read_deployed"]


class CaseKeepingParser(configparser.ConfigParser):
    """An INI parser that keeps option case, as TuneD reads ``tuned.conf``."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr


@dataclass(frozen=True)
class _TunedInverse:
    """What a TuneD option sets, inverted from the families' export mappings.

    ``options``: ``(section, option)`` -> knob, for ``[vm]`` and ``[cpu]``; ``disk``: ``[disk]`` option ->
    knob pattern (``block.<dev>.<leaf>``); ``sysfs``: a ``[sysfs]`` path -> knob pattern, for every
    knob TuneD writes through sysfs (its ``[sysfs]`` and ``[disk]`` settings).
    """

    options: dict[tuple[str, str], str]
    disk: dict[str, str]
    sysfs: list[tuple[re.Pattern[str], str]]


def _file_regex(template: str) -> re.Pattern[str]:
    """An export file template (``/sys/block/{dev}/queue/nr_requests``) as a regex with named fields."""
    parts = re.split(r"\{([a-z]+)\}", template)
    return re.compile("".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts)))


def _tuned_inverse() -> _TunedInverse:
    inv = _TunedInverse({}, {}, [])
    for family in REGISTRY.families:
        for pattern, exp in family.exports.items():
            t = exp.tuned
            if t is None:
                continue
            if t.section in ("vm", "cpu"):
                inv.options[(t.section, t.option)] = pattern
            if t.section == "disk":
                inv.disk[t.option] = pattern
            if t.section in ("sysfs", "disk") and exp.file is not None:
                inv.sysfs.append((_file_regex(exp.file), pattern))
    return inv


class _Deployed:
    """The values a deployed file sets (``values``), what cannot be checked, and what has no knob."""

    def __init__(self, path: Path, sysctl_names: dict[str, str]) -> None:
        self.path = path
        self.sysctl_names = sysctl_names
        self.values: dict[str, str] = {}
        self.unchecked: list[str] = []
        self.unknown: list[str] = []

    def sysctl(self, key: str, value: str) -> None:
        name = self.sysctl_names.get(key.strip().replace("/", "."))
        if name is None:
            self.unknown.append(f"sysctl {key.strip()}")
        else:
            self.values[name] = value.strip()

    def read_sysctl_d(self, text: str) -> None:
        """A sysctl.d file: ``key = value``, ``#``/``;`` comments, a leading ``-`` ignores errors.

        Raises:
            ExportError: a line that is not ``key = value``.
        """
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            key, sep, value = line.lstrip("-").partition("=")
            if not sep:
                raise ExportError(f"{self.path}:{n}: not a 'key = value' line: {line!r}")
            self.sysctl(key, value)

    def read_tuned(self, text: str) -> None:
        """A TuneD profile's ``tuned.conf``.

        Raises:
            ExportError: not an INI file.
        """
        parser = CaseKeepingParser(interpolation=None, strict=False)
        try:
            parser.read_string(text, source=str(self.path))
        except configparser.Error as err:
            raise ExportError(f"{self.path}: not a TuneD profile: {err}") from None
        inv = _tuned_inverse()
        for section in parser.sections():
            opts = dict(parser[section])
            kind = opts.pop("type", section.split("_", 1)[0] if section.startswith(("disk_", "net_")) else section)
            if kind == "main":
                if "include" in opts:
                    self.unchecked.append(f"the settings of the included profile {opts['include']!r}")
            elif kind == "sysctl":
                for key, value in opts.items():
                    self.sysctl(key, value)
            elif kind in ("vm", "cpu"):
                for key, value in opts.items():
                    name = inv.options.get((kind, key))
                    if name:
                        self.values[name] = value
                    else:
                        self.unchecked.append(f"[{section}] {key}")
            elif kind == "disk":
                self._disk(section, opts, inv)
            elif kind == "sysfs":
                self._sysfs(section, opts, inv)
            else:  # [net] (ethtool settings) and plugins novatune does not tune
                self.unchecked.append(f"[{section}]")

    def _disk(self, section: str, opts: dict[str, str], inv: _TunedInverse) -> None:
        devices = [d.strip() for d in opts.pop("devices", "").split(",") if d.strip()]
        for key, value in opts.items():
            pattern = inv.disk.get(key)
            if pattern is None or not devices:
                self.unchecked.append(f"[{section}] {key}")
            for dev in devices if pattern else ():
                self.values[fill(pattern or "", {"dev": dev})] = value

    def _sysfs(self, section: str, opts: dict[str, str], inv: _TunedInverse) -> None:
        for key, value in opts.items():
            for regex, pattern in inv.sysfs:
                m = regex.fullmatch(key)
                if m:
                    self.values[fill(pattern, m.groupdict())] = value
                    break
            else:
                self.unknown.append(f"[{section}] {key}")


def read_deployed(path: Path, sysctl_names: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The knob values a sysctl.d file or a TuneD profile (its directory or ``tuned.conf``) sets, as
    text, and what in it cannot be checked -- the inverse of the ``sysctl`` and ``tuned`` exports, so
    that ``novatune verify`` compares an installed file with the live state.

    ``sysctl_names`` maps sysctl keys to knob names (the catalog's); TuneD options are read back through
    the families' export mappings.

    Raises:
        ExportError: a file that is neither, or a setting novatune has no knob for.
    """
    if path.is_dir():
        path = path / "tuned.conf"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ExportError(f"{path}: cannot read: {err}") from None
    found = _Deployed(path, sysctl_names)
    if path.name != "tuned.conf":
        found.read_sysctl_d(text)
    else:
        found.read_tuned(text)
    if found.unknown:
        raise ExportError(f"{path}: no novatune knob for: {', '.join(found.unknown)}")
    return found.values, found.unchecked
