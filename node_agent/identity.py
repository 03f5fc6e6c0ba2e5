"""What a node says about itself in its birth message: host, IP, cores, model."""

import os
import platform
import socket
from dataclasses import dataclass
from pathlib import Path

import psutil

_MODEL_FILES = (Path("/proc/device-tree/model"), Path("/sys/firmware/devicetree/base/model"))


@dataclass(frozen=True)
class Identity:
    host: str
    ip: str | None
    cores: int
    model: str


def primary_ip() -> str | None:
    """The address this host uses for its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))  # UDP connect only picks a route
            return str(sock.getsockname()[0])
        except OSError:
            pass
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                return str(addr.address)
    return None


def machine_model() -> str:
    """``Raspberry Pi 4 Model B Rev 1.4`` on a Pi; the CPU model elsewhere."""
    for path in _MODEL_FILES:
        try:
            return path.read_bytes().rstrip(b"\x00\n").decode(errors="replace")[:200]
        except OSError:
            continue
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()[:200]
    except OSError:
        pass
    return platform.machine() or "unknown"


def host_identity() -> Identity:
    return Identity(
        host=socket.gethostname()[:200],
        ip=primary_ip(),
        cores=os.cpu_count() or 1,
        model=machine_model(),
    )
