"""Fake Pis for the deploy tests: real ``sshd`` hosts, one network namespace each.

Each fake Pi has its own IP on a private bridge, its own ``sshd`` on port 22 with its own
host key, its own ``/home`` and user ``pi`` (bind mounts in its own mount namespace) and
its own PID namespace, so stopping one Pi's agent cannot touch another's. The test subnet
is a /16 routed ``unreachable`` except for the bridge's /24, so no packet ever leaves the
machine and an address without a Pi fails at once. Teardown is SIGKILL to every process of
every namespace, then the links and namespaces go. Needs root (the tests skip otherwise).
"""

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from piswarm.children import die_with_parent

SSHD = "/usr/sbin/sshd"
DIST_PACKAGES = "/usr/lib/python3/dist-packages"  # Debian's (and Raspberry Pi OS's) own
PI_UID = 1000


def system_numpy() -> str | None:
    """Why the fake Pis cannot have numpy and psutil from the system, or None."""
    for module in ("numpy", "psutil"):
        if not list(Path(DIST_PACKAGES).glob(f"{module}/__init__.py")):
            return f"needs Debian's python3-{module} ('./run test' installs it)"
    return None


def available() -> str | None:
    """Why the fake Pis cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not Path(SSHD).exists():
        return "needs openssh-server ('./run test' installs it)"
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        return "needs iproute2 and util-linux"
    return None


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check)


@dataclass
class FakePi:
    index: int
    netns: str
    address: str
    root: Path  # its own files: host key, sshd_config, /home, /etc/passwd ...
    proc: subprocess.Popen[bytes] | None = None

    @property
    def home(self) -> Path:
        return self.root / "home" / "pi"

    @property
    def host_key(self) -> Path:
        return self.root / "ssh_host_ed25519_key"


class FakePiFleet:
    """``count`` fake Pis on 10.231.<net>.0/24 (the bridge is .1, Pis from .11)."""

    def __init__(
        self, root: Path, count: int, *, client_key: Path, system_packages: bool = False
    ) -> None:
        self.root = root
        self.count = count
        self.client_key = client_key
        # Raspberry Pi OS with desktop ships numpy and psutil in /usr/lib/python3; Lite,
        # and a Pi without them, does not: the machine's own are hidden unless asked for.
        self.system_packages = system_packages
        self.tag = f"fp{os.getpid() % 100000}"
        self.net = 10 + os.getpid() % 200
        self.subnet = f"10.231.{self.net}"
        self.bridge = f"{self.tag}br"
        self.bridge_address = f"{self.subnet}.1"
        self.pis: list[FakePi] = []

    @property
    def unreachable_address(self) -> str:
        """An address in the test /16 where no Pi lives: routed 'unreachable'."""
        return f"10.231.{(self.net + 1) % 256}.9"

    def __enter__(self) -> "FakePiFleet":
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        if not self.client_key.exists():
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.client_key))
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.bridge_address}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        sh("ip", "route", "replace", "unreachable", "10.231.0.0/16")
        for i in range(self.count):
            self.pis.append(self._make(i))
        for pi in self.pis:
            self.start_sshd(pi)
        for pi in self.pis:
            self.wait_listening(pi)

    def _make(self, i: int) -> FakePi:
        pi = FakePi(i, f"{self.tag}-{i}", f"{self.subnet}.{11 + i}", self.root / f"pi-{i}")
        etc = pi.root / "etc"
        etc.mkdir(parents=True)
        pi.home.mkdir(parents=True)
        os.chown(pi.home, PI_UID, PI_UID)
        system = {
            name: [
                x
                for x in Path(f"/etc/{name}").read_text().splitlines()
                if x.split(":")[0] in ("root", "mosquitto")
            ]
            for name in ("passwd", "group")
        }
        (etc / "passwd").write_text(
            "\n".join(
                [
                    *system["passwd"],
                    f"pi:x:{PI_UID}:{PI_UID}:pi:/home/pi:/bin/sh",
                    "sshd:x:110:65534::/run/sshd:/usr/sbin/nologin",
                    "",
                ]
            )
        )
        (etc / "group").write_text(
            "\n".join([*system["group"], f"pi:x:{PI_UID}:", "nogroup:x:65534:", ""])
        )
        # Its own Mosquitto files, so 'deploy broker' on one Pi touches nothing else.
        if Path("/etc/mosquitto").is_dir():
            shutil.copytree("/etc/mosquitto", pi.root / "mosquitto-etc")
            for folder in ("piswarm-etc", "mosquitto-lib", "mosquitto-log"):
                (pi.root / folder).mkdir()
            if any(x.startswith("mosquitto:") for x in system["passwd"]):
                uid = int(
                    next(x for x in system["passwd"] if x.startswith("mosquitto:")).split(":")[2]
                )
                for folder in ("mosquitto-lib", "mosquitto-log"):
                    os.chown(pi.root / folder, uid, 0)
        (etc / "shadow").write_text("root:*:19000:0:99999:7:::\npi:*:19000:0:99999:7:::\n")
        (etc / "shadow").chmod(0o640)
        self.new_host_key(pi)
        shutil.copy(f"{self.client_key}.pub", pi.root / "authorized_keys")
        (pi.root / "sshd_config").write_text(
            "Port 22\nListenAddress 0.0.0.0\n"
            f"HostKey {pi.host_key}\nAuthorizedKeysFile {pi.root / 'authorized_keys'}\n"
            "StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            f"UsePAM no\nPidFile {pi.root / 'sshd.pid'}\nSubsystem sftp internal-sftp\n"
            "MaxStartups 100:30:200\nLogLevel ERROR\n"
        )
        host_side = f"{self.tag}v{i}"
        sh("ip", "netns", "add", pi.netns)
        sh(
            "ip",
            "link",
            "add",
            host_side,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pi.netns,
        )
        sh("ip", "link", "set", host_side, "master", self.bridge)
        sh("ip", "link", "set", host_side, "up")
        inside = ("ip", "netns", "exec", pi.netns)
        sh(*inside, "ip", "addr", "add", f"{pi.address}/24", "dev", "eth0")
        sh(*inside, "ip", "link", "set", "eth0", "up")
        sh(*inside, "ip", "link", "set", "lo", "up")
        sh(*inside, "ip", "route", "add", "default", "via", self.bridge_address)
        return pi

    def new_host_key(self, pi: FakePi) -> None:
        """A fresh host key (the Pi was reinstalled, or someone is in the middle)."""
        for path in (pi.host_key, Path(f"{pi.host_key}.pub")):
            path.unlink(missing_ok=True)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(pi.host_key))

    def start_sshd(self, pi: FakePi) -> None:
        """sshd as PID 1 of the Pi's own PID and mount namespaces."""
        r = pi.root
        script = (
            f"mount --bind {r}/home /home && mount --bind {r}/etc/passwd /etc/passwd && "
            f"mount --bind {r}/etc/group /etc/group && "
            f"mount --bind {r}/etc/shadow /etc/shadow && "
            "mount -t tmpfs tmpfs /run && mkdir -p /run/sshd && "
            + (
                ""
                if self.system_packages or not Path(DIST_PACKAGES).is_dir()
                else f"mkdir -p {r}/no-packages && mount --bind {r}/no-packages {DIST_PACKAGES} && "
            )
            + (
                f"mount --bind {r}/mosquitto-etc /etc/mosquitto && "
                f"mkdir -p /etc/piswarm && mount --bind {r}/piswarm-etc /etc/piswarm && "
                f"mount --bind {r}/mosquitto-lib /var/lib/mosquitto && "
                f"mount --bind {r}/mosquitto-log /var/log/mosquitto && "
                if (r / "mosquitto-etc").is_dir()
                and Path("/var/lib/mosquitto").is_dir()
                and Path("/var/log/mosquitto").is_dir()
                else ""
            )
            + f"exec {SSHD} -D -e -f {r}/sshd_config"
        )
        with (r / "sshd.log").open("ab") as log:
            pi.proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    pi.netns,
                    "unshare",
                    "--pid",
                    "--fork",
                    "--mount",
                    "--mount-proc",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    script,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )

    def wait_listening(self, pi: FakePi, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # no event to wait on: poll the port
            probe = sh("ip", "netns", "exec", pi.netns, "ss", "-Hltn", "sport = :22", check=False)
            if probe.stdout.strip():
                return
            time.sleep(0.05)
        log = (pi.root / "sshd.log").read_text()
        raise RuntimeError(f"sshd of {pi.address} did not listen: {log}")

    def pids(self, pi: FakePi) -> list[int]:
        out = sh("ip", "netns", "pids", pi.netns, check=False).stdout
        return [int(p) for p in out.split()]

    def stop_pi(self, pi: FakePi) -> None:
        """Everything on this Pi dies (sshd is its PID 1: its namespace goes with it)."""
        for pid in self.pids(pi):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if pi.proc is not None:
            pi.proc.wait(10)
            pi.proc = None

    def restart_sshd(self, pi: FakePi) -> None:
        self.stop_pi(pi)
        self.start_sshd(pi)
        self.wait_listening(pi)

    def processes(self, pi: FakePi) -> list[str]:
        """Command lines of every process on this Pi."""
        lines = []
        for pid in self.pids(pi):
            with contextlib.suppress(OSError):
                lines.append(
                    Path(f"/proc/{pid}/cmdline")
                    .read_bytes()
                    .replace(b"\0", b" ")
                    .decode(errors="replace")
                    .strip()
                )
        return lines

    def __exit__(self, *_exc: object) -> None:
        for pi in self.pis:
            self.stop_pi(pi)
        for pi in self.pis:
            sh("ip", "netns", "del", pi.netns, check=False)
            sh("ip", "link", "del", f"{self.tag}v{pi.index}", check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        sh("ip", "route", "del", "unreachable", "10.231.0.0/16", check=False)
