"""Advisors: pure planners that read facts (plain data from collectors.facts) and return Advice."""
