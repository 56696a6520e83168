# Run: .venv/bin/pytest tests/softswitch/test_softswitch_units.py -q
"""Unit tests of softswitch pieces that need no P4 program: hash algorithms, the replication engine,
pcap files, port specs and the PHV-independent state objects."""

from __future__ import annotations

import random
import zlib

import pytest
from switch_helpers import crc16_arc_bitwise, internet_checksum

from omnireduce.softswitch import hashes
from omnireduce.softswitch.errors import AlreadyExists, InvalidArgument, NotFound, OutOfRange
from omnireduce.softswitch.pcap import PcapWriter, read_pcap
from omnireduce.softswitch.ports import PortSpecError, parse_port_spec
from omnireduce.softswitch.pre import ReplicationEngine
from omnireduce.softswitch.state import CounterArrayState, RegisterArrayState

CHECK_INPUT = b"123456789"  # the standard CRC check string




class TestHashes:
    def test_crc16_check_value(self):
        assert hashes.crc16(CHECK_INPUT) == 0xBB3D

    @pytest.mark.parametrize("data", [b"", b"\x00", b"\xff\x80\x01", bytes(range(256))])
    def test_crc16_matches_bitwise_reference(self, data):
        assert hashes.crc16(data) == crc16_arc_bitwise(data)

    def test_crc32_check_value(self):
        assert hashes.crc32(CHECK_INPUT) == 0xCBF43926 == zlib.crc32(CHECK_INPUT)

    @pytest.mark.parametrize("data", [b"", b"\x45\x00\x00\x1c", b"\x01\x02\x03", bytes(range(1, 40))])
    def test_csum16_is_the_internet_checksum(self, data):
        assert hashes.csum16(data) == internet_checksum(data)

    def test_identity_takes_the_first_eight_bytes(self):
        assert hashes.identity(b"\x01\x02") == 0x0102
        assert hashes.identity(bytes(range(1, 11))) == int.from_bytes(bytes(range(1, 9)), "big")

    def test_xor16_pads_the_last_word(self):
        assert hashes.ALGORITHMS["xor16"](b"\x12\x34\x56") == 0x1234 ^ 0x5600


class TestReplicationEngine:
    def test_group_lifecycle(self):
        pre = ReplicationEngine()
        pre.group_insert(1, [(1, 10), (2, 20)])
        with pytest.raises(AlreadyExists):
            pre.group_insert(1, [(3, 0)])
        pre.group_modify(1, [(3, 30)])
        assert pre.group_read(1) == {1: [(3, 30)]}
        assert pre.group_read(None) == {1: [(3, 30)]}
        pre.group_delete(1)
        with pytest.raises(NotFound):
            pre.group_delete(1)
        with pytest.raises(NotFound):
            pre.group_modify(1, [])

    @pytest.mark.parametrize(
        "group, replicas",
        [(0, [(1, 0)]), (70000, [(1, 0)]), (1, [(512, 0)]), (1, [(1, -1)]), (1, [(1, 0), (1, 0)]), (1, [(1,)])],
    )
    def test_group_rejects_bad_input(self, group, replicas):
        with pytest.raises(InvalidArgument):
            ReplicationEngine().group_insert(group, replicas)

    def test_clone_sessions(self):
        pre = ReplicationEngine()
        pre.session_insert(0, [(4, 1)], packet_length_bytes=64)
        assert pre.session_read(0)[0].packet_length_bytes == 64
        with pytest.raises(AlreadyExists):
            pre.session_insert(0, [])
        with pytest.raises(InvalidArgument):
            pre.session_insert(1, [(1, 1)], packet_length_bytes=-1)
        with pytest.raises(InvalidArgument):
            pre.session_insert(40000, [])
        pre.session_delete(0)
        assert pre.session_read(None) == {}


class TestState:
    def test_register_bounds_and_widths(self):
        reg = RegisterArrayState("r", 4, 12)
        reg.write(3, 0xFFF)
        assert reg.read(3) == 0xFFF
        assert list(reg.read_all()) == [0, 0, 0, 0xFFF]
        with pytest.raises(InvalidArgument):
            reg.write(0, 0x1000)
        with pytest.raises(OutOfRange):
            reg.read(4)
        cells = reg.cells
        reg.reset()
        assert reg.cells is cells and cells == [0] * 4  # generated code keeps a reference to the list

    def test_wide_register_reads_as_objects(self):
        reg = RegisterArrayState("r", 2, 80)
        reg.write(1, 1 << 79)
        assert int(reg.read_all()[1]) == 1 << 79

    def test_counter(self):
        ctr = CounterArrayState("c", 2)
        ctr.write(1, 5, 500)
        assert ctr.read(1) == (5, 500)
        with pytest.raises(OutOfRange):
            ctr.read(2)


class TestPortSpecs:
    def test_udp_with_peer(self):
        spec = parse_port_spec("1@udp:127.0.0.1:40001,127.0.0.1:50001")
        assert (spec.number, spec.kind, spec.bind, spec.peer) == (1, "udp", ("127.0.0.1", 40001), ("127.0.0.1", 50001))

    def test_udp_without_peer_and_raw(self):
        assert parse_port_spec("2@udp:127.0.0.1:0").peer is None
        spec = parse_port_spec("3@veth3")
        assert (spec.kind, spec.iface) == ("raw", "veth3")

    @pytest.mark.parametrize("text", ["veth1", "x@veth1", "511@veth1", "1@udp:127.0.0.1", "1@udp:h:99999", "1@"])
    def test_bad_specs(self, text):
        with pytest.raises(PortSpecError):
            parse_port_spec(text)


def test_pcap_round_trip(tmp_path):
    writer = PcapWriter(tmp_path / "p.pcap")
    frames = [b"\x01" * 60, b"\x02" * 14]
    for frame in frames:
        writer.write(frame)
    writer.close()
    assert read_pcap(tmp_path / "p.pcap") == frames


def minimal_program(fields: list[list]) -> dict:
    """The smallest BMv2 JSON a v1model target accepts: parse one header of `fields`, emit it, forward to
    port 0. Used to check header extraction/emission on odd layouts without p4c."""
    std_fields = [["ingress_port", 9, False], ["egress_spec", 9, False], ["egress_port", 9, False],
                  ["instance_type", 32, False], ["packet_length", 32, False], ["mcast_grp", 16, False],
                  ["egress_rid", 16, False], ["checksum_error", 1, False], ["parser_error", 32, False],
                  ["_padding", 4, False]]
    return {
        "__meta__": {"version": [2, 23], "compiler": "hand-written for a unit test"},
        "header_types": [{"name": "standard_metadata", "id": 0, "fields": std_fields},
                         {"name": "odd_t", "id": 1, "fields": fields}],
        "headers": [{"name": "standard_metadata", "id": 0, "header_type": "standard_metadata", "metadata": True},
                    {"name": "odd", "id": 1, "header_type": "odd_t", "metadata": False}],
        "parsers": [{"name": "parser", "id": 0, "init_state": "start", "parse_states": [
            {"name": "start", "id": 0, "parser_ops": [{"op": "extract", "parameters": [{"type": "regular", "value": "odd"}]}],
             "transition_key": [], "transitions": [{"type": "default", "value": None, "mask": None, "next_state": None}]}]}],
        "deparsers": [{"name": "deparser", "id": 0, "order": ["odd"], "primitives": []}],
        "actions": [],
        "pipelines": [{"name": "ingress", "id": 0, "init_table": None, "tables": [], "conditionals": [], "action_profiles": []},
                      {"name": "egress", "id": 1, "init_table": None, "tables": [], "conditionals": [], "action_profiles": []}],
    }


@pytest.mark.parametrize(
    "fields",
    [
        [["a", 3, False], ["b", 5, False], ["c", 12, False], ["d", 4, False], ["e", 48, False]],
        [["a", 1, False], ["b", 7, True], ["c", 16, True], ["d", 64, False], ["e", 128, False], ["f", 8, True]],
        [["a", 20, True], ["b", 20, False], ["c", 24, False], ["d", 72, True]],
        [["lane%d" % i, 32, False] for i in range(32)],
    ],
)
def test_header_codec_round_trips_any_bytes(fields):
    from omnireduce.softswitch.device import Device

    device = Device()
    device.load_pipeline(minimal_program(fields))
    size = sum(f[1] for f in fields) // 8
    rng = random.Random(size)
    for _ in range(50):
        frame = bytes(rng.randrange(256) for _ in range(size + rng.randrange(4)))
        assert device.process_packet(1, frame) == [(0, frame)]
    assert device.process_packet(1, b"\x01" * (size - 1)) == [(0, b"\x01" * (size - 1))]  # too short: payload
