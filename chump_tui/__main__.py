"""``python -m chump_tui``: same as the ``chump-tui`` console script."""

import sys

from chump_tui.cli import main

sys.exit(main())
