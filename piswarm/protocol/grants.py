"""Who may write and read which topics: the broker's ACL, spelled from the topic tree.

``broker/users.py`` renders these as mosquitto ``topic`` and ``pattern`` lines; nothing
else writes a topic into the ACL. A node writes only the leaves of its own subtree that
the protocol documents (so it cannot store anything else on the broker) and reads what
it is sent; the viewer login every student shares reads everything and writes only its
own submit topic (quotas are per user); the admin may do anything.
"""

from typing import Literal

from piswarm.protocol import topics
from piswarm.protocol.topics import ROOT

Access = Literal["read", "write", "readwrite"]
Grant = tuple[Access, str]

SYS_FILTER = "$SYS/#"
"""The broker's own statistics (read by the admin and the viewer)."""
CLI_SYNC_PATTERN = f"{ROOT}/cli/%c/sync"
"""Every client's own marker topic (:func:`~piswarm.protocol.topics.cli_sync`), as a
mosquitto pattern: ``%c`` is the client id."""


def admin_grants() -> list[Grant]:
    return [("readwrite", topics.ALL_FILTER), ("read", SYS_FILTER)]


def viewer_grants(user: str) -> list[Grant]:
    return [("read", topics.ALL_FILTER), ("write", topics.jobs_submit(user)), ("read", SYS_FILTER)]


def node_grants(node_id: str) -> list[Grant]:
    own = f"{topics.NODES_PREFIX}{topics.validate_node_id(node_id)}"
    return [
        ("readwrite", topics.node_status(node_id)),  # its birth and goodbye, read back
        ("readwrite", topics.node_cmd(node_id)),  # commands to it (it may send itself one)
        ("write", topics.node_telemetry(node_id)),
        ("write", topics.health(node_id)),  # its counters (piswarm status --health)
        ("write", topics.node_pong(node_id)),
        ("write", topics.node_work_request(node_id)),
        ("read", topics.node_work_assign(node_id)),
        ("write", f"{own}/results/+/+"),  # a block's result, or several summaries
        ("read", topics.node_acks(node_id)),
        ("read", topics.node_life_assign(node_id)),
        *(("write", f"{own}/life/+/+/+/{leaf}") for leaf in sorted(topics.LIFE_LEAVES)),
        ("read", f"{topics.NODES_PREFIX}+/life/#"),  # its strips read their neighbours' halos
        ("read", f"{topics.JOBS_PREFIX}#"),
    ]


Direction = Literal["out", "in", "both"]
BridgeTopic = tuple[str, Direction]


def bridge_topics() -> list[BridgeTopic]:
    """What a lab's broker forwards to the head's (``out``) and back (``in``), as
    mosquitto bridge ``topic`` patterns: everything a node writes goes out, everything
    written for nodes comes in. Life halos and node statuses go both ways (a strip's
    neighbour may sit in another lab; an agent sees a second agent with its id in any
    lab). Job submissions and commands' markers stay on the broker they were sent to:
    students submit at the head, as the user they are there."""
    nodes = f"{topics.NODES_PREFIX}+"
    strip_leaves = f"{nodes}/life/+/+/+/+"  # the leaves of topics.LIFE_LEAVES, and only they
    return [
        (topics.NODE_STATUS_FILTER, "both"),
        (topics.NODE_TELEMETRY_FILTER, "out"),
        (topics.NODE_PONG_FILTER, "out"),
        (topics.HEALTH_FILTER, "out"),
        (topics.NODE_WORK_REQUEST_FILTER, "out"),
        (topics.NODE_RESULT_FILTER, "out"),
        (strip_leaves, "both"),
        (f"{nodes}/cmd", "in"),
        (f"{nodes}/work/assign", "in"),
        (f"{nodes}/acks", "in"),
        (f"{nodes}/life/assign", "in"),
        (f"{topics.JOBS_PREFIX}#", "in"),
    ]


def bridge_grants() -> list[Grant]:
    """The head broker's side of a lab's bridge: it writes what nodes write (any node's:
    the lab's broker has already held each node to its own subtree) and reads what is
    written for nodes. It cannot submit or cancel jobs, nor write as the coordinator."""
    access: dict[Direction, Access] = {"out": "write", "in": "read", "both": "readwrite"}
    return [(access[direction], pattern) for pattern, direction in bridge_topics()]
