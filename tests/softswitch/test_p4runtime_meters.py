# Run: .venv/bin/pytest tests/softswitch/test_p4runtime_meters.py -q
"""P4Runtime MeterEntry, DirectMeterEntry and TableEntry.meter_config on the softswitch server, with
tests/softswitch/p4/meter_test.p4: writes reach the meters the packets run through, reads answer what was written,
and malformed requests get the spec's codes."""

from __future__ import annotations

import struct

import grpc
import pytest
from google.rpc import code_pb2

from conftest_p4rt import Served, batch_codes, rpc_error, serving, update
from omnireduce.p4proto import p4runtime_pb2
from switch_helpers import ethernet, only_output

pytestmark = pytest.mark.usefixtures("backend")

Entity = p4runtime_pb2.Entity
I = "MeterIngress."
PROBE = struct.Struct(">IBBBB")


@pytest.fixture
def served():
    with serving("meter_test") as served:
        served.device.freeze_clock(1_000_000)
        yield served


def config(cir=0, cburst=0, pir=0, pburst=0, **extra) -> p4runtime_pb2.MeterConfig:
    return p4runtime_pb2.MeterConfig(cir=cir, cburst=cburst, pir=pir, pburst=pburst, **extra)


def meter_entry(served: Served, name: str = "pkt_meter", index: int | None = 0,
                cfg: p4runtime_pb2.MeterConfig | None = None) -> p4runtime_pb2.MeterEntry:
    msg = p4runtime_pb2.MeterEntry(meter_id=served.id("meter", I + name))
    if index is not None:
        msg.index.index = index
    if cfg is not None:
        msg.config.CopyFrom(cfg)
    return msg


def flow_entry(served: Served, key: int = 5, cfg: p4runtime_pb2.MeterConfig | None = None,
               action: str = I + "metered") -> p4runtime_pb2.TableEntry:
    msg = p4runtime_pb2.TableEntry(table_id=served.id("table", I + "flows"))
    msg.match.add(field_id=1).exact.value = bytes([key])
    msg.action.action.action_id = served.id("action", action)
    if cfg is not None:
        msg.meter_config.CopyFrom(cfg)
    return msg


def direct_entry(served: Served, key: int = 5, cfg: p4runtime_pb2.MeterConfig | None = None):
    te = p4runtime_pb2.TableEntry(table_id=served.id("table", I + "flows"))
    te.match.add(field_id=1).exact.value = bytes([key])
    msg = p4runtime_pb2.DirectMeterEntry(table_entry=te)
    if cfg is not None:
        msg.config.CopyFrom(cfg)
    return msg


def colors(served: Served, index: int = 0, key: int = 0) -> tuple[int, int, int]:
    sent = ethernet(0x88B8) + PROBE.pack(index, key, 0x77, 0x77, 0x77)
    return PROBE.unpack(only_output(served.device.process_packet(1, sent))[1][14:])[2:]


def test_meter_entries_configure_cells_and_read_back(served):
    served.client.write(update("MODIFY", meter_entry=meter_entry(served, index=2, cfg=config(0, 1, 0, 2))))
    assert [colors(served, index=2)[0] for _ in range(3)] == [0, 1, 2]
    (read,) = served.client.read(Entity(meter_entry=meter_entry(served, index=2)))
    assert read.meter_entry.config == config(0, 1, 0, 2)
    cells = served.client.read(Entity(meter_entry=meter_entry(served, index=None)))
    assert [(e.meter_entry.index.index, e.meter_entry.HasField("config")) for e in cells] == \
        [(i, i == 2) for i in range(8)]
    everything = served.client.read(Entity(meter_entry=p4runtime_pb2.MeterEntry()))
    assert len(everything) == 16    # both indirect meters; the direct one is read by table entry


def test_a_write_without_config_resets_and_without_index_writes_every_cell(served):
    served.client.write(update("MODIFY", meter_entry=meter_entry(served, index=None, cfg=config(0, 0, 0, 0))))
    assert {colors(served, index=i)[0] for i in range(8)} == {2}
    served.client.write(update("MODIFY", meter_entry=meter_entry(served, index=3)))
    assert colors(served, index=3)[0] == 0
    legacy_default = config(-1, -1, -1, -1)   # what PI clients sent for "default" before the field could be unset
    served.client.write(update("MODIFY", meter_entry=meter_entry(served, index=4, cfg=legacy_default)))
    assert colors(served, index=4)[0] == 0


def test_table_entries_carry_their_direct_meter_config(served):
    served.client.write(update("INSERT", table_entry=flow_entry(served, 5, config(0, 0, 0, 1))))
    served.client.write(update("INSERT", table_entry=flow_entry(served, 6)))
    assert [colors(served, key=5)[2] for _ in range(2)] == [1, 2] and colors(served, key=6)[2] == 0
    query = p4runtime_pb2.TableEntry(table_id=served.id("table", I + "flows"), meter_config=p4runtime_pb2.MeterConfig())
    read = {e.table_entry.match[0].exact.value[0]: e.table_entry for e in served.client.read(Entity(table_entry=query))}
    assert read[5].meter_config == config(0, 0, 0, 1) and not read[6].HasField("meter_config")
    plain = served.client.read(Entity(table_entry=p4runtime_pb2.TableEntry(table_id=query.table_id)))
    assert not any(e.table_entry.HasField("meter_config") for e in plain)   # only when asked for
    # MODIFY without meter_config resets the meter (the spec), with one reconfigures it.
    served.client.write(update("MODIFY", table_entry=flow_entry(served, 5)))
    assert colors(served, key=5)[2] == 0
    served.client.write(update("MODIFY", table_entry=flow_entry(served, 5, config(0, 0, 0, 0))))
    assert colors(served, key=5)[2] == 2


def test_direct_meter_entries(served):
    served.client.write(update("INSERT", table_entry=flow_entry(served, 5)),
                        update("INSERT", table_entry=flow_entry(served, 6)))
    served.client.write(update("MODIFY", direct_meter_entry=direct_entry(served, 6, config(0, 0, 0, 0))))
    assert colors(served, key=6)[2] == 2 and colors(served, key=5)[2] == 0
    (one,) = served.client.read(Entity(direct_meter_entry=direct_entry(served, 6)))
    assert one.direct_meter_entry.config == config(0, 0, 0, 0)
    table_wide = served.client.read(Entity(direct_meter_entry=p4runtime_pb2.DirectMeterEntry(
        table_entry=p4runtime_pb2.TableEntry(table_id=served.id("table", I + "flows")))))
    every_table = served.client.read(Entity(direct_meter_entry=p4runtime_pb2.DirectMeterEntry()))
    assert len(table_wide) == len(every_table) == 2
    assert [e.direct_meter_entry.HasField("config") for e in table_wide] == [False, True]


BAD_WRITES = {
    "INSERT of a meter entry": ("INSERT", lambda s: {"meter_entry": meter_entry(s, cfg=config())},
                                code_pb2.INVALID_ARGUMENT),
    "DELETE of a direct meter entry": ("DELETE", lambda s: {"direct_meter_entry": direct_entry(s, 5)},
                                       code_pb2.INVALID_ARGUMENT),
    "meter_id 0": ("MODIFY", lambda s: {"meter_entry": p4runtime_pb2.MeterEntry()}, code_pb2.INVALID_ARGUMENT),
    "an unknown meter": ("MODIFY", lambda s: {"meter_entry": p4runtime_pb2.MeterEntry(meter_id=0x15FFFFFF)},
                         code_pb2.INVALID_ARGUMENT),
    "a negative index": ("MODIFY", lambda s: {"meter_entry": meter_entry(s, index=-1)}, code_pb2.INVALID_ARGUMENT),
    "an index past the end": ("MODIFY", lambda s: {"meter_entry": meter_entry(s, index=8)}, code_pb2.OUT_OF_RANGE),
    "pir below cir": ("MODIFY", lambda s: {"meter_entry": meter_entry(s, cfg=config(10, 1, 5, 1))},
                      code_pb2.INVALID_ARGUMENT),
    "a negative burst": ("MODIFY", lambda s: {"meter_entry": meter_entry(s, cfg=config(0, -2, 0, 1))},
                         code_pb2.INVALID_ARGUMENT),
    "an eburst": ("MODIFY", lambda s: {"meter_entry": meter_entry(s, cfg=config(0, 1, 0, 1, eburst=3))},
                  code_pb2.INVALID_ARGUMENT),
    "per-color counters": ("MODIFY", lambda s: {"meter_entry": p4runtime_pb2.MeterEntry(
        meter_id=s.id("meter", I + "pkt_meter"), counter_data=p4runtime_pb2.MeterCounterData())},
        code_pb2.UNIMPLEMENTED),
    "a direct meter of a missing entry": ("MODIFY", lambda s: {"direct_meter_entry": direct_entry(s, 9, config())},
                                          code_pb2.NOT_FOUND),
    "a direct meter of a default entry": ("MODIFY", lambda s: {"direct_meter_entry": p4runtime_pb2.DirectMeterEntry(
        table_entry=p4runtime_pb2.TableEntry(table_id=s.id("table", I + "flows"), is_default_action=True))},
        code_pb2.UNIMPLEMENTED),
    "meter_config on the default entry": ("MODIFY", lambda s: {"table_entry": p4runtime_pb2.TableEntry(
        table_id=s.id("table", I + "flows"), is_default_action=True, meter_config=config())}, code_pb2.UNIMPLEMENTED),
    "a bad meter_config on an insert": ("INSERT", lambda s: {"table_entry": flow_entry(s, 7, config(9, 1, 1, 1))},
                                        code_pb2.INVALID_ARGUMENT),
}


@pytest.mark.parametrize("case", sorted(BAD_WRITES))
def test_bad_writes_get_the_spec_code(served, case):
    served.client.write(update("INSERT", table_entry=flow_entry(served, 5)))
    kind, make, code = BAD_WRITES[case]
    with rpc_error(grpc.StatusCode.UNKNOWN) as info:
        served.client.write(update(kind, **make(served)))
    assert batch_codes(info.value) == [code]
    assert len(served.client.read(Entity(table_entry=p4runtime_pb2.TableEntry()))) == 1   # nothing half-written


def test_reads_of_a_table_without_a_direct_meter_or_a_missing_entry(served):
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        served.client.read(Entity(direct_meter_entry=direct_entry(served, 9)))
    with rpc_error(grpc.StatusCode.OUT_OF_RANGE):
        served.client.read(Entity(meter_entry=meter_entry(served, index=8)))
