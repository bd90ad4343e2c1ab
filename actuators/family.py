"""A knob family declares itself here, in one object (TuneD: one plugin per family).

A family module (``actuators/sysctl.py``, ``block.py``, ...) holds the knob
classes and their fixed tables (files, hard bounds, scope, risk) and ends
with one :class:`Family` instance that declares, for the rest of novatune:

* **names**: ``patterns`` in listing order; a ``<field>`` stands for a part
  matched against a directory listing when the name is resolved (never
  pasted into a path), with its syntax in ``fields`` (for pure uses: export,
  checks). ``claims(name)`` says whether a name is the family's at all;
* **resolution**: ``resolve(name, env)`` -> the concrete :class:`Knob`
  (raising :class:`UnknownKnob` with the family's reason), ``knobs(env)`` ->
  every concrete knob on this machine;
* **relations**: ``orderings`` (``lower < upper`` whenever both are set),
  ``conditions`` (a knob only applies while another has certain values) and
  ``apply_order`` (pattern -> rank; higher ranks are written later, in a
  session and in the shell export);
* **restore**: ``restore_kinds``, the :class:`Token` kinds its knobs journal
  (each restored from the journal record alone, see :mod:`actuators.restore`);
* **export**: ``exports`` (pattern -> :class:`KnobExport`): the kernel file the
  shell export writes, the TuneD section and option, the systemd option of a
  workload-bound knob, what a format cannot express; ``workload`` is True for
  families bound to a run's workload (cgroup or process scope).

:mod:`actuators.registry` collects the families and checks these declarations
when it is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from actuators.errors import UnknownKnob

if TYPE_CHECKING:
    from actuators.base import Knob
    from actuators.cgroup import WorkloadCgroup
    from actuators.sysroot import SysRoot

__all__ = [
    "Condition",
    "Env",
    "Family",
    "KnobContext",
    "KnobExport",
    "Match",
    "Ordering",
    "SystemdOption",
    "TunedOption",
    "fill",
    "one_line",
]

_FIELD = re.compile(r"<([a-z]+)>")


@dataclass(frozen=True)
class KnobContext:
    """Binds cgroup- and process-scoped knobs to a run's workload.

    ``netns``: the name of a network namespace (``ip netns add NAME``); the
    per-namespace ``net.*`` knobs then act inside it, the host-wide ones are
    unavailable. None: the namespace of this process.
    """

    cgroup: WorkloadCgroup | None = None
    pids: Callable[[], list[int]] | None = None
    netns: str | None = None
    #: instance types a plan may choose (the priced catalogue, given by the caller)
    instance_types: tuple[str, ...] = ()
    #: interfaces whose ``nic.*`` knobs are refused (the setting ``protected_interfaces``); ``default-route``
    #: stands for every interface carrying a default route (see :func:`actuators.nic.protected`)
    protected_interfaces: tuple[str, ...] = ("default-route",)
    #: a running target's cgroup the ``rightsize.*`` knobs act on: its path inside its hierarchy, as
    #: ``/proc/PID/cgroup`` shows it (``/system.slice/nginx.service``); whether the operator allows it is
    #: checked by the caller (``experiments``), see :mod:`actuators.rightsize`
    target_cgroup: str | None = None
    #: the study's own loop device (``loopN``) that ``block.@target.<leaf>`` names; None: not bound yet
    block_target: str | None = None


@dataclass(frozen=True)
class Env:
    """What a family binds its knobs to: the root of ``/proc`` + ``/sys`` and the run's context."""

    root: SysRoot
    context: KnobContext


@dataclass(frozen=True)
class Ordering:
    """``lower`` must stay below ``upper`` whenever both are set (``vm.dirty_background_ratio < vm.dirty_ratio``)."""

    lower: str
    upper: str


@dataclass(frozen=True)
class Condition:
    """``knob`` only applies while ``parent`` has one of ``values`` (else it is not proposed)."""

    knob: str
    parent: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class TunedOption:
    """A knob in a TuneD profile: the plugin ``section`` and its ``option``.

    ``section`` is ``vm``, ``cpu``, ``disk`` (per device, ``devices=``),
    ``net`` (per interface; the option takes ``word value`` items) or
    ``sysfs`` (the option is the knob's kernel file).
    """

    section: str
    option: str = ""
    word: str | None = None


@dataclass(frozen=True)
class SystemdOption:
    """A workload-bound knob as an option of the workload unit's ``[Service]`` section.

    ``option`` None: carried by the option of ``carried_by`` (nothing of its
    own). ``when`` ``(knob, value)``: only expressible while that knob has that
    value (its default when absent), else not, for ``why_not``.
    """

    option: str | None
    render: Callable[[Any], str] = str
    note: Callable[[Any], str] | None = None
    when: tuple[str, str] | None = None
    why_not: str | None = None
    carried_by: str | None = None


@dataclass(frozen=True)
class KnobExport:
    """Where a knob (each knob of a pattern) goes in the deployable formats; None: the format cannot carry it.

    ``file``: the kernel file the shell export writes (absolute; ``{field}``
    filled from the name; a glob over CPUs when ``glob``); ``file_value``
    turns the value into what the file takes (``ValueError``: not
    expressible). ``sysctl``: the knob is a sysctl (sysctl.d, TuneD
    ``[sysctl]``, ``/proc/sys``); ``whole_value``: why a value of another shape
    than the file's (a triplet given one number) cannot be written.
    """

    file: str | None = None
    glob: bool = False
    file_value: Callable[[Any], str] | None = None
    sysctl: bool = False
    whole_value: str | None = None
    tuned: TunedOption | None = None
    systemd: SystemdOption | None = None


@dataclass(frozen=True)
class Match:
    """A name matched syntactically by a family (no machine consulted): its pattern and fields."""

    family: Family
    name: str
    pattern: str
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def export(self) -> KnobExport | None:
        """The family's export mapping of this knob."""
        return self.family.exports.get(self.pattern)


def fill(template: str, fields: Mapping[str, str]) -> str:
    """``template`` with each ``<field>`` / ``{field}`` replaced by its value (names and export paths)."""
    out = _FIELD.sub(lambda m: fields[m.group(1)], template)
    return out.format(**fields) if "{" in out else out


def one_line(value: Any) -> str:
    """``value`` as one line of file text: a bool as 0/1, a sequence (a triplet) space-separated, runs of
    whitespace as one space."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return " ".join(one_line(v) for v in value)
    return " ".join(str(value).split())


class Family:
    """One knob family. Subclasses set the class attributes and implement :meth:`resolve`.

    The default :meth:`claims` takes the fixed names of ``patterns``;
    families with ``<field>`` patterns claim their prefix instead. The default
    :meth:`knobs` resolves every fixed name.
    """

    #: the family's name (``vm``, ``block``, ...)
    name: ClassVar[str]
    #: every name, in listing order; ``<field>`` parts are matched against a listing
    patterns: ClassVar[tuple[str, ...]]
    #: the syntax of each ``<field>`` (a regular expression), for pure matching
    fields: ClassVar[Mapping[str, str]] = {}
    #: names starting with this belong to the family (families with ``<field>`` patterns)
    prefix: ClassVar[str | None] = None
    orderings: ClassVar[tuple[Ordering, ...]] = ()
    conditions: ClassVar[tuple[Condition, ...]] = ()
    #: pattern -> rank: a higher rank is written after a lower one (default 0)
    apply_order: ClassVar[Mapping[str, int]] = {}
    #: the Token kinds its knobs journal
    restore_kinds: ClassVar[tuple[str, ...]] = ("file",)
    #: pattern -> export mapping
    exports: ClassVar[Mapping[str, KnobExport]] = {}
    #: bound to a run's workload (cgroup / process scope): deployed through the workload's unit
    workload: ClassVar[bool] = False
    #: one name acts on a different file per binding (a running target's cgroup): two journal records of
    #: the family conflict only when their targets are equal, and a record is bound back by :meth:`context_of`
    bound_by_target: ClassVar[bool] = False

    def __repr__(self) -> str:
        return f"<Family {self.name}>"

    # ------------------------------------------------------------------ names
    @property
    def fixed(self) -> tuple[str, ...]:
        """The patterns without fields (plain names)."""
        return tuple(p for p in self.patterns if "<" not in p)

    def claims(self, name: str) -> bool:
        """Whether ``name`` is this family's to resolve (or to refuse with its own reason)."""
        return name in self.fixed or (self.prefix is not None and name.startswith(self.prefix))

    def match(self, name: str) -> Match | None:
        """``name`` matched against the patterns by syntax alone (no listing); None if none fits.

        A field may not be ``.`` or ``..``.
        """
        for pattern in self.patterns:
            if "<" not in pattern:
                if name == pattern:
                    return Match(self, name, pattern)
                continue
            m = re.fullmatch(self._regex(pattern), name)
            if m and not any(v in (".", "..") for v in m.groupdict().values()):
                return Match(self, name, pattern, m.groupdict())
        return None

    def _regex(self, pattern: str) -> str:
        parts = _FIELD.split(pattern)  # literal, field, literal, ...
        return "".join(
            re.escape(p) if i % 2 == 0 else f"(?P<{p}>{self.fields[p]})" for i, p in enumerate(parts)
        )

    def example(self, pattern: str) -> str:
        """A name of ``pattern`` with each field filled by a sample (for the registry's checks)."""
        return _FIELD.sub(lambda m: _SAMPLES.get(m.group(1), "x0"), pattern)

    # ------------------------------------------------------------- resolution
    def resolve(self, name: str, env: Env) -> Knob:
        """The concrete knob ``name`` (one :meth:`claims`), bound to ``env``.

        Raises:
            UnknownKnob: the name is the family's pattern but names nothing here
                (unknown leaf, device, IRQ, interface); the message says why.
        """
        raise UnknownKnob(f"{name}: the {self.name} family resolves nothing")

    def knobs(self, env: Env) -> list[Knob]:
        """Every concrete knob of the family on this machine (default: each fixed name)."""
        return [self.resolve(n, env) for n in self.fixed]

    def context_of(self, root: SysRoot, rel: str) -> KnobContext | None:
        """The context a journal record's file ``rel`` binds the family's knobs in (families with
        :attr:`bound_by_target`); None when the family binds nothing from a file.

        Raises:
            UnsafePath: ``rel`` is not a file the family's knobs write.
        """
        return None

    def rank(self, name: str) -> int:
        """The apply rank of ``name`` (0 unless ``apply_order`` says otherwise)."""
        m = self.match(name)
        return self.apply_order.get(m.pattern, 0) if m is not None else 0


#: sample values of the usual fields, for :meth:`Family.example`
_SAMPLES = {"dev": "vda", "n": "24", "iface": "eth0"}
