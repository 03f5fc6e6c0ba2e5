"""docs/topics.md is the public API: its examples must decode and every field be there."""

import contextlib
import dataclasses
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piswarm import protocol
from piswarm.protocol import (
    ProtocolError,
    _schema,
    experiments,
    health,
    jobs,
    life,
    placement,
    summary,
    work,
)

DOC = (Path(__file__).resolve().parents[2] / "docs" / "topics.md").read_text()
DECODERS = {
    "status": protocol.decode_status,
    "telemetry": protocol.decode_telemetry,
    "command": protocol.decode_command,
    "pong": protocol.decode_pong,
    "request": protocol.jobs.decode_request,
    "cancel": protocol.jobs.decode_cancel,
    "reply": protocol.jobs.decode_reply,
    "job_status": protocol.jobs.decode_job_status,
    "job_map": protocol.jobs.decode_job_map,
    "coordinator": protocol.work.decode_coordinator,
    "work_request": protocol.work.decode_work_request,
    "assign": protocol.work.decode_assign,
    "ack": protocol.work.decode_ack,
    "summary": summary.decode_summary,
    "summaries": summary.decode_summaries,
    "life_status": life.decode_status,
    "life_control": life.decode_control,
    "halo_want": life.decode_want,
    "life_progress": life.decode_progress,
    "health": health.decode_health,
    # headers of the binary payloads
    "strip_assign": lambda p: _schema.decode(life.StripAssign, p),
    "halo": lambda p: _schema.decode(life.Halo, p),
    "checkpoint": lambda p: _schema.decode(life.Checkpoint, p),
    "frame": lambda p: _schema.decode(life.Frame, p),
    "experiment_run": experiments.decode_run,
    "experiment_status": experiments.decode_status,
}
EXAMPLES = re.findall(r"<!-- example: (\w+) -->\n```json\n(.*?)\n```", DOC, flags=re.S)


def test_every_payload_has_an_example():
    assert {kind for kind, _ in EXAMPLES} == set(DECODERS)


@pytest.mark.parametrize(("kind", "text"), EXAMPLES)
def test_examples_decode(kind, text):
    for line in text.splitlines():
        DECODERS[kind](line.encode())


ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)  # surrogates too
HOSTILE = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**400), 10**400) | st.floats() | ANY_TEXT,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(ANY_TEXT, kids, max_size=3),
    max_leaves=6,
)


@pytest.mark.parametrize(("kind", "text"), EXAMPLES)
@given(data=st.data())
def test_any_value_in_any_documented_field_is_decoded_or_refused_cleanly(kind, text, data):
    """What a student with mosquitto_pub can send: a real payload with one field swapped
    for anything (an integer of 400 digits, an unpaired surrogate, a nested list)."""
    body = json.loads(text.splitlines()[0])
    body[data.draw(st.sampled_from(sorted(body)))] = data.draw(HOSTILE)
    with contextlib.suppress(ProtocolError):
        DECODERS[kind](json.dumps(body).encode())


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_a_number_longer_than_python_reads_is_refused_cleanly(kind):
    with pytest.raises(ProtocolError, match=r"number too long|exceeds 512"):  # (a summary's limit)
        DECODERS[kind](b'{"v":1,"ts":' + b"9" * 5000 + b"}")


@pytest.mark.parametrize(
    "cls",
    [
        protocol.NodeOnline,
        protocol.NodeOffline,
        protocol.Telemetry,
        protocol.Command,
        protocol.Pong,
        protocol.Throttle,
        jobs.PrimesRequest,
        jobs.CancelRequest,
        jobs.JobReply,
        jobs.JobStatus,
        jobs.JobMap,
        jobs.Contributor,
        work.CoordinatorStatus,
        work.WorkRequest,
        work.WorkAssign,
        work.ResultAck,
        life.LifeRequest,
        life.LifeStatus,
        life.LifeControl,
        life.StripAssign,
        life.StripRef,
        life.Halo,
        life.HaloWant,
        life.Checkpoint,
        life.Frame,
        life.Progress,
        summary.BlockSummary,
        summary.Summaries,
        work.BlockRange,
        placement.Placement,
        experiments.ExperimentRun,
        experiments.ExperimentStatus,
        experiments.ExperimentPoint,
        experiments.ExperimentFit,
    ],
)
def test_every_field_is_documented(cls):
    for field in dataclasses.fields(cls):
        assert f"`{field.name}`" in DOC or f"`throttle.{field.name}`" in DOC, field.name


def test_every_topic_is_documented():
    for build in (
        protocol.topics.node_status,
        protocol.topics.node_telemetry,
        protocol.topics.node_cmd,
        protocol.topics.node_pong,
    ):
        leaf = build("x").rsplit("/", 1)[1]
        assert f"## `piswarm/nodes/<node>/{leaf}`" in DOC
    built = {
        "piswarm/nodes/<node>/work/request": protocol.topics.node_work_request("x"),
        "piswarm/nodes/<node>/work/assign": protocol.topics.node_work_assign("x"),
        "piswarm/nodes/<node>/acks": protocol.topics.node_acks("x"),
        "piswarm/nodes/<node>/results/<job>/<block>": protocol.topics.node_result("x", "j", 3),
        "piswarm/nodes/<node>/results/<job>/summaries": protocol.topics.node_summaries("x", "j"),
        "piswarm/jobs/<job>/status": protocol.topics.job_status("j"),
        "piswarm/jobs/<job>/map": protocol.topics.job_map("j"),
        "piswarm/jobs/<job>/life": protocol.topics.job_life_control("j"),
        "piswarm/nodes/<node>/life/assign": protocol.topics.node_life_assign("x"),
    }
    for generic, topic in built.items():
        parts = [{"x": "<node>", "j": "<job>", "3": "<block>"}.get(p, p) for p in topic.split("/")]
        assert "/".join(parts) == generic
        assert f"`{generic}`" in DOC, generic
    assert protocol.topics.jobs_submit("viewer") == "piswarm/jobs/submit/viewer"
    assert protocol.topics.health("coordinator") == "piswarm/health/coordinator"
    assert "`piswarm/health/<name>`" in DOC
    assert "`piswarm/jobs/submit/<user>`" in DOC
    for topic in (
        protocol.topics.JOBS_CANCEL,
        protocol.topics.JOBS_REPLIES,
        protocol.topics.JOBS_COORDINATOR,
    ):
        assert f"`{topic}`" in DOC, topic


def test_every_life_strip_topic_is_documented():
    for leaf in sorted(protocol.topics.LIFE_LEAVES):
        topic = protocol.topics.life_strip("x", "j", 2, 3, leaf)
        assert topic == f"piswarm/nodes/x/life/j/2/3/{leaf}"
        assert f"nodes/<node>/life/<job>/<epoch>/<strip>/{leaf}" in DOC, leaf
        assert (
            f"`.../<strip>/{leaf}`" in DOC
            or f"`.../<strip>/{leaf}` (" in DOC
            or (leaf in ("up", "down") and "`.../<strip>/up`, `.../<strip>/down`" in DOC)
        ), leaf


def test_the_readmes_by_hand_steps_put_the_credentials_where_the_agent_looks():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    steps = readme.split("**By hand, on one Pi**", 1)[1].split("```", 2)[1]
    configured = re.search(r'^credentials = "(.+)"$', steps, flags=re.M).group(1)
    copied = re.search(r"^scp \S+ (\S+)$", steps, flags=re.M).group(1)
    protected = re.search(r"^chmod 600 (\S+)$", steps, flags=re.M).group(1)
    assert copied == protected == configured


def _the_whole_way(cls, data):
    """Decode as the codec's generic path does: convert and check every field."""
    kwargs = {}
    for field in _schema._plan(cls):
        if field.name not in data:
            if field.required:
                raise ProtocolError(f"missing field {field.name!r}")
            continue
        value = field.convert(field.name, data[field.name])
        if field.check is not None:
            field.check(field.name, value)
        kwargs[field.name] = value
    return cls(**kwargs)


DOCUMENTED = [
    (type(decoded), json.loads(line))
    for kind, text in EXAMPLES
    for line in text.splitlines()
    if dataclasses.is_dataclass(decoded := DECODERS[kind](line.encode()))
]
FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([48.5, 0.0, -60.0, 200.0, 200.01, 1e11, 1e12, "thermal", "pi-1", "Pi-1"]),
    st.text(max_size=6),
    st.lists(st.one_of(st.floats(allow_nan=False), st.integers(), st.text(max_size=3)), max_size=4),
    st.lists(st.sampled_from(["throttled", "under_voltage", "nope", "pi-1"]), max_size=5),
)


@given(example=st.sampled_from(DOCUMENTED), pick=st.integers(0, 99), value=FIELD_VALUES)
def test_the_quick_decoder_decodes_exactly_as_the_whole_way(example, pick, value):
    """Every payload class decodes through Python written for it (quick tests inline,
    the whole way where one fails): with any value in any field of any documented
    example, what comes out (a payload, or the refusal's words) is what the generic
    field-by-field path gives."""
    cls, good = example
    fields = [f.name for f in dataclasses.fields(cls)]
    name = fields[pick % len(fields)]
    data = json.loads(json.dumps({**good, name: value}))  # as the wire gives it
    outcomes = []
    for decode in (_schema.decode_mapping, _the_whole_way):
        try:
            outcomes.append(("ok", decode(cls, data)))
        except ProtocolError as exc:
            outcomes.append(("refused", str(exc)))
    assert repr(outcomes[0]) == repr(outcomes[1])  # 1 == 1.0, but not in repr
