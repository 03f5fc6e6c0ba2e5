"""Errors shared by every piswarm role.

    PiswarmError             anything the CLI reports as one line and an exit code
    ├── ConfigError          a bad config file, environment variable or flag
    └── (each package adds its own: broker.errors, node_agent.errors, ...)

Protocol violations are :class:`piswarm.protocol.ProtocolError` (a ``ValueError``): they
come from the network, not from the operator.
"""


class PiswarmError(Exception):
    """An error the operator can act on; its message is one line."""

    exit_code = 1


class ConfigError(PiswarmError):
    """Invalid configuration: names the setting and what is wrong with it."""

    exit_code = 2


class NotAvailable(PiswarmError):
    """A subcommand that a later release delivers."""

    exit_code = 2
