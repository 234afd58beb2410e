"""Who is who on the fleet: ed25519 identities (NATS nkeys), signatures and trust lists.

Every console and worker has one identity: an nkey seed (``SU…``), the same key NATS
uses to log in with nkey authentication, kept in a 0600 file (``chump-tui fleet init``
writes one per role; a process without one makes its own in its session directory). Its
public key (``U…``, 56 characters) is what others trust. Every request and report is
signed with it (``sign``) and checked by whoever obeys it (``verify``), whatever the
broker's own configuration: a shared broker may be configured by someone else.

A trust list is a set of public keys, read from ``--trust-console`` / ``--trust-worker``
values (a key, or a file of keys: a bare key there is a console's or a worker's key) and
``$CHUMP_FLEET_TRUST``. A trust file line is a key, optionally after a role and a name
(``worker buildbox-1 UABC…``); ``#`` starts a comment. Files are re-read when they change.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nacl.exceptions
import nacl.signing
import nkeys

from chump_tui.errors import ChumpError
from chump_tui.safe_fs import open_nofollow

PUBLIC_KEY = re.compile(r"U[A-Z2-7]{55}")
SEED = re.compile(r"SU[A-Z2-7]{56}")
MAX_KEY_FILE_BYTES = 64 * 1024
ROLES = ("console", "worker", "agent")


class IdentityError(ChumpError):
    """A key or trust file that cannot be used: one line naming it."""


@dataclass(frozen=True)
class Identity:
    """A signing key (an nkey user seed) and its public key."""

    seed: str = field(repr=False)
    public_key: str
    path: Path | None = None

    def sign(self, data: bytes) -> bytes:
        keys = nkeys.from_seed(self.seed.encode())
        try:
            return bytes(keys.sign(data))
        finally:
            keys.wipe()

    def sign_b64(self, data: bytes) -> str:
        return base64.b64encode(self.sign(data)).decode("ascii")


def new_seed() -> str:
    """A fresh nkey user seed."""
    seed: bytes = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    return seed.decode("ascii")


def from_seed(seed: str, path: Path | None = None) -> Identity:
    try:
        keys = nkeys.from_seed(seed.encode())
        public = keys.public_key.decode("ascii")
        keys.wipe()
    except (nkeys.NkeysError, ValueError, TypeError) as exc:
        where = f"{path}: " if path else ""
        raise IdentityError(f"{where}not a NATS user nkey seed ({type(exc).__name__})") from None
    if not PUBLIC_KEY.fullmatch(public):
        raise IdentityError(f"{path or 'seed'}: not a user key (its public key is not U…)")
    return Identity(seed, public, path)


def _read_text(path: Path, missing: str) -> str:
    """A small file's text; IdentityError naming the file (``missing`` when it is not there)."""
    try:
        return _read_small(path).decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise IdentityError(f"{path}: {missing}") from None
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read ({exc.strerror or exc})") from None


def load_identity(path: Path) -> Identity:
    """The seed in an nkey seed file (``SU…``) or a ``.creds`` file (JWT + seed)."""
    text = _read_text(path, "NATS credentials file not found")
    found = SEED.findall(text)
    if not found:
        raise IdentityError(f"{path}: no NATS user seed (SU…) in it")
    return from_seed(found[0], path)


def write_seed(path: Path, seed: str) -> None:
    """A seed file, 0600, written whole (temp file, rename); never through a link."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(seed + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def own_identity(path: Path) -> Identity:
    """The identity in ``path``, made there (0600) the first time."""
    if not os.path.lexists(path):
        write_seed(path, new_seed())
    return load_identity(path)


def verify(public_key: str, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s over ``data``; never raises."""
    raw = public_key_bytes(public_key)
    if raw is None:
        return False
    try:
        nacl.signing.VerifyKey(raw).verify(data, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError,
            TypeError):
        return False
    return True


def verify_b64(public_key: str, data: bytes, signature_b64: str) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (ValueError, TypeError):
        return False
    return len(signature) == 64 and verify(public_key, data, signature)


def public_key_bytes(public_key: str) -> bytes | None:
    """The 32 raw bytes of a ``U…`` key (its prefix and checksum checked), else None."""
    if not isinstance(public_key, str) or not PUBLIC_KEY.fullmatch(public_key):
        return None
    try:
        raw = base64.b32decode(public_key + "=" * (-len(public_key) % 8))
    except ValueError:
        return None
    if len(raw) != 35 or raw[0] != nkeys.PREFIX_BYTE_USER:
        return None
    if int.from_bytes(raw[33:], "little") != nkeys.crc16(bytearray(raw[:33])):
        return None
    return raw[1:33]


@dataclass(frozen=True)
class TrustEntry:
    key: str
    role: str = ""  # "" : any role
    name: str = ""  # "" : any name
    source: Path | None = None  # the trust file it came from (re-read when it changes)


class TrustList:
    """Public keys this process obeys (a worker: consoles) or believes (a console: workers)."""

    def __init__(self, entries: Iterable[TrustEntry] = (), sources: Iterable[str] = ()) -> None:
        self.entries = list(entries)
        self.sources = list(sources)
        self._files: dict[Path, float] = {}  # a file read, and its mtime then
        self._roles: dict[Path, str] = {}  # the role its lines without one get

    def __bool__(self) -> bool:
        return bool(self.entries)

    def keys(self, role: str) -> set[str]:
        return {e.key for e in self.entries if e.role in ("", role)}

    def trusts(self, key: str, role: str, name: str = "") -> bool:
        """Whether ``key`` is trusted as a ``role`` (as member ``name``, when given: an entry
        that names a member speaks for that name only)."""
        return any(e.key == key and e.role in ("", role) and (not name or e.name in ("", name))
                   for e in self.entries)

    def has_role(self, role: str) -> bool:
        """Whether any entry names ``role`` itself (not an entry for any role)."""
        return any(e.role == role for e in self.entries)

    def add(self, values: Iterable[str], role: str = "") -> TrustList:
        """Keys and files, as given (``--trust-console``, ``$CHUMP_FLEET_TRUST``: a comma
        or whitespace list of keys and paths); a bare key, or a file line without a role,
        gets ``role``. IdentityError naming a bad one."""
        for value in values:
            for item in re.split(r"[,\s]+", value.strip()):
                if item:
                    self._add(item, role)
        return self

    def _add(self, item: str, role: str) -> None:
        if PUBLIC_KEY.fullmatch(item):
            if public_key_bytes(item) is None:
                raise IdentityError(f"{item[:12]}…: not a valid public key (checksum)")
            self.entries.append(TrustEntry(item, role))
            self.sources.append(item)
            return
        path = Path(item).expanduser()
        self.entries += read_trust_file(path, role)
        self.sources.append(str(path))
        self._roles[path] = role
        with contextlib.suppress(OSError):
            self._files[path] = path.stat().st_mtime

    def reload_if_changed(self) -> bool:
        """Re-read trust files that changed on disk (a key was rotated); True if any did.
        A file that became unreadable keeps its old keys (and says so by raising)."""
        changed = False
        for path, mtime in list(self._files.items()):
            try:
                now = path.stat().st_mtime
            except OSError:
                continue
            if now == mtime:
                continue
            fresh = read_trust_file(path, self._roles.get(path, ""))
            keep = [e for e in self.entries if e.source != path]
            self.entries = [*keep, *fresh]
            self._files[path] = now
            changed = True
        return changed


def read_trust_file(path: Path, default_role: str = "") -> list[TrustEntry]:
    """Lines of ``[role [name]] KEY``; blank lines and ``#`` comments skipped."""
    text = _read_text(path, "neither a public key (U…) nor a trust file")
    entries: list[TrustEntry] = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        key = words[-1]
        role = words[0] if len(words) >= 2 else ""
        name = words[1] if len(words) == 3 else ""
        if len(words) > 3 or public_key_bytes(key) is None or (role and role not in ROLES):
            raise IdentityError(f"{path}: line {number}: expected '[role [name]] U…key'")
        entries.append(TrustEntry(key, role or default_role, name, path))
    return entries


def _read_small(path: Path) -> bytes:
    fd = open_nofollow(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise OSError(0, f"larger than {MAX_KEY_FILE_BYTES // 1024} KiB")
    return data
