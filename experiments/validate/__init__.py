"""Validated apply: measure, apply, measure again, decide (optimizer.decision), keep or roll back."""
