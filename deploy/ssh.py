"""One SSH session to one Pi: connect (with retries for network errors only), run the
remote helper, upload files. paramiko errors become :mod:`deploy.errors` here."""

import contextlib
import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import paramiko

from deploy.errors import AuthError, DeployError, NetworkError, RemoteError
from deploy.inventory import Host
from deploy.trust import KnownHosts, Policy, key_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SshOptions:
    """How to reach the hosts; the password, if any, never comes from a file or a flag."""

    user: str = "pi"
    identity: Path | None = None
    password: str | None = None
    connect_timeout: float = 10.0
    command_timeout: float = 600.0
    attempts: int = 3
    ssh_config: paramiko.SSHConfig | None = None


def helper_source() -> str:
    return resources.files("deploy").joinpath("remote_helper.py").read_text()


class Session:
    """A connected host (a context manager)."""

    def __init__(
        self,
        host: Host,
        options: SshOptions,
        known: KnownHosts,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.host = host
        self.options = options
        self.known = known
        self.sleep = sleep
        self.name = key_name(host.address, host.port)
        self.client: paramiko.SSHClient | None = None

    def __enter__(self) -> "Session":
        delay = 0.5
        for attempt in range(1, self.options.attempts + 1):
            try:
                self.client = self._connect()
                return self
            except NetworkError as exc:
                if attempt == self.options.attempts:
                    raise
                log.info("%s: %s; retrying in %.1f s", self.name, exc.reason, delay)
                self.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect(self) -> paramiko.SSHClient:
        o = self.options
        hostname, port, user = self.host.address, self.host.port, self.host.user or o.user
        identity = [str(o.identity)] if o.identity else None
        if o.ssh_config is not None:
            found = o.ssh_config.lookup(self.host.address)
            hostname = found.get("hostname", hostname)
            user = self.host.user or found.get("user", user)
            if self.host.port == 22 and "port" in found:
                port = int(found["port"])
            identity = identity or found.get("identityfile")
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(Policy(self.known, key_name(hostname, port)))
        try:
            client.connect(
                hostname,
                port=port,
                username=user,
                password=o.password,
                key_filename=identity,
                timeout=o.connect_timeout,
                banner_timeout=o.connect_timeout,
                auth_timeout=o.connect_timeout,
                allow_agent=True,
                look_for_keys=identity is None,
            )
        except DeployError:
            client.close()
            raise
        except paramiko.AuthenticationException as exc:
            client.close()
            raise AuthError(self.name, f"authentication failed as {user}: {exc}") from None
        except (
            paramiko.ssh_exception.NoValidConnectionsError,
            OSError,
            EOFError,
            paramiko.SSHException,
        ) as exc:
            client.close()
            raise NetworkError(self.name, _network_reason(exc)) from None
        return client

    def __exit__(self, *_exc: object) -> None:
        if self.client is not None:
            self.client.close()

    def helper(
        self, action: str, args: dict[str, Any] | None = None, *, as_root: bool = False
    ) -> dict[str, Any]:
        """Run the remote helper's ``action`` (``as_root``: through ``sudo -n`` unless we
        are root); its JSON answer, or :class:`RemoteError`."""
        assert self.client is not None  # noqa: S101 - only inside 'with'
        program = helper_source() + f"\nmain({action!r}, {json.dumps(args or {})!r})\n"
        try:
            user = self.host.user or self.options.user
            command = "sudo -n python3 -" if as_root and user != "root" else "python3 -"
            stdin, stdout, stderr = self.client.exec_command(  # no pty: a clean exec
                command, timeout=self.options.command_timeout
            )
            stdin.write(program)
            stdin.channel.shutdown_write()
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
        except (OSError, paramiko.SSHException) as exc:
            raise NetworkError(self.name, f"{action}: {_network_reason(exc)}") from None
        try:
            answer: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        except (IndexError, ValueError):
            detail = (err.strip() or out.strip() or "no output").splitlines()[-1]
            raise RemoteError(self.name, f"{action}: {detail}") from None
        if not answer.get("ok"):
            raise RemoteError(self.name, f"{action}: {answer.get('error')}")
        return answer

    def upload(self, files: dict[str, bytes | Path]) -> None:
        """Write files under ``~/.piswarm`` (names relative to it)."""
        assert self.client is not None  # noqa: S101 - only inside 'with'
        try:
            with self.client.open_sftp() as sftp:
                for folder in ("", "/wheelhouse"):
                    with contextlib.suppress(OSError):  # already there
                        sftp.mkdir(f".piswarm{folder}", 0o700)
                for name, content in files.items():
                    remote = f".piswarm/{name}"
                    if isinstance(content, Path):
                        sftp.put(str(content), remote)
                    else:
                        with sftp.open(remote, "wb") as out:
                            out.write(content)
        except (OSError, paramiko.SSHException) as exc:
            raise NetworkError(self.name, f"upload: {_network_reason(exc)}") from None


def _network_reason(exc: BaseException) -> str:
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        errors = list(exc.errors.values())
        exc = errors[0] if errors else exc
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is sshd running?)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
