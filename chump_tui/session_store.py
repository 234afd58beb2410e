"""The session on disk: ``sessions/chump-tui/state.json`` and the one-console-per-repo lock.

The rows still in play are written whole, atomically (temp file, fsync, rename, fsync of
the directory), as a numbered generation; between those rewrites each save appends the
rows that changed to that generation's journal (``changes-<N>.jsonl``) and syncs it, so a
save costs what changed, not every live row (a thousand fleet agents made it a megabyte).
A crash leaves the last generation and its journal (a torn last line left out); a journal
of another generation is never read. A settled row (ended, its
reflection written) moves to ``settled.jsonl``, appended once and synced before the
table drops it: hours of continuous mode make thousands of rows, and rewriting them
all on every change grew with the session. Loading merges the two. The file may come from a
repository someone else committed: every record's shape and paths are checked
on load, and nothing is opened through a symbolic link. The lock is an ``flock`` on
``sessions/chump-tui/lock`` holding the owner's pid; the kernel drops it when
the owner dies, so a crashed console never blocks the next one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from chump_tui.dispatch_record import Dispatch
from chump_tui.errors import ChumpError
from chump_tui.outside_text import one_line
from chump_tui.paths import dispatch_paths, unsafe_id_reason
from chump_tui.safe_fs import is_link, open_nofollow, real_dir

STATE_VERSION = 1
MAX_STATE_BYTES = 64 * 1024 * 1024
JOURNAL_MIN_BYTES = 256 * 1024  # a journal grows to this, or the live rows' size, then
                                # state.json is rewritten whole


class SessionBusy(ChumpError):
    def __init__(self, directory: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"{directory}: session held by {who} (another chump-tui in this repo)")
        self.pid = pid


class SessionStore:
    def __init__(self, directory: Path, repo_root: Path | None = None) -> None:
        self.directory = directory
        self.repo_root = repo_root if repo_root is not None else directory.parent.parent
        self.state_path = directory / "state.json"
        self.settled_path = directory / "settled.jsonl"
        self.lock_path = directory / "lock"
        self.log_dir = directory / "logs"
        self._lock_fd: int | None = None
        self._encoded: dict[str, str] = {}  # row key -> its JSON, as last saved
        self._settled: dict[str, str] = {}  # row key -> its JSON, as in settled.jsonl
        self.saves = 0
        self.meta: dict[str, bool] = {}  # the session's switches (continuous), saved with it
        # state.json is rewritten whole now and then (a new generation); between rewrites
        # the rows that change are appended to that generation's journal.
        self._generation = 0
        self._journal_fd: int | None = None
        self._journal_bytes = 0
        self._written_meta: dict[str, bool] | None = None

    @classmethod
    def for_repo(cls, repo_root: Path) -> SessionStore:
        """``<repo>/sessions/chump-tui``; refuses a ``sessions/`` that is a symbolic link."""
        real_dir(repo_root / "sessions")
        return cls(repo_root / "sessions" / "chump-tui", repo_root)

    # ------------------------------------------------------------------ lock
    def acquire(self) -> None:
        """Take the session lock or raise SessionBusy naming the holder."""
        self._ensure_dirs()
        try:
            fd = open_nofollow(self.lock_path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise ChumpError(f"{self.lock_path}: cannot open the session lock "
                             f"({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            text = os.read(fd, 32).decode("ascii", errors="replace").strip()
            os.close(fd)
            raise SessionBusy(self.directory, int(text) if text.isdigit() else None) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        os.fchmod(fd, 0o600)
        self._lock_fd = fd

    def release(self) -> None:
        self._close_journal()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    # ----------------------------------------------------------------- state
    def _ensure_dirs(self) -> None:
        for directory in (self.directory.parent, self.directory, self.log_dir):
            real_dir(directory)

    def save(self, records: list[Dispatch], changed: str | set[str] | None = None) -> None:
        """Write every row; only ``changed`` (a key or keys) is encoded anew (None: all).

        Each row's JSON is kept between saves: hours of continuous mode make thousands of
        rows, and encoding them all on every change starved the console (bench/ soak).
        Settled rows go to settled.jsonl (once per version) and out of the table.
        """
        self._ensure_dirs()
        keys = None if changed is None else {changed} if isinstance(changed, str) \
            else set(changed)
        if keys is None:
            self._encoded.clear()
        else:
            for key in keys:
                self._encoded.pop(key, None)
        rows: list[str] = []
        changed_rows: list[str] = []
        newly_settled: list[tuple[str, str]] = []
        for record in records:
            encoded = self._encoded.get(record.key)
            if encoded is None:
                encoded = self._encoded[record.key] = json.dumps(record.to_json(),
                                                                 separators=(",", ":"))
            if not settled(record):
                rows.append(encoded)
                if keys is not None and record.key in keys:
                    changed_rows.append(encoded)
            elif self._settled.get(record.key) != encoded:
                newly_settled.append((record.key, encoded))
        if newly_settled:  # synced before the table drops them: a row is always somewhere
            self._append_settled(newly_settled)
        size = sum(len(row) + 1 for row in changed_rows)
        if keys is not None and self._journal_fd is not None \
                and self.meta == self._written_meta \
                and self._journal_bytes + size <= max(JOURNAL_MIN_BYTES,
                                                      sum(len(row) for row in rows)):
            if changed_rows:
                self._append_journal(changed_rows)
        else:
            self._rewrite(rows)
        self.saves += 1

    def _journal_path(self, generation: int) -> Path:
        return self.directory / f"changes-{generation}.jsonl"

    def _rewrite(self, rows: list[str]) -> None:
        """The live rows written whole as the next generation of state.json, with an empty
        journal of that generation beside it (the old one is then obsolete: a load reads
        only its state's journal)."""
        generation = self._generation + 1
        self._close_journal()
        journal = self._journal_path(generation)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(journal)  # a leftover (or a planted link): never written through
        journal_fd = open_nofollow(journal, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND)
        head = json.dumps({"version": STATE_VERSION, "saved_at": time.time(),
                           "pid": os.getpid(), "generation": generation, **self.meta},
                          separators=(",", ":"))
        text = f'{head[:-1]},"dispatches":[{",".join(rows)}]}}'
        tmp = self.state_path.with_name(f".state.{os.getpid()}.tmp")
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.state_path)  # replaces a link itself, never its target
            dir_fd = os.open(self.directory, os.O_RDONLY)  # both names, at once
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            os.close(journal_fd)
            raise
        for _, stale in self._journals():
            if stale != journal:
                with contextlib.suppress(OSError):
                    stale.unlink()
        self._generation = generation
        self._journal_fd = journal_fd
        self._journal_bytes = 0
        self._written_meta = dict(self.meta)

    def _append_journal(self, rows: list[str]) -> None:
        """Changed live rows appended and synced: a save costs the rows that changed, not
        every live row (a thousand fleet agents made each save a megabyte). A failed append
        is cut off and the next save rewrites the state whole."""
        fd = self._journal_fd
        assert fd is not None
        data = "".join(f"{row}\n" for row in rows).encode("utf-8")
        try:
            _append_synced(fd, data, self._journal_bytes)
        except OSError:
            self._close_journal()
            raise
        self._journal_bytes += len(data)

    def _append_settled(self, rows: list[tuple[str, str]]) -> None:
        fd = open_nofollow(self.settled_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            data = "".join(f"{encoded}\n" for _, encoded in rows).encode("utf-8")
            _append_synced(fd, data, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        self._settled.update(rows)

    def load(self, read_only: bool = False) -> tuple[list[Dispatch], list[str]]:
        """The saved rows and warnings.

        A file of the wrong shape is set aside whole (``state.corrupt-<time>.json``); a
        record naming a log or worktree outside this session is refused and the original
        file kept as ``state.refused-<time>.json`` (``settled.*`` for settled.jsonl, whose
        last line may also be cut by a crash mid-append: it is left out). ``read_only``
        (another console's session) reads and moves nothing.
        """
        live, warnings = self._load_table(read_only)
        settled_rows, more = self._load_settled(read_only)
        warnings += more
        if not settled_rows:
            return live, warnings
        by_key = {row.key: row for row in live}
        by_key.update((row.key, row) for row in settled_rows)  # the later of the two
        return sorted(by_key.values(), key=lambda r: (r.started_at, r.attempt)), warnings

    def _read_or_set_aside(self, path: Path, read_only: bool) -> tuple[str | None, list[str]]:
        """The file's text; None when it is absent, or unreadable (then set aside, unless
        ``read_only``, with a warning)."""
        try:
            return self._read(path), []
        except FileNotFoundError:
            return None, []
        except OSError as exc:
            if read_only:
                return None, []
            return None, [self._set_aside(path, "corrupt", exc.strerror or str(exc))]

    def _load_table(self, read_only: bool) -> tuple[list[Dispatch], list[str]]:
        raw, warnings = self._read_or_set_aside(self.state_path, read_only)
        if raw is None:
            return [], warnings
        try:
            data: Any = json.loads(raw)
            if not isinstance(data, dict) or not isinstance(data.get("dispatches"), list):
                raise ValueError("expected an object with a 'dispatches' list")
        except (ValueError, TypeError, RecursionError) as exc:
            if read_only:
                return [], []
            return [], [self._set_aside(self.state_path, "corrupt", f"unreadable ({exc})")]
        self.meta = {k: data[k] for k in ("continuous",) if isinstance(data.get(k), bool)}
        generation = data.get("generation")
        self._generation = generation if isinstance(generation, int) \
            and not isinstance(generation, bool) and 0 <= generation < 2**53 else 0
        rows, unusable = _rows(enumerate(data["dispatches"], 1))
        if unusable and not rows:  # not one usable row: a corrupt file, set aside whole
            if read_only:
                return [], []
            return [], [self._set_aside(self.state_path, "corrupt",
                                        f"unreadable ({unusable[0]})")]
        kept, warnings = self._kept(self.state_path, rows, raw, read_only, unusable)
        # The rows changed since, from this generation's journal (a later line wins).
        changes, more = self._load_jsonl(self._journal_path(self._generation), read_only)
        by_key = {row.key: row for row in kept}
        by_key.update((row.key, row) for row in changes)
        return list(by_key.values()), warnings + more

    def _load_settled(self, read_only: bool) -> tuple[list[Dispatch], list[str]]:
        kept, warnings = self._load_jsonl(self.settled_path, read_only)
        self._settled = {row.key: json.dumps(row.to_json(), separators=(",", ":"))
                         for row in kept}
        return kept, warnings

    def _load_jsonl(self, path: Path, read_only: bool) -> tuple[list[Dispatch], list[str]]:
        """The rows of an append-only file, a later version of a row in place of the
        earlier; its last line left out when a crash cut it short."""
        raw, warnings = self._read_or_set_aside(path, read_only)
        if raw is None:
            return [], warnings
        lines = raw.split("\n")
        if lines[-1]:  # no newline after it: an append a crash cut short
            lines[-1] = ""
            if not read_only:  # cut it off, or the next append would bury it mid-file
                self._cut_torn_line(path)
        parsed: list[tuple[int, object]] = []
        unusable: list[str] = []
        for number, line in enumerate(lines[:-1], 1):
            try:
                parsed.append((number, json.loads(line)))
            except (ValueError, RecursionError) as exc:
                unusable.append(f"line {number}: not a JSON row ({_short(exc)})")
        found, more = _rows(parsed, "line")
        unusable += more
        if unusable and not found:
            if read_only:
                return [], []
            return [], [self._set_aside(path, "corrupt", f"unreadable ({unusable[0]})")]
        rows: dict[str, Dispatch] = {}
        for row in found:
            rows.pop(row.key, None)  # a later version of a row comes last
            rows[row.key] = row
        return self._kept(path, list(rows.values()), raw, read_only, unusable)

    def _kept(self, path: Path, rows: list[Dispatch], raw: str, read_only: bool,
              unusable: list[str] | None = None) -> tuple[list[Dispatch], list[str]]:
        """The rows that may be used; one warning per row set aside (unusable values, or
        paths outside the session), and the file as it was kept beside it."""
        kept: list[Dispatch] = []
        refused = list(unusable or ())
        for row in rows:
            why = self._outside_reason(row)
            if why is None:
                kept.append(row)
            else:
                refused.append(f"dispatch {row.key}: {why}")
        if not refused:
            return kept, []
        warnings = [f"{path}: refused {r}" for r in refused]
        if not read_only:
            warnings.append(self._copy_aside(path, "refused", raw))
        return kept, warnings

    def _cut_torn_line(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            fd = open_nofollow(path, os.O_RDWR)
            try:
                size = os.fstat(fd).st_size
                start = max(0, size - 1024 * 1024)  # a row is far shorter than this
                tail = os.pread(fd, size - start, start)
                os.ftruncate(fd, start + tail.rfind(b"\n") + 1)
                os.fsync(fd)
            finally:
                os.close(fd)

    def _read(self, path: Path) -> str:
        fd = open_nofollow(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise OSError(0, "not a regular file")
            data = fh.read(MAX_STATE_BYTES + 1)
        if len(data) > MAX_STATE_BYTES:
            raise OSError(0, f"larger than {MAX_STATE_BYTES // (1024 * 1024)} MiB")
        return data.decode("utf-8", errors="replace")

    def _outside_reason(self, row: Dispatch) -> str | None:
        """Why a row's paths cannot be trusted, or None: logs live in our logs dir, worktrees
        exactly where the dispatch rule puts them."""
        if row.log_path:
            log = Path(os.path.normpath(row.log_path))
            if log.parent != self.log_dir or is_link(log):
                return f"log {row.log_path!r} is not in {self.log_dir}"
        if row.worktree:
            if unsafe_id_reason(row.gap_id) is not None:
                return f"gap id {row.gap_id!r} is not usable as a path"
            expected, branch = dispatch_paths(self.repo_root, row.gap_id)
            if Path(os.path.normpath(row.worktree)) != expected or row.branch != branch:
                return f"worktree {row.worktree!r} is not {expected}"
        if row.key.partition("#")[0] != row.gap_id:
            return f"key {row.key!r} does not name gap {row.gap_id!r}"
        return None

    def _set_aside(self, path: Path, kind: str, why: str) -> str:
        aside = _aside_name(path, kind)
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        return f"{path}: {why}; moved to {aside.name}"

    def _copy_aside(self, path: Path, kind: str, raw: str) -> str:
        aside = _aside_name(path, kind)
        try:
            fd = open_nofollow(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(raw)
        except OSError as exc:
            return f"{path}: could not keep a copy ({exc.strerror or exc})"
        return f"{path}: the file as it was is kept as {aside.name}"

    def archive(self) -> Path | None:
        """Move a finished session's table (and its settled rows) aside so the next run
        starts a fresh one."""
        if not os.path.lexists(self.state_path) and not os.path.lexists(self.settled_path):
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.state_path.with_name(f"state-{stamp}.json")
        if os.path.lexists(self.state_path):
            os.replace(self.state_path, target)
        if os.path.lexists(self.settled_path):
            os.replace(self.settled_path, self.settled_path.with_name(f"settled-{stamp}.jsonl"))
        for generation, journal in self._journals():  # its journal goes with it
            os.replace(journal, journal.with_name(f"changes-{stamp}-{generation}.jsonl"))
        self._close_journal()  # the next save starts the next session's state
        self._settled.clear()
        return target

    def _journals(self) -> list[tuple[int, Path]]:
        """(generation, path) of each journal of the session in place."""
        found = []
        for path in self.directory.glob("changes-*.jsonl"):
            generation = path.stem.removeprefix("changes-")
            if generation.isdigit() and not path.is_symlink():
                found.append((int(generation), path))
        return found

    def _close_journal(self) -> None:
        if self._journal_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._journal_fd)
            self._journal_fd = None


    def bring_back_last(self) -> bool:
        """With no session in place, put the last archived one back (a follow-up goes on
        with a finished session); whether one came back."""
        if os.path.lexists(self.state_path) or os.path.lexists(self.settled_path):
            return False
        archived = sorted(p for p in self.directory.glob("state-*.json")
                          if p.is_file() and not p.is_symlink())
        if not archived:
            return False
        stamp = archived[-1].name.removeprefix("state-").removesuffix(".json")
        os.replace(archived[-1], self.state_path)
        settled_rows = self.directory / f"settled-{stamp}.jsonl"
        if settled_rows.is_file() and not settled_rows.is_symlink():
            os.replace(settled_rows, self.settled_path)
        for journal in self.directory.glob(f"changes-{stamp}-*.jsonl"):
            generation = journal.stem.removeprefix(f"changes-{stamp}-")
            if generation.isdigit() and journal.is_file() and not journal.is_symlink():
                os.replace(journal, self._journal_path(int(generation)))
        return True


def _append_synced(fd: int, data: bytes, size: int) -> None:
    """Append ``data`` to a file now ``size`` bytes long and sync it; on failure the file
    is cut back to ``size`` (no half row for the next append to bury) and OSError raised."""
    try:
        if os.write(fd, data) != len(data):
            raise OSError(errno.ENOSPC, "short write")
        os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise


def settled(record: Dispatch) -> bool:
    """Nothing more will happen to it: ended, and its reflection written (if it has one)."""
    return not record.active and (record.outcome is None or record.reflection_written)


def _rows(items: Iterable[tuple[int, object]], what: str = "row") -> tuple[list[Dispatch],
                                                                          list[str]]:
    """Rows rebuilt from JSON values, and one line per value that is not a usable row (the
    rest load: one bad number never costs the whole table)."""
    rows: list[Dispatch] = []
    unusable: list[str] = []
    for number, item in items:
        try:
            rows.append(Dispatch.from_json(item))
        except (ValueError, TypeError, RecursionError) as exc:
            key = item.get("key") if isinstance(item, dict) else None
            name = f" ({one_line(key, 60)})" if isinstance(key, str) else ""
            unusable.append(f"{what} {number}{name}: {_short(exc)}")
    return rows, unusable


def _short(exc: BaseException) -> str:
    return one_line(str(exc), 160)


def _aside_name(path: Path, kind: str) -> Path:
    """``state.json`` -> ``state.<kind>-<time>.json`` (the same for settled.jsonl)."""
    return path.with_name(f"{path.stem}.{kind}-{int(time.time())}{path.suffix}")


def needs_resume(records: list[Dispatch]) -> bool:
    """A session is resumed while any agent may still run or any reflection is unwritten."""
    return any(r.active or (r.outcome is not None and not r.reflection_written) for r in records)
