"""One process per role and name per machine: an exclusive ``flock`` on a pidfile.

One agent per node id, one coordinator per job database.

The kernel releases the lock when the process dies, however it dies, so a stale pidfile
never blocks a restart (unlike scanning the process table for a script name).
"""

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from piswarm.errors import AlreadyRunning


class PidLock:
    """Hold ``<lock_dir>/<role>-<name>.pid`` locked for the life of the process."""

    def __init__(self, lock_dir: Path, name: str, *, role: str = "agent") -> None:
        self.path = lock_dir / f"{role}-{name}.pid"
        self.what = f"{role} for {name!r}" if role == "agent" else f"{role} ({name})"
        self._fd: int | None = None

    def acquire(self) -> "PidLock":
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise AlreadyRunning(self.what, self.path, holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "PidLock":
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
