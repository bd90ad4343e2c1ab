"""``novatune recommend`` and ``/recommendations``: collect, rank, remember, accept.

:meth:`Recommendations.collect` asks every source (:mod:`experiments.recommend.sources`), ranks the advice
(:func:`optimizer.advice.rank`: de-duplicated, by expected impact × confidence ÷ risk with the money saved)
and keeps the list in the data directory (``recommendations.json``), so that ``accept ID`` acts on what the
operator saw, not on a re-sampled machine. Accepting one runs the validated apply
(:func:`experiments.validate.engine.validated_apply`) of its knob changes with the operator's spec; a
right-sizing advice goes through the right-sizing workflow (propose, approve, apply, watch: rolled back on
degradation); an advice with only a manual action cannot be accepted (409, the action named).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.errors import NovatuneError
from experiments.settings import Paths, Settings
from optimizer.advice import Advice, Change, Evidence, rank

__all__ = ["NotAcceptable", "RecommendationList", "Recommendations", "UnknownRecommendation"]

_SOURCES = ("advisors", "rightsizing", "studies")


class UnknownRecommendation(NovatuneError, LookupError):
    """No recommendation of that id in the last list (exit 2 / 404)."""

    exit_code = 2
    http_status = 404


class NotAcceptable(NovatuneError):
    """The recommendation cannot be applied by novatune (a manual action, or knobs bound to one target): 409."""

    exit_code = 2
    http_status = 409


@dataclass
class RecommendationList:
    """The ranked advice, when it was collected, from which machine root, and what a source could not say."""

    advice: list[Advice]
    collected: float
    root: str
    notes: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"collected": self.collected, "root": self.root, "notes": self.notes,
                "recommendations": [dict(a.as_dict(), rank=i + 1) for i, a in enumerate(self.advice)]}


def _advice_from(d: dict[str, Any]) -> Advice:
    keys = ("advisor", "title", "why", "metric", "expected_impact", "confidence", "risk", "target", "manual",
            "usd_per_month", "measured")
    return Advice(**{k: d[k] for k in keys if k in d},
                  changes=tuple(Change(**c) for c in d.get("changes", ())),
                  evidence=tuple(Evidence(**e) for e in d.get("evidence", ())),
                  sources=tuple(d.get("sources", ())))


class Recommendations:
    """The recommendations of the data directory ``paths``."""

    def __init__(self, paths: Paths, settings: Settings) -> None:
        self.paths = paths
        self.settings = settings

    @property
    def _file(self) -> Path:
        return self.paths.home / "recommendations.json"

    def collect(self, *, root: str | Path = "/", sources: Sequence[str] = _SOURCES) -> RecommendationList:
        """Ask the sources, rank, remember. ``root``: the machine the advisors read (``/`` or a fixture tree;
        right-sizing and studies always come from the data directory).

        Raises:
            ValueError: an unknown source (the allowed ones named).
        """
        from experiments.recommend import sources as src

        bad = [s for s in sources if s not in _SOURCES]
        if bad:
            raise ValueError(f"unknown source(s) {', '.join(bad)}; allowed: {', '.join(_SOURCES)}")
        ask = {"advisors": lambda: src.advisor_advice(root),
               "rightsizing": lambda: src.rightsizing_advice(self.paths, self.settings),
               "studies": lambda: src.study_advice(self.paths)}
        advice: list[Advice] = []
        notes: list[tuple[str, str]] = []
        for name in _SOURCES:  # in this order, whatever order they were asked in
            if name in sources:
                a, n = ask[name]()
                advice += a
                notes += n
        current = {c.knob: c.current for a in advice for c in a.changes if c.current is not None}
        out = RecommendationList(rank(advice, current=current), time.time(), str(root),
                                 [{"source": s, "note": why} for s, why in notes])
        self._save(out)
        return out

    def _save(self, rl: RecommendationList) -> None:
        from experiments.study.outcomes import write_json_atomic

        self.paths.home.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self._file, rl.as_dict())

    def last(self) -> RecommendationList | None:
        """The list of the last :meth:`collect` (None when there was none)."""
        try:
            d = json.loads(self._file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise NovatuneError(f"cannot read {self._file}: {err}; `novatune recommend` writes it anew") from None
        return RecommendationList([_advice_from(r) for r in d["recommendations"]], d["collected"], d["root"],
                                  d.get("notes", []))

    def get(self, rec_id: str) -> Advice:
        """The recommendation ``rec_id`` of the last list. Raises :class:`UnknownRecommendation`."""
        rl = self.last()
        if rl is None:
            raise UnknownRecommendation(f"no recommendation {rec_id!r}: none collected yet (run `novatune recommend`)")
        for a in rl.advice:
            if a.id == rec_id:
                return a
        ids = ", ".join(a.id for a in rl.advice) or "none"
        raise UnknownRecommendation(f"no recommendation {rec_id!r} in the last list; its ids: {ids}")

    def acceptable(self, advice: Advice, *, root: str) -> None:
        """Raise :class:`NotAcceptable` when novatune cannot apply ``advice`` itself (the reason and what to do)."""
        if root != "/":
            raise NotAcceptable(f"recommendation {advice.id} was collected from the tree {root}, not this machine: "
                                "only a list collected from / can be accepted")
        if not advice.changes:
            raise NotAcceptable(f"recommendation {advice.id} is a manual action: {advice.manual}")
        if advice.advisor != "rightsizing" and advice.target is not None:
            raise NotAcceptable(f"recommendation {advice.id} changes knobs bound to {advice.target}, which a "
                                f"configuration cannot carry; do it by hand: {advice.manual or advice.values}")

    def to_accept(self, rec_id: str) -> Advice:
        """Recommendation ``rec_id`` of the last list, if novatune can apply it here.

        Raises:
            UnknownRecommendation, NotAcceptable.
        """
        rl = self.last()
        advice = self.get(rec_id)
        assert rl is not None  # get() found it in the last list
        self.acceptable(advice, root=rl.root)
        return advice

    def validation_request(self, advice: Advice, *, spec_path: str = "", window_s: float | None = None,
                           max_window_s: float | None = None,
                           guards: tuple[tuple[str, float], ...] = ()) -> Any:
        """The validated apply of ``advice``'s knob changes (:class:`experiments.validate.model.ValidationRequest`)."""
        from experiments.validate.model import ValidationRequest

        return ValidationRequest(values=advice.values, source=f"recommendation {advice.id} ({advice.advisor})",
                                 spec_path=spec_path, window_s=window_s or 600.0, max_window_s=max_window_s,
                                 guards=guards)

    def accept(self, rec_id: str, *, spec_path: str | None, window_s: float | None = None,
               guards: tuple[tuple[str, float], ...] = (), who: str = "novatune",
               stop: threading.Event | None = None, on_event: Any = None) -> dict[str, Any]:
        """Apply recommendation ``rec_id`` with validation, in the foreground; returns the validation report (or,
        for right-sizing, the proposal) as a dict.

        Raises:
            UnknownRecommendation, NotAcceptable; ValueError when a knob advice comes without ``spec_path``;
            whatever the validated apply or the right-sizing workflow raise.
        """
        advice = self.to_accept(rec_id)
        if advice.advisor == "rightsizing":
            p, watch, eng = self.rightsizing_apply(advice, who=who)
            return eng.validate_after_apply(p, watch, duration_s=window_s,
                                            stop=(stop.is_set if stop is not None else None), who=who).to_dict()
        if spec_path is None:
            raise ValueError("accepting a knob change needs a spec whose workload validates it (--validate SPEC)")
        from experiments.validate.engine import validated_apply

        req = self.validation_request(advice, spec_path=spec_path, window_s=window_s, guards=guards)
        return validated_apply(req, paths=self.paths, on_event=on_event, stop=stop).as_dict()

    def rightsizing_apply(self, advice: Advice, *, who: str) -> tuple[Any, Any, Any]:
        """Record, approve and apply the right-sizing proposal of ``advice``'s target; returns the applied
        proposal, the watch to validate it with (its baseline read before the change) and the engine."""
        from experiments.rightsizing import workflow
        from experiments.rightsizing.engine import Rightsizing

        assert advice.target is not None
        eng = Rightsizing(self.paths, self.settings)
        eng.recommendations(target=advice.target, who=who)
        p = eng.proposal(advice.target)
        if p.state == "proposed":
            p = workflow.approve(eng.proposals, p.id, who=who, note=f"accepted recommendation {advice.id}")
        watch = eng.before_change(p)
        p = workflow.apply(eng.proposals, p.id, paths=self.paths, settings=self.settings, who=who,
                           note=f"recommendation {advice.id}")
        return p, watch, eng
