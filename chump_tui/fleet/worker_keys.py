"""Which key speaks for which worker, as a console believes it.

A worker signs its presence record and every report with its key. The console believes a
key for a worker name when a trust file names it (``--trust-worker``, the ``trust`` file
``chump-tui fleet init`` writes, ``$CHUMP_FLEET_TRUST``); without any worker in a trust
file, it believes the first key that name signed its presence with, and keeps that pin
(``sessions/chump-tui/fleet-pins.json``) so a later impostor under the same name is
refused, across restarts too. A rotated key is believed once the trust file says so (it
is re-read when it changes), or once its pin is removed from that file.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path

from chump_tui.fleet.identity import TrustList, public_key_bytes
from chump_tui.safe_fs import open_nofollow


class WorkerKeys:
    def __init__(self, trust: TrustList, pins_path: Path | None = None) -> None:
        self.trust = trust
        self.pins_path = pins_path
        self._lock = threading.Lock()
        self._pins: dict[str, str] = self._load()
        self.refused: dict[str, str] = {}  # worker -> why its last key was not believed

    @property
    def pinning(self) -> bool:
        """No trust file names a worker: the first key each name shows is kept."""
        return not self.trust.has_role("worker")

    def key_of(self, worker: str) -> str | None:
        with self._lock:
            return self._pins.get(worker)

    def believe(self, worker: str, key: str) -> bool:
        """Whether ``key`` speaks for ``worker``; a first key is pinned when pinning.
        The reason for a refusal is kept in ``refused``."""
        with self._lock:
            pinned = self._pins.get(worker)
            if not self.pinning:
                if self.trust.trusts(key, "worker", worker):
                    self._pins[worker] = key
                    self.refused.pop(worker, None)
                    return True
                self.refused[worker] = f"key {key[:12]}… is not in the trust file"
                return False
            if pinned is None:
                self._pins[worker] = key
                self._save()
                return True
            if pinned == key:
                return True
            self.refused[worker] = (f"signs with {key[:12]}…, not the key pinned for it "
                                    f"({pinned[:12]}…; see {self.pins_path})")
            return False

    def reload(self) -> bool:
        """Re-read trust files that changed; pins the trust no longer backs are dropped."""
        if not self.trust.reload_if_changed():
            return False
        if not self.pinning:
            with self._lock:
                self._pins = {w: k for w, k in self._pins.items()
                              if self.trust.trusts(k, "worker", w)}
        return True

    def _load(self) -> dict[str, str]:
        if self.pins_path is None:
            return {}
        try:
            data = json.loads(self.pins_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {w: k for w, k in data.items()
                if isinstance(w, str) and isinstance(k, str) and public_key_bytes(k)}

    def _save(self) -> None:
        """Caller holds the lock. A failure to save costs only the pin's memory."""
        if self.pins_path is None:
            return
        tmp = self.pins_path.with_name(f".{self.pins_path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(OSError):
            if os.path.lexists(tmp):
                os.unlink(tmp)
            fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self._pins, fh, indent=1)
            os.replace(tmp, self.pins_path)
