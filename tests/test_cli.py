"""The ``piswarm`` command as users type it."""

import os
import subprocess
import sys

import pytest

from tests.conftest import status_is


def piswarm(*args, env=None, timeout=60, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "piswarm", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def one_line_error(done, command, message, code=2):
    """The error as a user sees it: one line, prefixed with the command typed (however
    deep: 'piswarm job primes'), naming what was wrong."""
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{' '.join(['piswarm', command]).strip()}: error: "), lines[0]
    assert message in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["sim", "--nodes", "many"], "argument --nodes: 'many' is not a non-negative whole number"),
        (["sim", "--nodes", "0"], "argument --nodes: 0 is not in 1-5,000"),
        (["sim", "--workers", "300"], "argument --workers: 300 is not in 0-256"),
        (["agent", "--interval", "x"], "argument --interval: 'x' is not a number"),
        (["agent", "--interval", "nan"], "argument --interval: 'nan' is not a finite number"),
        (["agent", "--broker-port", "0"], "argument --broker-port: 0 is not in 1-65,535"),
        (
            ["broker", "users", "add", "Bad_Name", "--dir", "unused-dir"],
            "invalid node id 'Bad_Name'",
        ),
        (
            ["broker", "users", "add", "--count", "0", "--dir", "unused-dir"],
            "argument --count: 0 is not in 1-5,000",
        ),
        (["broker", "run", "--port", "70000"], "argument --port: 70000 is not in 0-65,535"),
        (["demo", "--nodes", "0"], "argument --nodes: 0 is not in 1-5,000"),
        (["demo", "--interval", "0"], "argument --interval: 0 is not in 0.05-3,600 s"),
        (["head", "--lease", "0"], "argument --lease: 0 is not in 1-86,400 s"),
        (["head", "--double-check", "-1"], "argument --double-check: -1 is not in 0-1"),
        (["status", "--wait", "-1"], "argument --wait: -1 is not in 0-3,600 s"),
    ],
)
def test_bad_arguments_print_one_line_naming_the_flag_and_what_is_allowed(args, message):
    command = " ".join(a for a in args[:3] if a in ("broker", "users", "add", "run")) or args[0]
    one_line_error(piswarm(*args), command if args[0] != "frobnicate" else "", message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["push", "/nonexistent.txt", "--broker-host", "h"], "cannot read the inventory"),
        (
            ["push", "--broker-host", "h", "--parallel", "0"],
            "argument --parallel: 0 is not in 1-256",
        ),
        (["push", "--broker-host", "h", "--workers", "-1"], "argument --workers: '-1' is not a"),
        (["logs", "--lines", "0"], "argument --lines: 0 is not in 1-100,000"),
        (["push"], "the following arguments are required: --broker-host"),
        (["status", "--password-env", "PISWARM_NO_SUCH_VAR"], "$PISWARM_NO_SUCH_VAR is not set"),
        (["broker", "bad host!", "--users-dir", "/nonexistent"], "'bad host!'"),
        (["broker", "head.lab", "--users-dir", "/nonexistent"], "no broker users in /nonexistent"),
    ],
)
def test_deploy_arguments_are_checked_in_one_line(tmp_path, args, message):
    (tmp_path / "pi_list.txt").write_text("10.0.0.1\n")
    one_line_error(piswarm("deploy", *args, cwd=tmp_path), f"deploy {args[0]}", message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "64", "--random", "0.5"], "'64' is not a size like 4096x4096"),
        (["--size", "64x64"], "one of the arguments --pattern --random is required"),
        (["--size", "64x64", "--random", "1.5"], "argument --random: 1.5 is not in 0-1"),
        (["--size", "2x64", "--random", "0.5"], "--size: 2x64: width and height are 3-16,384"),
        (["--size", "64x64", "--pattern", "nosuch"], "no such file, and not a bundled pattern"),
        (["--size", "64x64", "--pattern", "bad.rle"], "bad.rle line 2, column 3: unexpected 'x'"),
        (["--size", "64x64", "--pattern", "glider", "--at", "1;2"], "'1;2' is not a position"),
        (["--size", "64x64", "--random", "0.5", "--at", "1,2"], "--at places a --pattern"),
        (
            ["--size", "64x64", "--pattern", "glider", "--at", "62,0"],
            "--at 62,0: the 3x3 pattern must start at x 0-61 and y 0-61",
        ),
        (
            ["--size", "16384x16384", "--random", "0.5"],
            "argument --size: 16384x16384 is 268,435,456 cells, more than 33,554,432",
        ),
        (
            ["--size", "64x64", "--random", "0.5", "--halo", "0"],
            "argument --halo: 0 is not in 1-64",
        ),
        (
            ["--size", "64x64", "--random", "0.5", "--checkpoint-every", "0"],
            "argument --checkpoint-every: 0 is not in 1-1e9",
        ),
        (
            ["--size", "64x64", "--random", "0.5", "--pace", "1e9"],
            "argument --pace: 1e9 is not in 0-100,000",
        ),
        (
            ["--size", "64x64", "--random", "0.5", "--name", "x" * 81],
            "argument --name: 'xxxxxxxxxxxxxxxxxxxx'... is 81 characters long; at most 80",
        ),
    ],
)
def test_life_arguments_are_checked_in_one_line_before_connecting(tmp_path, args, message):
    (tmp_path / "bad.rle").write_text("x = 3, y = 3\nbox$2bo$3o!\n")
    done = piswarm(
        "job",
        "life",
        "--gens",
        "10",
        *args,
        "--broker-port",
        "1",
        cwd=tmp_path,
        env={"PISWARM_CREDENTIALS": "/nonexistent"},
    )
    one_line_error(done, "job life", message)


def test_deploy_inventory_writes_and_checks_a_pi_list(tmp_path):
    out = tmp_path / "pi_list.txt"
    done = piswarm(
        "deploy", "inventory", "--range", "192.168.[4:67].[1:3]", "--user", "pi", "-o", str(out)
    )
    assert done.returncode == 0, done.stderr
    lines = [x for x in out.read_text().splitlines() if not x.startswith("#")]
    assert len(lines) == 192 and lines[0] == "pi@192.168.4.1" and lines[-1] == "pi@192.168.67.3"
    checked = piswarm("deploy", "inventory", str(out))
    assert checked.returncode == 0 and "192 hosts, 0 problems" in checked.stdout
    ids = piswarm("deploy", "inventory", str(out), "--ids").stdout.split()
    assert len(ids) == 192 and ids[:2] == ["pi-4-1", "pi-4-2"]
    out.write_text(out.read_text() + "pi@192.168.4.1\n")
    again = piswarm("deploy", "inventory", str(out))
    assert again.returncode == 1
    assert "line 194: 192.168.4.1 is already on line 2" in again.stdout
    bad = piswarm("deploy", "inventory", "--range", "10.0.[5:1].1")
    assert bad.returncode == 2 and bad.stderr.strip().endswith("[5:1]: 5 is after 1")


def test_the_coordinator_needs_admin_credentials(tmp_path):
    env = {"PISWARM_BROKER_DIR": str(tmp_path / "none"), "PISWARM_JOBS_DB": str(tmp_path / "j")}
    done = piswarm("head", "--no-display", env=env)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "piswarm head: error: the coordinator needs the admin's broker credentials: run "
        "'piswarm broker users init', or pass --credentials"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["job", "primes", "10", "1x"], "argument END: '1x' is not a non-negative whole number"),
        (["job", "primes", "-5", "10"], "argument START: '-5' is not a non-negative whole number"),
        (["job", "primes", "1.5", "10"], "argument START: '1.5' is not a whole number"),
        (
            ["job", "primes", "1", "10", "--block-size", "1e2"],
            "argument --block-size: 1e2 is not in 10,000-1e10",
        ),
        (
            ["job", "primes", "1", "1e9", "--block-size", "0"],
            "argument --block-size: 0 is not in 10,000-1e10",
        ),
        (["job", "primes", "1", "1" + "0" * 30], "argument END: 1e30 is not in 0-9.22e18"),
        (["job", "primes", "1", "1e999999999"], "argument END: 1e999999999 is not in 0-9.22e18"),
        (
            ["job", "primes", "1", "1e12", "--block-size", "1e9"],
            "--block-size 1e9 is more than 100,000,000, the most a job keeping its primes "
            "may have: use --keep counts or smaller blocks",
        ),
        (
            ["job", "primes", "1", "10", "--double-check", "2"],
            "argument --double-check: 2 is not in 0-1",
        ),
        (
            ["job", "primes", "1", "1e12", "--keep", "all"],
            "argument --keep: invalid choice: 'all' (choose from ",
        ),
        (["job", "primes", "10", "1"], "START 10 is greater than END 1"),
        (["job", "primes", "1", "10", "--timeout", "0"], "--timeout: 0 is not in 0.1-3,600 s"),
        (["job", "status", "Not/A/Job"], "invalid job id 'Not/A/Job'"),
        (["job", "export", "p1-x", "--db", "/nonexistent.sqlite"], "no job database at"),
        (["job"], "the following arguments are required: VERB"),
    ],
)
def test_job_arguments_are_checked_in_one_line(args, message):
    done = piswarm(*args, "--broker-port", "1") if args[1:2] == ["status"] else piswarm(*args)
    command = " ".join(args[:2])
    one_line_error(done, command, message, code=1 if "database" in message else 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["display", "--windowed", "huge"], "'huge' is not WIDTHxHEIGHT"),
        (["display", "--palette", "rainbow"], "invalid choice: 'rainbow'"),
        (["display", "--fps", "0", "--broker-port", "1"], "argument --fps: 0 is not in 1-240"),
        (["display", "--rotate", "0.5"], "argument --rotate: 0.5 is not in 1-86,400 s"),
        (["display", "--screenshot", "/"], "argument --screenshot: / is a directory"),
        (["display", "--layout", "/nonexistent.toml"], "/nonexistent.toml does not exist"),
    ],
)
def test_display_arguments_are_checked_before_anything_opens(args, message):
    one_line_error(piswarm(*args, env={"SDL_VIDEODRIVER": "dummy"}, timeout=30), "display", message)


@pytest.mark.parametrize("flag", ["--screenshot", "--screenshot-dir"])
def test_screenshots_go_only_where_a_directory_exists(tmp_path, flag):
    missing = tmp_path / "no" / "such"
    where = missing / "x.png" if flag == "--screenshot" else missing
    done = piswarm("display", flag, str(where), env={"SDL_VIDEODRIVER": "dummy"}, timeout=30)
    one_line_error(done, "display", f"argument {flag}: {where}: no such directory")
    assert not (tmp_path / "no").exists()  # nothing made behind the user's back


def test_users_are_created_and_passwords_never_printed(tmp_path):
    users_dir = tmp_path / "users"
    done = piswarm("broker", "users", "add", "pi-1", "--count", "3", "--dir", str(users_dir))
    assert done.returncode == 0, done.stderr
    assert "4 node users created" in done.stdout
    listing = piswarm("broker", "users", "list", "--dir", str(users_dir))
    assert [line.split()[:2] for line in listing.stdout.splitlines()] == [
        ["admin", "admin"],
        ["pi-1", "node"],
        ["sim-001", "node"],
        ["sim-002", "node"],
        ["sim-003", "node"],
        ["viewer", "viewer"],
    ]
    from broker.users import UserStore

    for user in UserStore(users_dir).users():
        for out in (done, listing):
            assert user.password not in out.stdout + out.stderr


def test_broker_config_prints_a_production_config(tmp_path):
    done = piswarm("broker", "config", "--dir", str(tmp_path))
    assert done.returncode == 0
    assert "listener 1883\n" in done.stdout
    assert f"password_file {tmp_path}/passwd" in done.stdout
    assert "user " not in done.stdout  # the packaged mosquitto user is kept


def test_status_lists_nodes_from_the_broker(broker, users, agents, recorder):
    rec = recorder()
    agents("node-a")
    agents("node-b")
    rec.wait_for(status_is("node-a", "online"))
    rec.wait_for(status_is("node-b", "online"))
    done = piswarm(
        "status",
        "--broker-host",
        "127.0.0.1",
        "--broker-port",
        str(broker.port),
        "--wait",
        "1.5",
        env={"PISWARM_BROKER_DIR": str(users.root)},
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1] for line in done.stdout.splitlines()[1:-1]}
    assert rows == {"node-a": "live", "node-b": "live"}
    assert "nodes online 2/2" in done.stdout


def test_status_waits_for_each_nodes_next_report_not_a_fixed_time(broker, users, agents, recorder):
    """Telemetry is not retained: status listens until every online node has reported
    (one telemetry period, here 3 s: it once stopped after 2 s, and showed '-')."""
    rec = recorder()
    for node in ("node-a", "node-b", "node-c"):
        agents(node, interval=3)
        rec.wait_for(status_is(node, "online"))
    done = piswarm(
        "status",
        "--broker-host",
        "127.0.0.1",
        "--broker-port",
        str(broker.port),
        env={"PISWARM_BROKER_DIR": str(users.root)},
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:-1]]
    assert [row[0] for row in rows] == ["node-a", "node-b", "node-c"]
    for row in rows:
        assert row[1] == "live" and row[3].endswith("%") and float(row[4]) >= 0, row


def test_status_without_a_broker_is_one_line(tmp_path):
    from broker.runner import free_port

    done = piswarm(
        "status",
        "--broker-port",
        str(free_port()),
        "--wait",
        "0.1",
        env={"PISWARM_BROKER_DIR": str(tmp_path)},
    )
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("piswarm status: error: cannot reach the broker at localhost:")
    )


def test_a_reader_that_stops_reading_ends_a_command_quietly(broker, users):
    """'piswarm job list | head': once head has its lines, the rest goes nowhere, without
    a BrokenPipeError traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "piswarm",
                "job",
                "list",
                "--broker-host",
                "127.0.0.1",
                "--broker-port",
                str(broker.port),
                "--credentials",
                str(users.credentials_path("admin")),
            ],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 0 and done.stderr == "", done.stderr
