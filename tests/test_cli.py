"""The ``piswarm`` command as users type it."""

import os
import subprocess
import sys

import pytest

from tests.conftest import status_is


def piswarm(*args, env=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "piswarm", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["sim", "--nodes", "many"], "argument --nodes: invalid int value: 'many'"),
        (["agent", "--interval", "x"], "argument --interval: invalid float value: 'x'"),
        (
            ["broker", "users", "add", "Bad_Name", "--dir", "unused-dir"],
            "invalid node id 'Bad_Name'",
        ),
        (["broker", "users", "add", "--count", "0", "--dir", "unused-dir"], "--count 0 is not in"),
    ],
)
def test_bad_arguments_print_one_line(args, message):
    done = piswarm(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [(["push", "/nonexistent.txt", "--broker-host", "h"], "cannot read the inventory"),
     (["push", "--broker-host", "h", "--parallel", "0"], "--parallel 0 is not in 1-256"),
     (["push"], "the following arguments are required: --broker-host"),
     (["status", "--password-env", "PISWARM_NO_SUCH_VAR"], "$PISWARM_NO_SUCH_VAR is not set"),
     (["broker", "bad host!", "--users-dir", "/nonexistent"], "'bad host!'"),
     (["broker", "head.lab", "--users-dir", "/nonexistent"], "no broker users in /nonexistent")],
)  # fmt: skip
def test_deploy_arguments_are_checked_in_one_line(tmp_path, args, message):
    (tmp_path / "pi_list.txt").write_text("10.0.0.1\n")
    done = subprocess.run([sys.executable, "-m", "piswarm", "deploy", *args],
                          capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--size", "64", "--random", "0.5"], "'64' is not a size like 4096x4096"),
     (["--size", "64x64"], "one of the arguments --pattern --random is required"),
     (["--size", "64x64", "--random", "1.5"], "1.5 is not between 0 and 1"),
     (["--size", "64x64", "--pattern", "nosuch"], "no such file, and not a bundled pattern"),
     (["--size", "64x64", "--pattern", "bad.rle"], "bad.rle line 2, column 3: unexpected 'x'"),
     (["--size", "64x64", "--pattern", "glider", "--at", "1;2"], "'1;2' is not a position"),
     (["--size", "64x64", "--random", "0.5", "--at", "1,2"], "--at places a --pattern"),
     (["--size", "16384x16384", "--random", "0.5"], "is more than 33,554,432 cells"),
     (["--size", "64x64", "--random", "0.5", "--halo", "0"], "halo: 0 is below 1")],
)  # fmt: skip
def test_life_arguments_are_checked_in_one_line_before_connecting(tmp_path, args, message):
    (tmp_path / "bad.rle").write_text("x = 3, y = 3\nbox$2bo$3o!\n")
    done = subprocess.run([sys.executable, "-m", "piswarm", "job", "life", "--gens", "10", *args,
                           "--broker-port", "1"], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PISWARM_CREDENTIALS": "/nonexistent"})  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr


def test_deploy_inventory_writes_and_checks_a_pi_list(tmp_path):
    out = tmp_path / "pi_list.txt"
    done = piswarm("deploy", "inventory", "--range", "192.168.[4:67].[1:3]", "--user", "pi",
                   "-o", str(out))  # fmt: skip
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
    [(["job", "primes", "10", "1x"], "argument END: '1x' is not a non-negative whole number"),
     (["job", "primes", "-5", "10"], "argument START: '-5' is not a non-negative whole number"),
     (["job", "primes", "1.5", "10"], "argument START: '1.5' is not a whole number"),
     (["job", "primes", "1", "10", "--block-size", "1e2"], "below 10000"),
     (["job", "primes", "10", "1"], "start 10 is greater than end 1"),
     (["job", "status", "Not/A/Job"], "invalid job id 'Not/A/Job'"),
     (["job", "export", "p1-x", "--db", "/nonexistent.sqlite"], "no job database at"),
     (["job"], "the following arguments are required: VERB")],
)  # fmt: skip
def test_job_arguments_are_checked_in_one_line(args, message):
    done = piswarm(*args, "--broker-port", "1") if args[1:2] == ["status"] else piswarm(*args)
    assert done.returncode == 2 or (done.returncode == 1 and "database" in message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert message in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [(["display", "--windowed", "huge"], "'huge' is not WIDTHxHEIGHT"),
     (["display", "--palette", "rainbow"], "invalid choice: 'rainbow'"),
     (["display", "--fps", "0", "--broker-port", "1"], "--fps 0 is not in 1-240"),
     (["display", "--layout", "/nonexistent.toml"], "/nonexistent.toml does not exist")],
)  # fmt: skip
def test_display_arguments_are_checked_before_anything_opens(args, message):
    done = piswarm(*args, env={"SDL_VIDEODRIVER": "dummy"}, timeout=30)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_users_are_created_and_passwords_never_printed(tmp_path):
    users_dir = tmp_path / "users"
    done = piswarm("broker", "users", "add", "pi-1", "--count", "3", "--dir", str(users_dir))
    assert done.returncode == 0, done.stderr
    assert "4 node users created" in done.stdout
    listing = piswarm("broker", "users", "list", "--dir", str(users_dir))
    assert [line.split()[:2] for line in listing.stdout.splitlines()] == [
        ["admin", "admin"], ["pi-1", "node"], ["sim-001", "node"], ["sim-002", "node"],
        ["sim-003", "node"], ["viewer", "viewer"],
    ]  # fmt: skip
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
        "status", "--broker-host", "127.0.0.1", "--broker-port", str(broker.port),
        "--wait", "1.5", env={"PISWARM_BROKER_DIR": str(users.root)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1] for line in done.stdout.splitlines()[1:-1]}
    assert rows == {"node-a": "live", "node-b": "live"}
    assert "nodes online 2/2" in done.stdout


def test_status_without_a_broker_is_one_line(tmp_path):
    from broker.runner import free_port

    done = piswarm(
        "status", "--broker-port", str(free_port()), "--wait", "0.1",
        env={"PISWARM_BROKER_DIR": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("piswarm status: error: cannot reach the broker at localhost:")
    )
