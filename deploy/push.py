"""``piswarm deploy push``: the agent onto every Pi at once, each Pi's result on its own.

Per host, over one SSH session: probe what is there; upload the code only if its build
differs, and wheels only if the Pi lacks them (neither its own Python's packages nor an
earlier push have them); make a virtualenv only when the dependencies changed; write the
node's config and broker credentials (0600); restart the agent only if anything changed or
it is not running (in the same run of the remote helper as the install). A Pi where
nothing changed is left untouched and reported ``unchanged``. One host's failure is its
own result, never the fleet's (Fabric's GroupResult): every host is tried.
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from deploy.bundle import Bundle, wheel_name, wheelhouse
from deploy.errors import DeployError
from deploy.inventory import Host
from deploy.remote_helper import requirement_name
from deploy.ssh import Session, SshOptions
from deploy.trust import KnownHosts
from piswarm import __version__

log = logging.getLogger(__name__)

Outcome = Literal["deployed", "unchanged", "not-online", "failed"]


@dataclass
class HostResult:
    host: Host
    outcome: Outcome
    detail: str = ""
    seconds: float = 0.0
    changed: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "host": self.host.target,
            "node": self.host.node_id,
            "outcome": self.outcome,
            "detail": self.detail,
            "seconds": round(self.seconds, 2),
            "changed": self.changed,
        }


@dataclass(frozen=True)
class AgentSettings:
    """What each Pi's agent.toml says besides its node id."""

    broker_host: str
    broker_port: int = 1883
    workers: int | None = None
    telemetry_interval: float = 5.0

    def config(self, node_id: str, build: str) -> str:
        lines = [
            "# written by 'piswarm deploy push'; a new push rewrites it",
            "[agent]",
            f'node_id = "{node_id}"',
            f"telemetry_interval = {self.telemetry_interval}",
            'lock_dir = "~/.piswarm/run"',
            f'build = "{build}"',
        ]
        if self.workers is not None:
            lines.append(f"workers = {self.workers}")
        lines += [
            "",
            "[broker]",
            f'host = "{self.broker_host}"',
            f"port = {self.broker_port}",
            'credentials = "~/.piswarm/credentials.toml"',
            "",
        ]
        return "\n".join(lines)


def expected_version(bundle: Bundle) -> str:
    return f"{__version__}+{bundle.build}"


class Pusher:
    """Everything one push needs; :meth:`push` runs it over a pool of threads."""

    def __init__(
        self,
        *,
        options: SshOptions,
        known: KnownHosts,
        bundle: Bundle,
        agent: AgentSettings,
        credentials: Callable[[str], str],
        wheel_cache: Path,
        offline: bool = True,
        index_args: tuple[str, ...] = (),
        parallel: int = 16,
    ) -> None:
        self.options = options
        self.known = known
        self.bundle = bundle
        self.agent = agent
        self.credentials = credentials
        self.wheel_cache = wheel_cache
        self.offline = offline
        self.index_args = index_args
        self.parallel = parallel
        self._wheels_lock = threading.Lock()  # one download per Python and CPU, not one a host

    def push(
        self, hosts: Sequence[Host], progress: Callable[[HostResult], None] = lambda _r: None
    ) -> list[HostResult]:
        def one(host: Host) -> HostResult:
            result = self.push_one(host)
            progress(result)
            return result

        with ThreadPoolExecutor(max_workers=max(1, min(self.parallel, len(hosts)))) as pool:
            return list(pool.map(one, hosts))

    def push_one(self, host: Host) -> HostResult:
        started = time.monotonic()
        try:
            changed = self._deploy(host)
        except DeployError as exc:
            return HostResult(host, "failed", exc.reason, time.monotonic() - started)
        except Exception as exc:  # boundary: one host's surprise is its own result
            log.exception("%s: unexpected failure", host.target)
            return HostResult(
                host, "failed", f"{type(exc).__name__}: {exc}", time.monotonic() - started
            )
        outcome: Outcome = "deployed" if changed else "unchanged"
        detail = ", ".join(changed) if changed else "nothing to do"
        return HostResult(host, outcome, detail, time.monotonic() - started, changed)

    def _deploy(self, host: Host) -> list[str]:
        b = self.bundle
        with Session(host, self.options, self.known) as s:
            there = s.helper("probe", {"requirements": list(b.requirements)})
            system: dict[str, str] = there.get("system") or {}
            needed = b.needed(system)
            deps = b.deps(there["python"], there["platform"], system)
            files: dict[str, bytes | Path] = {}
            if there["build"] != b.build:
                files[f"bundle-{b.build}.tar.gz"] = b.data
            wheel_names: list[str] = []
            if there["deps"] != deps and self.offline and needed:
                have = set(there["wheels"])
                with self._wheels_lock:
                    wheels = wheelhouse(
                        self.wheel_cache,
                        b,
                        there["python"],
                        there["platform"],
                        index_args=self.index_args,
                    )
                # What the Pi's own Python already has (numpy, psutil on Raspberry Pi OS)
                # is not pushed: 17 MB of numpy to each of 240 Pis is 4 GB.
                wanted = {requirement_name(r) for r in needed}
                wheels = [w for w in wheels if wheel_name(w) in wanted]
                files.update({f"wheelhouse/{w.name}": w for w in wheels if w.name not in have})
                wheel_names = [w.name for w in wheels]
            if files:
                s.upload(files)
            installed = s.helper(
                "install",
                {
                    "build": b.build,
                    "bundle": f"bundle-{b.build}.tar.gz" if there["build"] != b.build else None,
                    "deps": deps,
                    "requirements": list(needed),
                    "system": sorted(system),
                    "offline": self.offline,
                    "wheels": wheel_names,
                    "agent": self.agent.config(host.node_id, b.build),
                    "credentials": self.credentials(host.node_id),
                    "restart": True,
                },
            )
            return list(installed["changed"])


def confirm(results: list[HostResult], online: set[str]) -> None:
    """Hosts whose agent did not report the new version in time: ``not-online``."""
    for result in results:
        if result.outcome in ("deployed", "unchanged") and result.host.node_id not in online:
            result.outcome = "not-online"
            result.detail = "agent started but did not report online with the new version"


def exit_code(results: list[HostResult]) -> int:
    """0 every host is fine, 4 some failed (partial), 5 all failed (or nothing to do)."""
    bad = sum(1 for r in results if r.outcome in ("failed", "not-online"))
    if not results or bad == len(results):
        return 5
    return 4 if bad else 0
