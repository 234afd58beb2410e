"""``chump-tui serve``: the console in a browser (textual-serve), behind a token."""
