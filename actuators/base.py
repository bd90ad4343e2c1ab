"""What every knob is: a domain with hard bounds, and read/validate/plan/apply/verify/restore.

The model is TuneD's plugin: read and keep the current value before writing,
skip writes that change nothing, restore in reverse order. Unlike TuneD the old
value leaves this process: :class:`actuators.session.ChangeSession` journals the
:class:`Token` (fsynced) before :meth:`Knob.commit` writes.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Literal, get_args

from actuators.errors import ActuatorError, KnobUnavailable, OutOfBounds
from actuators.sysroot import SysRoot
from collectors.kernelfiles import selector_value, selector_words

__all__ = ["TOKEN_KINDS", "Change", "Domain", "FileKnob", "IntFileKnob", "Knob", "SelectorKnob", "Token", "TokenKind"]

Kind = Literal["int", "float", "categorical"]
#: how a change is put back (a Token's ``kind``, journaled as ``restore``)
TokenKind = Literal["file", "affinity", "files", "process", "nic"]
TOKEN_KINDS: tuple[str, ...] = get_args(TokenKind)
Risk = Literal["low", "medium", "high"]
Scope = Literal["host", "device", "netns", "cgroup", "process", "vm"]


def _as_number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    if isinstance(value, str):
        for conv in (int, float):
            try:
                return conv(value.strip())
            except ValueError:
                continue
    return None


@dataclass(frozen=True)
class Domain:
    """The values a knob may take; ``low``/``high`` are HARD safety bounds.

    ``kind`` is ``"int"``, ``"float"`` or ``"categorical"`` (then ``choices``).
    """

    kind: Kind
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    step: float | None = None
    log: bool = False

    def validate(self, name: str, value: Any) -> int | float | str:
        """``value`` normalised to the domain's type.

        Raises:
            OutOfBounds: wrong type, not finite, outside ``[low, high]`` or not a choice;
                the message names the knob, the value and what is allowed.
        """
        if self.kind == "categorical":
            if not isinstance(value, str) or value not in self.choices:
                shown = list(self.choices) if len(self.choices) <= 20 else [*self.choices[:10], "..."]
                more = "" if len(self.choices) <= 20 else f" ({len(self.choices)} in all: `novatune knobs get {name}`)"
                raise OutOfBounds(f"{name}: {value!r} is not allowed; choices: {shown}{more}")
            return value
        num = _as_number(value)
        allowed = f"allowed: {'integers' if self.kind == 'int' else 'numbers'} in [{self.low}, {self.high}]"
        if num is None or (isinstance(num, float) and not math.isfinite(num)):
            raise OutOfBounds(f"{name}: {value!r} is not a finite number; {allowed}")
        if self.kind == "int":
            if isinstance(num, float):
                if not num.is_integer():
                    raise OutOfBounds(f"{name}: {value!r} is not an integer; {allowed}")
                num = int(num)
        else:
            num = float(num)
        assert self.low is not None and self.high is not None
        if num < self.low or num > self.high:
            raise OutOfBounds(f"{name}: {value!r} is outside the hard bounds; {allowed}")
        return num


@dataclass(frozen=True)
class Change:
    """A planned change: ``changes`` is False when ``new`` equals the current ``old``."""

    knob: str
    old: Any
    new: Any
    changes: bool


@dataclass(frozen=True)
class Token:
    """What restore needs, captured before the write.

    ``target`` is the root-relative file (``proc/sys/vm/swappiness``), for
    process knobs ``"pids:<pid>,<pid>"``, for a knob bound to a network
    namespace ``"netns:<name>:<rel>"`` and for a knob spread over several
    files (``kind="files"``, e.g. one governor per CPU) ``"files:<rel>,<rel>"``
    with ``old``/``new`` mapping each file to its content. ``old`` is the raw, byte-exact file
    content as read (or the per-thread affinity entries), ``new`` what is
    written, ``value`` the logical new value.
    """

    knob: str
    scope: str
    target: str
    old: Any
    new: Any
    value: Any
    kind: TokenKind = "file"


class Knob(ABC):
    """One concrete, bound knob (``block.loop0.scheduler``, not the pattern).

    ``domain`` holds the hard bounds; nothing can widen them. ``reboot`` is
    True for a knob that only takes effect after a reboot (none so far; ``plan``
    reports it).
    """

    def __init__(
        self,
        *,
        name: str,
        domain: Domain,
        risk: Risk,
        scope: Scope,
        needs_root: bool,
        unit: str = "",
        description: str = "",
        sysctl_key: str | None = None,
        reboot: bool = False,
    ) -> None:
        self.name = name
        self.domain = domain
        self.risk = risk
        self.scope = scope
        self.needs_root = needs_root
        self.unit = unit
        self.description = description
        self.sysctl_key = sysctl_key
        self.reboot = reboot

    @property
    def family(self) -> str:
        """The name up to the first dot (``vm``, ``net``, ``block``, ...)."""
        return self.name.split(".", 1)[0]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # ---------------------------------------------------------------- queries
    @abstractmethod
    def available(self) -> str | None:
        """None when the knob can be used here, else the reason."""

    @abstractmethod
    def read(self) -> Any:
        """The current logical value (int / float / str).

        Raises:
            ActuatorError: the value cannot be read.
        """

    def normalise(self, value: Any) -> Any:
        """``value`` checked against the domain and normalised (no relations to other knobs).

        Raises:
            OutOfBounds: see :meth:`Domain.validate`.
        """
        return self.domain.validate(self.name, value)

    def validate(self, value: Any, *, assume: Mapping[str, Any] | None = None) -> Any:
        """``value`` normalised; never writes.

        ``assume`` gives values other knobs will have (for relations between
        knobs such as ``vm.dirty_background_ratio < vm.dirty_ratio``); other
        knobs are otherwise read from the system.

        Raises:
            OutOfBounds: see :meth:`Domain.validate`, or a relation to another knob fails.
        """
        return self.normalise(value)

    def same(self, a: Any, b: Any) -> bool:
        """Whether two logical values are equal for this knob."""
        if self.domain.kind == "float" and a is not None and b is not None:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-6)
        return a == b

    def plan(self, value: Any) -> Change:
        """The change ``apply(value)`` would make (dry-run); never writes.

        Raises:
            OutOfBounds, ActuatorError.
        """
        new = self.validate(value)
        old = self.read()
        return Change(knob=self.name, old=old, new=new, changes=not self.same(old, new))

    # ---------------------------------------------------------------- changes
    def check_available(self) -> None:
        """Raises:
        KnobUnavailable: :meth:`available` gave a reason.
        """
        reason = self.available()
        if reason is not None:
            raise KnobUnavailable(f"{self.name}: {reason}")

    @abstractmethod
    def prepare(self, value: Any) -> Token:
        """Validate ``value`` and capture what restore needs; never writes.

        Raises:
            OutOfBounds, KnobUnavailable, ActuatorError.
        """

    @abstractmethod
    def commit(self, token: Token) -> None:
        """Write ``token.new``.

        Raises:
            ActuatorError: the write failed.
        """

    def apply(self, value: Any) -> Token:
        """Low level (no journal): validate, capture the old state, write.

        Raises:
            OutOfBounds: before any write.
            KnobUnavailable, ActuatorError.
        """
        token = self.prepare(value)
        self.commit(token)
        return token

    def old_value(self, token: Token) -> Any:
        """The logical value the knob had when ``token`` was prepared (default: read it now)."""
        return self.read()

    @property
    def journal_root(self) -> str | None:
        """The root (``/``, a fake tree) the knob's files are under, as the journal records it; None when
        the knob has no file (process attributes, NIC features)."""
        return None

    @property
    def journal_target(self) -> str | None:
        """The ``target`` its journal records name (a root-relative file); None: records are matched by name."""
        return None

    def verify(self, value: Any) -> bool:
        """Read back and compare with ``value``.

        Raises:
            OutOfBounds: ``value`` itself is invalid.
        """
        want = self.normalise(value)
        try:
            return self.same(self.read(), want)
        except ActuatorError:
            return False

    @abstractmethod
    def restore(self, token: Token) -> None:
        """Put back what ``token`` recorded.

        Raises:
            ActuatorError: the restore failed or does not read back.
        """


class FileKnob(Knob):
    """A knob stored in one file under a :class:`SysRoot` (sysctl, sysfs, cgroupfs)."""

    def __init__(self, *, root: SysRoot, rel: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.root = root
        self.rel = rel

    @property
    def path(self) -> str:
        """Absolute path of the file."""
        return str(self.root.path(self.rel))

    def available(self) -> str | None:
        if not self.root.exists(self.rel):
            return f"{self.path} does not exist on this machine"
        if not self.root.writable(self.rel):
            return f"{self.path} is not writable (needs root)"
        return None

    @abstractmethod
    def parse(self, raw: str) -> Any:
        """Logical value of the raw file content."""

    def format(self, value: Any) -> str:
        """The string written for a (validated) value."""
        return str(value)

    def read(self) -> Any:
        return self._parsed(self.root.read(self.rel))

    def old_value(self, token: Token) -> Any:
        """The value in the raw content ``prepare`` captured (the file is not read again)."""
        return self._parsed(token.old)

    @property
    def journal_root(self) -> str | None:
        return str(self.root.root)

    @property
    def journal_target(self) -> str | None:
        return self.rel

    def _parsed(self, raw: str) -> Any:
        try:
            return self.parse(raw)
        except (ValueError, IndexError) as err:
            raise ActuatorError(f"{self.name}: cannot parse {raw!r} from {self.path}") from err

    def prepare(self, value: Any) -> Token:
        new = self.validate(value)
        self.check_available()
        raw = self.root.read(self.rel)
        return Token(knob=self.name, scope=self.scope, target=self.rel, old=raw, new=self.format(new), value=new)

    def commit(self, token: Token) -> None:
        self.root.write(token.target, token.new)

    def restore(self, token: Token) -> None:
        self.root.restore(token.target, token.old)


class IntFileKnob(FileKnob):
    """A file holding one integer (``60\\n``)."""

    def parse(self, raw: str) -> int:
        return int(raw.split()[0])


class SelectorKnob(FileKnob):
    """A kernel selector file (``none [mq-deadline] kyber bfq``): the bare word is written."""

    def parse(self, raw: str) -> str:
        try:
            return selector_value(raw)
        except ValueError as err:
            raise ActuatorError(str(err)) from None


def selector_choices(root: SysRoot, rel: str) -> tuple[str, ...]:
    """The words of a selector file, brackets removed; ``()`` when it cannot be read."""
    try:
        raw = root.read(rel)
    except ActuatorError:
        return ()
    return selector_words(raw)
