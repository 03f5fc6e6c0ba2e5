"""``./run``, the README's two setup commands, where a fresh machine makes them trip."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Holds apt's locks as apt itself does (POSIX locks) until told to let go.
HOLDER = textwrap.dedent("""
    import fcntl, os, sys
    fds = [os.open(path, os.O_RDWR | os.O_CREAT, 0o640) for path in sys.argv[1:]]
    for fd in fds:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("held", flush=True)
    sys.stdin.readline()
""")

NO_SOURCES = ["-o", "Dir::Etc::SourceList=/dev/null", "-o", "Dir::Etc::SourceParts=/nonexistent"]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("apt-get"), reason="root and apt")
@pytest.mark.parametrize(
    ("locks", "apt_args"),
    [
        (
            ["/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock"],
            ["install", "-y", "-qq", "mosquitto"],
        ),
        (["/var/lib/apt/lists/lock"], ["update", "-qq", *NO_SOURCES]),
    ],
)
def test_run_waits_for_another_package_manager_and_says_so_once(locks, apt_args):
    """unattended-upgrades on a fresh Raspberry Pi OS or Ubuntu holds apt's locks: ./run
    waits for it (apt-get alone exits 100 at once on the package lists' lock)."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, *locks],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout.readline().strip() == "held"
            with subprocess.Popen(
                ["bash", "-c", 'source ./run && apt_get "$@"', "run", *apt_args],
                cwd=ROOT,
                stderr=subprocess.PIPE,
                text=True,
            ) as run:
                said = run.stderr.readline()
                assert "another package manager is at work (python" in said, said
                assert run.poll() is None  # it waits ...
                holder.stdin.write("go\n")
                holder.stdin.flush()
                rest = run.stderr.read()
                assert run.wait(timeout=120) == 0, rest  # ... until the lock is free, then on
                assert "waiting" not in rest  # said once
        finally:
            holder.kill()
