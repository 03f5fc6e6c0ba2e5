"""Errors of the node agent.

PiswarmError
├── ConfigError              (piswarm.errors) bad agent.toml / environment / flag
├── AlreadyRunning           (piswarm.errors) another agent holds this node id's lock
└── AgentError               the agent cannot run
"""

from piswarm.errors import PiswarmError


class AgentError(PiswarmError):
    """The agent cannot run."""
