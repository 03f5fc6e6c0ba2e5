"""Errors of the node agent.

PiswarmError
├── ConfigError              (piswarm.errors) bad agent.toml / environment / flag
└── AgentError               the agent cannot run
    └── AlreadyRunning       another agent holds this node id's lock
"""

from pathlib import Path

from piswarm.errors import PiswarmError


class AgentError(PiswarmError):
    """The agent cannot run."""


class AlreadyRunning(AgentError):
    """Another agent process already runs for this node id on this machine."""

    exit_code = 3

    def __init__(self, node_id: str, lock_path: Path, pid: str) -> None:
        super().__init__(
            f"an agent for node {node_id!r} is already running (pid {pid or '?'}, "
            f"lock {lock_path}); stop it first ('kill {pid or '<pid>'}')"
        )
