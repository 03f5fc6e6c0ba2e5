"""The fleet's inventory: which Pis to deploy to, read from a ``pi_list.txt`` (pure).

The lab's file, as it is: one address per line, blank lines and ``#`` comments allowed.
Each line may also say who to log in as, the SSH port and the node's id::

    # desk 4
    192.168.4.1                    # node id pi-4-1 (from the last two numbers)
    pi@192.168.4.2:2222 desk4-b    # user pi, port 2222, node id desk4-b
    192.168.[5:67].[1:3]           # a range, as Ansible writes them: 189 Pis

Ranges are ``[first:last]`` or ``[first:last:step]``, numbers (``[01:20]`` keeps the zero
padding) or single letters (``[a:f]``); several in one address multiply. A line with a
range cannot also name a node id (one name for many Pis). A node id defaults to
``pi-<3rd>-<4th>`` for an IPv4 address and to the first label of a host name.

Nothing is thrown away silently: malformed lines, repeated hosts (the old trick of listing
a Pi three times to run three workers: set ``workers`` instead) and repeated node ids are
reported with their line numbers.
"""

import itertools
import re
import string
from dataclasses import dataclass, field

from piswarm.protocol import ProtocolError, topics

MAX_HOSTS = 100_000  # one line may not expand beyond this (a typo like [1:99999999])

_RANGE = re.compile(r"\[([^\[\]]*)\]")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")


class InventoryError(ValueError):
    """A range or line that cannot be read; the message says why."""


@dataclass(frozen=True)
class Host:
    """One Pi to deploy to."""

    address: str
    node_id: str
    port: int = 22
    user: str | None = None
    line: int = 0  # where it came from (1-based), 0 when not from a file

    @property
    def target(self) -> str:
        """``user@address:port`` as people write it (user and port only when given)."""
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port != 22 else ""
        return f"{user}{self.address}{port}"


@dataclass
class Inventory:
    hosts: list[Host] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "line 7: ..." each


def _range_values(body: str) -> list[str]:
    parts = body.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise InventoryError(f"[{body}] is not [first:last] or [first:last:step]")
    first, last = parts[0], parts[1]
    step_text = parts[2] if len(parts) == 3 else "1"
    if not step_text.isdigit() or int(step_text) == 0:
        raise InventoryError(f"[{body}]: the step must be a whole number above 0")
    step = int(step_text)
    if first.isdigit() and last.isdigit():
        lo, hi = int(first), int(last)
        if lo > hi:
            raise InventoryError(f"[{body}]: {first} is after {last}")
        if (hi - lo) // step + 1 > MAX_HOSTS:
            raise InventoryError(f"[{body}] makes more than {MAX_HOSTS} values")
        width = len(first) if first.startswith("0") and len(first) > 1 else 0
        return [str(n).zfill(width) for n in range(lo, hi + 1, step)]
    letters = string.ascii_lowercase + string.ascii_uppercase
    if len(first) == 1 and len(last) == 1 and first in letters and last in letters:
        if letters.index(first) > letters.index(last):
            raise InventoryError(f"[{body}]: {first} is after {last}")
        return list(letters[letters.index(first) : letters.index(last) + 1 : step])
    raise InventoryError(f"[{body}]: use numbers ([1:3], [01:20]) or single letters ([a:f])")


def expand(pattern: str) -> list[str]:
    """Every address a pattern with ``[first:last(:step)]`` ranges stands for, in order."""
    pieces: list[list[str]] = []
    pos = 0
    for match in _RANGE.finditer(pattern):
        pieces.append([pattern[pos : match.start()]])
        pieces.append(_range_values(match.group(1)))
        pos = match.end()
    pieces.append([pattern[pos:]])
    if any("[" in p or "]" in p for piece in pieces[::2] for p in piece):
        raise InventoryError(f"{pattern!r}: an unbalanced '[' or ']'")
    total = 1
    for piece in pieces:
        total *= len(piece)
    if total > MAX_HOSTS:
        raise InventoryError(f"{pattern!r} makes {total} addresses, more than {MAX_HOSTS}")
    return ["".join(combo) for combo in itertools.product(*pieces)]


def _is_ipv4(address: str) -> bool:
    parts = address.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) <= 255 and len(p) <= 3 for p in parts)


def check_address(address: str) -> str:
    """An IPv4 address or a host name, else :class:`InventoryError`."""
    if _is_ipv4(address):
        return address
    labels = address.split(".")
    if (
        len(address) <= 253
        and not all(label.isdigit() for label in labels)
        and all(_LABEL.fullmatch(label) for label in labels)
    ):
        return address
    raise InventoryError(f"{address!r} is not an IPv4 address or a host name")


def default_node_id(address: str) -> str:
    """``pi-4-1`` for 192.168.4.1 (desk 4, Pi 1 in the lab's plan); a host's first label."""
    if _is_ipv4(address):
        _a, _b, c, d = address.split(".")
        return f"pi-{int(c)}-{int(d)}"
    return address.split(".")[0].lower()


def parse_line(text: str, line: int = 0) -> list[Host]:
    """The hosts one line stands for (none for a blank or comment line)."""
    body = text.split("#", 1)[0].strip()
    if not body:
        return []
    fields = body.split()
    if len(fields) > 2:
        raise InventoryError(f"expected '[user@]host[:port] [node-id]', got {len(fields)} words")
    spec = fields[0]
    user: str | None = None
    if "@" in spec:
        user, spec = spec.split("@", 1)
        if not _USER.fullmatch(user):
            raise InventoryError(f"{user!r} is not a user name")
    if spec.count("[") != spec.count("]"):
        raise InventoryError(f"{spec!r}: an unbalanced '[' or ']'")
    port = 22
    if ":" in spec.rsplit("]", 1)[-1]:
        spec, port_text = spec.rsplit(":", 1)
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise InventoryError(f"port {port_text!r} is not in 1-65535")
        port = int(port_text)
    addresses = expand(spec)
    node_id = fields[1] if len(fields) == 2 else None
    if node_id is not None and len(addresses) > 1:
        raise InventoryError(f"node id {node_id!r} given for {len(addresses)} hosts of a range")
    for address in addresses:
        check_address(address)
    hosts = []
    for address in addresses:
        name = node_id or default_node_id(address)
        try:
            topics.validate_node_id(name)
        except ProtocolError as exc:
            raise InventoryError(str(exc)) from None
        hosts.append(Host(address=address, node_id=name, port=port, user=user, line=line))
    return hosts


def parse_inventory(text: str) -> Inventory:
    """Every host of a file, and every problem with its line number."""
    inventory = Inventory()
    seen_hosts: dict[tuple[str, int], int] = {}
    seen_ids: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        try:
            hosts = parse_line(raw, number)
        except InventoryError as exc:
            inventory.problems.append(f"line {number}: {exc}")
            continue
        for host in hosts:
            first = seen_hosts.get((host.address, host.port))
            if first is not None:
                inventory.problems.append(
                    f"line {number}: {host.address} is already on line {first} (to run more "
                    "sieves on one Pi, set its workers; do not list it twice)"
                )
                continue
            owner = seen_ids.get(host.node_id)
            if owner is not None:
                inventory.problems.append(
                    f"line {number}: node id {host.node_id} is already used on line {owner}"
                )
                continue
            seen_hosts[(host.address, host.port)] = number
            seen_ids[host.node_id] = number
            inventory.hosts.append(host)
    return inventory


def render_inventory(hosts: list[Host], *, header: str = "") -> str:
    """A file :func:`parse_inventory` reads back as the same hosts."""
    lines = [f"# {line}" for line in header.splitlines()]
    for host in hosts:
        explicit = host.node_id != default_node_id(host.address)
        lines.append(f"{host.target} {host.node_id}" if explicit else host.target)
    return "\n".join(lines) + "\n"
