"""Scaling experiments on real agents, with the coordinator as its own process (so the
experiment measures its CPU as it would on the head)."""

import signal
import subprocess
import sys

import pytest

from head.experiment import fit
from head.experiment.lab import Lab
from head.experiment.plan import Plan
from head.experiment.record import Record, read_nodes, read_runs
from head.experiment.runner import ExperimentRunner, LocalProcesses
from piswarm.mqtt import BrokerSettings, Credentials
from piswarm.protocol import experiments, jobs, topics
from piswarm.protocol.placement import Placement
from tests.conftest import job_flags, piswarm, status_is, until

PI_3E6 = 216_816  # pi(3,000,000)


# -- real sweeps ----------------------------------------------------------------------------


def sweep(broker, users, out, *extra):
    command = [
        sys.executable,
        "-m",
        "piswarm",
        "experiment",
        "run",
        "sweep",
        "--end",
        "3e6",
        "--block-size",
        "1e5",
        "--out",
        str(out),
        "--node-wait",
        "30",
        *job_flags(broker, users),
        *extra,
    ]
    return command


def room(viewer, agents, nodes, workers=2):
    made = [agents(n, workers=workers) for n in nodes]
    for n in nodes:
        viewer.wait_for(status_is(n, "online"), timeout=30)
    return made


def final_status(viewer, job):
    msgs = viewer.matching(lambda m: m.topic == topics.job_status(job) and m.payload)
    return jobs.decode_job_status(msgs[-1].payload)


def test_a_sweep_over_three_real_agents_records_every_run_as_its_jobs_say(
    broker, users, agents, coordinator, recorder, tmp_path
):
    coordinator()
    viewer = recorder("viewer")
    viewer.wait_connected()
    room(viewer, agents, ["node-a", "node-b", "node-c"])
    out = tmp_path / "sweep"
    command = sweep(broker, users, out, "--nodes", "1-3", "--workers", "1,2")
    done = subprocess.run(command, capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert "warming up on 3 nodes (not recorded)" in done.stderr.decode()
    runs = read_runs(out)
    assert sorted((r.nodes, r.workers) for r in runs) == [(n, w) for n in (1, 2, 3) for w in (1, 2)]
    assert sorted(r.run for r in runs) == list(range(6))
    for r in runs:
        status = final_status(viewer, r.job)
        assert status.state == "done" and r.result == str(status.primes) == str(PI_3E6)
        assert r.wall_s == pytest.approx(status.finished - status.created, abs=1e-3)
        assert status.placement == Placement(nodes=r.node_ids, per_node=r.workers)
        assert {c.node for c in status.top} <= set(r.node_ids) and len(r.node_ids) == r.nodes
        assert r.busy_s is not None and r.busy_s > 0 and r.busy_max_s >= r.busy_min_s > 0
        assert r.head_cpu_s is not None and r.broker_cpu_s is not None and r.messages is not None
        assert r.backends == ("numpy",) and r.versions and r.gap_s >= 0
    # every node of a run has its own row, busy
    nodes = read_nodes(out)
    assert len(nodes) == sum(r.nodes for r in runs) and all(n.busy_s > 0 for n in nodes)
    # Published as each ended, and the retained status holds the whole curve.
    published = [
        experiments.decode_run(m.payload)
        for m in viewer.matching(lambda m: m.topic == topics.experiment_runs("sweep"))
    ]
    assert sorted(published, key=lambda r: r.run) == sorted(runs, key=lambda r: r.run)
    retained = viewer.matching(lambda m: m.topic == topics.experiment_status("sweep"))
    last = experiments.decode_status(retained[-1].payload)
    assert (last.state, last.runs_done, last.runs_total, len(last.points)) == ("done", 6, 6, 6)
    # The report's figures are those of the runs, whose times are the statuses' (above, to
    # the 0.1 ms the CSV keeps: figures are compared as the report writes them from it).
    rows = fit.points((r.nodes, r.workers, r.wall_s) for r in runs)
    text = (out / "report.txt").read_text()
    assert done.stdout.decode() == text
    for row in rows.values():
        for p in row:
            figures = f"{p.nodes:>5} {p.wall_s:>8.2f} {p.spread_s / 2:>5.2f} {p.speedup:>9.2f}"
            assert figures in text, (figures, text)
    assert (out / "report.png").stat().st_size > 0
    shown = piswarm("experiment", "show", str(out))
    assert shown.returncode == 0 and shown.stdout.decode() == text


def test_an_experiment_killed_mid_sweep_resumes_without_redoing_finished_runs(
    broker, users, agents, coordinator, recorder, tmp_path
):
    coordinator()
    viewer = recorder("viewer")
    viewer.wait_connected()
    _a, b = room(viewer, agents, ["node-a", "node-b"], workers=1)
    b.hold_workers()  # the second run (2 nodes) cannot end while they are held
    out = tmp_path / "sweep"
    command = sweep(broker, users, out, "--nodes", "1,2", "--repeats", "2", "--warmup", "0")
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def on_the_second_run():
        msgs = viewer.matching(lambda m: m.topic == topics.experiment_status("sweep"))
        return msgs and experiments.decode_status(msgs[-1].payload).current_nodes == 2

    try:
        until(on_the_second_run, "the experiment's second run", 60)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
        first.stderr.close()
    (done_before,) = read_runs(out)
    assert (done_before.run, done_before.nodes) == (0, 1)
    b.release_workers()
    again = subprocess.run(command, capture_output=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr.decode()[-3000:]
    assert "resuming: 1 runs on disk, 3 to go" in again.stderr.decode()
    runs = read_runs(out)
    assert [r.run for r in runs] == [0, 1, 2, 3] and runs[0] == done_before
    assert len({r.job for r in runs}) == 4


def test_a_weak_scaling_life_sweep_grows_the_board_and_counts_the_strips_busy_time(
    broker, users, agents, coordinator, recorder, tmp_path
):
    coordinator()
    viewer = recorder("viewer")
    viewer.wait_connected()
    room(viewer, agents, ["node-a", "node-b"], workers=1)
    out = tmp_path / "life"
    command = [
        sys.executable,
        "-m",
        "piswarm",
        "experiment",
        "run",
        "soup",
        "--kind",
        "life",
        "--scaling",
        "weak",
        "--nodes",
        "1,2",
        "--size",
        "128x64",
        "--gens",
        "300",
        "--out",
        str(out),
        *job_flags(broker, users),
    ]
    done = subprocess.run(command, capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    one, two = read_runs(out)
    assert (one.nodes, two.nodes, two.work) == (1, 2, 128 * 128 * 300)
    for r in (one, two):
        msgs = viewer.matching(lambda m, r=r: m.topic == topics.job_status(r.job) and m.payload)
        status = jobs.decode_any_status(msgs[-1].payload)
        assert status.state == "done" and r.result == status.hash and len(r.result) == 16
        assert set(status.nodes) == set(r.node_ids) and status.height == 64 * r.nodes
        assert r.busy_s is not None and r.busy_s > 0
    assert "Gustafson's serial fraction" in (out / "report.txt").read_text()


def test_an_experiment_stopped_with_ctrl_c_cancels_its_run_and_says_stopped(
    broker, users, agents, coordinator, recorder, tmp_path
):
    coordinator()
    viewer = recorder("viewer")
    viewer.wait_connected()
    (a,) = room(viewer, agents, ["node-a"], workers=1)
    a.hold_workers()  # the first run cannot end
    out = tmp_path / "sweep"
    command = sweep(broker, users, out, "--warmup", "0")
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL)

    def status():
        msgs = viewer.matching(lambda m: m.topic == topics.experiment_status("sweep"))
        return experiments.decode_status(msgs[-1].payload) if msgs else None

    until(lambda: status() is not None and status().current_nodes == 1, "the first run", 60)
    job = viewer.wait_for(
        lambda m: m.topic.startswith("piswarm/jobs/p") and m.topic.endswith("/status"), timeout=30
    ).topic
    first.send_signal(signal.SIGINT)
    assert first.wait(30) == 130
    assert status().state == "stopped" and status().runs_done == 0
    cancelled = jobs.decode_job_status(
        viewer.wait_for(
            lambda m: m.topic == job and m.payload and b'"cancelled"' in m.payload, timeout=30
        ).payload
    )
    assert cancelled.name == "sweep 1x1"
    a.release_workers()


def test_a_run_that_lacks_nodes_fails_saying_how_many_and_keeps_the_runs_before(
    broker, users, agents, coordinator, recorder, tmp_path
):
    coordinator()
    viewer = recorder("viewer")
    viewer.wait_connected()
    room(viewer, agents, ["node-a"], workers=1)
    out = tmp_path / "sweep"
    command = sweep(broker, users, out, "--nodes", "1,2", "--node-wait", "1", "--warmup", "0")
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    last = done.stderr.decode().strip().splitlines()[-1]
    assert done.returncode == 1 and last.endswith(
        "run 1 needs 2 nodes with 1 workers; 1 are online (node-a)"
    ), last
    assert [r.nodes for r in read_runs(out)] == [1]
    msgs = viewer.matching(lambda m: m.topic == topics.experiment_status("sweep"))
    failed = experiments.decode_status(msgs[-1].payload)
    assert failed.state == "failed" and "needs 2 nodes" in failed.error and failed.runs_done == 1
    assert (out / "report.txt").exists()


def test_a_run_too_large_to_name_takes_any_n_and_records_the_nodes_that_worked(
    broker, users, agents, coordinator, recorder, tmp_path
):
    coordinator()
    viewer = recorder("viewer")
    viewer.wait_connected()
    room(viewer, agents, ["node-a", "node-b", "node-c"], workers=1)
    plan = Plan(
        name="many", kind="primes", scaling="strong", nodes=(2,), end=3 * 10**6, block_size=10**5
    )
    record = Record(tmp_path / "many", plan)
    admin = Credentials.load(users.credentials_path("admin"))
    settings = BrokerSettings(host="127.0.0.1", port=broker.port, credentials=admin)
    with Lab(settings) as lab:
        runner = ExperimentRunner(
            plan,
            record,
            lab,
            local=LocalProcesses("127.0.0.1", broker.port),
            run_timeout=120,
            warmups=0,
            names_bytes=1,  # no id fits: the run asks for "any 2" of the 3
        )
        runner.run()
    (run,) = record.runs
    status = final_status(viewer, run.job)
    assert status.placement == Placement(count=2, per_node=1)
    assert len(run.node_ids) == 2 and set(run.node_ids) <= {"node-a", "node-b", "node-c"}
    assert {c.node for c in status.top} == set(run.node_ids)
    assert [n.node for n in read_nodes(tmp_path / "many")] == list(run.node_ids)
    assert run.busy_min_s > 0 and run.result == str(PI_3E6)
