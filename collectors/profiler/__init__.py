"""The profiler: py-spy (and perf) sampling in windows, one canonical profile model, a store with labels and
retention, output formats (collapsed, speedscope, pprof, SVG/HTML flamegraphs, JSON), hotspots and diffs.

Nothing here imports :mod:`actuators` or :mod:`experiments`; the CLI, the API and the study loop compose it.
"""
