"""Studies: the spec checked once (:mod:`.prepare`), what a run owns (:mod:`.setup`), what to try
(:mod:`.search`, over the search space of :mod:`.resolve`), the trials (:mod:`.loop`), measurement
(:mod:`.measure`), reporting (:mod:`.reporting`: status, MLflow through :mod:`.tracking`, :mod:`.plots`),
run end to end by :class:`~experiments.study.runner.StudyRunner`; the outcomes (:mod:`.outcomes`); stored
studies as the faces read them (:mod:`.results`); background studies (:mod:`.manager`, :mod:`.worker`).

Nothing is imported here: ``experiments.study.manager`` and ``.results`` are read by the service on
every request and must not pull in the trial loop.
"""
