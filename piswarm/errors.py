"""Errors shared by every piswarm role.

    PiswarmError             anything the CLI reports as one line and an exit code
    ├── ConfigError          a bad config file, environment variable or flag
    ├── AlreadyRunning       another process holds this role's lock (exit 3)
    └── (each package adds its own: broker.errors, node_agent.errors, ...)

Protocol violations are :class:`piswarm.protocol.ProtocolError` (a ``ValueError``): they
come from the network, not from the operator.
"""

from pathlib import Path


class PiswarmError(Exception):
    """An error the operator can act on; its message is one line."""

    exit_code = 1


class ConfigError(PiswarmError):
    """Invalid configuration: names the setting and what is wrong with it."""

    exit_code = 2


class AlreadyRunning(PiswarmError):
    """Another process already runs in this role (an agent for this node id, a coordinator
    for this database) on this machine."""

    exit_code = 3

    def __init__(self, what: str, lock_path: Path, pid: str) -> None:
        super().__init__(
            f"an {what} is already running (pid {pid or '?'}, lock {lock_path}); "
            f"stop it first ('kill {pid or '<pid>'}')"
        )
