"""The wire protocol of piswarm: every topic and payload, in one place.

Agents, the coordinator and the display all build topics and payloads through this package
and nothing else. ``encode`` validates before writing; the ``decode_*`` functions validate
after reading and raise :class:`ProtocolError` for anything that does not follow
``docs/topics.md``.
"""

from piswarm.protocol import jobs, topics, work
from piswarm.protocol._schema import MAX_JSON_BYTES, SCHEMA_VERSION, encode
from piswarm.protocol.errors import ProtocolError
from piswarm.protocol.nodes import (
    COMMANDS,
    TEMP_SOURCES,
    Command,
    NodeOffline,
    NodeOnline,
    NodeStatus,
    Pong,
    Telemetry,
    Throttle,
    decode_command,
    decode_pong,
    decode_status,
    decode_telemetry,
)

__all__ = [
    "COMMANDS",
    "MAX_JSON_BYTES",
    "SCHEMA_VERSION",
    "TEMP_SOURCES",
    "Command",
    "NodeOffline",
    "NodeOnline",
    "NodeStatus",
    "Pong",
    "ProtocolError",
    "Telemetry",
    "Throttle",
    "decode_command",
    "decode_pong",
    "decode_status",
    "decode_telemetry",
    "encode",
    "jobs",
    "topics",
    "work",
]
