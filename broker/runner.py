"""Start and stop a real ``mosquitto`` with piswarm's generated configuration.

Used by ``piswarm broker run``, the demo and the test fixtures. The broker gets its own
state directory (config, persistence database, log) and a chosen or free port.
"""

import contextlib
import getpass
import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import psutil

from broker.config import Bridge, BrokerConfig
from broker.errors import BrokerError, MosquittoNotFound
from broker.users import UserStore
from piswarm.children import die_with_parent

log = logging.getLogger(__name__)


BROKER_FILES = 65_536
"""Descriptors the broker may hold: one per client, and a room of thousands of nodes is
past the 1024 a login session starts with (``ulimit -n``). :class:`BrokerProcess` raises
its child's soft limit to this (or to the hard limit, if lower); a system broker's is set
by its service (docs/scale.md)."""


def raise_file_limit(wanted: int = BROKER_FILES) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (never past the hard
    limit, never down); return the soft limit now. Safe in a ``preexec_fn``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def _broker_preexec(tie_to_parent: bool) -> Callable[[], None]:
    def prepare() -> None:
        raise_file_limit()
        if tie_to_parent:
            die_with_parent()

    return prepare


def find_mosquitto(search_path: str | None = None) -> str:
    """The mosquitto binary: ``$PISWARM_MOSQUITTO``, else ``search_path`` (default: PATH
    plus the sbin directories, where Debian installs it but a user's PATH may not look)."""
    explicit = os.environ.get("PISWARM_MOSQUITTO")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise BrokerError(f"PISWARM_MOSQUITTO={explicit} is not an executable file")
        return explicit
    if search_path is None:
        search_path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin"])
    found = shutil.which("mosquitto", path=search_path)
    if not found:
        raise MosquittoNotFound()
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` (SO_REUSEADDR, as mosquitto binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    path.chmod(0o600)


class BrokerProcess:
    """A mosquitto child process with its own state directory.

    ``start()`` writes the config and waits until the port accepts connections;
    ``stop()`` sends SIGTERM, waits, then kills. ``kill()`` is ``kill -9`` for tests.
    The same state directory can be started again (persistence survives).
    """

    def __init__(
        self,
        *,
        users: UserStore,
        state_dir: Path,
        port: int | None = None,
        bind: str = "127.0.0.1",
        die_with_parent: bool = False,
        log_to_file: bool = True,
        bridge: Bridge | None = None,
    ) -> None:
        self.users = users
        self.bridge = bridge
        self.state_dir = state_dir
        self.port = port or free_port(bind)
        self.bind = bind
        self.die_with_parent = die_with_parent
        self.log_to_file = log_to_file
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.state_dir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "mosquitto.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def config(self) -> BrokerConfig:
        return BrokerConfig(
            port=self.port,
            bind=self.bind,
            passwd_file=self.users.passwd_path,
            acl_file=self.users.acl_path,
            persistence_dir=self.state_dir,
            # Run as whoever started us: as root, mosquitto would otherwise switch to the
            # "mosquitto" user, which cannot read a private users directory.
            run_as_user=getpass.getuser(),
            log_file=self.log_path if self.log_to_file else None,
            bridge=self.bridge,
        )

    def start(self, *, timeout: float = 10.0) -> "BrokerProcess":
        if self.running:
            raise BrokerError(f"broker already running (pid {self.pid})")
        binary = find_mosquitto()
        if not port_is_free(self.bind, self.port):
            raise BrokerError(f"port {self.port} on {self.bind} is already in use")
        if not self.users.passwd_path.exists():
            self.users.init()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(self.config_path, self.config().render())  # a bridge's password
        log.info("starting %s on %s:%d (%s)", binary, self.bind, self.port, self.config_path)
        # Errors before the config is read (and the root warning) go to stderr: keep them.
        with (self.state_dir / "mosquitto.stderr").open("ab") as stderr:
            self._proc = subprocess.Popen(
                [binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not the broker
                preexec_fn=_broker_preexec(self.die_with_parent),
            )
        self._wait_ready(timeout)
        return self

    def _listening(self) -> bool:
        """True once *our* mosquitto (not whoever else) listens on the port."""
        if self._proc is None:
            return False
        try:
            process = psutil.Process(self._proc.pid)
            # net_connections() since psutil 6.0; connections() before (5.9 on Debian 12)
            listing = getattr(process, "net_connections", None) or process.connections
            conns = listing(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.port for c in conns)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise BrokerError(
                    f"mosquitto exited with code {self._proc.returncode} at start: "
                    f"{self.tail_log() or 'no log'}"
                )
            if self._listening():
                return
            time.sleep(0.02)
        self.kill()
        raise BrokerError(f"mosquitto did not listen on {self.bind}:{self.port} within {timeout}s")

    def tail_log(self, lines: int = 3) -> str:
        """The last lines of the broker's log and stderr (for error messages)."""
        found: list[str] = []
        for path in (self.log_path, self.state_dir / "mosquitto.stderr"):
            with contextlib.suppress(OSError):
                found += path.read_text(errors="replace").strip().splitlines()[-lines:]
        return " | ".join(line for line in found if "run as root" not in line)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads the password file and ACL."""
        if self._proc is not None and self.running:
            self._proc.send_signal(signal.SIGHUP)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; always reaps the process."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("mosquitto ignored SIGTERM for %.0fs; killing it", timeout)
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        """SIGKILL (a crash): nothing is saved beyond what autosave already wrote."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def __enter__(self) -> "BrokerProcess":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
