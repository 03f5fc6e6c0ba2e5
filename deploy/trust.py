"""Host keys: verified against a known_hosts file, read once for the whole fleet.

A key seen for the first time is refused unless the operator said ``--accept-new``; then
it is recorded (and logged). A key that differs from the recorded one is always refused,
naming the host and how to forget the old key if the Pi was really reinstalled.
"""

import logging
import threading
from pathlib import Path

import paramiko

from deploy.errors import HostKeyChanged, HostKeyUnknown

log = logging.getLogger(__name__)


def key_name(address: str, port: int) -> str:
    """The name known_hosts uses: ``host``, or ``[host]:port`` off port 22."""
    return address if port == 22 else f"[{address}]:{port}"


class KnownHosts:
    """A known_hosts file, parsed once, safe to use from many threads."""

    def __init__(self, path: Path, *, accept_new: bool = False) -> None:
        self.path = path
        self.accept_new = accept_new
        self._lock = threading.Lock()
        self._keys = paramiko.HostKeys()
        if path.exists():
            self._keys.load(str(path))

    def known(self, name: str) -> dict[str, paramiko.PKey]:
        with self._lock:
            found = self._keys.lookup(name)
            return dict(found) if found else {}

    def verify(self, name: str, key: paramiko.PKey) -> None:
        """Accept ``key`` for ``name``, record it (``accept_new``), or raise."""
        with self._lock:
            found = self._keys.lookup(name)
            if found:
                if found.get(key.get_name()) == key:
                    return
                raise HostKeyChanged(
                    name,
                    f"host key CHANGED (now {key.get_name()} {key.fingerprint}); if the Pi "
                    f"was reinstalled: piswarm deploy forget {name}",
                )
            if not self.accept_new:
                raise HostKeyUnknown(
                    name,
                    f"unknown host key {key.get_name()} {key.fingerprint} "
                    "(check it, then run again with --accept-new to record it)",
                )
            self._keys.add(name, key.get_name(), key)
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with self.path.open("a") as out:
                out.write(f"{name} {key.get_name()} {key.get_base64()}\n")
            log.warning(
                "recorded the new host key of %s: %s %s", name, key.get_name(), key.fingerprint
            )

    def forget(self, name: str) -> int:
        """Remove every key of ``name``; returns how many entries went."""
        with self._lock:
            before = len(self._keys.lookup(name) or {})
            if before:
                del self._keys[name]
                self._keys.save(str(self.path))
            return before


class Policy(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """paramiko's hook for a key not in the client's (empty) table: ask KnownHosts."""

    def __init__(self, known: KnownHosts, name: str) -> None:
        self.known = known
        self.name = name

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        self.known.verify(self.name, key)
