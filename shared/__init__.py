"""Code shared by pivotd, pivot-tui and training scripts."""

__version__ = "0.1.0"
