"""The engine stays in rooms a newcomer can read alone: no part grows into another class of
everything (issue 28's sizes), and each part says what it owns."""

from __future__ import annotations

import ast
from pathlib import Path

import chump_tui.engine

ENGINE_DIR = Path(chump_tui.engine.__file__).parent
MAX_FILE_LINES = 400
MAX_CLASS_LINES = 300


def test_every_engine_file_and_class_stays_small() -> None:
    files = sorted(ENGINE_DIR.glob("*.py"))
    assert len(files) >= 8, files
    too_big: list[str] = []
    for path in files:
        source = path.read_text(encoding="utf-8")
        lines = source.count("\n")
        if lines > MAX_FILE_LINES:
            too_big.append(f"{path.name}: {lines} lines")
        tree = ast.parse(source)
        assert ast.get_docstring(tree), f"{path.name} has no docstring saying what it owns"
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_CLASS_LINES:
                    too_big.append(f"{path.name}: class {node.name} {length} lines")
    assert not too_big, too_big
