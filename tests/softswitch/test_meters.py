# Run: .venv/bin/pytest tests/softswitch/test_meters.py -q
"""Meters with tests/softswitch/p4/meter_test.p4: indirect meters in packets and bytes and a direct meter, on both
packet pipelines with the target clock frozen (Device.freeze_clock), so every color is known in advance. The
expected colors follow BMv2's two-rate three-color marker (softswitch/meters.py explains its arithmetic). Where
simple_switch_grpc is installed, the same P4Runtime configuration and frames go through BMv2 too (in pcap-file mode,
with rates of 0 so that BMv2's real clock cannot change a color) and the outputs are compared."""

from __future__ import annotations

import struct

import pytest
from bmv2_files import SIMPLE_SWITCH_GRPC, simple_switch_grpc, skip_without
from switch_helpers import device_for, ethernet, only_output, program_json

from conftest_p4rt import RawClient, program_pipeline, serving, update
from omnireduce.p4proto import p4runtime_pb2
from omnireduce.softswitch.device import Device
from omnireduce.softswitch.entries import FieldMatch, TableEntry
from omnireduce.softswitch.errors import InvalidArgument, NotFound, OutOfRange
from omnireduce.softswitch.meters import MeterConfig

pytestmark = pytest.mark.usefixtures("backend")

I = "MeterIngress."
PROBE = struct.Struct(">IBBBB")
GREEN, YELLOW, RED = 0, 1, 2
T0 = 5_000_000   # the frozen clock, microseconds after the pipeline load


def probe(index: int = 0, key: int = 0, pad: int = 0) -> bytes:
    return ethernet(0x88B8) + PROBE.pack(index, key, 0x77, 0x77, 0x77) + bytes(pad)


def colors(device, index: int = 0, key: int = 0, pad: int = 0) -> tuple[int, int, int]:
    """(c_pkts, c_bytes, c_direct) of one probe."""
    sent = probe(index, key, pad)
    port, out = only_output(device.process_packet(1, sent))
    assert port == 1 and len(out) == len(sent)
    return PROBE.unpack(out[14:22])[2:]


def flow(key: int) -> tuple[FieldMatch, ...]:
    return (FieldMatch("exact", key),)


@pytest.fixture
def device() -> Device:
    device = device_for("meter_test")
    device.freeze_clock(T0)
    return device


def test_unconfigured_meters_mark_everything_green(device):
    assert {colors(device, index=i) for i in range(8) for _ in range(3)} == {(GREEN, GREEN, 0xEE)}


def test_a_packet_meter_takes_from_the_peak_bucket_first(device):
    # CIR 1000 pkt/s (1 token per ms) with a burst of 2, PIR 2000 pkt/s with a burst of 4; the clock stands still.
    device.meter_set(I + "pkt_meter", 3, MeterConfig(cir=1000, cburst=2, pir=2000, pburst=4))
    assert [colors(device, index=3)[0] for _ in range(6)] == [GREEN, GREEN, YELLOW, YELLOW, RED, RED]
    # A RED packet takes no committed token: after 1 ms each bucket gained exactly its rate's worth (1 and 2).
    device.freeze_clock(T0 + 1000)
    assert [colors(device, index=3)[0] for _ in range(3)] == [GREEN, YELLOW, RED]
    # A bucket's tokens are whole units of rate x time since the load: 999 us later the peak bucket (2 per ms) got
    # one more, the committed one (1 per ms) none yet, until the next microsecond.
    device.freeze_clock(T0 + 1999)
    assert colors(device, index=3)[0] == YELLOW
    device.freeze_clock(T0 + 2000)
    assert colors(device, index=3)[0] == GREEN
    assert colors(device, index=2)[0] == GREEN        # cells are independent


def test_buckets_refill_up_to_their_burst_only(device):
    device.meter_set(I + "pkt_meter", 0, MeterConfig(cir=1000, cburst=2, pir=1000, pburst=3))
    assert [colors(device)[0] for _ in range(4)] == [GREEN, GREEN, YELLOW, RED]
    device.freeze_clock(T0 + 60_000_000)              # a minute later: still only the bursts
    assert [colors(device)[0] for _ in range(4)] == [GREEN, GREEN, YELLOW, RED]


def test_a_byte_meter_counts_the_packet_as_received(device):
    # A probe is 22 bytes (32 with 10 bytes of padding). Committed burst 50 bytes, peak burst 80, no refill.
    device.meter_set(I + "byte_meter", 1, MeterConfig(cir=0, cburst=50, pir=0, pburst=80))
    assert [colors(device, index=1)[1] for _ in range(2)] == [GREEN, GREEN]   # 80 -> 36 peak, 50 -> 6 committed
    assert colors(device, index=1, pad=10)[1] == YELLOW                        # 36 >= 32 peak, but 6 < 32
    assert colors(device, index=1)[1] == RED                                   # 4 peak tokens left < 22


def test_an_index_past_the_end_changes_nothing(device):
    device.meter_set(I + "pkt_meter", 7, MeterConfig(0, 0, 0, 0))
    assert colors(device, index=8)[:2] == (0x77, 0x77)
    assert colors(device, index=0xFFFFFFFF)[:2] == (0x77, 0x77)
    assert colors(device, index=7)[:2] == (RED, GREEN)


def test_direct_meter_runs_on_hits_with_the_entrys_own_cell(device):
    device.table_insert(TableEntry(I + "flows", flow(5), I + "metered", ()))
    device.table_insert(TableEntry(I + "flows", flow(6), "NoAction", ()))   # the meter runs on any hit
    assert colors(device, key=5)[2] == GREEN                # configured: default, GREEN
    assert colors(device, key=9)[2] == 0xEE                  # a miss runs no meter
    device.direct_meter_set(I + "flows", flow(5), 0, MeterConfig(0, 1, 0, 2))
    device.direct_meter_set(I + "flows", flow(6), 0, MeterConfig(0, 0, 0, 0))
    assert [colors(device, key=5)[2] for _ in range(3)] == [GREEN, YELLOW, RED]
    assert colors(device, key=6)[2] == RED
    assert device.direct_meter_get(I + "flows", flow(5)) == MeterConfig(0, 1, 0, 2)
    # Deleting an entry frees its cell; the next entry starts unconfigured.
    device.table_delete(TableEntry(I + "flows", flow(5), "", ()))
    device.table_insert(TableEntry(I + "flows", flow(7), I + "metered", ()))
    assert device.direct_meter_get(I + "flows", flow(7)) is None
    assert colors(device, key=7)[2] == GREEN
    with pytest.raises(NotFound):
        device.direct_meter_get(I + "flows", flow(5))


def test_modifying_an_entry_keeps_its_meter(device):
    device.table_insert(TableEntry(I + "flows", flow(5), I + "metered", ()))
    device.direct_meter_set(I + "flows", flow(5), 0, MeterConfig(0, 0, 0, 1))
    device.table_modify(TableEntry(I + "flows", flow(5), "NoAction", ()))
    assert [colors(device, key=5)[2] for _ in range(2)] == [YELLOW, RED]


def test_configurations_read_back_as_written_and_reset(device):
    config = MeterConfig(cir=249, cburst=7, pir=251, pburst=9)   # BMv2 reads these back as 248 and 250
    device.meter_set(I + "pkt_meter", 4, config)
    assert device.meter_get(I + "pkt_meter", 4) == config
    device.meter_set(I + "pkt_meter", 4, None)
    assert device.meter_get(I + "pkt_meter", 4) is None and colors(device, index=4)[0] == GREEN


def test_bad_configurations_are_refused(device):
    with pytest.raises(InvalidArgument, match="below the committed rate"):
        device.meter_set(I + "pkt_meter", 0, MeterConfig(cir=10, cburst=1, pir=5, pburst=1))
    with pytest.raises(InvalidArgument, match="must be an integer >= 0"):
        device.meter_set(I + "pkt_meter", 0, MeterConfig(cir=-1, cburst=1, pir=5, pburst=1))
    with pytest.raises(OutOfRange):
        device.meter_set(I + "pkt_meter", 8, None)
    with pytest.raises(InvalidArgument, match="direct meter"):
        device.meter_set(I + "flow_meter", 0, None)
    with pytest.raises(NotFound, match="Did you mean"):
        device.meter_get(I + "pkt_meters", 0)
    with pytest.raises(InvalidArgument):
        device.freeze_clock(-5)


def test_a_new_pipeline_forgets_configurations_and_runs_the_clock(device):
    device.meter_set(I + "pkt_meter", 0, MeterConfig(0, 0, 0, 0))
    device.load_pipeline(program_json("meter_test").read_bytes())
    assert device.meter_get(I + "pkt_meter", 0) is None and colors(device)[0] == GREEN


# --- the same configuration over P4Runtime, on the softswitch and on BMv2 ---------------------------------------
def meter_updates(p4map_p4info) -> list[p4runtime_pb2.Update]:
    """Zero rates (no refill, whatever the clock): colors depend on the buckets alone."""
    ids = {m.preamble.name: m.preamble.id for m in p4map_p4info.meters}
    table = next(t for t in p4map_p4info.tables if t.preamble.name == I + "flows")
    metered = next(a.preamble.id for a in p4map_p4info.actions if a.preamble.name == I + "metered")

    def meter(name: str, index: int, cburst: int, pburst: int) -> p4runtime_pb2.Update:
        return update("MODIFY", meter_entry=p4runtime_pb2.MeterEntry(
            meter_id=ids[I + name], index=p4runtime_pb2.Index(index=index),
            config=p4runtime_pb2.MeterConfig(cir=0, cburst=cburst, pir=0, pburst=pburst)))

    entry = p4runtime_pb2.TableEntry(table_id=table.preamble.id, meter_config=p4runtime_pb2.MeterConfig(
        cir=0, cburst=2, pir=0, pburst=3))
    entry.match.add(field_id=1).exact.value = b"\x05"
    entry.action.action.action_id = metered
    # Cell 5 is not used by the frames: its odd rates show how BMv2 reads configurations back.
    odd = update("MODIFY", meter_entry=p4runtime_pb2.MeterEntry(
        meter_id=ids[I + "pkt_meter"], index=p4runtime_pb2.Index(index=5),
        config=p4runtime_pb2.MeterConfig(cir=249, cburst=7, pir=251, pburst=9)))
    return [meter("pkt_meter", 1, 2, 4), meter("pkt_meter", 2, 0, 1), meter("byte_meter", 1, 60, 100),
            meter("byte_meter", 2, 22, 22), update("INSERT", table_entry=entry), odd]


def meter_frames() -> list[bytes]:
    return [probe(index, key, pad) for index, key, pad in
            [(1, 5, 0)] * 5 + [(2, 5, 0), (2, 9, 40), (2, 6, 0), (1, 5, 20), (3, 5, 0), (9, 5, 0)]]


@pytest.mark.bmv2
@skip_without(SIMPLE_SWITCH_GRPC, names="simple_switch_grpc")
def test_bmv2_colors_the_same_packets_the_same_way(backend):
    frames = meter_frames()
    with serving("meter_test") as served:
        served.client.write(*meter_updates(served.pipeline.p4info))
        ours = [only_output(served.device.process_packet(1, f))[1] for f in frames]
        config_reads = served.client.read(p4runtime_pb2.Entity(meter_entry=p4runtime_pb2.MeterEntry()))
    pipeline = program_pipeline("meter_test")
    with simple_switch_grpc(frames) as (switch, address):
        client = RawClient(address, 0, election_id=1)
        try:
            client.become_primary()
            client.set_pipeline(pipeline.p4info, pipeline.device_config)
            client.write(*meter_updates(pipeline.p4info))
            switch.check_in_time()
            theirs = switch.collect(len(frames)).outputs
            their_reads = client.read(p4runtime_pb2.Entity(meter_entry=p4runtime_pb2.MeterEntry()))
        finally:
            client.close()
    assert [PROBE.unpack(f[14:22])[2:] for f in ours] == [PROBE.unpack(f[14:22])[2:] for f in theirs]
    assert theirs == ours
    # The same configurations read back (cells never written have none), except that BMv2 keeps a rate as a double
    # per microsecond and converts it back with a truncation: 249 and 251 per second come back as 248 and 250.
    # The softswitch answers what was written, as P4Runtime's read-write symmetry asks.
    def configs(reads):
        return {(e.meter_entry.meter_id, e.meter_entry.index.index): (e.meter_entry.config.cir, e.meter_entry.config.cburst,
                e.meter_entry.config.pir, e.meter_entry.config.pburst) for e in reads if e.meter_entry.HasField("config")}

    ours_configs, their_configs = configs(config_reads), configs(their_reads)
    odd_cell = next(cell for cell, config in ours_configs.items() if config[0] == 249)
    assert ours_configs.pop(odd_cell) == (249, 7, 251, 9) and their_configs.pop(odd_cell) == (248, 7, 250, 9)
    assert ours_configs == their_configs and len(ours_configs) == 4
    assert len(config_reads) == len(their_reads) == 16


def _meter_program(change) -> dict:
    import json

    program = json.loads(program_json("meter_test").read_text())
    change({m["name"]: m for m in program["meter_arrays"]}, program)
    return program


@pytest.mark.parametrize("change, message", [
    (lambda m, p: m[I + "pkt_meter"].update(type="furlongs"), "need 'packets' or 'bytes'"),
    (lambda m, p: m[I + "flow_meter"].update(binding="nowhere"), "unknown table"),
    (lambda m, p: m[I + "flow_meter"].update(result_target=["scalars", "nope"]), "no field 'nope'"),
])
def test_programs_with_broken_meters_are_refused(change, message):
    with pytest.raises(InvalidArgument, match=message):
        Device().load_pipeline(_meter_program(change))
