"""Every MQTT topic piswarm uses, built and parsed in one place (see docs/topics.md).

Publish topics are only ever built by these functions from validated ids, so they can
never contain ``+`` or ``#``; subscription filters are the ``*_FILTER`` constants.
"""

import re
from typing import Literal

from piswarm.protocol.errors import ProtocolError

ROOT = "piswarm"

NODE_ID_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
"""A node id: lower-case letters, digits and '-', like a hostname label (1-63 chars)."""

RESERVED_IDS = frozenset({"admin", "viewer", "coordinator", "all"})

JOB_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
"""A job id, as the coordinator makes them: ``p20261124-3fa9c1``."""

RESERVED_JOB_IDS = frozenset({"submit", "cancel", "replies", "coordinator"})
"""Names that are broker users or topic words, so no node may take them."""

NODE_STATUS_FILTER = f"{ROOT}/nodes/+/status"
NODE_TELEMETRY_FILTER = f"{ROOT}/nodes/+/telemetry"
NODE_PONG_FILTER = f"{ROOT}/nodes/+/pong"
ALL_FILTER = f"{ROOT}/#"
NODES_PREFIX = f"{ROOT}/nodes/"
JOBS_PREFIX = f"{ROOT}/jobs/"
JOBS_SUBMIT_FILTER = f"{ROOT}/jobs/submit/+"
JOBS_CANCEL = f"{ROOT}/jobs/cancel"
JOBS_REPLIES = f"{ROOT}/jobs/replies"
JOBS_COORDINATOR = f"{ROOT}/jobs/coordinator"
JOB_STATUS_FILTER = f"{ROOT}/jobs/+/status"
JOB_MAP_FILTER = f"{ROOT}/jobs/+/map"
NODE_WORK_REQUEST_FILTER = f"{ROOT}/nodes/+/work/request"
NODE_RESULT_FILTER = f"{ROOT}/nodes/+/results/+/+"
SUMMARIES = "summaries"
"""The last level of a result topic that carries several blocks' summaries."""
LIFE_CHECKPOINT_FILTER = f"{ROOT}/nodes/+/life/+/+/+/checkpoint"
LIFE_PROGRESS_FILTER = f"{ROOT}/nodes/+/life/+/+/+/progress"
LIFE_FRAME_FILTER = f"{ROOT}/nodes/+/life/+/+/+/frame"
HEALTH_FILTER = f"{ROOT}/health/+"
EXPERIMENTS_PREFIX = f"{ROOT}/experiments/"
EXPERIMENT_STATUS_FILTER = f"{ROOT}/experiments/+/status"
SYS_COUNTERS = (
    "$SYS/broker/messages/received",
    "$SYS/broker/messages/sent",
    "$SYS/broker/bytes/received",
    "$SYS/broker/bytes/sent",
)
"""Mosquitto's running totals (every ``sys_interval``): what an experiment counts."""
EXPERIMENT_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
COORDINATOR_NAME = "coordinator"
"""The coordinator's name where a node's id would be (a reserved id)."""
LIFE_LEAVES = frozenset({"up", "down", "want", "checkpoint", "frame", "progress"})


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


def health(name: str) -> str:
    """Retained counters of one process: a node id, or ``coordinator``."""
    if name != COORDINATOR_NAME:
        validate_node_id(name)
    return f"{ROOT}/health/{name}"


def validate_job_id(job: str) -> str:
    """Return ``job`` if it is a valid job id, else raise ``ProtocolError``."""
    if not isinstance(job, str) or not JOB_ID_PATTERN.fullmatch(job) or job in RESERVED_JOB_IDS:
        raise ProtocolError(f"invalid job id {job!r}")
    return job


def job_status(job: str) -> str:
    """Retained progress of a job."""
    return f"{ROOT}/jobs/{validate_job_id(job)}/status"


def job_map(job: str) -> str:
    """Retained block map of a job (which node computed what)."""
    return f"{ROOT}/jobs/{validate_job_id(job)}/map"


def validate_experiment(name: str) -> str:
    if not isinstance(name, str) or not EXPERIMENT_PATTERN.fullmatch(name):
        raise ProtocolError(f"invalid experiment name {name!r}: use 1-40 of a-z, 0-9 and '-'")
    return name


def experiment_status(name: str) -> str:
    """Retained: where an experiment stands (the curve so far)."""
    return f"{ROOT}/experiments/{validate_experiment(name)}/status"


def parse_experiment_status_topic(topic: str) -> str:
    """The experiment of ``piswarm/experiments/<name>/status``."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[:2] != [ROOT, "experiments"] or parts[3] != "status":
        raise ProtocolError(f"not an experiment's status topic: {topic!r}")
    return validate_experiment(parts[2])


def experiment_runs(name: str) -> str:
    """Each finished run of an experiment."""
    return f"{ROOT}/experiments/{validate_experiment(name)}/runs"


def node_work_request(node_id: str) -> str:
    """A node asking the coordinator for blocks."""
    return f"{ROOT}/nodes/{validate_node_id(node_id)}/work/request"


def node_work_assign(node_id: str) -> str:
    """The coordinator leasing a block to a node."""
    return f"{ROOT}/nodes/{validate_node_id(node_id)}/work/assign"


def node_result(node_id: str, job: str, block: int) -> str:
    """A node's result for one block (binary)."""
    if not isinstance(block, int) or block < 0:
        raise ProtocolError(f"invalid block number {block!r}")
    return f"{ROOT}/nodes/{validate_node_id(node_id)}/results/{validate_job_id(job)}/{block}"


def node_summaries(node_id: str, job: str) -> str:
    """A node's summaries of several blocks of a count-only job (JSON)."""
    return f"{ROOT}/nodes/{validate_node_id(node_id)}/results/{validate_job_id(job)}/{SUMMARIES}"


def node_acks(node_id: str) -> str:
    """The coordinator acknowledging a node's results."""
    return f"{ROOT}/nodes/{validate_node_id(node_id)}/acks"


_INDEX = re.compile(r"0|[1-9][0-9]{0,6}")
"""An epoch or strip number in a topic: ASCII digits without leading zeros (not
whatever str.isdigit() takes: '²' is a digit to it, and int() refuses it)."""
_BLOCK = re.compile(r"0|[1-9][0-9]{0,15}")
"""A block number in a topic (a job may have up to ~1e15 blocks)."""
CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def cli_sync(client_id: str) -> str:
    """A command's own marker topic: it publishes there and reads its own message back,
    which tells it that every retained message it subscribed to has arrived. Any user may
    publish only to the one of its own client id (the broker's ACL)."""
    if not CLIENT_ID_PATTERN.fullmatch(client_id):
        raise ProtocolError(f"invalid client id {client_id[:80]!r}")
    return f"{ROOT}/cli/{client_id}/sync"


def jobs_submit(user: str) -> str:
    """Where broker user ``user`` submits jobs. The broker lets each user publish only to
    its own, so the coordinator knows who submitted what (quotas, request ids)."""
    if not isinstance(user, str) or not NODE_ID_PATTERN.fullmatch(user):
        raise ProtocolError(f"invalid submitter {str(user)[:80]!r}")
    return f"{ROOT}/jobs/submit/{user}"


def parse_submit_topic(topic: str) -> str:
    """The broker user of ``piswarm/jobs/submit/<user>``."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[:3] != [ROOT, "jobs", "submit"]:
        raise ProtocolError("not a submit topic", topic=topic)
    if not NODE_ID_PATTERN.fullmatch(parts[3]):
        raise ProtocolError(f"invalid submitter {parts[3][:80]!r}", topic=topic)
    return parts[3]


def parse_job_topic(topic: str) -> tuple[str, str]:
    """Split ``piswarm/jobs/<job>/<leaf>`` into ``(job, leaf)``."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != ROOT or parts[1] != "jobs":
        raise ProtocolError("not a job topic", topic=topic)
    try:
        validate_job_id(parts[2])
    except ProtocolError as exc:
        raise ProtocolError(exc.reason, topic=topic) from None
    return parts[2], parts[3]


def parse_result_topic(topic: str) -> tuple[str, str, int]:
    """Split ``piswarm/nodes/<node>/results/<job>/<block>`` into ``(node, job, block)``."""
    parts = topic.split("/")
    if len(parts) != 6 or parts[:2] != [ROOT, "nodes"] or parts[3] != "results":
        raise ProtocolError("not a result topic", topic=topic)
    if parts[5] == SUMMARIES:
        raise ProtocolError("several results, not one", topic=topic)
    if not _BLOCK.fullmatch(parts[5]):
        raise ProtocolError(f"invalid block number {parts[5]!r}", topic=topic)
    try:
        return validate_node_id(parts[2]), validate_job_id(parts[4]), int(parts[5])
    except ProtocolError as exc:
        raise ProtocolError(exc.reason, topic=topic) from None


def parse_summaries_topic(topic: str) -> tuple[str, str]:
    """Split ``piswarm/nodes/<node>/results/<job>/summaries`` into ``(node, job)``."""
    parts = topic.split("/")
    if len(parts) != 6 or parts[:2] != [ROOT, "nodes"] or parts[3:6:2] != ["results", SUMMARIES]:
        raise ProtocolError("not a summaries topic", topic=topic)
    try:
        return validate_node_id(parts[2]), validate_job_id(parts[4])
    except ProtocolError as exc:
        raise ProtocolError(exc.reason, topic=topic) from None


def parse_work_request_topic(topic: str) -> str:
    """The node of ``piswarm/nodes/<node>/work/request``."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[:2] != [ROOT, "nodes"] or parts[3:] != ["work", "request"]:
        raise ProtocolError("not a work request topic", topic=topic)
    try:
        return validate_node_id(parts[2])
    except ProtocolError as exc:
        raise ProtocolError(exc.reason, topic=topic) from None


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


Route = Literal[
    "submit", "cancel", "work_request", "result", "summaries", "life", "node_status", "other"
]


def coordinator_route(topic: str) -> Route:
    """Which of the coordinator's subscriptions ``topic`` belongs to (its shape only: the
    handler parses it in full, with the parser of its kind, and refuses a bad one)."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != ROOT:
        return "other"
    if parts[1] == "jobs":
        if len(parts) == 4 and parts[2] == "submit":
            return "submit"
        return "cancel" if topic == JOBS_CANCEL else "other"
    if parts[1] != "nodes" or len(parts) < 4:
        return "other"
    leaf = parts[3:]
    if leaf == ["status"]:
        return "node_status"
    if leaf == ["work", "request"]:
        return "work_request"
    if leaf[0] == "results" and len(parts) == 6:
        return "summaries" if parts[5] == SUMMARIES else "result"
    return "life" if leaf[0] == "life" else "other"


def node_life_assign(node_id: str) -> str:
    """The coordinator giving a node a strip of a Life board (binary)."""
    return f"{ROOT}/nodes/{validate_node_id(node_id)}/life/assign"


def job_life_control(job: str) -> str:
    """Retained epoch and state of a Life job: strips of other epochs stop."""
    return f"{ROOT}/jobs/{validate_job_id(job)}/life"


def life_strip(node_id: str, job: str, epoch: int, strip: int, leaf: str) -> str:
    """What a running strip publishes: halos (``up``/``down``), ``want``, ``checkpoint``,
    ``frame``, ``progress``."""
    if leaf not in LIFE_LEAVES:
        raise ProtocolError(f"unknown Life leaf {leaf!r}")
    for name, value in (("epoch", epoch), ("strip", strip)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ProtocolError(f"invalid {name} {value!r}")
    return (
        f"{ROOT}/nodes/{validate_node_id(node_id)}/life/{validate_job_id(job)}/"
        f"{epoch}/{strip}/{leaf}"
    )


def is_life_strip_topic(topic: str) -> bool:
    """Whether ``topic`` is under ``piswarm/nodes/<node>/life/`` (cheap: no validation)."""
    parts = topic.split("/", 4)
    return len(parts) == 5 and parts[0] == ROOT and parts[1] == "nodes" and parts[3] == "life"


def parse_life_strip_topic(topic: str) -> tuple[str, str, int, int, str]:
    """Split ``piswarm/nodes/<node>/life/<job>/<epoch>/<strip>/<leaf>``."""
    parts = topic.split("/")
    if len(parts) != 8 or parts[:2] != [ROOT, "nodes"] or parts[3] != "life":
        raise ProtocolError("not a Life strip topic", topic=topic)
    node, job, epoch, strip, leaf = parts[2], parts[4], parts[5], parts[6], parts[7]
    for name, value in (("epoch", epoch), ("strip", strip)):
        if not _INDEX.fullmatch(value):
            raise ProtocolError(f"invalid {name} {value!r}", topic=topic)
    if leaf not in LIFE_LEAVES:
        raise ProtocolError(f"unknown Life leaf {leaf!r}", topic=topic)
    try:
        return validate_node_id(node), validate_job_id(job), int(epoch), int(strip), leaf
    except ProtocolError as exc:
        raise ProtocolError(exc.reason, topic=topic) from None
