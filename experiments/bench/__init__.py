"""The benchmark suite (``novatune bench``, docs/bench.md): suite (what is measured), runners (one per group,
over the workload adapters), netns (the namespace pair of the network benchmark), run (the cgroup, the
scratch directory, the stored document), identity (machine, kernel, knobs), store (``<data dir>/bench/``),
compare (two stored runs through :mod:`optimizer.benchcompare`), tracking (MLflow)."""
