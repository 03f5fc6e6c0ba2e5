"""What gets pushed: the agent's code as one archive, its dependencies as wheels.

The archive holds the ``piswarm`` and ``node_agent`` packages (pure Python, nothing of
the head or of deploy) and is built deterministically, so its content hash is the *build*
id: the same code gives the same id, and a Pi already running it is left alone. The
wheelhouse is made on the operator's machine by ``pip download`` for the Pi's Python and
CPU (lab Pis often have no internet) and cached between pushes.
"""

import hashlib
import io
import logging
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from importlib.metadata import requires
from pathlib import Path

import node_agent
import piswarm
from deploy.errors import DeployError
from deploy.remote_helper import requirement_name

log = logging.getLogger(__name__)

PACKAGES = (piswarm, node_agent)


@dataclass(frozen=True)
class Bundle:
    data: bytes  # tar.gz of the packages
    build: str  # the content hash: what the agent reports after its version
    requirements: tuple[str, ...]

    def deps(self, python: str, machine: str, system: dict[str, str] | None = None) -> str:
        """The id of a virtualenv for these requirements on that Python and CPU, with
        ``system`` (name -> version) taken from the system's own site-packages."""
        shared = [f"system {name}=={version}" for name, version in sorted((system or {}).items())]
        text = "\n".join((python, machine, *self.requirements, *shared))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def needed(self, system: dict[str, str]) -> tuple[str, ...]:
        """The requirements the system's own packages do not meet."""
        return tuple(r for r in self.requirements if requirement_name(r) not in system)


def wheel_name(wheel: Path) -> str:
    """The normalised distribution name of a wheel file (``paho_mqtt-2.2.0-...whl``)."""
    return requirement_name(wheel.name.split("-")[0])


def agent_requirements() -> tuple[str, ...]:
    """What the agent needs on a Pi: piswarm's own dependencies, without any extra."""
    found = requires("piswarm") or []
    return tuple(sorted(r for r in found if "extra ==" not in r))


def make_bundle() -> Bundle:
    files: list[tuple[str, bytes]] = []
    for package in PACKAGES:
        root = Path(str(package.__file__)).parent
        for path in sorted(root.rglob("*")):
            if (
                path.is_file()
                and path.suffix in (".py", ".typed")
                and "__pycache__" not in path.parts
            ):
                files.append((f"{root.name}/{path.relative_to(root)}", path.read_bytes()))
    digest = hashlib.sha256()
    for name, content in files:
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    build = digest.hexdigest()[:12]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=6) as tar:
        for name, content in [*files, ("BUILD", build.encode() + b"\n")]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, 0
            tar.addfile(info, io.BytesIO(content))
    return Bundle(data=out.getvalue(), build=build, requirements=agent_requirements())


def platforms(machine: str) -> list[str]:
    """pip ``--platform`` tags a Pi (or a test host) with this CPU can install."""
    arch = {"armv7l": "armv7l", "armv6l": "armv6l", "aarch64": "aarch64"}.get(machine, machine)
    tags = [f"manylinux_2_{n}_{arch}" for n in (17, 24, 27, 28, 31, 34, 35, 36)]
    return [*tags, f"manylinux2014_{arch}", f"linux_{arch}"]


def wheelhouse(
    cache: Path, bundle: Bundle, python: str, machine: str, *, index_args: tuple[str, ...] = ()
) -> list[Path]:
    """Wheels for the agent's requirements on that Python and CPU (downloaded once)."""
    if not re.fullmatch(r"3\.\d+", python) or not re.fullmatch(r"[a-z0-9_]+", machine):
        raise DeployError("wheelhouse", f"unexpected Python {python!r} or CPU {machine!r}")
    folder = cache / f"py{python}-{machine}-{bundle.deps(python, machine)}"
    stamp = folder / ".complete"
    if not stamp.exists():
        folder.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--dest",
            str(folder),
            "--only-binary=:all:",
            "--python-version",
            python,
            "--implementation",
            "cp",
            *(f"--platform={tag}" for tag in platforms(machine)),
            *index_args,
            *bundle.requirements,
        ]
        log.info("downloading wheels for Python %s on %s into %s", python, machine, folder)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            detail = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise DeployError(
                "wheelhouse", f"pip download for Python {python} on {machine}: {detail}"
            )
        stamp.touch()
    return sorted(folder.glob("*.whl"))
