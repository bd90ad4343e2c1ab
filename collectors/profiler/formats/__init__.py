"""Output formats of a :class:`collectors.profiler.model.Profile`, one module per format."""
