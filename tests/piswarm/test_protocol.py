"""The wire protocol: every decoder refuses bad input with ProtocolError; round trips hold."""

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piswarm import protocol
from piswarm.protocol import ProtocolError, topics

DECODERS = [
    protocol.decode_status,
    protocol.decode_telemetry,
    protocol.decode_command,
    protocol.decode_pong,
]

node_ids = st.from_regex(topics.NODE_ID_PATTERN, fullmatch=True).filter(
    lambda s: s not in topics.RESERVED_IDS
)
finite = st.floats(allow_nan=False, allow_infinity=False)
flags = st.lists(st.sampled_from(sorted(protocol.nodes.THROTTLE_FLAGS.values())), max_size=4)

throttles = st.integers(0, 0xFFFFFFFF).map(protocol.Throttle.from_raw)
telemetry = st.builds(
    protocol.Telemetry,
    node=node_ids,
    seq=st.integers(0, 2**53),
    ts=st.floats(0, 1e11),
    temp_c=st.none() | st.floats(-60, 200),
    temp_source=st.sampled_from(sorted(protocol.TEMP_SOURCES)),
    throttle=st.none() | throttles,
    cpu_percent=st.floats(0, 100),
    load=st.tuples(st.floats(0, 1e6), st.floats(0, 1e6), st.floats(0, 1e6)),
    mem_percent=st.floats(0, 100),
    freq_mhz=st.none() | st.floats(0, 1e5),
    uptime_s=st.floats(0, 1e10),
)
births = st.builds(
    protocol.NodeOnline,
    node=node_ids,
    ts=st.floats(0, 1e11),
    host=st.text(max_size=200),
    version=st.text(max_size=40),
    cores=st.integers(1, 4096),
    model=st.text(max_size=200),
    telemetry_interval=st.floats(0.05, 3600),
    ip=st.none() | st.ip_addresses().map(str),
    simulated=st.booleans(),
)
goodbyes = st.builds(
    protocol.NodeOffline,
    node=node_ids,
    ts=st.floats(0, 1e11),
    reason=st.sampled_from(["shutdown", "lost"]),
)


@given(telemetry)
def test_telemetry_round_trips(message):
    assert protocol.decode_telemetry(protocol.encode(message)) == message


@given(births | goodbyes)
def test_status_round_trips(message):
    assert protocol.decode_status(protocol.encode(message)) == message


@given(
    st.builds(
        protocol.Command, cmd=st.sampled_from(sorted(protocol.COMMANDS)), id=st.text(max_size=64)
    )
)
def test_command_round_trips(message):
    assert protocol.decode_command(protocol.encode(message)) == message


@given(st.binary(max_size=300))
def test_random_bytes_never_escape_as_anything_but_protocol_error(payload):
    for decode in DECODERS:
        with contextlib.suppress(ProtocolError):
            decode(payload)


@given(
    st.recursive(
        st.none() | st.booleans() | finite | st.text(max_size=10),
        lambda kids: (
            st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_any_json_is_decoded_or_refused_cleanly(value):
    body = {"v": 1, "state": "online", "node": "pi-1", "x": value}
    for decode in DECODERS:
        for payload in (json.dumps(value).encode(), json.dumps(body).encode()):
            with contextlib.suppress(ProtocolError):
                decode(payload)


GOOD_TELEMETRY = {
    "v": 1,
    "node": "pi-1",
    "seq": 3,
    "ts": 1.7e9,
    "temp_c": 48.5,
    "temp_source": "thermal",
    "throttle": {"raw": 0, "now": [], "since_boot": []},
    "cpu_percent": 10.0,
    "load": [0.1, 0.2, 0.3],
    "mem_percent": 20.0,
    "freq_mhz": 1500.0,
    "uptime_s": 100.0,
}


def test_good_telemetry_decodes_and_unknown_fields_are_ignored():
    body = {**GOOD_TELEMETRY, "future_field": [1, 2]}
    assert protocol.decode_telemetry(json.dumps(body).encode()).seq == 3


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"v": 2}, "unsupported schema version 2"),
        ({"v": None}, "unsupported schema version None"),
        ({"seq": "3"}, "'seq': expected an integer"),
        ({"seq": True}, "'seq': expected an integer"),
        ({"seq": -1}, "'seq': -1 is below 0"),
        ({"temp_c": "hot"}, "'temp_c': expected a number"),
        ({"temp_c": 500}, "'temp_c': 500.0 is above 200"),
        ({"cpu_percent": 101}, "'cpu_percent': 101.0 is above 100"),
        ({"node": "Pi_1"}, "'node': 'Pi_1' does not match"),
        ({"temp_source": "guess"}, "'temp_source': 'guess' is not one of"),
        ({"load": [1, 2]}, "expected [1 min, 5 min, 15 min]"),
        ({"load": "1 2 3"}, "'load': expected a list"),
        ({"throttle": {"raw": 0, "now": ["on_fire"], "since_boot": []}}, "'on_fire' is not one of"),
        ({"throttle": []}, "'throttle': expected an object"),
    ],
)
def test_wrong_types_and_ranges_are_refused_with_a_reason(change, reason):
    with pytest.raises(ProtocolError) as err:
        protocol.decode_telemetry(json.dumps({**GOOD_TELEMETRY, **change}).encode())
    assert reason in str(err.value)


def test_missing_field_is_named():
    body = dict(GOOD_TELEMETRY)
    del body["uptime_s"]
    with pytest.raises(ProtocolError, match="missing field 'uptime_s'"):
        protocol.decode_telemetry(json.dumps(body).encode())


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "not JSON"),
        (b"hello", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"v": NaN}', "NaN is not valid JSON"),
        (b'{"v": 1' + b" " * protocol.MAX_JSON_BYTES + b"}", "exceeds"),
        (b"[" * 100_000 + b"]" * 100_000, "exceeds"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    ],
)
def test_every_decoder_refuses_garbage(decode, payload, reason):
    with pytest.raises(ProtocolError, match=reason):
        decode(payload)


def test_status_needs_a_known_state():
    with pytest.raises(ProtocolError, match="'state'"):
        protocol.decode_status(b'{"v":1,"state":"sleeping","node":"pi-1","ts":1}')


def test_encode_refuses_what_decode_would_refuse():
    bad = protocol.NodeOffline(node="pi-1", ts=1.0, reason="exploded")
    with pytest.raises(ProtocolError, match="'reason'"):
        protocol.encode(bad)


def test_throttle_bits_are_decoded_now_and_since_boot():
    t = protocol.Throttle.from_raw(0x50005)
    assert t.now == ("under_voltage", "throttled")
    assert t.since_boot == ("under_voltage", "throttled")
    assert t.active
    past = protocol.Throttle.from_raw(0x80000)
    assert past.now == () and past.since_boot == ("soft_temp_limit",) and not past.active


@pytest.mark.parametrize(
    "bad", ["", "Pi-1", "pi_1", "-pi", "pi-", "a" * 64, "admin", "pi/1", "pi+", "#", "pi 1"]
)
def test_invalid_node_ids_are_refused(bad):
    with pytest.raises(ProtocolError):
        topics.node_status(bad)


@given(node_ids)
def test_built_topics_parse_back_and_never_hold_wildcards(node_id):
    for build, leaf in (
        (topics.node_status, "status"),
        (topics.node_telemetry, "telemetry"),
        (topics.node_cmd, "cmd"),
        (topics.node_pong, "pong"),
    ):
        topic = build(node_id)
        assert "+" not in topic and "#" not in topic
        assert topics.parse_node_topic(topic) == (node_id, leaf)


@pytest.mark.parametrize(
    "topic",
    [
        "piswarm/nodes/x",
        "other/nodes/pi-1/status",
        "piswarm/nodes/Bad/status",
        "piswarm/nodes/a/b/c",
    ],
)
def test_foreign_topics_are_refused(topic):
    with pytest.raises(ProtocolError):
        topics.parse_node_topic(topic)


@pytest.mark.parametrize("number", ["\u00b2", "\u0661", "012", "-1", "12345678901234567", ""])
def test_numbers_in_topics_are_plain_ascii_digits(number):
    """'²' passed str.isdigit() and then failed int(): an internal error, not a refusal.
    A block number has up to 16 digits (a job may have ~1e15 blocks), a strip 7."""
    with pytest.raises(ProtocolError, match="invalid block number"):
        topics.parse_result_topic(f"piswarm/nodes/pi-1/results/j1/{number}")
    with pytest.raises(ProtocolError, match="invalid strip"):
        topics.parse_life_strip_topic(f"piswarm/nodes/pi-1/life/j1/1/{number}/up")


def test_a_block_number_of_a_job_of_a_billion_blocks_is_read():
    assert topics.parse_result_topic("piswarm/nodes/pi-1/results/j1/999999999999") == (
        "pi-1",
        "j1",
        999_999_999_999,
    )


@pytest.mark.parametrize(
    ("topic", "route"),
    [
        ("piswarm/jobs/submit/viewer", "submit"),
        ("piswarm/jobs/cancel", "cancel"),
        ("piswarm/nodes/pi-1/work/request", "work_request"),
        ("piswarm/nodes/pi-1/results/p1-a/7", "result"),
        ("piswarm/nodes/pi-1/status", "node_status"),
        ("piswarm/nodes/pi-1/results/p1-a/summaries", "summaries"),
        ("piswarm/nodes/pi-1/life/l1-a/0/0/checkpoint", "life"),
        ("piswarm/nodes/pi-1/results/p1-a", "other"),
        ("piswarm/nodes/pi-1/status/x", "other"),
        ("piswarm/jobs/p1-a/status", "other"),
        ("other/nodes/pi-1/status", "other"),
        ("", "other"),
    ],
)
def test_the_coordinator_routes_by_the_shape_of_a_topic(topic, route):
    assert topics.coordinator_route(topic) == route


def test_a_work_request_names_what_it_holds_as_job_and_block():
    from piswarm.protocol import work

    def request(holding):
        body = {"v": 1, "node": "pi-1", "want": 1, "ts": 1.0, "holding": holding}
        return work.decode_work_request(json.dumps(body).encode())

    assert request(["p20251124-3fa2c1/17"]).holding == ("p20251124-3fa2c1/17",)
    assert request(None).holding is None
    bad_ones = [
        (["p1/x"], "does not match"),
        (["p1"], "does not match"),
        ("p1/1", "expected a list"),
        (["p1/1"] * 257, "longer than 256"),
    ]
    for bad, reason in bad_ones:
        with pytest.raises(ProtocolError, match=reason):
            request(bad)


def test_retained_only_where_the_protocol_keeps_it():
    from piswarm.protocol.retained import retained_limit

    kept = {
        "piswarm/nodes/pi-1/status": 16384,
        "piswarm/health/pi-1": 16384,
        "piswarm/health/coordinator": 16384,
        "piswarm/jobs/coordinator": 16384,
        "piswarm/jobs/p1-a/status": 16384,
        "piswarm/jobs/p1-a/map": 65536,
        "piswarm/jobs/l1-a/life": 16384,
    }
    for topic, limit in kept.items():
        assert retained_limit(topic) == limit, topic
    for topic in (
        "piswarm/nodes/pi-1/telemetry",
        "piswarm/nodes/pi-1/results/p1-a/0",
        "piswarm/nodes/admin/status",
        "piswarm/jobs/submit/viewer",
        "piswarm/jobs/submit/status",
        "piswarm/cli/x/sync",
        "piswarm/health/admin",
        "piswarm/jobs/p1-a/other",
        "other/nodes/pi-1/status",
        "piswarm",
        "",
    ):
        assert retained_limit(topic) is None, topic


def test_summaries_and_result_topics_are_told_apart():
    topic = topics.node_summaries("pi-1", "p1-a")
    assert topic == "piswarm/nodes/pi-1/results/p1-a/summaries"
    assert topics.parse_summaries_topic(topic) == ("pi-1", "p1-a")
    with pytest.raises(ProtocolError, match="several results"):
        topics.parse_result_topic(topic)
    for bad in (
        "piswarm/nodes/pi-1/results/p1-a/7",
        "piswarm/nodes/Pi/results/p1-a/summaries",
        "piswarm/nodes/pi-1/results/../summaries",
        "piswarm/nodes/pi-1/results/summaries",
    ):
        with pytest.raises(ProtocolError):
            topics.parse_summaries_topic(bad)


def test_a_node_may_write_only_in_its_own_subtree_and_every_topic_it_sends_is_granted():
    from piswarm.protocol import grants

    granted = grants.node_grants("pi-07-2")
    writes = [topic for access, topic in granted if access != "read"]
    own = ("piswarm/nodes/pi-07-2/", "piswarm/health/pi-07-2")
    assert all(t.startswith(own) for t in writes), writes
    sent = [
        topics.node_status("pi-07-2"),
        topics.node_telemetry("pi-07-2"),
        topics.node_pong("pi-07-2"),
        topics.node_work_request("pi-07-2"),
        topics.node_result("pi-07-2", "p1-a", 7),
        topics.node_summaries("pi-07-2", "p1-a"),
        topics.health("pi-07-2"),
        *(topics.life_strip("pi-07-2", "l1-a", 0, 3, leaf) for leaf in topics.LIFE_LEAVES),
    ]
    for topic in sent:
        assert any(matches(pattern, topic) for pattern in writes), topic
    assert not any(matches(p, topics.node_result("pi-07-1", "p1-a", 7)) for p in writes)


def matches(pattern, topic):
    """MQTT topic matching: ``+`` one level, ``#`` the rest."""
    p, t = pattern.split("/"), topic.split("/")
    for i, level in enumerate(p):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(p) == len(t)
