"""Where the protocol keeps a retained message, and how large it may be.

Mosquitto's ACL cannot refuse the retain flag (only a compiled plugin could), and every
user may publish somewhere: a node to its own leaves, the viewer to its submit topic, any
client to its own ``piswarm/cli/<client>/sync``. So whatever a user retains anywhere
else is found by the coordinator's janitor (:mod:`head.coordinator.janitor`) and removed.
"""

from piswarm.protocol import topics
from piswarm.protocol._schema import MAX_JSON_BYTES
from piswarm.protocol.errors import ProtocolError
from piswarm.protocol.jobs import MAP_MAX_BYTES

_JOB_LEAVES = {"status": MAX_JSON_BYTES, "map": MAP_MAX_BYTES, "life": MAX_JSON_BYTES}


def retained_limit(topic: str) -> int | None:
    """The largest retained payload the protocol puts on ``topic``; ``None`` where it
    retains nothing. Retained topics: ``piswarm/nodes/<node>/status``,
    ``piswarm/health/<name>``, ``piswarm/jobs/coordinator`` and
    ``piswarm/jobs/<job>/status``, ``/map`` and ``/life``."""
    parts = topic.split("/")
    if parts[0] != topics.ROOT:
        return None
    if topic == topics.JOBS_COORDINATOR:
        return MAX_JSON_BYTES
    try:
        if len(parts) == 4 and parts[1] == "nodes" and parts[3] == "status":
            topics.validate_node_id(parts[2])
            return MAX_JSON_BYTES
        if len(parts) == 3 and parts[1] == "health":
            topics.health(parts[2])
            return MAX_JSON_BYTES
        if len(parts) == 4 and parts[1] == "jobs" and parts[3] in _JOB_LEAVES:
            topics.validate_job_id(parts[2])
            return _JOB_LEAVES[parts[3]]
    except ProtocolError:
        return None
    return None
