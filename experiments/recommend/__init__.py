"""The recommendations engine: advice from the advisors, right-sizing and finished studies, ranked."""
