"""What the kiosk knows of scaling experiments: each one's latest retained status (pure).

Fed from ``piswarm/experiments/<name>/status``; bounded to the ``max_experiments`` heard
from last.
"""

import logging
from collections import OrderedDict

from piswarm.protocol import ProtocolError, experiments, topics
from piswarm.protocol.experiments import ExperimentStatus

log = logging.getLogger(__name__)


class ExperimentsModel:
    """The latest status of each experiment, and which one the display should show."""

    def __init__(self, max_experiments: int = 8) -> None:
        self.max_experiments = max_experiments
        self.statuses: OrderedDict[str, ExperimentStatus] = OrderedDict()
        self.version = 0  # bumped on every change: the scene redraws when it moves
        self.malformed = 0

    def apply(self, topic: str, payload: bytes, _received_at: float) -> bool:
        """Apply one message; False (and counted when malformed) if it changes nothing."""
        try:
            name = topics.parse_experiment_status_topic(topic)
            if not payload:
                self.statuses.pop(name, None)
            else:
                status = experiments.decode_status(payload)
                if status.experiment != name:
                    raise ProtocolError(f"status names experiment {status.experiment!r}")
                self.statuses[name] = status
                self.statuses.move_to_end(name)
        except ProtocolError as exc:
            self.malformed += 1
            log.warning("ignored malformed experiment message on %s: %s", topic, exc)
            return False
        while len(self.statuses) > self.max_experiments:
            self.statuses.popitem(last=False)
        self.version += 1
        return True

    def current(self) -> ExperimentStatus | None:
        """The running experiment heard from last, else the one that changed last."""
        running = [s for s in self.statuses.values() if s.state == "running"]
        if running:
            return max(running, key=lambda s: s.ts)
        return max(self.statuses.values(), key=lambda s: s.ts, default=None)
