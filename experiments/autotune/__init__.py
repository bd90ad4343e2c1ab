"""Continuous tuning (``novatune autotune SPEC``, ``POST /tuning/continuous``): keep a spec's knobs tuned
with periodic small studies in a trust region, validated applies of what wins, drift detection and a
convergence state. See docs/autotune.md and :mod:`experiments.autotune.loop`."""
