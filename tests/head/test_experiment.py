"""Scaling experiments: the arithmetic, the plan, the record, the report, the CLI."""

import dataclasses

import pygame
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from head.display.experiments_view import ExperimentsModel
from head.experiment import fit, report
from head.experiment.plan import Plan, PlanError, placement_for
from head.experiment.record import NodeRow, Record, RecordError, read_nodes, read_runs
from piswarm.protocol import experiments, jobs, topics
from piswarm.protocol.experiments import ExperimentRun
from piswarm.protocol.placement import Placement
from tests.conftest import piswarm

# -- the arithmetic -------------------------------------------------------------------------


@settings(max_examples=200)
@given(
    serial=st.floats(0.0, 1.0),
    t1=st.floats(0.5, 1e4),
    nodes=st.lists(st.integers(1, 720), min_size=2, max_size=8, unique=True),
)
def test_amdahls_fit_recovers_the_serial_fraction_from_its_timings(serial, t1, nodes):
    timings = [(n, t1 * (serial + (1 - serial) / n)) for n in nodes]
    assert fit.amdahl(timings) == pytest.approx(serial, abs=1e-6)


@settings(max_examples=200)
@given(
    serial=st.floats(0.0, 1.0),
    noise=st.lists(st.floats(-0.002, 0.002), min_size=7, max_size=7),
)
def test_amdahls_fit_of_a_doubling_sweep_stands_a_little_noise(serial, noise):
    """Timings 0.2% off (a busy second) move the fit of 1, 2, 4 ... 64 nodes a little."""
    nodes = [1, 2, 4, 8, 16, 32, 64]
    timings = [
        (n, 100 * (serial + (1 - serial) / n) * (1 + e)) for n, e in zip(nodes, noise, strict=True)
    ]
    assert fit.amdahl(timings) == pytest.approx(serial, abs=0.02)


@given(serial=st.floats(0.0, 1.0), nodes=st.lists(st.integers(2, 720), min_size=1, unique=True))
def test_gustafsons_fit_recovers_the_serial_fraction_of_scaled_speed_ups(serial, nodes):
    samples = [(n, fit.gustafson_speedup(serial, n)) for n in nodes]
    assert fit.gustafson(samples) == pytest.approx(serial, abs=1e-9)


def test_speed_up_and_efficiency_are_against_the_smallest_node_count():
    runs = [(1, 1, 10.0), (1, 1, 12.0), (2, 1, 5.5), (4, 1, 3.0), (2, 2, 4.0), (4, 2, 2.0)]
    rows = fit.points(runs)
    one = {p.nodes: p for p in rows[1]}
    assert one[1].wall_s == 11.0 and one[1].spread_s == 2.0 and one[1].repeats == 2
    assert one[2].speedup == pytest.approx(2.0) and one[4].efficiency == pytest.approx(11 / 12)
    two = {p.nodes: p for p in rows[2]}  # no 1-node run: 2 nodes are taken as twice one
    assert two[2].speedup == 2.0 and two[4].speedup == 4.0
    weak = fit.points([(1, 1, 10.0), (4, 1, 12.5)], weak=True)[1]
    assert weak[1].speedup == pytest.approx(4 * 10 / 12.5)
    assert fit.amdahl([(1, 5.0)]) is None and fit.gustafson([(1, 1.0)]) is None
    assert fit.amdahl([(1, 5.0), (2, 5.0)]) == 1.0 and fit.amdahl([(1, 4.0), (2, 1.0)]) == 0.0


# -- the plan -------------------------------------------------------------------------------


def test_a_plan_runs_each_repeat_of_the_whole_sweep_in_turn_and_weak_jobs_grow():
    plan = Plan(
        name="t",
        kind="primes",
        scaling="weak",
        nodes=(1, 2),
        workers=(1, 2),
        repeats=2,
        end=1_000_000,
    )
    assert [(r.repeat, r.workers, r.nodes) for r in plan.runs()] == [
        (0, 1, 1),
        (0, 1, 2),
        (0, 2, 1),
        (0, 2, 2),
        (1, 1, 1),
        (1, 1, 2),
        (1, 2, 1),
        (1, 2, 2),
    ]
    req = plan.request(2, 1, Placement(nodes=("a", "b"), per_node=1), "r")
    assert isinstance(req, jobs.PrimesRequest)
    assert (req.start, req.end, req.double_check, req.name) == (1, 2_000_000, 0.0, "t 2x1")
    board = Plan(name="b", kind="life", scaling="weak", nodes=(1, 4), width=64, height=32)
    assert board.request(4, 1, Placement()).height == 128 and board.work(4) == 64 * 128 * 200
    assert Plan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"name": "Bad Name"}, "name 'Bad Name'"),
        ({"nodes": (2, 1)}, "--nodes: counts must be ascending"),
        ({"workers": ()}, "--workers"),
        ({"repeats": 0}, "--repeats"),
        (
            {"kind": "life", "scaling": "weak", "nodes": (1, 64), "height": 4096, "width": 4096},
            "the job for 64 nodes",
        ),
    ],
)
def test_a_plan_that_cannot_run_says_which_option(fields, words):
    base = {"name": "t", "kind": "primes", "scaling": "strong", "nodes": (1, 2)}
    with pytest.raises(PlanError, match=words.replace("(", r"\(")):
        Plan(**{**base, **fields})


def test_a_run_names_its_nodes_while_they_fit_a_request_and_past_that_takes_any_n():
    lab = [f"pi-{d:02d}-{s}" for d in range(1, 81) for s in "123"]  # 240 Pis
    named = placement_for(lab, 2)
    assert named == Placement(nodes=tuple(lab), per_node=2)
    request = Plan(name="t", kind="primes", scaling="strong", nodes=(1, 240)).request(
        240, 2, named, "r"
    )
    assert len(jobs.encode_request(request)) < 16 * 1024  # the room by name fits
    many = [f"n-{i}" for i in range(1001)]
    assert placement_for(many, 1, ("n-*",)) == Placement(nodes=("n-*",), count=1001, per_node=1)
    long = [f"node-with-a-long-name-{i:04d}" for i in range(500)]  # 500, but 15 KB of ids
    assert placement_for(long, 1).count == 500
    # and a placement of 240 names is one set lookup, beside its globs
    mixed = Placement(nodes=(*lab[:200], "sim-0[0-4]?"))
    assert mixed.admits("pi-05-2") and mixed.admits("sim-042") and not mixed.admits("pi-80-3")


def test_a_status_of_a_big_sweep_fits_its_payload_and_the_kiosk_reads_it():
    points = tuple(
        experiments.ExperimentPoint(
            nodes=n, workers=w, wall_s=123.4567, speedup=12.3456, efficiency=0.9876, repeats=3
        )
        for w in range(1, 5)
        for n in range(1, 65)
    )
    status = experiments.ExperimentStatus(
        experiment="room",
        kind="primes",
        scaling="strong",
        state="running",
        runs_total=768,
        runs_done=10,
        points=points,
        fits=(),
        ts=1.7e9,
        current_nodes=1000,
        current_workers=4,
        current_ids=tuple(f"pi-{i:04d}" for i in range(1000)),
        max_nodes=64,
    )
    payload = experiments.encode(status)
    assert 16 * 1024 < len(payload) <= experiments.MAX_BYTES
    shown = ExperimentsModel()
    assert shown.apply(topics.experiment_status("room"), payload, 0.0)
    assert shown.current() == status


# -- the record -----------------------------------------------------------------------------


def a_run(index, nodes=1, workers=1, wall=10.0, **kw):
    return ExperimentRun(
        experiment="t",
        run=index,
        kind="primes",
        scaling="strong",
        nodes=nodes,
        workers=workers,
        repeat=0,
        job=f"p20261205-{index:06x}",
        work=10**6,
        wall_s=wall,
        started=1.7e9,
        gap_s=0.25,
        result="78498",
        node_ids=tuple(f"node-{i}" for i in range(nodes)),
        busy_s=wall * nodes * workers * 0.9,
        **kw,
    )


def test_runs_are_read_back_as_written_and_a_torn_last_line_is_dropped(tmp_path):
    plan = Plan(name="t", kind="primes", scaling="strong", nodes=(1, 2))
    record = Record(tmp_path, plan)
    first = a_run(0, head_cpu_s=0.5, messages=120, versions=("0.9.0",), backends=("numpy",))
    record.add(first, [NodeRow(0, "node-0", 9.0, 55.5, False)])
    with (tmp_path / "runs.csv").open("a") as f:
        f.write("t,1,primes,str")  # the power went mid-write
    again = Record(tmp_path, plan)
    assert again.runs == [first] and again.done == {0}
    second = a_run(1, nodes=2, wall=5.0)
    again.add(
        second, [NodeRow(1, "node-0", 4.5, None, True), NodeRow(1, "node-1", 4.4, 60.0, False)]
    )
    assert read_runs(tmp_path) == [first, second]
    assert read_nodes(tmp_path)[1:] == [
        NodeRow(1, "node-0", 4.5, None, True),
        NodeRow(1, "node-1", 4.4, 60.0, False),
    ]
    other = Plan(name="t", kind="primes", scaling="weak", nodes=(1, 2))
    with pytest.raises(RecordError, match="holds another experiment"):
        Record(tmp_path, other)


# -- the report -----------------------------------------------------------------------------


def test_the_report_renders_headless_with_the_ideal_the_curves_and_the_busy_bars(tmp_path):
    plan = Plan(name="t", kind="primes", scaling="strong", nodes=(1, 2, 4), workers=(1, 2))
    runs = [
        a_run(i, n, w, wall=10.0 / (n * w) * (1 + 0.1 * n))
        for i, (n, w) in enumerate([(1, 1), (2, 1), (4, 1), (1, 2), (2, 2), (4, 2)])
    ]
    text, png = report.write(tmp_path, plan, runs)
    picture = pygame.image.load(str(png))
    assert picture.get_size() == report.SIZE
    colours = {
        tuple(picture.get_at((x, y)))[:3] for x in range(0, 1500, 2) for y in range(0, 520, 2)
    }
    for colour in (report.IDEAL, report.SERIES[0], report.SERIES[1], report.BUSY, report.IDLE):
        assert colour in colours, colour
    words = text.read_text()
    assert "different answers" not in words
    odd = [*runs[:-1], dataclasses.replace(runs[-1], result="78497")]
    assert "gave different answers: 78497, 78498" in report.summary(plan, odd)
    # the headline is the most workers' series: 1 node took 10 / 2 * 1.1, 4 nodes 10 / 8 * 1.4
    assert f"4 Pis: {5.5 / 1.75:.1f}x faster than one" in words
    assert "Amdahl's serial fraction" in words and "busy" in words


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "t", "--nodes", "x", "--out", "o"], "argument --nodes: 'x' is not counts"),
        (["run", "t", "--nodes", "0,2", "--out", "o"], "argument --nodes: '0,2': counts are"),
        (["run", "Bad", "--out", "o"], "name 'Bad': use 1-40 of a-z"),
        (["run", "t", "--pick", "PI", "--out", "o"], "argument --pick: 'PI' is not a node id"),
        (["run", "t"], "the following arguments are required: --out"),
        (["show", "nowhere"], "nowhere: no plan.json"),
    ],
)
def test_a_bad_experiment_argument_is_one_line_naming_it(tmp_path, args, words):
    done = piswarm("experiment", *args)
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2 and words in lines[-1], lines
