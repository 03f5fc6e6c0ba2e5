"""Distributed Life end to end: real broker, coordinator process, agent processes that run
each strip in its own process; the final board must equal one process's, bit for bit."""

import json

import pytest

from head.life_board import board_hash, initial_board
from head.lifestore import LifeStore
from head.patterns import read_pattern
from node_agent import life
from piswarm.protocol import life as wire
from piswarm.protocol import topics


def submit(viewer, request_id, **fields):
    body = {"v": 1, "kind": "life", "request_id": request_id, **fields}
    viewer.publish(topics.JOBS_SUBMIT, json.dumps(body).encode())
    reply = viewer.wait_for(
        lambda m: m.topic == topics.JOBS_REPLIES and request_id.encode() in m.payload, timeout=30
    )
    answer = json.loads(reply.payload)
    assert answer["ok"], answer
    return answer["job"], wire.LifeRequest(**{k: v for k, v in fields.items()})


def life_status(viewer, job, pred, timeout=120):
    msg = viewer.wait_for(
        lambda m: m.topic == topics.job_status(job) and pred(wire.decode_status(m.payload)),
        timeout=timeout,
    )
    return wire.decode_status(msg.payload)


def reference(request):
    return life.step(initial_board(request), request.width, request.wrap, request.gens)


def stored_board(tmp_path, job):
    store = LifeStore(tmp_path / "jobs.sqlite").open(readonly=True)
    try:
        return store.board(job)
    finally:
        store.close()


def assert_exact(viewer, tmp_path, job, request):
    final = life_status(viewer, job, lambda s: s.state == "done")
    expected = reference(request)
    board = stored_board(tmp_path, job)
    assert board.gen == request.gens
    assert (board.cells == expected).all()
    assert final.hash == board_hash(expected) and final.gen == request.gens
    assert final.population == int(life.unpack(expected, request.width).sum())
    return final


def online(node):
    return lambda m: m.topic == topics.node_status(node) and b"online" in m.payload


FLEETS = {1: {"node-a": 1}, 2: {"node-a": 1, "node-b": 1}, 3: {"node-a": 1, "node-b": 2},
          5: {"node-a": 2, "node-b": 3}}  # fmt: skip


@pytest.mark.parametrize("strips", [1, 2, 3, 5])
def test_strips_over_the_broker_end_bit_exact_on_a_torus_and_with_dead_edges(
    strips, broker, users, agents, coordinator, recorder, tmp_path
):
    viewer = recorder("viewer")
    viewer.wait_connected()
    for node, workers in FLEETS[strips].items():
        agents(node, workers=workers)
    for node in FLEETS[strips]:
        viewer.wait_for(online(node))
    coordinator()
    glider, _ = read_pattern("glider")
    # A glider comes home after 4 x 80 generations on an 80 x 80 torus.
    job, request = submit(viewer, f"glider-{strips}", width=80, height=80, gens=320,
                          pattern=glider, x=10, y=30, halo=4, checkpoint_every=100)  # fmt: skip
    final = assert_exact(viewer, tmp_path, job, request)
    assert final.strips == strips
    assert (reference(request) == initial_board(request)).all()
    soup, request = submit(viewer, f"soup-{strips}", width=150, height=96, gens=60, wrap="dead",
                           density=0.35, seed=strips, halo=3, checkpoint_every=25)  # fmt: skip
    assert_exact(viewer, tmp_path, soup, request)
