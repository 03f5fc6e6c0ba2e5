"""How a long-running piswarm command learns it should stop.

Ctrl-C (SIGINT) and ``systemctl stop`` / ``kill`` (SIGTERM) both ask for the same clean
stop: the handler only sets events, and the command's own loop notices, says goodbye on
MQTT and closes what it holds. Setting an event is all a signal handler may safely do
here; the loop that waits on it does the rest.
"""

import logging
import signal
import threading

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""What stops a piswarm process cleanly (and what its children leave to it)."""


def stop_on_signals(*also: threading.Event) -> threading.Event:
    """Install handlers for SIGINT and SIGTERM (main thread only) and return the event
    they set; ``also`` are set with it (say, a loop's wake-up event)."""
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()
        for event in also:
            event.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, handle)
    return stop
