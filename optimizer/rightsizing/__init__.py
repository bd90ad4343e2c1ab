"""Right-sizing and the cost-performance optimizer: pure decisions from usage histories.

:mod:`.model` holds the vocabulary every part shares (a target's usage history, a recommendation
per resource and per target, profiles and findings). Nothing here reads the system: collectors
turn cgroups, traces and Prometheus into :class:`~.model.UsageSeries`; experiments compose.
"""
