"""chump-tui: dispatch a backlog of gaps to parallel AI coding agents and watch them land.

The package root is part of the core and imports nothing heavy: front ends
(plain CLI, self-test, the Textual console under ``chump_tui.tui``) import
what they need themselves.
"""

__version__ = "0.1.0"
