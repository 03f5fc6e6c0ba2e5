"""Children that die with their parent process, whichever thread started them."""

import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHILD = textwrap.dedent("""
    import os, signal, sys
    from piswarm.children import die_with_parent, watch_parent
    mode, parent = sys.argv[1], int(sys.argv[2])
    if mode == "watch":
        watch_parent(parent)
    else:
        die_with_parent(signal.SIGKILL, parent)
    print("ready", flush=True)
    for line in sys.stdin:
        print("pong", flush=True)
""")

# Starts the child from a thread that then ends, waits until the kernel has seen the
# thread go, and asks the child whether it is still there.
PARENT = textwrap.dedent("""
    import os, subprocess, sys, threading
    mode, keep_fd, child_code = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    box = {}
    def start():
        box["tid"] = threading.get_native_id()
        box["child"] = subprocess.Popen(
            [sys.executable, "-c", child_code, mode, str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, pass_fds=(keep_fd,))
        box["child"].stdout.readline()
    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    while os.path.exists(f"/proc/self/task/{box['tid']}"):
        os.sched_yield()
    child = box["child"]
    try:
        child.stdin.write("ping\\n")
        child.stdin.flush()
        answer = child.stdout.readline().strip() or "dead"
    except BrokenPipeError:
        answer = "dead"
    print(answer, flush=True)
    sys.stdin.read()
""")


def _family(mode: str) -> tuple[subprocess.Popen[str], str, int]:
    """A parent process and its child; returns the parent, the child's answer after
    its starting thread ended, and a pipe end that reaches EOF once both are gone."""
    read_end, write_end = os.pipe()
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, mode, str(write_end), CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        pass_fds=(write_end,),
    )
    os.close(write_end)
    assert parent.stdout is not None
    answer = parent.stdout.readline().strip()
    return parent, answer, read_end


def _end(parent: subprocess.Popen[str], read_end: int) -> None:
    with parent:
        parent.kill()
    os.close(read_end)


def _gone(read_end: int, timeout: float) -> bool:
    ready, _, _ = select.select([read_end], [], [], timeout)
    return bool(ready) and os.read(read_end, 1) == b""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_pdeathsig_kills_a_child_when_the_thread_that_started_it_ends() -> None:
    # Why the pool's workers do not use it: this is what hung the demo's shutdown.
    parent, answer, read_end = _family("pdeathsig")
    try:
        assert answer == "dead"
    finally:
        _end(parent, read_end)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_a_watching_child_outlives_its_starting_thread_and_dies_with_the_process() -> None:
    parent, answer, read_end = _family("watch")
    try:
        assert answer == "pong"
        assert not _gone(read_end, 0.2)  # both still alive
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _gone(read_end, 10), "the child outlived its parent process"
    finally:
        _end(parent, read_end)


# A fresh interpreter: its first child starts multiprocessing's resource tracker too.
HELD = textwrap.dedent("""
    import multiprocessing, signal, threading
    from piswarm.children import stop_signals_held

    def child():
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        print(sorted(s.name for s in blocked), flush=True)

    if __name__ == "__main__":
        def start():
            with stop_signals_held():
                process = multiprocessing.get_context("spawn").Process(target=child)
                process.start()
            process.join()

        for _ in range(2):  # the first starts the tracker, the second does not
            thread = threading.Thread(target=start)
            thread.start()
            thread.join()
""")


def test_children_start_with_the_stop_signals_held_even_the_first(tmp_path) -> None:
    """CPython's resource tracker, started with a process's first child, unblocks SIGINT
    and SIGTERM in the thread that starts it: that child then caught a Ctrl-C while it
    imported (seen in the demo under load)."""
    script = tmp_path / "held.py"
    script.write_text(HELD)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["['SIGINT', 'SIGTERM']"] * 2, done.stdout
