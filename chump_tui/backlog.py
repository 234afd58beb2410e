"""Backlog loading: the monolithic ``gaps.yaml`` and the ``docs/gaps/`` registry.

Owns the :class:`Gap` record, the ``done`` set and the rules for finding the
default backlog. Only PyYAML's *safe* loaders are used (the C one when built),
so no YAML tag can construct objects or run code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from chump_tui.errors import BacklogError
from chump_tui.gc_pause import gc_paused
from chump_tui.safe_fs import inside, read_regular_file

# typing.TYPE_CHECKING without importing typing: plain dry-run imports only what it
# runs (mypy treats any TYPE_CHECKING name as true).
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any, Final


KNOWN_FIELDS = ("id", "title", "priority", "effort", "status", "depends_on")

MAX_FILE_BYTES = 32 * 1024 * 1024
"""A backlog file larger than this is refused (the real 543-gap file is under 1 MiB)."""

MAX_EXTRA_NODES = 5000
"""Budget of YAML nodes kept per extra field; bigger values (alias bombs) are dropped."""

TOO_LARGE = "<value too large to keep>"

MAX_EXTRA_DEPTH = 64
"""Nesting kept in an extra field; deeper values are dropped (rendering them would recurse)."""

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

    __slots__ = ("depends_on", "effort", "extra", "id", "line", "priority", "source", "status",
                 "title")

    def __init__(self, id: str, title: str = "", priority: str = "", effort: str = "",
                 status: str = "", depends_on: tuple[str, ...] = (),
                 extra: dict[str, Any] | None = None, source: str = "", line: int = 0) -> None:
        # Final: mypy refuses any later assignment, as frozen=True did, at no run-time cost.
        self.id: Final = id
        self.title: Final = title
        self.priority: Final = priority
        self.effort: Final = effort
        self.status: Final = status
        self.depends_on: Final = depends_on
        self.extra: Final[dict[str, Any]] = {} if extra is None else extra
        self.source: Final = source
        self.line: Final = line  # of its id in a monolithic file (0: unknown)

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
        self.unusable = unusable_ids(gaps)
        """Ids never dispatched (duplicates, ids sharing a worktree), with the reason."""

    def by_id(self) -> dict[str, Gap]:
        return {g.id: g for g in self.gaps}


def done_ids(gaps: Iterable[Gap]) -> set[str]:
    """Ids whose status is exactly ``done`` (the reference's rule); a duplicated id counts
    only when every copy is done."""
    done: set[str] = set()
    not_done: set[str] = set()
    for g in gaps:
        (done if g.status == "done" else not_done).add(g.id)
    return done - not_done


def unusable_ids(gaps: Iterable[Gap]) -> dict[str, str]:
    """Ids that must never be dispatched, with why: an id given twice (upstream backlogs have
    had them), or ids that become the same worktree and branch (``X_1`` and ``x-1``)."""
    from chump_tui.paths import slug

    copies: dict[str, list[Gap]] = {}
    for g in gaps:
        copies.setdefault(g.id, []).append(g)
    out = {gap_id: f"duplicate id ({_where(found)})"
           for gap_id, found in copies.items() if len(found) > 1}
    by_slug: dict[str, list[str]] = {}
    for gap_id in copies:
        by_slug.setdefault(slug(gap_id), []).append(gap_id)
    for ids in by_slug.values():
        if len(ids) > 1:
            for gap_id in ids:
                others = ", ".join(i for i in ids if i != gap_id)
                out.setdefault(gap_id, f"same worktree and branch as {others} "
                                       f"({_where([copies[i][0] for i in ids])})")
    return out


def _where(gaps: list[Gap]) -> str:
    """``lines 514, 773`` in one file, else the files (a registry dir)."""
    if len({g.source for g in gaps}) == 1 and all(g.line for g in gaps):
        return "lines " + ", ".join(str(g.line) for g in gaps)
    return " and ".join(Path(g.source).name or "?" for g in gaps)


def duplicate_warnings(unusable: dict[str, str]) -> list[str]:
    return [f"gap {gap_id}: {why}; it is never dispatched" for gap_id, why in unusable.items()]


def default_backlog_path(base: Path) -> Path:
    """``docs/gaps/`` when it holds ``*.yaml`` files, else ``docs/gaps.yaml``.

    The repository's own backlog may not be a link out of it (pass --backlog to read one
    on purpose): BacklogError otherwise.
    """
    registry = base / "docs" / "gaps"
    path = registry if registry.is_dir() and any(registry.glob("*.yaml")) else \
        base / "docs" / "gaps.yaml"
    if os.path.lexists(path) and not inside(path, base):
        raise BacklogError(f"{path}: links out of the repository; not read "
                           "(pass --backlog PATH to use it on purpose)")
    return path


def load_backlog(path: Path) -> Backlog:
    """Load a monolithic file or a registry directory; raise BacklogError on bad input."""
    with gc_paused():  # thousands of acyclic objects: collections here only cost time
        return _load_backlog(path)


def _load_backlog(path: Path) -> Backlog:
    if path.is_dir():
        return _load_registry(path)
    data, text, notes = _parse_yaml(path)
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
    # Line numbers name a duplicate's copies; found only when some id could collide.
    ids = [item.get("id") for item in raw_gaps if isinstance(item, dict)]
    slugs = {str(i).lower().replace("_", "-") for i in ids}
    lines = id_lines(text) if len(slugs) != len(ids) else None
    gaps = [_to_gap(item, path, f"gaps[{i}]", lines) for i, item in enumerate(raw_gaps)]
    backlog = Backlog(path=path, gaps=gaps)
    backlog.warnings = (notes + duplicate_warnings(backlog.unusable)
                        + dependency_warnings(gaps))
    return backlog


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
    backlog = Backlog(path=directory, gaps=gaps)
    backlog.warnings = (warnings + duplicate_warnings(backlog.unusable)
                        + dependency_warnings(gaps))
    return backlog


def _parse_files(files: list[Path]) -> tuple[list[Gap], list[str]]:
    gaps: list[Gap] = []
    warnings: list[str] = []
    for file in files:
        try:
            if not inside(file, file.parent):
                raise BacklogError(f"{file}: links out of {file.parent}; not read")
            data, _text, notes = _parse_yaml(file)
            warnings += notes
            if data is None:
                continue
            items = data if isinstance(data, list) else [data]
            for i, item in enumerate(items):
                gaps.append(_to_gap(item, file, f"item {i}"))
        except (BacklogError, OSError, RecursionError) as exc:
            warnings.append(f"skipped {exc}" if not isinstance(exc, RecursionError)
                            else f"skipped {file}: nested too deeply")
    return gaps, warnings


def _loader_class() -> type[Any]:
    """PyYAML's safe loader (the C one when built), noting keys given twice in a mapping.

    PyYAML is imported here, not at the top: the console parses the backlog in a forked
    child, and the parent (busy importing Textual) never needs it.
    """
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is ~10x faster

    class Loader(base):  # type: ignore[valid-type,misc]
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.repeated: list[str] = []

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            keys = [k.value for k, _v in node.value]
            if len(set(map(str, keys))) != len(keys):  # rare: only then look closer
                self.note_repeated(node)
            return super().construct_mapping(node, deep)

        def note_repeated(self, node: Any) -> None:
            seen: dict[str, int] = {}
            for key_node, _value in node.value:
                key = getattr(key_node, "value", None)
                if isinstance(key, str) and key != "<<":
                    line = key_node.start_mark.line + 1
                    if key in seen:
                        self.repeated.append(f"line {line}: key {key!r} given twice in one "
                                             f"mapping (lines {seen[key]} and {line}); the "
                                             "last one is used")
                    seen.setdefault(key, line)

    _LOADER = Loader
    return Loader


_LOADER: type[Any] | None = None


def _parse_yaml(path: Path) -> tuple[Any, str, list[str]]:
    """(the document, its text, notes naming keys given twice) or BacklogError."""
    import yaml

    try:
        raw = read_regular_file(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        raise BacklogError(f"{path}: backlog not found (pass --backlog PATH)") from None
    except OSError as exc:
        raise BacklogError(f"{path}: cannot read ({exc.strerror or exc})") from None
    _check_flow_depth(path, raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BacklogError(f"{path}: line {line}: not valid UTF-8 (byte {exc.start})") from None
    loader = _loader_class()(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join((exc.problem or exc.context or "invalid YAML").split())
        raise BacklogError(f"{path}: {where}YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:  # e.g. a reader error for a control character
        raise BacklogError(f"{path}: YAML error: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise BacklogError(f"{path}: YAML nested too deeply") from None
    finally:
        loader.dispose()
    return data, text, [f"{path}: {note}" for note in loader.repeated]


_ID_LINE = re.compile(r"""^[ \t]*(?:-[ \t]*)?\{?[ \t]*id:[ \t]*["']?([^"',}#\s]+)""", re.M)


def id_lines(text: str) -> dict[str, list[int]]:
    """Line numbers of ``id:`` keys by value, in order (to name a duplicate's copies)."""
    found: dict[str, list[int]] = {}
    line, counted = 1, 0
    for match in _ID_LINE.finditer(text):
        line += text.count("\n", counted, match.start())  # only since the previous match
        counted = match.start()
        found.setdefault(match.group(1), []).append(line)
    return found


def _check_flow_depth(path: Path, raw: bytes) -> None:
    brackets = raw.translate(None, _KEEP_BRACKETS)
    if len(brackets) <= MAX_FLOW_DEPTH:
        return
    depth = 0
    for b in brackets:
        depth += 1 if b in b"[{" else -1
        if depth > MAX_FLOW_DEPTH:
            raise BacklogError(f"{path}: nested more than {MAX_FLOW_DEPTH} levels deep")


def _to_gap(item: Any, path: Path, where: str,
            lines: dict[str, list[int]] | None = None) -> Gap:
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
        line=lines[raw_id].pop(0) if lines and lines.get(raw_id) else 0,
    )


def _bounded(value: Any) -> Any:
    """The value itself, or a marker when walking it would visit too many nodes or go too deep.

    Aliases make a YAML document a graph: a few lines can name 10^9 nodes. We count
    visits, not objects, so such a value is caught before anything renders it. The walk
    is a loop, not recursion: a value nested hundreds deep is refused, never a crash.
    """
    if not isinstance(value, dict | list):
        return value
    if isinstance(value, list) and len(value) < MAX_EXTRA_NODES and all(
            isinstance(v, str) for v in value):
        return value  # the common case (acceptance criteria): nothing to expand
    budget = MAX_EXTRA_NODES
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0 or depth > MAX_EXTRA_DEPTH:
            return TOO_LARGE
        if isinstance(node, dict):
            for k, v in node.items():
                stack.append((k, depth + 1))
                stack.append((v, depth + 1))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return value


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


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "mapping", list: "list", str: "string", int: "number", float: "number",
            bool: "boolean"}.get(type(value), type(value).__name__)
