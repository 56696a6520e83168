# Run: .venv/bin/pytest tests/softswitch/test_value_sets.py -q
"""Parser value sets with tests/softswitch/p4/vset_test.p4, on both packet pipelines and, where simple_switch is
installed, side by side with BMv2 (its members written with simple_switch_CLI's pvs_add).

The parser records the states it went through in the probe's last byte (`r`): 0x10 via the EtherType value set,
0x01 in `pairs`, 0x02 the constant pair case that precedes it, 0x04 in `masked`.
"""

from __future__ import annotations

import random

import pytest
from bmv2_files import SIMPLE_SWITCH, SIMPLE_SWITCH_CLI, run_simple_switch, skip_without
from switch_helpers import device_for, ethernet, only_output, program_json

from omnireduce.softswitch.entries import FieldMatch
from omnireduce.softswitch.errors import AlreadyExists, InvalidArgument, NotFound, ResourceExhausted

pytestmark = pytest.mark.usefixtures("backend")

P = "VsetParser."
PROBE_TYPE = 0x88BB


def frame(ether_type: int = PROBE_TYPE, a: int = 1, b: int = 2, c: int = 3) -> bytes:
    return ethernet(ether_type) + bytes([a]) + b.to_bytes(2, "big") + bytes([c, 0])


def path(device, **fields) -> int:
    """The parser's path for a frame: the `r` byte (0 also when the probe was not parsed: it goes out as sent)."""
    sent = frame(**fields)
    port, out = only_output(device.process_packet(1, sent))
    assert port == 1 and out[:-1] == sent[:-1]
    return out[-1]


def exact(value: int) -> FieldMatch:
    return FieldMatch("exact", value)


@pytest.fixture
def device():
    return device_for("vset_test")


def test_empty_value_sets_match_nothing(device):
    assert path(device) == 0
    assert path(device, ether_type=0x1234) == 0          # not parsed beyond Ethernet: the probe goes out as sent
    assert path(device, a=0xFF, b=0xFFFF) == 0x02


def test_a_single_field_value_set(device):
    device.value_set_write(P + "ether_types", [(exact(0x1234),), (exact(0x0800),)])
    assert path(device, ether_type=0x1234) == 0x10
    assert path(device, ether_type=0x0800) == 0x10
    assert path(device, ether_type=0x1235) == 0
    assert path(device, ether_type=PROBE_TYPE) == 0       # the constant case still goes first


def test_a_two_field_value_set_matches_both_fields(device):
    device.value_set_write(P + "pairs", [(exact(1), exact(2)), (exact(7), exact(0x1234))])
    assert path(device, a=1, b=2) == 0x01
    assert path(device, a=7, b=0x1234) == 0x01
    assert path(device, a=1, b=0x1234) == 0
    assert path(device, a=7, b=2) == 0


def test_constant_cases_before_a_value_set_win(device):
    device.value_set_write(P + "pairs", [(exact(0xFF), exact(0xFFFF))])
    assert path(device, a=0xFF, b=0xFFFF) == 0x02


def test_member_kinds_beyond_exact(device):
    device.value_set_write(P + "masked", [(FieldMatch("ternary", 0x10, mask=0xF0),)])
    assert [path(device, c=c) for c in (0x10, 0x1F, 0x20, 0x0F)] == [0x04, 0x04, 0, 0]
    device.value_set_write(P + "pairs", [
        (FieldMatch("exact", 3), FieldMatch("range", 100, high=200)),
        (FieldMatch("exact", 4), FieldMatch("lpm", 0xAB00, prefix_len=8)),
        (FieldMatch("optional", 0, mask=0), FieldMatch("exact", 9)),
    ])
    assert [path(device, a=3, b=b) for b in (99, 100, 150, 200, 201)] == [0, 1, 1, 1, 0]
    assert [path(device, a=4, b=b) for b in (0xAB00, 0xABFF, 0xAC00)] == [1, 1, 0]
    assert [path(device, a=a, b=9) for a in (0, 77, 255)] == [1, 1, 1]


def test_a_write_replaces_every_member_and_reads_back(device):
    members = [(exact(1), exact(2)), (exact(3), FieldMatch("range", 5, high=6))]
    device.value_set_write(P + "pairs", members)
    assert device.value_set_read(P + "pairs") == members
    device.value_set_write(P + "pairs", [(exact(3), exact(4))])
    assert path(device, a=1, b=2) == 0 and path(device, a=3, b=4) == 1
    device.value_set_write(P + "pairs", [])
    assert device.value_set_read(P + "pairs") == [] and path(device, a=3, b=4) == 0


def test_refused_writes_leave_the_set_unchanged(device):
    device.value_set_write(P + "ether_types", [(exact(0x1234),)])
    with pytest.raises(ResourceExhausted):
        device.value_set_write(P + "ether_types", [(exact(v),) for v in range(5)])
    with pytest.raises(AlreadyExists):
        device.value_set_write(P + "ether_types", [(exact(7),), (exact(7),)])
    with pytest.raises(InvalidArgument):
        device.value_set_write(P + "ether_types", [(exact(1 << 16),)])
    with pytest.raises(InvalidArgument):
        device.value_set_write(P + "pairs", [(exact(1),)])
    with pytest.raises(InvalidArgument):
        device.value_set_write(P + "masked", [(FieldMatch("ternary", 0x11, mask=0xF0),)])
    with pytest.raises(NotFound, match="Did you mean"):
        device.value_set_write(P + "ether_type", [])
    assert device.value_set_read(P + "ether_types") == [(exact(0x1234),)]
    assert path(device, ether_type=0x1234) == 0x10


def test_a_new_pipeline_starts_with_empty_sets(device):
    device.value_set_write(P + "ether_types", [(exact(0x1234),)])
    device.load_pipeline(program_json("vset_test").read_bytes())
    assert device.value_set_read(P + "ether_types") == []


@pytest.mark.bmv2
@skip_without(SIMPLE_SWITCH, SIMPLE_SWITCH_CLI, names="simple_switch and simple_switch_CLI")
def test_bmv2_parses_the_same_way(device):
    rng = random.Random(5)
    ether_types = [0x1234, 0x0800, 0x86DD]
    pairs = [(1, 2), (7, 0x1234), (0xFF, 0xFFFF), (0, 0)]
    masked = [0x10, 0x2F]
    device.value_set_write(P + "ether_types", [(exact(v),) for v in ether_types])
    device.value_set_write(P + "pairs", [(exact(a), exact(b)) for a, b in pairs])
    device.value_set_write(P + "masked", [(exact(c),) for c in masked])

    def configure(switch) -> None:   # BMv2 takes a member as the key fields concatenated ("compressed")
        switch.pvs_add(P + "ether_types", ether_types, 2)
        switch.pvs_add(P + "pairs", [a << 16 | b for a, b in pairs], 3)
        switch.pvs_add(P + "masked", masked, 1)

    frames = []
    for _ in range(60):
        a, b = rng.choice(pairs + [(rng.randrange(256), rng.randrange(65536))])
        frames.append(frame(rng.choice(ether_types + [PROBE_TYPE, 0x1235]), a, b,
                            rng.choice(masked + [rng.randrange(256)])))
    ours = [only_output(device.process_packet(1, f))[1] for f in frames]
    assert {out[-1] for out in ours if out[12:14] != b"\x12\x35"} >= {0x10, 0x11, 0x12, 0x14, 0x05}
    theirs = run_simple_switch(program_json("vset_test"), frames, configure=configure, expected=len(frames))
    assert sorted(theirs.outputs) == sorted(ours)


def _vset_program(change) -> dict:
    import json

    program = json.loads(program_json("vset_test").read_text())
    change(program)
    return program


def _state(program: dict, name: str) -> dict:
    return next(s for s in program["parsers"][0]["parse_states"] if s["name"] == name)


@pytest.mark.parametrize("change, message", [
    (lambda p: _state(p, "start")["transitions"][1].update(value="VsetParser.nope"), "unknown value set"),
    (lambda p: p["parse_vsets"][0].update(compressed_bitwidth=12), "matches it against 16 bits"),
    (lambda p: _state(p, "check_c")["transitions"][0].update(value="VsetParser.ether_types"), "16 bits wide"),
])
def test_programs_with_broken_value_sets_are_refused(change, message):
    from omnireduce.softswitch.device import Device

    with pytest.raises(InvalidArgument, match=message):
        Device().load_pipeline(_vset_program(change))
