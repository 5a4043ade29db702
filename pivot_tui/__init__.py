"""pivot-tui: the terminal client for pivotd."""
