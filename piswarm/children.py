"""Child processes that do not outlive the process that started them.

A test run that crashes, or an agent killed with ``kill -9``, must not leave brokers or
sieve workers running: Linux can signal a child when its parent dies
(``prctl(PR_SET_PDEATHSIG)``). Elsewhere this does nothing.
"""

import contextlib
import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies. Given the
    ``parent`` pid, exit at once if it is already gone (it may die before the call)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    if parent is not None and os.getppid() != parent:
        os._exit(1)
