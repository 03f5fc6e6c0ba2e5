"""What the head's views know about jobs: the latest status and map of each (pure).

Fed from ``piswarm/jobs/<job>/status`` and ``.../map`` (retained, so a display started
mid-job sees it at once). Both kinds of job are kept: prime searches (with their block
maps) and Life jobs. Bounded: only the most recent ``max_jobs`` jobs are kept.
"""

import logging
from collections import OrderedDict
from typing import Literal

from piswarm.protocol import ProtocolError, jobs, topics
from piswarm.protocol.life import LifeStatus

log = logging.getLogger(__name__)

AnyStatus = jobs.JobStatus | LifeStatus


class JobsModel:
    """Latest status and block map per job, and which job the display should show."""

    def __init__(self, max_jobs: int = 20) -> None:
        self.max_jobs = max_jobs
        self.statuses: OrderedDict[str, AnyStatus] = OrderedDict()
        self.maps: dict[str, jobs.JobMap] = {}
        self.version = 0  # bumped on every change: a view redraws when it moves
        self.malformed = 0

    def apply(self, topic: str, payload: bytes, _received_at: float) -> bool:
        """Apply one message; False (and counted when malformed) if it changes nothing."""
        try:
            job, leaf = topics.parse_job_topic(topic)
            if not payload:  # a cleared retained message: the job is forgotten
                self.statuses.pop(job, None)
                self.maps.pop(job, None)
            elif leaf == "status":
                status = jobs.decode_any_status(payload)
                if status.job != job:
                    raise ProtocolError(f"status names job {status.job!r}")
                self.statuses[job] = status
                self.statuses.move_to_end(job)
            elif leaf == "map":
                job_map = jobs.decode_job_map(payload)
                if job_map.job != job:
                    raise ProtocolError(f"map names job {job_map.job!r}")
                self.maps[job] = job_map
            else:
                return False
        except ProtocolError as exc:
            self.malformed += 1
            log.warning("ignored malformed job message on %s: %s", topic, exc)
            return False
        while len(self.statuses) > self.max_jobs:
            old, _ = self.statuses.popitem(last=False)
            self.maps.pop(old, None)
        for stray in [j for j in self.maps if j not in self.statuses][: self.max_jobs]:
            if len(self.maps) > self.max_jobs:
                del self.maps[stray]
        self.version += 1
        return True

    def current(self) -> jobs.JobStatus | None:
        """The prime search to show: the running one heard from last, else the last to end."""
        found = self._current("primes")
        return found if isinstance(found, jobs.JobStatus) else None

    def current_life(self) -> LifeStatus | None:
        """The Life job to show, chosen the same way."""
        found = self._current("life")
        return found if isinstance(found, LifeStatus) else None

    def _current(self, kind: Literal["primes", "life"]) -> AnyStatus | None:
        mine = [s for s in self.statuses.values() if s.kind == kind]
        running = [s for s in mine if s.state == "running"]
        if running:
            return max(running, key=lambda s: s.ts)
        return max(mine, key=lambda s: s.finished or s.ts) if mine else None
