"""Refresh screenshots/ from the snapshot tests' SVGs (run after `./dev test --snapshot-update`).

PNG copies are rendered when cairosvg is importable (it is not a project dependency).
"""

from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).parent
SNAPSHOTS = HERE.parent / "tests" / "__snapshots__" / "test_tui_snapshots"
PICKS = {
    "backlog": "test_backlog_detail_of_blocked_gap.svg",
    "dispatch": "test_dispatch_confirmation.svg",
    "monitor": "test_monitor_every_state.svg",
    "summary": "test_summary.svg",
}

for name, source in PICKS.items():
    target = HERE / f"{name}.svg"
    shutil.copyfile(SNAPSHOTS / source, target)
    try:
        import cairosvg  # type: ignore[import-not-found]
    except ImportError:
        continue
    cairosvg.svg2png(url=str(target), write_to=str(HERE / f"{name}.png"), output_width=1600)
print("screenshots refreshed")
