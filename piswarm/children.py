"""Child processes that do not outlive the process that started them.

A test run that crashes, or an agent killed with ``kill -9``, must not leave brokers or
sieve workers running. Linux offers two ways, for two kinds of child:

- :func:`die_with_parent` asks the kernel (``prctl(PR_SET_PDEATHSIG)``) for a signal when
  the parent dies. It is safe in a ``preexec_fn`` (no threads, no Python objects), but the
  kernel means the parent *thread*: a child started from a short-lived thread is killed
  when that thread ends, while its process goes on.
- :func:`watch_parent` is for Python children that may be started from any thread (a
  process pool spawns workers from whichever thread submits): a daemon thread in the
  child waits on a pidfd of the parent *process* and kills the child when it exits.

Elsewhere than Linux both do nothing.

Children are also deaf to the signals that stop their parent: Ctrl-C in a terminal sends
SIGINT to the whole foreground process group, and ``systemctl stop`` sends SIGTERM to
every process of the service. A child that died of it would print a traceback, and a
sieve worker killed while it writes its result leaves the process pool waiting forever
for the rest. So the parent starts each Python child inside :func:`stop_signals_held`
and the child calls :func:`ignore_stop_signals` first thing; the parent stops its
children itself (CPython's resource tracker does the same).
"""

import contextlib
import ctypes
import os
import select
import signal
import threading
from collections.abc import Iterator
from multiprocessing import resource_tracker

from piswarm.signals import STOP_SIGNALS

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Ask Linux to send ``sig`` to this process when its parent thread dies. Given the
    ``parent`` pid, exit at once if it is already gone (it may die before the call)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def watch_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to this process when process ``parent`` exits, whichever of its
    threads started us. Falls back to :func:`die_with_parent` without pidfds (Linux < 5.3)."""
    try:
        pidfd = os.pidfd_open(parent)
    except (OSError, AttributeError):  # gone already, or no pidfds here
        die_with_parent(sig, parent)
        return
    if os.getppid() != parent:  # it died, and its pid was reused, before we looked
        os._exit(1)

    def wait() -> None:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        while not poller.poll():  # readable once the process has exited
            pass
        os.kill(os.getpid(), sig)

    threading.Thread(target=wait, name="watch-parent", daemon=True).start()


@contextlib.contextmanager
def stop_signals_held() -> Iterator[None]:
    """Block SIGINT and SIGTERM in this thread while it starts a child process.

    The blocked mask is inherited across fork and exec, so a stop signal that reaches
    the child while Python starts up (before it can ignore it) waits, pending, instead
    of killing it with a traceback; :func:`ignore_stop_signals` then discards it. The
    parent receives its own signals meanwhile in another thread, or when the block ends.
    """
    # multiprocessing starts its resource tracker with the first child and then
    # *unblocks* SIGINT and SIGTERM in the thread that started it, whatever they were:
    # it must already run when the block begins.
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_stop_signals() -> None:
    """First thing in a child started under :func:`stop_signals_held` (main thread):
    ignore SIGINT and SIGTERM, which also drops one already pending, then unblock them."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
