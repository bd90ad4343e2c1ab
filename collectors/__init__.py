"""novatune collectors package."""
