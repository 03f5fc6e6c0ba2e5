import logging
import os
import signal
import threading

import pytest

from piswarm.signals import STOP_SIGNALS, stop_on_signals


@pytest.fixture
def restored_handlers():
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("sig", STOP_SIGNALS)
def test_a_stop_signal_sets_the_event_and_the_ones_named_with_it(restored_handlers, sig, caplog):
    caplog.set_level(logging.INFO, logger="piswarm.signals")
    wake = threading.Event()
    stop = stop_on_signals(wake)
    assert not stop.is_set() and not wake.is_set()
    os.kill(os.getpid(), sig)  # Python runs the handler before the next bytecode here
    assert stop.wait(5) and wake.is_set()
    assert f"received {signal.Signals(sig).name}: stopping" in caplog.text
