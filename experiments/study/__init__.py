"""The study loop: a checked spec (:mod:`.plan`), what a run owns (:mod:`.setup`), what to try
(:mod:`.search`), the trials (:mod:`.loop`), measurement (:mod:`.measure`) and reporting
(:mod:`.report`, :mod:`.reports`), run end to end by :class:`StudyRunner`."""

from experiments.study.plan import StudyPlan, prepare
from experiments.study.reports import Interrupted, RestoreFailed, StudyReport, TrialReport
from experiments.study.runner import StudyRunner

__all__ = ["Interrupted", "RestoreFailed", "StudyPlan", "StudyReport", "StudyRunner", "TrialReport", "prepare"]
