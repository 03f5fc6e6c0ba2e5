"""The coordinator as the head tests drive it: in a thread of the test process (its
objects and stats in reach), against the real broker of the top-level fixtures."""

import threading

import pytest

from head.coordinator.router import Coordinator
from piswarm.mqtt import BrokerSettings, Credentials


class Running:
    """A coordinator in a thread of the test process."""

    def __init__(self, broker, users, db, **kw):
        admin = users.get("admin")
        settings = BrokerSettings(
            host="127.0.0.1", port=broker.port, credentials=Credentials(admin.name, admin.password)
        )
        kw.setdefault("double_check", 0.0)  # the double-checking tests set it
        self.coordinator = Coordinator(db_path=db, settings=settings, **kw)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.coordinator.run, args=(self.stop,))

    def start(self):
        self.coordinator.start()
        self.thread.start()
        assert self.coordinator.ready.wait(10) and self.coordinator.connected.wait(10)
        return self

    def pause(self):
        """Stop the loop that takes messages from the inbox; the broker's keep coming in."""
        self.stop.set()
        self.thread.join(10)

    def resume(self):
        """Run the loop again: what came in meanwhile is one batch (up to 1000 messages)."""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.coordinator.run, args=(self.stop,))
        self.thread.start()
        assert self.coordinator.ready.wait(10)

    def close(self):
        self.stop.set()
        self.thread.join(10)
        self.coordinator.close()

    @property
    def stats(self):
        return self.coordinator.stats

    @property
    def prime_stats(self):
        return self.coordinator.prime_stats


@pytest.fixture
def coordinator(broker, users, tmp_path):
    made = []

    def make(**kw):
        running = Running(broker, users, tmp_path / "jobs.sqlite", **kw).start()
        made.append(running)
        return running

    yield make
    for running in made:
        running.close()


@pytest.fixture
def screen():
    """A 1280 x 720 window (the SDL dummy driver in the tests), closed afterwards."""
    import pygame

    pygame.display.init()
    pygame.font.init()
    yield pygame.display.set_mode((1280, 720))
    pygame.quit()
