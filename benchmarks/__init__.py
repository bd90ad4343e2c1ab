"""Benchmarks: commands that print a figure (``python benchmarks/<name>.py``); not tests."""
