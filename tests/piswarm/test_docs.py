"""docs/topics.md is the public API: its examples must decode and every field be there."""

import dataclasses
import re
from pathlib import Path

import pytest

from piswarm import protocol

DOC = (Path(__file__).resolve().parents[2] / "docs" / "topics.md").read_text()
DECODERS = {
    "status": protocol.decode_status,
    "telemetry": protocol.decode_telemetry,
    "command": protocol.decode_command,
    "pong": protocol.decode_pong,
}
EXAMPLES = re.findall(r"<!-- example: (\w+) -->\n```json\n(.*?)\n```", DOC, flags=re.S)


def test_every_payload_has_an_example():
    assert {kind for kind, _ in EXAMPLES} == set(DECODERS)


@pytest.mark.parametrize(("kind", "text"), EXAMPLES)
def test_examples_decode(kind, text):
    DECODERS[kind](text.encode())


@pytest.mark.parametrize(
    "cls",
    [protocol.NodeOnline, protocol.NodeOffline, protocol.Telemetry, protocol.Command,
     protocol.Pong, protocol.Throttle],
)  # fmt: skip
def test_every_field_is_documented(cls):
    for field in dataclasses.fields(cls):
        assert f"`{field.name}`" in DOC or f"`throttle.{field.name}`" in DOC, field.name


def test_every_topic_is_documented():
    for build in (protocol.topics.node_status, protocol.topics.node_telemetry,
                  protocol.topics.node_cmd, protocol.topics.node_pong):  # fmt: skip
        leaf = build("x").rsplit("/", 1)[1]
        assert f"## `piswarm/nodes/<node>/{leaf}`" in DOC
