"""Usage history of running targets for right-sizing: live sampling of cgroups, systemd units and
processes, the downsampled store, and imports (CSV traces, Prometheus range queries)."""
