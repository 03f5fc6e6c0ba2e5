"""``piswarm demo`` as a user runs it: it shows the fleet, and Ctrl-C leaves nothing behind."""

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import cmdline


def lines_of(proc):
    """The process's output, line by line, as it comes; ``q.said`` keeps every line."""
    q = queue.Queue()
    q.said = []

    def pump():
        for line in proc.stdout:
            q.said.append(line.decode(errors="replace"))
            q.put(q.said[-1])
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def wait_line(q, pattern, timeout):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = q.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if re.search(pattern, line):
            return line
    raise AssertionError(f"no line matching {pattern!r}; last output: {''.join(seen[-10:])}")


def everything(q):
    """All the process said, once it has ended."""
    while q.get(timeout=30) is not None:
        pass
    return "".join(q.said)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_demo_shows_the_fleet_and_stopping_its_process_group_stops_everything_quietly(stop):
    """Ctrl-C in a terminal signals the whole foreground process group, ``systemctl stop``
    the whole service: workers and strips must leave stopping to the demo (no traceback,
    no "worker died"), and nothing may be left behind."""
    demo = subprocess.Popen(
        [sys.executable, "-m", "piswarm", "demo", "--text", "--nodes", "12", "--interval", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out = lines_of(demo)
        wait_line(out, r"nodes online 12/12 .*hottest sim-\d+ \d+\.\dC", timeout=30)
        # The simulated nodes do real work: the demo's prime search moves.
        wait_line(out, r"job p\d+-\w+ +running .* [1-9]\d*/1,?000 blocks", timeout=60)
        # ... and a Game of Life, in strips on three of the nodes, paced to be watched.
        wait_line(
            out,
            r"job l\d+-\w+ +running +life 1024x576 torus +generation [1-9][\d,]*/3,600 "
            r".* 3 strips on 3 nodes",
            timeout=60,
        )
        children = psutil.Process(demo.pid).children(recursive=True)
        assert any("multiprocessing" in " ".join(cmdline(p)) for p in children)  # sieve workers
        assert sum("spawn_main" in " ".join(cmdline(p)) for p in children) >= 3  # Life strips
        (broker,) = [p for p in children if p.name() == "mosquitto"]
        config = Path(broker.cmdline()[-1])  # <tmp>/broker/mosquitto.conf
        assert config.exists()
        os.killpg(demo.pid, stop)  # the demo, its sieve workers and its strips
        wait_line(out, r"demo stopped", timeout=20)
        assert demo.wait(timeout=20) == 0
        said = everything(out)
        assert "Traceback" not in said and "KeyboardInterrupt" not in said, said
        assert "computing it again" not in said, said
        _gone, alive = psutil.wait_procs(children, timeout=5)
        assert alive == [], f"left behind: {alive}"
        assert not config.parent.parent.exists()  # the temporary directory is gone too
    finally:
        demo.kill()
        demo.wait()
        demo.stdout.close()


def test_demo_rejects_bad_arguments_in_one_line():
    done = subprocess.run(
        [sys.executable, "-m", "piswarm", "demo", "--nodes", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "piswarm demo: error: argument --nodes: 0 is not in 1-5,000 (see 'piswarm demo --help')"
    )


def test_demo_opens_the_display_and_stops_cleanly(tmp_path):
    """With a screen (here the SDL dummy driver) the demo shows the kiosk display."""
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "piswarm",
            "demo",
            "--nodes",
            "12",
            "--interval",
            "0.5",
            "--screenshot-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out = lines_of(demo)
        wait_line(out, r"watch the raw messages: mosquitto_sub -p \d+ -u viewer", timeout=30)
        children = psutil.Process(demo.pid).children(recursive=True)
        wait_line(out, r"display running at 1280x720 \(dummy driver\)", timeout=30)
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C in its terminal
        wait_line(out, r"demo stopped", timeout=20)
        assert demo.wait(timeout=20) == 0
        said = everything(out)
        assert "Traceback" not in said and "KeyboardInterrupt" not in said, said
        _gone, alive = psutil.wait_procs(children, timeout=5)
        assert alive == []
    finally:
        demo.kill()
        demo.wait()
        demo.stdout.close()


def test_without_a_screen_the_demo_falls_back_to_text_and_display_says_why():
    """Over ssh, or on a server: no desktop session and no console screen. The fallback is
    said once, by piswarm (SDL's Wayland probe used to print "error: XDG_RUNTIME_DIR is
    invalid or not set in the environment." first)."""
    unset = ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    demo = subprocess.run(
        [
            sys.executable,
            "-m",
            "piswarm",
            "demo",
            "--nodes",
            "5",
            "--interval",
            "0.5",
            "--duration",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert demo.returncode == 0, demo.stderr
    assert "no screen here for the display: showing a text summary" in demo.stdout
    assert "nodes online 5/5" in demo.stdout
    assert "XDG_RUNTIME_DIR" not in demo.stdout + demo.stderr
    display = subprocess.run(
        [sys.executable, "-m", "piswarm", "display", "--broker-port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert display.returncode == 1
    assert (
        display.stderr.strip()
        .splitlines()[-1]
        .startswith("piswarm display: error: no screen to show the display on")
    )
    assert "XDG_RUNTIME_DIR" not in display.stdout + display.stderr
