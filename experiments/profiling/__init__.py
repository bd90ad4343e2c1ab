"""The profiler's faces' shared logic: outputs (one dispatch per format, a profile from an id or a file),
sessions (one-off recordings and continuous watches, stored as they complete) for the CLI and the API."""
