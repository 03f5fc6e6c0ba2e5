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
