"""novatune experiments package."""
