"""Backlog loading: the monolithic ``gaps.yaml`` and the ``docs/gaps/`` registry.

Owns the :class:`Gap` record, the ``done`` set and the rules for finding the
default backlog. Only PyYAML's *safe* loaders are used (the C one when built),
so no YAML tag can construct objects or run code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from chump_tui.errors import BacklogError
from chump_tui.gc_pause import gc_paused

# typing.TYPE_CHECKING without importing typing: plain dry-run imports only what it
# runs (mypy treats any TYPE_CHECKING name as true).
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any, Final

    import yaml

KNOWN_FIELDS = ("id", "title", "priority", "effort", "status", "depends_on")

MAX_FILE_BYTES = 32 * 1024 * 1024
"""A backlog file larger than this is refused (the real 543-gap file is under 1 MiB)."""

MAX_EXTRA_NODES = 5000
"""Budget of YAML nodes kept per extra field; bigger values (alias bombs) are dropped."""

TOO_LARGE = "<value too large to keep>"

PARALLEL_MIN_FILES = 400
"""A registry this big is parsed on two cores."""

MAX_FLOW_DEPTH = 512
"""Deeper [ { nesting is refused before parsing: libyaml's C loader recurses and can crash."""

_KEEP_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class Gap:
    """One backlog item. Fields beyond the picker's are kept in ``extra``.

    Immutable (checked by mypy); equal and hashed by every field but ``extra``. A plain
    class, not a dataclass: importing ``dataclasses`` (which imports ``inspect``)
    was 15 ms of a 250 ms plain dry-run (bench/).
    """

    __slots__ = ("depends_on", "effort", "extra", "id", "priority", "source", "status", "title")

    def __init__(self, id: str, title: str = "", priority: str = "", effort: str = "",
                 status: str = "", depends_on: tuple[str, ...] = (),
                 extra: dict[str, Any] | None = None, source: str = "") -> None:
        # Final: mypy refuses any later assignment, as frozen=True did, at no run-time cost.
        self.id: Final = id
        self.title: Final = title
        self.priority: Final = priority
        self.effort: Final = effort
        self.status: Final = status
        self.depends_on: Final = depends_on
        self.extra: Final[dict[str, Any]] = {} if extra is None else extra
        self.source: Final = source

    def _identity(self) -> tuple[str, str, str, str, str, tuple[str, ...], str]:
        return (self.id, self.title, self.priority, self.effort, self.status,
                self.depends_on, self.source)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Gap):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        return (f"Gap(id={self.id!r}, title={self.title!r}, priority={self.priority!r}, "
                f"effort={self.effort!r}, status={self.status!r}, "
                f"depends_on={self.depends_on!r}, source={self.source!r})")

    def text(self, key: str) -> str:
        """A human-readable rendering of an extra field (description, acceptance…)."""
        value = self.extra.get(key)
        if value is None:
            return ""
        if isinstance(value, list):
            return "\n".join(f"- {item}" for item in value)
        return str(value).strip()


class Backlog:
    """The loaded gaps plus the warnings met on the way (skipped files)."""

    def __init__(self, path: Path, gaps: list[Gap], warnings: list[str] | None = None) -> None:
        self.path = path
        self.gaps = gaps
        self.warnings: list[str] = [] if warnings is None else warnings

    def by_id(self) -> dict[str, Gap]:
        return {g.id: g for g in self.gaps}


def done_ids(gaps: Iterable[Gap]) -> set[str]:
    """Ids whose status is exactly ``done`` (the reference's rule)."""
    return {g.id for g in gaps if g.status == "done"}


def default_backlog_path(base: Path) -> Path:
    """``docs/gaps/`` when it holds ``*.yaml`` files, else ``docs/gaps.yaml``."""
    registry = base / "docs" / "gaps"
    if registry.is_dir() and any(registry.glob("*.yaml")):
        return registry
    return base / "docs" / "gaps.yaml"


def load_backlog(path: Path) -> Backlog:
    """Load a monolithic file or a registry directory; raise BacklogError on bad input."""
    with gc_paused():  # thousands of acyclic objects: collections here only cost time
        return _load_backlog(path)


def _load_backlog(path: Path) -> Backlog:
    if path.is_dir():
        return _load_registry(path)
    if not path.exists():
        raise BacklogError(f"{path}: backlog not found (pass --backlog PATH)")
    data = _parse_yaml(path)
    if data is None:
        raise BacklogError(f"{path}: file is empty (expected a mapping with a 'gaps:' list)")
    if not isinstance(data, dict):
        raise BacklogError(
            f"{path}: top level is a {_kind(data)}, expected a mapping with a 'gaps:' list"
        )
    raw_gaps = data.get("gaps")
    if raw_gaps is None:
        raw_gaps = []
    if not isinstance(raw_gaps, list):
        raise BacklogError(f"{path}: 'gaps' is a {_kind(raw_gaps)}, expected a list")
    gaps = [_to_gap(item, path, f"gaps[{i}]") for i, item in enumerate(raw_gaps)]
    _check_unique(gaps)
    return Backlog(path=path, gaps=gaps, warnings=dependency_warnings(gaps))


def _load_registry(directory: Path) -> Backlog:
    try:
        files = sorted(p for p in directory.iterdir() if p.name.endswith(".yaml"))
    except OSError as exc:
        raise BacklogError(f"{directory}: cannot list ({exc.strerror or exc})") from None
    if len(files) >= PARALLEL_MIN_FILES:
        # A big registry is parsed on two cores: the second half in a forked child.
        from chump_tui.forked import ForkedCall

        half = len(files) // 2
        second = ForkedCall(_parse_files, files[half:])
        gaps, warnings = _parse_files(files[:half])
        more_gaps, more_warnings = second.result()
        gaps += more_gaps
        warnings += more_warnings
    else:
        gaps, warnings = _parse_files(files)
    _check_unique(gaps)
    return Backlog(path=directory, gaps=gaps, warnings=warnings + dependency_warnings(gaps))


def _parse_files(files: list[Path]) -> tuple[list[Gap], list[str]]:
    gaps: list[Gap] = []
    warnings: list[str] = []
    for file in files:
        try:
            if not file.is_file():
                raise BacklogError(f"{file}: not a regular file")
            data = _parse_yaml(file)
            if data is None:
                continue
            items = data if isinstance(data, list) else [data]
            for i, item in enumerate(items):
                gaps.append(_to_gap(item, file, f"item {i}"))
        except (BacklogError, OSError) as exc:
            warnings.append(f"skipped {exc}")
    return gaps, warnings


def _safe_loader() -> type[yaml.SafeLoader]:
    # PyYAML is imported here, not at the top: the console parses the backlog in a
    # forked child, and the parent (busy importing Textual) never needs it.
    import yaml

    try:  # the C loader is ~10x faster on the 543-gap file
        return yaml.CSafeLoader  # type: ignore[return-value]
    except AttributeError:  # pragma: no cover - depends on how PyYAML was built
        return yaml.SafeLoader


def _parse_yaml(path: Path) -> Any:
    import yaml

    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise BacklogError(f"{path}: file is {size // (1024 * 1024)} MiB; the limit is "
                               f"{MAX_FILE_BYTES // (1024 * 1024)} MiB")
        raw = path.read_bytes()
    except OSError as exc:
        raise BacklogError(f"{path}: cannot read ({exc.strerror or exc})") from None
    _check_flow_depth(path, raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BacklogError(f"{path}: line {line}: not valid UTF-8 (byte {exc.start})") from None
    try:
        return yaml.load(text, Loader=_safe_loader())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join((exc.problem or exc.context or "invalid YAML").split())
        raise BacklogError(f"{path}: {where}YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:  # e.g. a reader error for a control character
        raise BacklogError(f"{path}: YAML error: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise BacklogError(f"{path}: YAML nested too deeply") from None


def _check_flow_depth(path: Path, raw: bytes) -> None:
    brackets = raw.translate(None, _KEEP_BRACKETS)
    if len(brackets) <= MAX_FLOW_DEPTH:
        return
    depth = 0
    for b in brackets:
        depth += 1 if b in b"[{" else -1
        if depth > MAX_FLOW_DEPTH:
            raise BacklogError(f"{path}: nested more than {MAX_FLOW_DEPTH} levels deep")


def _to_gap(item: Any, path: Path, where: str) -> Gap:
    if not isinstance(item, dict):
        raise BacklogError(f"{path}: {where} is a {_kind(item)}, expected a mapping")
    raw_id = item.get("id")
    if raw_id is None or raw_id == "":
        raise BacklogError(f"{path}: {where} has no 'id'")
    if not isinstance(raw_id, str):
        raise BacklogError(f"{path}: {where} 'id' is a {_kind(raw_id)}, expected a string")
    deps = item.get("depends_on")
    if deps is None:
        deps = []
    if not isinstance(deps, list):
        raise BacklogError(
            f"{path}: gap {raw_id}: 'depends_on' is a {_kind(deps)}, expected a list"
        )
    return Gap(
        id=raw_id,
        title=_scalar(item.get("title")),
        priority=_scalar(item.get("priority")),
        effort=_scalar(item.get("effort")),
        status=_scalar(item.get("status")),
        depends_on=tuple(_scalar(d) for d in deps if d is not None),
        extra={str(k): _bounded(v) for k, v in item.items() if k not in KNOWN_FIELDS},
        source=os.fspath(path),
    )


def _bounded(value: Any) -> Any:
    """The value itself, or a marker when walking it would visit too many nodes.

    Aliases make a YAML document a graph: a few lines can name 10^9 nodes. We count
    visits, not objects, so such a value is caught before anything renders it.
    """
    if not isinstance(value, dict | list):
        return value
    if isinstance(value, list) and len(value) < MAX_EXTRA_NODES and all(
            isinstance(v, str) for v in value):
        return value  # the common case (acceptance criteria): nothing to expand
    budget = [MAX_EXTRA_NODES]

    def fits(node: Any) -> bool:
        budget[0] -= 1
        if budget[0] < 0:
            return False
        if isinstance(node, dict):
            return all(fits(k) and fits(v) for k, v in node.items())
        if isinstance(node, list):
            return all(fits(v) for v in node)
        return True

    return value if fits(value) else TOO_LARGE


def dependency_warnings(gaps: list[Gap]) -> list[str]:
    """Self-dependencies and cycles: such gaps can never be picked, so say why once."""
    by_id = {g.id: g for g in gaps}
    warnings = [f"gap {g.id} depends on itself" for g in gaps if g.id in g.depends_on]
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    reported: set[frozenset[str]] = set()
    for root in by_id:
        if state.get(root):
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = []
        while stack:
            node, index = stack.pop()
            if index == 0:
                state[node] = 1
                path.append(node)
            deps = [d for d in by_id[node].depends_on if d in by_id and d != node]
            if index < len(deps):
                stack.append((node, index + 1))
                nxt = deps[index]
                if state.get(nxt) == 1:
                    cycle = path[path.index(nxt):]
                    if frozenset(cycle) not in reported:
                        reported.add(frozenset(cycle))
                        warnings.append("dependency cycle: " + " -> ".join([*cycle, nxt]))
                elif not state.get(nxt):
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                path.pop()
    return warnings


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return ""


def _check_unique(gaps: list[Gap]) -> None:
    seen: dict[str, Gap] = {}
    for gap in gaps:
        first = seen.get(gap.id)
        if first is not None:
            where = first.source
            if first.source != gap.source:
                where = f"{first.source} and {gap.source}"
            raise BacklogError(f"{where}: duplicate gap id {gap.id!r}")
        seen[gap.id] = gap


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "mapping", list: "list", str: "string", int: "number", float: "number",
            bool: "boolean"}.get(type(value), type(value).__name__)
