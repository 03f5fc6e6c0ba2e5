"""The README's way to use the system's Mosquitto: a drop-in beside Debian's own config."""

import grp
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from broker.runner import free_port
from broker.users import UserStore
from piswarm.children import die_with_parent
from tests.mqtt_helpers import Recorder

DEBIAN_CONF = Path("/etc/mosquitto/mosquitto.conf")


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root: the packaged broker starts as root and becomes 'mosquitto'"
    if not DEBIAN_CONF.exists():
        return "no packaged /etc/mosquitto/mosquitto.conf on this machine"
    try:
        grp.getgrnam("mosquitto")
    except KeyError:
        return "no 'mosquitto' group on this machine"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def piswarm(*args):
    done = subprocess.run(
        [sys.executable, "-m", "piswarm", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_drop_in_config_runs_with_debians_packaged_mosquitto_conf():
    base = Path(tempfile.mkdtemp(prefix="piswarm-system-"))
    proc = None
    try:
        base.chmod(0o755)  # the broker, once it is 'mosquitto', must reach the users dir
        users_dir, confd, state = base / "users", base / "conf.d", base / "state"
        piswarm(
            "broker", "users", "add", "pi-1", "--dir", str(users_dir), "--broker-group", "mosquitto"
        )
        port = free_port()
        confd.mkdir()
        (confd / "piswarm.conf").write_text(
            piswarm("broker", "config", "--dir", str(users_dir), "--port", str(port))
        )
        # Debian's file as packaged, with its paths moved into this test's directory.
        state.mkdir()
        shutil.chown(state, user="mosquitto")
        main = DEBIAN_CONF.read_text()
        main = main.replace("/etc/mosquitto/conf.d", str(confd))
        main = main.replace("/var/lib/mosquitto/", f"{state}/")
        main = main.replace("/var/log/mosquitto/mosquitto.log", str(state / "mosquitto.log"))
        main = main.replace("/run/mosquitto/mosquitto.pid", str(state / "mosquitto.pid"))
        (base / "mosquitto.conf").write_text(main)

        mode = stat.S_IMODE((users_dir / "credentials").stat().st_mode)
        assert mode == 0o700  # the passwords in clear stay private to their owner
        assert stat.S_IMODE((users_dir / "passwd").stat().st_mode) == 0o640

        proc = subprocess.Popen(
            ["mosquitto", "-c", str(base / "mosquitto.conf")],
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + 10
        while not listening(port):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "mosquitto did not listen"
            time.sleep(0.05)
        store = UserStore(users_dir)
        admin = Recorder(port, store.get("admin"), ()).wait_connected()
        assert not admin.publish("piswarm/probe", b"x").is_failure
        admin.close()
        anonymous = Recorder(port, None, ())
        assert not anonymous.connected.wait(1)
        anonymous.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
            proc.stderr.close()
        shutil.rmtree(base, ignore_errors=True)
