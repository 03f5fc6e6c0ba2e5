"""The inventory: the lab's pi_list.txt as it is, ranges, and every problem by line."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deploy.inventory import (
    Host,
    InventoryError,
    expand,
    parse_inventory,
    parse_line,
    render_inventory,
)

SEED_FILE = """192.168.4.1
192.168.4.2
192.168.4.3

192.168.5.1
"""


def test_the_labs_file_reads_as_it_is():
    inventory = parse_inventory(SEED_FILE)
    assert inventory.problems == []
    assert [(h.address, h.node_id, h.port, h.user, h.line) for h in inventory.hosts] == [
        ("192.168.4.1", "pi-4-1", 22, None, 1),
        ("192.168.4.2", "pi-4-2", 22, None, 2),
        ("192.168.4.3", "pi-4-3", 22, None, 3),
        ("192.168.5.1", "pi-5-1", 22, None, 5),
    ]


def test_users_ports_node_ids_comments_and_ranges():
    text = """# the lab
pi@192.168.4.2:2222 desk4-b   # user, port and a name
head.lab.example
192.168.[5:6].[1:3]
pi-[01:03].lab
"""
    inventory = parse_inventory(text)
    assert inventory.problems == []
    first, named, *rest = inventory.hosts
    assert (first.address, first.port, first.user, first.node_id) == (
        "192.168.4.2",
        2222,
        "pi",
        "desk4-b",
    )
    assert first.target == "pi@192.168.4.2:2222"
    assert named.node_id == "head"
    assert [h.address for h in rest[:6]] == [f"192.168.{d}.{p}" for d in (5, 6) for p in (1, 2, 3)]
    assert [h.node_id for h in rest[6:]] == ["pi-01", "pi-02", "pi-03"]
    assert all(h.line == 4 for h in rest[:6])


def test_duplicates_and_malformed_lines_are_reported_by_line():
    text = """192.168.4.1
192.168.4.1
192.168.4.[1:2]
not a valid line at all
192.168.4.300
10.0.0.1 pi-4-1
192.168.[9:7].1
192.168.[1:3.1
host:99999
[1:3] one-name
"""
    inventory = parse_inventory(text)
    assert [h.address for h in inventory.hosts] == ["192.168.4.1", "192.168.4.2"]
    problems = "\n".join(inventory.problems)
    assert "line 2: 192.168.4.1 is already on line 1 (to run more sieves" in problems
    assert "line 3: 192.168.4.1 is already on line 1" in problems
    assert "line 4: expected '[user@]host[:port] [node-id]', got 6 words" in problems
    assert "line 5: '192.168.4.300' is not an IPv4 address or a host name" in problems
    assert "line 6: node id pi-4-1 is already used on line 1" in problems
    assert "line 7: [9:7]: 9 is after 7" in problems
    assert "line 8:" in problems and "unbalanced" in problems
    assert "line 9: port '99999' is not in 1-65535" in problems
    assert "line 10: node id 'one-name' given for 3 hosts of a range" in problems
    assert len(inventory.problems) == 9


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("10.0.[1:3].1", ["10.0.1.1", "10.0.2.1", "10.0.3.1"]),
        ("n[08:10]", ["n08", "n09", "n10"]),
        ("n[1:9:4]", ["n1", "n5", "n9"]),
        ("rack-[a:c]", ["rack-a", "rack-b", "rack-c"]),
        ("plain", ["plain"]),
    ],
)
def test_ranges_expand_like_ansible(pattern, expected):
    assert expand(pattern) == expected


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("a[1:]", r"is not \[first:last\]"),
        ("a[1:5:0]", "step"),
        ("a[x:9]", "numbers"),
        ("a[1:99999999]", "more than"),
        ("a[1:2", "unbalanced"),
        ("a]", "unbalanced"),
        ("[1:400].[1:400]", "more than"),
    ],
)
def test_bad_ranges_say_why(pattern, reason):
    with pytest.raises(InventoryError, match=reason):
        expand(pattern)


@st.composite
def ranged(draw):
    """A pattern of 1-3 numeric ranges between fixed text, and what it must expand to."""
    parts, expected = [], [""]
    for _ in range(draw(st.integers(1, 3))):
        lo = draw(st.integers(0, 40))
        hi = draw(st.integers(lo, lo + 6))
        step = draw(st.integers(1, 3))
        text = draw(st.sampled_from(["", "n", ".", "-x"]))
        parts.append(f"{text}[{lo}:{hi}:{step}]")
        values = [str(v) for v in range(lo, hi + 1, step)]
        expected = [e + text + v for e in expected for v in values]
    return "".join(parts), expected


@given(ranged())
def test_any_range_expands_to_the_product_in_order(case):
    pattern, expected = case
    assert expand(pattern) == expected


@given(
    st.lists(
        st.tuples(st.integers(0, 255), st.integers(0, 255)), min_size=1, max_size=30, unique=True
    )
)
def test_rendered_inventories_read_back_the_same(pairs):
    hosts = [
        Host(address=f"10.9.{c}.{d}", node_id=f"pi-{c}-{d}", line=i + 1)
        for i, (c, d) in enumerate(pairs)
    ]
    hosts.append(
        Host(address="head.lab", node_id="boss", port=2200, user="pi", line=len(hosts) + 1)
    )
    again = parse_inventory(render_inventory(hosts, header="test"))
    assert again.problems == []
    assert [(h.address, h.node_id, h.port, h.user) for h in again.hosts] == [
        (h.address, h.node_id, h.port, h.user) for h in hosts
    ]


@given(st.ip_addresses(v=4))
def test_every_ipv4_address_is_a_host(address):
    (host,) = parse_line(str(address))
    assert ipaddress.ip_address(host.address) == address
