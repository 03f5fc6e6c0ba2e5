"""What ``piswarm deploy`` runs *on a Pi*: sent over SSH to the Pi's ``python3 -`` on stdin.

Standard library only (a fresh Raspberry Pi OS has nothing else), one JSON object out.
Everything lives under ``~/.piswarm``::

    releases/<build>/   the agent's code (piswarm/, node_agent/), one per build
    current             -> releases/<build>, swapped atomically
    venvs/<deps>/       a virtualenv per set of dependencies; venv -> the one in use
    wheelhouse/         wheels pushed from the operator's machine (offline installs)
    agent.toml, credentials.toml (0600), run/agent-<node>.pid (the agent's own lock),
    agent.log

Usage: this file's text followed by ``main("ACTION", '{json arguments}')``, piped into
``python3 -`` (nothing to quote on a command line, nothing left on the Pi). Actions:
probe, install, start, stop, status, logs, uninstall. The agent runs as a
systemd unit when systemd runs and ``sudo -n`` works, else under ``nohup`` in a session
of its own (setsid) with its pidfile; either way it is started on its own, never chained
behind ``&&``.
"""

import grp
import hashlib
import json
import os
import platform
import pwd
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

ROOT = Path.home() / ".piswarm"
UNIT = "piswarm-agent.service"


def _sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _pidfiles() -> list[Path]:
    return sorted((ROOT / "run").glob("agent-*.pid"))


def _running_pid() -> int | None:
    """The agent's pid, from its pidfile, if that process is our agent."""
    for pidfile in _pidfiles():
        try:
            pid = int(pidfile.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if b"node_agent" in cmdline:
            return pid
    return None


def _unpack_wheels(site: Path, wheels: list[Path]) -> None:
    """Install wheels by unpacking them: a wheel is a zip laid out for site-packages
    (its .data/purelib and platlib go there too; scripts and headers are not needed)."""
    import zipfile

    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.infolist():
                parts = Path(member.filename).parts
                if ".." in parts or member.filename.startswith("/"):
                    raise RuntimeError(f"{wheel.name}: unsafe path {member.filename}")
                if parts[0].endswith(".data"):
                    if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                        continue
                    parts = parts[2:]
                target = site.joinpath(*parts)
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                mode = (member.external_attr >> 16) & 0o777
                if mode:
                    target.chmod(mode)


def _make_venv(staging: Path, args: dict[str, Any]) -> None:
    """A virtualenv with the requirements the system does not meet (``requirements``;
    with ``system`` naming the ones it does, it sees the system's own site-packages).
    Offline: unpack the pushed wheels (~0.5 s for numpy, psutil and paho). Else the
    system's pip (>= 22.3) into a venv made without one, without byte-compiling (~2 s);
    else the venv's own pip (~10 s)."""
    wheels = [ROOT / "wheelhouse" / name for name in args.get("wheels") or []]
    shared = ["--system-site-packages"] if args.get("system") else []
    if args.get("offline"):
        missing = [w.name for w in wheels if not w.exists()]
        if missing:
            raise RuntimeError(f"wheels missing from the wheelhouse: {', '.join(missing)}")
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", *shared, str(staging)],
            check=True,
            capture_output=True,
        )
        version = "python{}.{}".format(*sys.version_info[:2])
        _unpack_wheels(staging / "lib" / version / "site-packages", wheels)
        return
    if _system_pip():
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", *shared, str(staging)],
            check=True,
            capture_output=True,
        )
        pip = [sys.executable, "-m", "pip", "--python", str(staging / "bin" / "python")]
    else:
        subprocess.run(
            [sys.executable, "-m", "venv", *shared, str(staging)], check=True, capture_output=True
        )
        pip = [str(staging / "bin" / "python"), "-m", "pip"]
    if not args["requirements"]:
        return
    pip += ["install", "--quiet", "--no-compile", "--disable-pip-version-check"]
    done = subprocess.run([*pip, *args["requirements"]], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError("pip install failed: " + done.stderr.strip().splitlines()[-1])


def _system_pip() -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, text=True
    )
    try:
        major, minor = (int(x) for x in done.stdout.split()[1].split(".")[:2])
    except (IndexError, ValueError):
        return False
    return done.returncode == 0 and (major, minor) >= (22, 3)


def _systemd() -> bool:
    if not Path("/run/systemd/system").is_dir() or shutil.which("systemctl") is None:
        return False
    return subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0


def _release(version: str) -> tuple[int, ...]:
    """The numeric release of a version ('1.24.2' -> (1, 24, 2); '2.0.0rc1' -> (2, 0, 0))."""
    parts = []
    for piece in version.split("."):
        digits = ""
        for char in piece:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) < len(piece):
            break
    return tuple(parts)


def satisfies(version: str, specifiers: str) -> bool:
    """Whether ``version`` meets comma-separated specifiers like ``>=2.1,<3``: the
    operators pip uses in our requirements (and ``~=``, ``==X.*``); anything else is
    not trusted (the wheel is pushed instead)."""
    have = _release(version)
    for spec in filter(None, (s.strip() for s in specifiers.split(","))):
        op = next((o for o in ("~=", "==", "!=", ">=", "<=", ">", "<") if spec.startswith(o)), "")
        text = spec[len(op) :].strip()
        want = _release(text.rstrip(".*"))
        if not op or not want:
            return False
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        if op == "==" and text.endswith(".*"):
            ok = have[: len(want)] == want
        elif op == "~=":
            ok = a >= b and have[: len(want) - 1] == want[: len(want) - 1]
        else:
            ok = {"==": a == b, "!=": a != b, ">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b}[
                op
            ]
        if not ok:
            return False
    return True


def requirement_name(requirement: str) -> str:
    """The normalised distribution name of ``'paho-mqtt<3,>=2.1'`` (PEP 503)."""
    name = ""
    for char in requirement.strip():
        if not (char.isalnum() or char in "-_."):
            break
        name += char
    return "-".join(filter(None, name.lower().replace("_", "-").replace(".", "-").split("-")))


def system_packages(requirements: list[str]) -> dict[str, str]:
    """The requirements the system's Python meets from its own site-packages (Raspberry Pi
    OS ships numpy and psutil): name -> version. A venv made with
    ``--system-site-packages`` uses them instead of wheels pushed to every Pi. Packages in
    the user's own site (~/.local) do not count: such a venv does not see them."""
    import importlib.metadata
    import site

    system = [Path(p).resolve() for p in site.getsitepackages()]
    found = {}
    for requirement in requirements:
        name = requirement_name(requirement)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        where = Path(str(dist.locate_file(""))).resolve()
        if not any(where == root or root in where.parents for root in system):
            continue
        if satisfies(dist.version, requirement.split(";")[0][len(name) :]):
            found[name] = dist.version
    return found


def probe(args: dict[str, Any]) -> dict[str, Any]:
    current = ROOT / "current"
    return {
        "python": "{}.{}".format(*sys.version_info[:2]),
        "platform": platform.machine(),
        "build": current.resolve().name if current.is_symlink() else None,
        "deps": (ROOT / "venv").resolve().name if (ROOT / "venv").is_symlink() else None,
        "config": _sha(ROOT / "agent.toml"),
        "credentials": _sha(ROOT / "credentials.toml"),
        "running": _running_pid(),
        "systemd": _systemd(),
        "wheels": sorted(p.name for p in (ROOT / "wheelhouse").glob("*.whl")),
        "system": system_packages(list(args.get("requirements") or [])),
    }


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def _swap_link(link: Path, target: Path) -> None:
    tmp = link.with_name(link.name + ".new")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    tmp.replace(link)  # atomic: a reader sees the old or the new, never neither


def install(args: dict[str, Any]) -> dict[str, Any]:
    """Put a build, its dependencies and config in place (and with ``restart``, restart
    the agent if that changed anything); report what changed."""
    changed = []
    ROOT.mkdir(mode=0o700, exist_ok=True)
    (ROOT / "run").mkdir(exist_ok=True)
    build, bundle = args["build"], args.get("bundle")
    release = ROOT / "releases" / build
    if bundle and not release.is_dir():
        staging = ROOT / "releases" / (build + ".staging")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with tarfile.open(ROOT / bundle) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.12
                tar.extractall(staging, filter="data")
            else:  # our own bundle, just uploaded
                tar.extractall(staging)  # noqa: S202
        staging.replace(release)
        changed.append("code")
    if bundle:
        (ROOT / bundle).unlink(missing_ok=True)
    if not (ROOT / "current").is_symlink() or (ROOT / "current").resolve() != release.resolve():
        _swap_link(ROOT / "current", Path("releases") / build)
        changed.append("current")
    deps = args["deps"]
    venv = ROOT / "venvs" / deps
    if not (venv / "bin" / "python").exists():
        staging = ROOT / "venvs" / (deps + ".staging")
        shutil.rmtree(staging, ignore_errors=True)
        _make_venv(staging, args)
        staging.replace(venv)
        system = args.get("system") or []
        changed.append(f"venv (system {', '.join(system)})" if system else "venv")
    if not (ROOT / "venv").is_symlink() or (ROOT / "venv").resolve() != venv.resolve():
        _swap_link(ROOT / "venv", Path("venvs") / deps)
        changed.append("venv link")
    for name in ("agent.toml", "credentials.toml"):
        text = args[name.replace(".toml", "")]
        if _sha(ROOT / name) != hashlib.sha256(text.encode()).hexdigest():
            _write_private(ROOT / name, text)
            changed.append(name)
    for old in (ROOT / "releases").iterdir():  # keep the running build and this one
        if old.name not in (build, (ROOT / "current").resolve().name):
            shutil.rmtree(old, ignore_errors=True)
    # With 'restart': (re)start the agent when anything changed or it is not running, in
    # this same run (each run of the helper is a Python start on the Pi).
    if args.get("restart") and (changed or _running_pid() is None):
        stop({})
        started = start({})
        changed.append(f"agent started ({started.get('via', '?')})")
    return {"changed": changed}


def _command() -> list[str]:
    return [
        str(ROOT / "venv" / "bin" / "python"),
        "-m",
        "node_agent",
        "agent",
        "--config",
        str(ROOT / "agent.toml"),
    ]


def unit_text(user: str) -> str:
    """The systemd unit: the agent as ``user``, restarted whenever it stops."""
    return (
        "[Unit]\nDescription=piswarm node agent\nAfter=network-online.target\n"
        "Wants=network-online.target\n\n[Service]\n"
        f"User={user}\nEnvironment=PYTHONPATH={ROOT / 'current'}\n"
        f"ExecStart={' '.join(_command())}\nRestart=always\nRestartSec=5\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "current")}


def start(_args: dict[str, Any]) -> dict[str, Any]:
    if _running_pid() is not None:
        return {"started": False, "pid": _running_pid()}
    if _systemd():
        unit = unit_text(pwd.getpwuid(os.getuid()).pw_name)
        subprocess.run(
            ["sudo", "-n", "tee", f"/etc/systemd/system/{UNIT}"],
            input=unit,
            text=True,
            capture_output=True,
            check=True,
        )
        for cmd in (["daemon-reload"], ["enable", UNIT], ["restart", UNIT]):
            subprocess.run(["sudo", "-n", "systemctl", *cmd], capture_output=True, check=True)
        return {"started": True, "via": "systemd"}
    with (ROOT / "agent.log").open("ab") as log:
        proc = subprocess.Popen(  # setsid(2) + nohup: it outlives this SSH session
            ["nohup", *_command()],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env(),
            cwd=str(ROOT),
            start_new_session=True,
        )
    # The agent writes its pidfile once it holds its lock; a first start also compiles its
    # imports, which on a busy Pi takes seconds. Dying early is a failure; still starting
    # after 30 s is left to the 'online' check over MQTT.
    for _ in range(600):
        if _running_pid() is not None:
            return {"started": True, "via": "nohup", "pid": _running_pid()}
        if proc.poll() is not None and _running_pid() is None:
            tail = (ROOT / "agent.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError("the agent exited at once: " + (tail[0] if tail else "no log"))
        time.sleep(0.05)
    return {"started": True, "via": "nohup", "pending": True}


def stop(_args: dict[str, Any]) -> dict[str, Any]:
    if _systemd():
        subprocess.run(["sudo", "-n", "systemctl", "stop", UNIT], capture_output=True)
    pid = _running_pid()
    if pid is None:
        return {"stopped": False}
    os.kill(pid, signal.SIGTERM)  # the agent says 'offline' and leaves
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            return {"stopped": True, "pid": pid}
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return {"stopped": True, "pid": pid, "killed": True}


def status(_args: dict[str, Any]) -> dict[str, Any]:
    info = probe({})
    return {"running": info["running"], "build": info["build"], "systemd": info["systemd"]}


def logs(args: dict[str, Any]) -> dict[str, Any]:
    lines = int(args.get("lines", 50))
    if _systemd():
        done = subprocess.run(
            ["sudo", "-n", "journalctl", "-u", UNIT, "-n", str(lines), "--no-pager"],
            capture_output=True,
            text=True,
        )
        return {"lines": done.stdout.splitlines()[-lines:]}
    try:
        text = (ROOT / "agent.log").read_text(errors="replace")
    except OSError:
        return {"lines": []}
    return {"lines": text.splitlines()[-lines:]}


def uninstall(args: dict[str, Any]) -> dict[str, Any]:
    stopped = stop(args)
    if _systemd():
        subprocess.run(["sudo", "-n", "systemctl", "disable", UNIT], capture_output=True)
        subprocess.run(
            ["sudo", "-n", "rm", "-f", f"/etc/systemd/system/{UNIT}"], capture_output=True
        )
    shutil.rmtree(ROOT, ignore_errors=True)
    return {"removed": True, **stopped}


BROKER_DIR = Path("/etc/piswarm/broker")
DROP_IN = Path("/etc/mosquitto/conf.d/piswarm.conf")


def _mosquitto_running() -> int | None:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"mosquitto"):
                return int(proc.name)
    return None


def _listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def broker(args: dict[str, Any]) -> dict[str, Any]:
    """As root: install Mosquitto (apt) if missing, drop in piswarm's config and users,
    (re)start it if anything changed or it is not running."""
    if os.geteuid() != 0:
        raise RuntimeError("needs root: log in as root or give the user passwordless sudo")
    changed = []
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "mosquitto", "mosquitto-clients"],
        ):
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise RuntimeError(
                    "apt-get failed: " + (done.stderr.strip().splitlines() or ["?"])[-1]
                )
        changed.append("mosquitto installed")
    BROKER_DIR.mkdir(parents=True, exist_ok=True)
    BROKER_DIR.chmod(0o750)
    group = grp.getgrnam("mosquitto").gr_gid
    os.chown(BROKER_DIR, 0, group)
    for name, text, path in (
        ("passwd", args["passwd"], BROKER_DIR / "passwd"),
        ("acl", args["acl"], BROKER_DIR / "acl"),
        ("config", args["config"], DROP_IN),
    ):
        if _sha(path) != hashlib.sha256(text.encode()).hexdigest():
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            os.chown(tmp, 0, group)
            tmp.chmod(0o640 if path != DROP_IN else 0o644)
            tmp.replace(path)
            changed.append(name)
    port = int(args["port"])
    running = _mosquitto_running()
    if changed or running is None or not _listening(port):
        if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
            subprocess.run(["systemctl", "enable", "mosquitto"], capture_output=True)
            subprocess.run(["systemctl", "restart", "mosquitto"], capture_output=True, check=True)
        else:  # no systemd (a container): what Debian's unit does, by hand
            if running is not None:
                os.kill(running, signal.SIGTERM)
                for _ in range(100):
                    if not Path(f"/proc/{running}").exists():
                        break
                    time.sleep(0.05)
            Path("/run/mosquitto").mkdir(mode=0o740, exist_ok=True)
            os.chown("/run/mosquitto", pwd.getpwnam("mosquitto").pw_uid, group)
            done = subprocess.run(
                ["mosquitto", "-d", "-c", "/etc/mosquitto/mosquitto.conf"],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise RuntimeError("mosquitto did not start: " + done.stderr.strip())
        changed.append("restarted")
    for _ in range(100):
        if _listening(port):
            return {"changed": changed}
        time.sleep(0.05)
    raise RuntimeError(f"mosquitto does not listen on port {port} (see its log)")


ACTIONS = {f.__name__: f for f in (probe, install, start, stop, status, logs, uninstall, broker)}


def main(action: str, raw: str) -> None:
    try:
        result = {"ok": True, **ACTIONS[action](json.loads(raw))}
    except Exception as exc:  # boundary: the operator's side reads one JSON line
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result))
