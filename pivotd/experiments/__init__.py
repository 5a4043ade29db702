"""Experiments: groups of runs, and statistical comparison of their metrics."""
