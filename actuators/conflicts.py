"""Other owners of a knob's setting: sysctl.d files and the active TuneD profile.

A value novatune applies does not survive a reboot (or a ``sysctl --system``,
or ``tuned-adm profile``) when another configuration sets the same thing.
:class:`ConflictFinder` reads those configurations under a root directory
(``/`` on a real host, a fake tree in tests, like :class:`SysRoot`) and says,
per knob, which file sets it and to what value. It only reads.

sysctl files, in the order ``systemd-sysctl`` and ``sysctl --system`` apply
them (later files override earlier ones): every ``*.conf`` of
``/etc/sysctl.d``, ``/run/sysctl.d``, ``/usr/local/lib/sysctl.d``,
``/usr/lib/sysctl.d``, ``/lib/sysctl.d``, a name in an earlier directory
hiding the same name in a later one (a link to ``/dev/null`` masks it), sorted
by file name; then ``/etc/sysctl.conf``. Lines are ``key = value`` or
``key=value``; ``#`` and ``;`` start comments; a leading ``-`` (ignore errors)
is dropped; slashed keys (``vm/swappiness``) are the dotted key; keys may be
globs (``net.ipv4.conf.*.rp_filter``).

TuneD: the profile(s) named in ``/etc/tuned/active_profile``, each read from
``/etc/tuned/<p>/tuned.conf`` (else ``/etc/tuned/profiles/<p>``,
``/usr/lib/tuned/<p>``, ``/usr/lib/tuned/profiles/<p>``), following
``include=``. ``[sysctl]`` keys map to sysctl knobs, ``[vm]
transparent_hugepages`` to ``thp.enabled``, ``[disk]`` ``readahead`` /
``elevator`` to ``block.<dev>.read_ahead_kb`` / ``block.<dev>.scheduler``
(limited by ``devices=`` when given).
"""

from __future__ import annotations

import configparser
import fnmatch
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from actuators.base import Knob

__all__ = ["Conflict", "ConflictFinder", "SYSCTL_DIRS", "normalise_sysctl_key", "parse_sysctl_text"]

log = logging.getLogger(__name__)

#: sysctl.d directories, highest precedence first (systemd's order)
SYSCTL_DIRS: tuple[str, ...] = (
    "etc/sysctl.d",
    "run/sysctl.d",
    "usr/local/lib/sysctl.d",
    "usr/lib/sysctl.d",
    "lib/sysctl.d",
)
_SYSCTL_CONF = "etc/sysctl.conf"
_TUNED_ACTIVE = "etc/tuned/active_profile"
_TUNED_DIRS: tuple[str, ...] = ("etc/tuned", "etc/tuned/profiles", "usr/lib/tuned", "usr/lib/tuned/profiles")
_PROFILE_RE = re.compile(r"[A-Za-z0-9_.+-]{1,128}")
_MAX_INCLUDE_DEPTH = 10

Owner = Literal["sysctl.d", "tuned"]


@dataclass(frozen=True)
class Conflict:
    """Another configuration sets the setting of ``knob``.

    ``owner`` is ``"sysctl.d"`` or ``"tuned"``; ``source`` the file (its path on
    the configured root, as the operator would open it: ``/etc/sysctl.d/99-x.conf``);
    ``line`` its line number (sysctl files); ``setting`` the key as written
    (``vm.swappiness``, ``[vm] transparent_hugepages``); ``value`` the raw value.
    """

    knob: str
    owner: Owner
    source: str
    setting: str
    value: str
    line: int | None = None

    def describe(self) -> str:
        """One line: ``/etc/sysctl.d/99-x.conf:3 sets vm.swappiness = 10``."""
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        if self.owner == "tuned":
            return f"TuneD profile {where} sets {self.setting} = {self.value}"
        return f"{where} sets {self.setting} = {self.value}"

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for JSON)."""
        return asdict(self)


def normalise_sysctl_key(key: str) -> str:
    """The dotted form of a sysctl key (``vm/swappiness`` -> ``vm.swappiness``).

    As systemd does: when the first separator is ``/``, slashes become dots and
    dots slashes (``net/ipv4/conf/eth0.1/forwarding`` -> ``net.ipv4.conf.eth0/1.forwarding``).
    """
    key = key.strip()
    first = re.search(r"[./]", key)
    if first is not None and first.group() == "/":
        key = key.translate(str.maketrans("./", "/."))
    return key.strip(".")


def parse_sysctl_text(text: str) -> list[tuple[int, str, str]]:
    """``(line number, dotted key, value)`` for every setting of a sysctl file, in order.

    Comments (``#``, ``;``), blank lines and lines without ``=`` are skipped;
    a leading ``-`` is dropped.
    """
    out: list[tuple[int, str, str]] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if "=" not in line:
            log.debug("sysctl line %d without '=': %r", n, raw)
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if key.startswith("-"):
            key = key[1:].strip()
        key = normalise_sysctl_key(key)
        if key:
            out.append((n, key, value.strip()))
    return out


class _CaseKeepingParser(configparser.ConfigParser):
    """TuneD option names keep their case (``transparent_hugepages``, ``/sys/...`` paths)."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr


class ConflictFinder:
    """Finds the other owners of knob settings under ``root`` (``/`` by default).

    Files are read once, on first use. Unreadable files are skipped (and
    logged): a conflict report never fails because of them.
    """

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = Path(os.path.realpath(os.fspath(root)))
        self._sysctl: dict[str, list[Conflict]] | None = None
        self._tuned: list[tuple[str, str, str, str, dict[str, str]]] | None = None

    def __repr__(self) -> str:
        return f"ConflictFinder({str(self.root)!r})"

    # ---------------------------------------------------------------- helpers
    def _p(self, rel: str) -> Path:
        return self.root.joinpath(*rel.split("/"))

    def _shown(self, path: Path) -> str:
        """The path as it is on the configured system (``/etc/...``)."""
        try:
            return "/" + str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    @staticmethod
    def _read(path: Path) -> str | None:
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            log.info("cannot read %s: %s", path, err)
            return None

    # ----------------------------------------------------------------- sysctl
    def sysctl_files(self) -> list[Path]:
        """The sysctl files in the order they are applied (later overrides earlier)."""
        chosen: dict[str, Path] = {}
        for d in SYSCTL_DIRS:
            base = self._p(d)
            try:
                names = sorted(os.listdir(base))
            except OSError:
                continue
            for name in names:
                if not name.endswith(".conf") or name in chosen:
                    continue
                chosen[name] = base / name
        files: list[Path] = []
        for name in sorted(chosen):
            p = chosen[name]
            if p.is_symlink() and os.readlink(p) == "/dev/null":
                continue  # masked
            if p.is_file():
                files.append(p)
        conf = self._p(_SYSCTL_CONF)
        if conf.is_file() and all(os.path.realpath(f) != os.path.realpath(conf) for f in files):
            files.append(conf)
        return files

    def _sysctl_settings(self) -> dict[str, list[Conflict]]:
        if self._sysctl is None:
            table: dict[str, list[Conflict]] = {}
            for f in self.sysctl_files():
                text = self._read(f)
                if text is None:
                    continue
                for n, key, value in parse_sysctl_text(text):
                    table.setdefault(key, []).append(
                        Conflict(knob="", owner="sysctl.d", source=self._shown(f), setting=key, value=value, line=n)
                    )
            self._sysctl = table
        return self._sysctl

    def sysctl_setters(self, key: str) -> list[Conflict]:
        """Every line that sets sysctl ``key``, in apply order (the last one wins at boot)."""
        key = normalise_sysctl_key(key)
        out: list[Conflict] = []
        for pattern, found in self._sysctl_settings().items():
            if pattern == key or (any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(key, pattern)):
                out.extend(found)
        files = [self._shown(f) for f in self.sysctl_files()]
        return sorted(out, key=lambda c: (files.index(c.source) if c.source in files else len(files), c.line or 0))

    # ------------------------------------------------------------------ TuneD
    def active_profiles(self) -> list[str]:
        """Names in ``/etc/tuned/active_profile`` (TuneD allows several), unsafe names dropped."""
        text = self._read(self._p(_TUNED_ACTIVE)) if self._p(_TUNED_ACTIVE).is_file() else None
        names = (text or "").split()
        good = [n for n in names if _PROFILE_RE.fullmatch(n) and n not in (".", "..")]
        if len(good) != len(names):
            log.warning("ignoring unsafe TuneD profile names in %s", self._p(_TUNED_ACTIVE))
        return good

    def _profile_file(self, name: str) -> Path | None:
        for d in _TUNED_DIRS:
            p = self._p(d) / name / "tuned.conf"
            if p.is_file():
                return p
        return None

    def _load_profile(self, name: str, depth: int, out: list[tuple[str, str, str, str, dict[str, str]]]) -> None:
        """Append ``(profile file, section, option, value, section options)``; includes first."""
        if depth > _MAX_INCLUDE_DEPTH or not _PROFILE_RE.fullmatch(name):
            return
        path = self._profile_file(name)
        if path is None:
            log.info("TuneD profile %s not found under %s", name, self.root)
            return
        text = self._read(path)
        if text is None:
            return
        cp = _CaseKeepingParser(interpolation=None, strict=False, comment_prefixes=("#", ";"),
                                inline_comment_prefixes=None, delimiters=("=",))
        try:
            cp.read_string(text, source=str(path))
        except configparser.Error as err:
            log.warning("cannot parse %s: %s", path, err)
            return
        if cp.has_section("main"):
            for inc in re.split(r"[,\s]+", cp.get("main", "include", fallback="")):
                if inc:
                    self._load_profile(inc, depth + 1, out)
        shown = self._shown(path)
        for section in cp.sections():
            if section == "main":
                continue
            opts = dict(cp.items(section))
            for opt, value in opts.items():
                out.append((shown, section, opt, value.strip(), opts))

    def _tuned_settings(self) -> list[tuple[str, str, str, str, dict[str, str]]]:
        if self._tuned is None:
            found: list[tuple[str, str, str, str, dict[str, str]]] = []
            for p in self.active_profiles():
                self._load_profile(p, 0, found)
            self._tuned = found
        return self._tuned

    @staticmethod
    def _plugin(section: str, opts: dict[str, str]) -> str:
        return opts.get("type", section).strip()

    @staticmethod
    def _device_matches(dev: str, devices: str | None) -> bool:
        if not devices:
            return True
        ok = False
        for item in re.split(r"[,\s]+", devices.strip()):
            if not item:
                continue
            if item.startswith("!"):
                if fnmatch.fnmatchcase(dev, item[1:]):
                    return False
            elif fnmatch.fnmatchcase(dev, item):
                ok = True
        return ok

    def tuned_setters(self, knob: Knob) -> list[Conflict]:
        """TuneD options of the active profile(s) that set ``knob``'s setting."""
        name = knob.name
        key = normalise_sysctl_key(knob.sysctl_key) if knob.sysctl_key else None
        block = re.fullmatch(r"block\.(.+)\.(read_ahead_kb|scheduler)", name)
        out: list[Conflict] = []
        for source, section, opt, value, opts in self._tuned_settings():
            plugin = self._plugin(section, opts)
            hit = False
            if plugin == "sysctl" and key is not None:
                k = normalise_sysctl_key(opt)
                hit = k == key or (any(c in k for c in "*?[") and fnmatch.fnmatchcase(key, k))
            elif plugin == "vm" and name == "thp.enabled":
                hit = opt in ("transparent_hugepages", "transparent_hugepage")
            elif plugin == "disk" and block is not None:
                dev, leaf = block.groups()
                want = "readahead" if leaf == "read_ahead_kb" else "elevator"
                hit = opt == want and self._device_matches(dev, opts.get("devices"))
            if hit:
                out.append(Conflict(knob=name, owner="tuned", source=source, setting=f"[{section}] {opt}", value=value))
        return out

    # ------------------------------------------------------------------ knobs
    def for_knob(self, knob: Knob) -> list[Conflict]:
        """Every other owner of ``knob``'s setting: sysctl lines (apply order), then TuneD."""
        out: list[Conflict] = []
        if knob.sysctl_key:
            out.extend(
                Conflict(knob=knob.name, owner=c.owner, source=c.source, setting=c.setting, value=c.value, line=c.line)
                for c in self.sysctl_setters(knob.sysctl_key)
            )
        out.extend(self.tuned_setters(knob))
        return out
