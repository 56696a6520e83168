# Run: .venv/bin/pytest tests/softswitch/test_tables.py -q
"""Packet and control-plane tests of softswitch match tables with tests/softswitch/p4/tables_test.p4.

The program reflects each packet; a `probe` header carries the keys in and every table's result out.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from switch_helpers import SRC_MAC, device_for, ethernet, only_output

from omnireduce.softswitch.entries import FieldMatch, TableEntry
from omnireduce.softswitch.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted

# Every test runs on the native and on the Python packet pipeline (conftest.py).
pytestmark = pytest.mark.usefixtures("backend")

PROBE = struct.Struct(">IHBBB9BI")
RESULTS = ("exact", "lpm", "tern", "range", "opt", "const", "const_tern", "hit", "switch")
T = "TestIngress."


def ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def probe_frame(addr: str = "10.1.2.3", port: int = 80, proto: int = 17, kind: int = 0, opt: int = 0, src: int = SRC_MAC) -> bytes:
    return ethernet(0x88B6, src=src) + PROBE.pack(ip(addr), port, proto, kind, opt, *([0] * 9), 0)


def lookup(device, **keys) -> dict[str, int]:
    frame = probe_frame(**keys)
    port, out = only_output(device.process_packet(2, frame))
    assert port == 2 and len(out) == len(frame)
    fields = PROBE.unpack(out[14:])
    result = dict(zip(RESULTS, fields[5:14]))
    result["param"] = fields[14]
    return result


def entry(table: str, key: tuple, action: str, params: tuple = (), priority: int = 0) -> TableEntry:
    return TableEntry(T + table, key, T + action if action != "NoAction" else action, params, priority)


def exact(v: int) -> FieldMatch:
    return FieldMatch("exact", v)


def lpm(addr: str, plen: int) -> FieldMatch:
    return FieldMatch("lpm", ip(addr), prefix_len=plen)


def tern(value: int, mask: int) -> FieldMatch:
    return FieldMatch("ternary", value, mask=mask)


@pytest.fixture
def device():
    return device_for("tables_test")


def test_defaults_of_empty_tables(device):
    r = lookup(device, kind=9, proto=0x40)
    assert r == {"exact": 0, "lpm": 0xDD, "tern": 0, "range": 0, "opt": 0, "const": 0xCC, "const_tern": 3,
                 "hit": 2, "switch": 3, "param": 0}


@pytest.mark.parametrize("kind, expected", [(1, 11), (2, 22), (3, 0xCC)])
def test_const_exact_entries(device, kind, expected):
    assert lookup(device, kind=kind)["const"] == expected


@pytest.mark.parametrize("proto, expected", [(0x11, 1), (0x1F, 1), (0x20, 3), (0x01, 3)])
def test_const_ternary_entries_earlier_wins(device, proto, expected):
    assert lookup(device, proto=proto)["const_tern"] == expected


def test_const_tables_are_immutable_but_readable(device):
    with pytest.raises(PermissionDenied):
        device.table_insert(entry("t_const", (exact(9),), "set_const", (1,)))
    with pytest.raises(PermissionDenied):
        device.table_set_default(T + "t_const", T + "set_const", (5,))
    entries = device.table_entries(T + "t_const")
    assert sorted((e.key[0].value, e.params) for e in entries) == [(1, (11,)), (2, (22,))]
    tern_entries = sorted(device.table_entries(T + "t_const_tern"), key=lambda e: -e.priority)
    assert [e.params for e in tern_entries] == [(1,), (2,), (3,)]  # priorities keep the program's order


def test_exact_with_direct_counter(device):
    device.table_insert(entry("t_exact", (exact(5), exact(SRC_MAC)), "set_exact", (42,)))
    frame_len = len(probe_frame())
    assert lookup(device, kind=5)["exact"] == 42
    assert lookup(device, kind=5)["exact"] == 42
    assert lookup(device, kind=5, src=SRC_MAC + 1)["exact"] == 0
    key = (exact(5), exact(SRC_MAC))
    assert device.direct_counter_read(T + "t_exact", key, 0) == (2, 2 * frame_len)
    device.direct_counter_write(T + "t_exact", key, 0, 0, 0)
    assert device.direct_counter_read(T + "t_exact", key, 0) == (0, 0)
    device.table_modify(entry("t_exact", key, "set_exact", (43,)))
    assert lookup(device, kind=5)["exact"] == 43
    assert device.direct_counter_read(T + "t_exact", key, 0) == (1, frame_len)
    device.table_delete(entry("t_exact", key, "NoAction"))
    assert lookup(device, kind=5)["exact"] == 0
    with pytest.raises(NotFound):
        device.direct_counter_read(T + "t_exact", key, 0)


def test_action_that_drops(device):
    device.table_insert(entry("t_exact", (exact(6), exact(SRC_MAC)), "set_exact_drop"))
    assert device.process_packet(2, probe_frame(kind=6)) == []
    assert device.stats["drop:ingress_mark_to_drop"] == 1


def test_lpm_longest_prefix_wins(device):
    for addr, plen, v in [("10.0.0.0", 8, 1), ("10.1.0.0", 16, 2), ("10.1.2.0", 24, 3), ("0.0.0.0", 0, 9)]:
        device.table_insert(entry("t_lpm", (lpm(addr, plen),), "set_lpm", (v, v * 100)))
    assert (lookup(device, addr="10.1.2.3")["lpm"], lookup(device, addr="10.1.2.3")["param"]) == (3, 300)
    assert lookup(device, addr="10.1.9.9")["lpm"] == 2
    assert lookup(device, addr="10.9.9.9")["lpm"] == 1
    assert lookup(device, addr="11.0.0.1")["lpm"] == 9
    device.table_delete(entry("t_lpm", (lpm("10.1.2.0", 24),), "set_lpm", (0, 0)))
    assert lookup(device, addr="10.1.2.3")["lpm"] == 2
    device.table_modify(entry("t_lpm", (lpm("10.1.0.0", 16),), "set_lpm", (7, 700)))
    assert lookup(device, addr="10.1.2.3")["param"] == 700


def test_lpm_default_can_be_changed_and_reset(device):
    device.table_set_default(T + "t_lpm", T + "set_lpm", (0x77, 5))
    assert lookup(device)["lpm"] == 0x77
    assert device.table_get_default(T + "t_lpm").params == (0x77, 5)
    device.table_reset_default(T + "t_lpm")
    assert (lookup(device)["lpm"], lookup(device)["param"]) == (0xDD, 0)
    assert device.table_get_default(T + "t_lpm").action == T + "set_lpm"


def test_ternary_priorities(device):
    device.table_insert(entry("t_tern", (tern(17, 0xFF), tern(0, 0)), "set_tern", (1,), priority=10))
    device.table_insert(entry("t_tern", (tern(0, 0), tern(ip("10.0.0.0"), 0xFF000000)), "set_tern", (2,), priority=20))
    device.table_insert(entry("t_tern", (tern(17, 0xFF), tern(ip("10.1.2.3"), 0xFFFFFFFF)), "set_tern", (3,), priority=5))
    assert lookup(device, proto=17, addr="10.1.2.3")["tern"] == 2
    assert lookup(device, proto=17, addr="11.0.0.1")["tern"] == 1
    assert lookup(device, proto=6, addr="10.5.5.5")["tern"] == 2
    assert lookup(device, proto=6, addr="11.0.0.1")["tern"] == 0
    with pytest.raises(AlreadyExists):
        device.table_insert(entry("t_tern", (tern(17, 0xFF), tern(0, 0)), "set_tern", (4,), priority=10))
    # The same match with another priority is another entry.
    device.table_insert(entry("t_tern", (tern(17, 0xFF), tern(0, 0)), "set_tern", (4,), priority=30))
    assert lookup(device, proto=17, addr="10.1.2.3")["tern"] == 4
    device.table_delete(entry("t_tern", (tern(0, 0), tern(ip("10.0.0.0"), 0xFF000000)), "NoAction", priority=20))
    device.table_delete(entry("t_tern", (tern(17, 0xFF), tern(0, 0)), "NoAction", priority=30))
    assert lookup(device, proto=17, addr="10.1.2.3")["tern"] == 1
    assert lookup(device, proto=6, addr="10.5.5.5")["tern"] == 0


def test_range_priorities_and_bounds(device):
    device.table_insert(entry("t_range", (FieldMatch("range", 1000, high=2000),), "set_range", (1,), priority=1))
    device.table_insert(entry("t_range", (FieldMatch("range", 1500, high=1600),), "set_range", (2,), priority=2))
    for port, expected in [(1550, 2), (1000, 1), (2000, 1), (2001, 0), (999, 0), (1600, 2), (1601, 1)]:
        assert lookup(device, port=port)["range"] == expected, port
    with pytest.raises(InvalidArgument):
        device.table_insert(entry("t_range", (FieldMatch("range", 10, high=9),), "set_range", (1,), priority=3))


def test_optional_match(device):
    # p4c lowers `optional` to ternary in the BMv2 JSON; the device takes optional matches for such keys.
    assert device.table_info(T + "t_opt").match_kinds == ("ternary", "exact")
    opt_any = FieldMatch("optional", 0, mask=0)
    opt_7 = FieldMatch("optional", 7, mask=0xFF)
    device.table_insert(entry("t_opt", (opt_any, exact(1)), "set_opt", (5,), priority=1))
    device.table_insert(entry("t_opt", (opt_7, exact(1)), "set_opt", (6,), priority=2))
    assert lookup(device, opt=7, kind=1)["opt"] == 6
    assert lookup(device, opt=8, kind=1)["opt"] == 5
    assert lookup(device, opt=7, kind=2)["opt"] == 0
    with pytest.raises(InvalidArgument):
        device.table_insert(entry("t_opt", (FieldMatch("optional", 7, mask=0x0F), exact(1)), "set_opt", (1,), priority=3))


def test_hit_and_action_run(device):
    device.table_insert(entry("t_hit", (exact(4),), "NoAction"))
    device.table_insert(entry("t_switch", (exact(1),), "first"))
    device.table_insert(entry("t_switch", (exact(2),), "second"))
    assert lookup(device, kind=4)["hit"] == 1
    assert lookup(device, kind=3)["hit"] == 2
    assert [lookup(device, opt=o)["switch"] for o in (1, 2, 3)] == [1, 2, 3]


def test_indirect_counter_counts_packets_and_bytes(device):
    frame_len = len(probe_frame())
    for kind in (3, 3, 4):
        lookup(device, kind=kind)
    assert device.counter_read(T + "kind_seen", 3) == (2, 2 * frame_len)
    assert device.counter_read(T + "kind_seen", 4) == (1, frame_len)
    device.counter_write(T + "kind_seen", 3, 0, 0)
    assert device.counter_read(T + "kind_seen", 3) == (0, 0)


def test_non_probe_frames_exit_after_drop(device):
    assert device.process_packet(1, ethernet(0x0800) + b"x" * 30) == []
    assert device.stats["drop:ingress_mark_to_drop"] == 1
    assert device.counter_read(T + "kind_seen", 0) == (0, 0)  # exit happened before counting


def test_table_capacity(device):
    for i in range(64):
        device.table_insert(entry("t_exact", (exact(i % 256), exact(i)), "set_exact", (1,)))
    with pytest.raises(ResourceExhausted):
        device.table_insert(entry("t_exact", (exact(200), exact(200)), "set_exact", (1,)))


@pytest.mark.parametrize(
    "bad",
    [
        entry("t_exact", (exact(1),), "set_exact", (1,)),  # too few key fields
        entry("t_exact", (exact(256), exact(1)), "set_exact", (1,)),  # value too wide
        entry("t_exact", (tern(1, 1), exact(1)), "set_exact", (1,)),  # wrong match kind
        entry("t_exact", (exact(1), exact(1)), "set_lpm", (1, 1)),  # action not in table
        entry("t_exact", (exact(1), exact(1)), "set_exact", ()),  # missing parameter
        entry("t_exact", (exact(1), exact(1)), "set_exact", (256,)),  # parameter too wide
        entry("t_exact", (exact(1), exact(1)), "set_exact", (1,), priority=3),  # priority on exact table
        entry("t_lpm", (lpm("10.1.2.3", 16),), "set_lpm", (1, 1)),  # bits beyond the prefix
        entry("t_lpm", (FieldMatch("lpm", 0, prefix_len=33),), "set_lpm", (1, 1)),
        entry("t_tern", (tern(3, 1), tern(0, 0)), "set_tern", (1,), priority=1),  # value outside mask
        entry("t_tern", (tern(1, 1), tern(0, 0)), "set_tern", (1,)),  # no priority
    ],
)
def test_invalid_entries_are_refused(device, bad):
    with pytest.raises(InvalidArgument):
        device.table_insert(bad)


def test_unknown_names(device):
    with pytest.raises(NotFound, match="Did you mean"):
        device.table_info(T + "t_exac")
    with pytest.raises(NotFound):
        device.table_modify(entry("t_exact", (exact(1), exact(1)), "set_exact", (1,)))
    with pytest.raises(NotFound):
        device.table_delete(entry("t_exact", (exact(1), exact(1)), "set_exact", (1,)))


def test_table_info(device):
    info = device.table_info(T + "t_tern")
    assert info.match_kinds == ("ternary", "ternary")
    assert info.key_bitwidths == (8, 32)
    assert info.needs_priority
    assert device.table_info(T + "t_exact").has_direct_counter
    assert device.table_info(T + "t_const").default_is_const
    assert device.action_param_bitwidths(T + "set_lpm") == (8, 32)
