"""The session's files on disk: never reached through a symbolic link, never outside it.

A repository's ``sessions/`` directory can be committed by someone else: a link
there (``sessions/chump-tui/lock -> ~/.bashrc``) must not make chump-tui truncate,
overwrite or chmod the target, and a path read back from ``state.json`` must not
name a file outside the session. Directories on the way are refused when they are
links; files are opened with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from chump_tui.errors import ChumpError

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class UnsafePath(ChumpError):
    """A session path is a symbolic link or lies outside the session."""


def real_dir(path: Path, create: bool = True) -> Path:
    """``path`` as a real directory (created 0700 when missing); a link or a file is refused."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return path
        with contextlib.suppress(FileExistsError):  # made by another process meanwhile
            os.mkdir(path, 0o700)
        info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath(f"{path} is a symbolic link; chump-tui keeps its session only in a "
                         "real directory (remove the link)")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(f"{path} is not a directory")
    return path


def session_dirs(repo_root: Path) -> tuple[Path, Path, Path]:
    """``sessions/``, ``sessions/chump-tui/`` and its ``logs/``, each checked and created."""
    sessions = real_dir(repo_root / "sessions")
    own = real_dir(sessions / "chump-tui")
    logs = real_dir(own / "logs")
    return sessions, own, logs


def open_nofollow(path: Path, flags: int, mode: int = 0o600) -> int:
    """``os.open`` that refuses a symbolic link as the last component (ELOOP)."""
    try:
        return os.open(path, flags | NOFOLLOW | CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP and os.path.islink(path):
            raise OSError(exc.errno, "is a symbolic link (not followed)", str(path)) from None
        raise


def is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def inside(path: Path, directory: Path) -> bool:
    """True when ``path`` (links resolved) lies in ``directory`` (links resolved)."""
    try:
        return path.resolve().is_relative_to(directory.resolve())
    except (OSError, RuntimeError):  # a link loop
        return False


def tracked_by_git(repo_root: Path, relative: str) -> bool:
    """Whether git tracks anything under ``relative`` (a repo that commits its sessions/)."""
    import subprocess

    try:
        done = subprocess.run(["git", "-C", str(repo_root), "ls-files", "--", relative],
                              capture_output=True, timeout=10, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


class NotReadable(OSError):
    """A file that is not a regular file, or too big to read."""


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    A FIFO, a device (``/dev/zero``) or a directory is refused without blocking or
    reading (its size would read 0 and slip past a size check); a bigger file is
    refused after reading ``limit + 1`` bytes at most.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise NotReadable(f"is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise NotReadable(f"is {_size(info.st_size)}; the limit is {_size(limit)}")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise NotReadable(f"is over {_size(limit)}, the limit")
    return data


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 else f"{n // 1024} KiB"


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"
