"""Every MQTT topic piswarm uses, built and parsed in one place (see docs/topics.md).

Publish topics are only ever built by these functions from validated ids, so they can
never contain ``+`` or ``#``; subscription filters are the ``*_FILTER`` constants.
"""

import re

from piswarm.protocol.errors import ProtocolError

ROOT = "piswarm"

NODE_ID_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
"""A node id: lower-case letters, digits and '-', like a hostname label (1-63 chars)."""

RESERVED_IDS = frozenset({"admin", "viewer", "coordinator", "all"})
"""Names that are broker users or topic words, so no node may take them."""

NODE_STATUS_FILTER = f"{ROOT}/nodes/+/status"
NODE_TELEMETRY_FILTER = f"{ROOT}/nodes/+/telemetry"
NODE_PONG_FILTER = f"{ROOT}/nodes/+/pong"
ALL_FILTER = f"{ROOT}/#"
JOBS_SUBMIT = f"{ROOT}/jobs/submit"


def validate_node_id(node_id: str) -> str:
    """Return ``node_id`` if it is a valid node id, else raise ``ProtocolError``."""
    if not isinstance(node_id, str) or not NODE_ID_PATTERN.fullmatch(node_id):
        raise ProtocolError(
            f"invalid node id {node_id!r}: use 1-63 of a-z, 0-9 and '-', "
            "not starting or ending with '-'"
        )
    if node_id in RESERVED_IDS:
        raise ProtocolError(f"invalid node id {node_id!r}: the name is reserved")
    return node_id


def node_status(node_id: str) -> str:
    """Retained online/offline status of a node (its will)."""
    return f"{ROOT}/nodes/{validate_node_id(node_id)}/status"


def node_telemetry(node_id: str) -> str:
    """Periodic readings of a node."""
    return f"{ROOT}/nodes/{validate_node_id(node_id)}/telemetry"


def node_cmd(node_id: str) -> str:
    """Commands to one node (ping, telemetry now)."""
    return f"{ROOT}/nodes/{validate_node_id(node_id)}/cmd"


def node_pong(node_id: str) -> str:
    """A node's answers to ``ping`` commands."""
    return f"{ROOT}/nodes/{validate_node_id(node_id)}/pong"


def parse_node_topic(topic: str) -> tuple[str, str]:
    """Split ``piswarm/nodes/<node>/<leaf>`` into ``(node, leaf)``."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != ROOT or parts[1] != "nodes":
        raise ProtocolError("not a node topic", topic=topic)
    try:
        validate_node_id(parts[2])
    except ProtocolError as exc:
        raise ProtocolError(exc.reason, topic=topic) from None
    return parts[2], parts[3]
