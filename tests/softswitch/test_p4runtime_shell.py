# Run: .venv/bin/pytest tests/softswitch/test_p4runtime_shell.py
"""p4runtime-shell, an independent P4Runtime client, drives the softswitch server end to end:
connect and arbitrate, push the pipeline, then program and read back tables, counters, registers
and multicast groups through the shell's own P4Info handling and encoders."""

from __future__ import annotations

from pathlib import Path

import grpc
import p4runtime_sh.shell as sh
import pytest
from google.protobuf import text_format
from p4.v1 import p4data_pb2, p4runtime_pb2
from p4runtime_sh.p4runtime import P4RuntimeWriteException

from conftest_p4rt import pipeline_under_test, running_server
from omnireduce.p4src import artifacts
from omnireduce.softswitch.device import Device

DEVICE_ID = 1


@pytest.fixture
def shell(tmp_path: Path):
    """p4runtime-shell connected as primary to a fresh server, with the test pipeline pushed by the shell."""
    pipeline = pipeline_under_test()
    p4info_path, json_path = tmp_path / "program.p4info.txtpb", tmp_path / "program.json"
    p4info_path.write_text(text_format.MessageToString(pipeline.p4info))
    json_path.write_bytes(pipeline.device_config)
    with running_server(pipeline.make_device(), device_id=DEVICE_ID) as server:
        sh.setup(device_id=DEVICE_ID, grpc_addr=server.bound_address, election_id=(0, 1),
                 config=sh.FwdPipeConfig(str(p4info_path), str(json_path)), verbose=False)
        try:
            yield sh
        finally:
            sh.teardown()   # setup() is global state: always undo it


def test_shell_programs_and_reads_tables(shell):
    assert shell.APIVersion().startswith("1.")
    route = shell.TableEntry("MyIngress.lpm_t")(action="MyIngress.fwd")
    route.match["hdr.ipv4.dst_addr"] = "10.0.0.0/8"
    route.action["port"] = "3"
    route.insert()
    (read,) = list(shell.TableEntry("MyIngress.lpm_t").read())
    assert read.match["hdr.ipv4.dst_addr"].lpm.prefix_len == 8
    # The shell sends the padded form b"\x00\x03"; the server answers in canonical form.
    assert read.action["port"].value == b"\x03"

    route.action["port"] = "4"
    route.modify()
    (read,) = list(shell.TableEntry("MyIngress.lpm_t").read())
    assert int.from_bytes(read.action["port"].value, "big") == 4

    with pytest.raises(P4RuntimeWriteException, match="ALREADY_EXISTS"):
        route.insert()

    acl = shell.TableEntry("MyIngress.acl_t")(action="MyIngress.drop")
    acl.match["hdr.ipv4.src_addr"] = "10.0.0.0&&&255.0.0.0"
    acl.match["hdr.tcp.dst_port"] = "80..443"
    acl.priority = 5
    acl.insert()
    (read,) = list(shell.TableEntry("MyIngress.acl_t").read())
    assert read.priority == 5 and set(read.match._mk) == {"hdr.ipv4.src_addr", "hdr.tcp.dst_port"}

    route.delete()
    assert list(shell.TableEntry("MyIngress.lpm_t").read()) == []


def test_shell_modifies_the_default_entry(shell):
    default = shell.TableEntry("MyIngress.lpm_t")(action="MyIngress.drop", is_default=True)
    default.modify()
    (read,) = list(shell.TableEntry("MyIngress.lpm_t")(is_default=True).read())
    assert read.is_default and read.action.action_name == "MyIngress.drop"
    with pytest.raises(P4RuntimeWriteException, match="PERMISSION_DENIED"):
        shell.TableEntry("MyIngress.const_default_t")(action="MyIngress.drop", is_default=True).modify()


def test_shell_counters(shell):
    cell = shell.CounterEntry("MyIngress.pkts")
    cell.index = 2
    cell.packet_count, cell.byte_count = 5, 500
    cell.modify()
    cells = list(shell.CounterEntry("MyIngress.pkts").read())
    assert [(c.index, c.packet_count) for c in cells] == [(i, 5 if i == 2 else 0) for i in range(len(cells))]

    hit = shell.TableEntry("MyIngress.exact_t")(action="NoAction")
    hit.match["hdr.ethernet.dst_addr"] = "00:00:00:00:00:05"
    hit.insert()
    direct = shell.DirectCounterEntry("MyIngress.exact_hits")
    direct.table_entry = hit
    direct.packet_count = 9
    direct.modify()
    (read,) = list(shell.DirectCounterEntry("MyIngress.exact_hits").read())
    assert read.packet_count == 9


def test_shell_registers_through_its_client(shell):
    # p4runtime-shell 0.0.6 has no RegisterEntry helper; its client still speaks raw P4Runtime.
    p4info = shell.client.get_p4info()
    slots = next(r for r in p4info.registers if r.preamble.name == "MyIngress.slots")
    update = p4runtime_pb2.Update(type=p4runtime_pb2.Update.MODIFY)
    update.entity.register_entry.register_id = slots.preamble.id
    update.entity.register_entry.index.index = 3
    update.entity.register_entry.data.CopyFrom(p4data_pb2.P4Data(bitstring=b"\xbe\xef"))
    shell.client.write_update(update)
    query = p4runtime_pb2.Entity()
    query.register_entry.register_id = slots.preamble.id
    values = {e.register_entry.index.index: e.register_entry.data.bitstring
              for reply in shell.client.read_one(query) for e in reply.entities}
    assert len(values) == slots.size and values[3] == b"\xbe\xef" and values[0] == b"\x00"
    query.register_entry.index.index = slots.size
    with pytest.raises(grpc.RpcError) as info:   # read_one's errors surface while iterating
        list(shell.client.read_one(query))
    assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE


def test_shell_multicast_groups(shell):
    shell.MulticastGroupEntry(7).add(1, 0).add(2, 0).insert()
    (group,) = list(shell.MulticastGroupEntry(7).read())
    assert [(r.egress_port, r.instance) for r in group.replicas] == [(1, 0), (2, 0)]
    shell.MulticastGroupEntry(7).add(3, 1).modify()
    (group,) = list(shell.MulticastGroupEntry().read())
    assert [(r.egress_port, r.instance) for r in group.replicas] == [(3, 1)]
    shell.MulticastGroupEntry(7).delete()
    assert list(shell.MulticastGroupEntry().read()) == []


@pytest.mark.skipif(not (artifacts.BMV2_JSON.exists() and artifacts.P4INFO.exists()),
                    reason="p4src/build/ has no compiled omnireduce program yet (run `make p4`, needs p4c)")
def test_shell_pushes_the_omnireduce_program_and_reads_all_of_it():
    with running_server(Device(), device_id=DEVICE_ID) as server:
        sh.setup(device_id=DEVICE_ID, grpc_addr=server.bound_address, election_id=(0, 1),
                 config=sh.FwdPipeConfig(str(artifacts.P4INFO), str(artifacts.BMV2_JSON)), verbose=False)
        try:
            p4info = sh.client.get_p4info()
            assert p4info.tables, "the omnireduce P4Info lists no tables"
            for table in p4info.tables:
                entries = list(sh.TableEntry(table.preamble.name).read())
                if not table.has_initial_entries:
                    assert entries == []       # a freshly pushed pipeline starts empty
                (default,) = list(sh.TableEntry(table.preamble.name)(is_default=True).read())
                assert default.is_default
            for register in p4info.registers:
                query = p4runtime_pb2.Entity()
                query.register_entry.register_id = register.preamble.id
                query.register_entry.index.index = register.size - 1
                (cell,) = [e for reply in sh.client.read_one(query) for e in reply.entities]
                assert cell.register_entry.data.bitstring == b"\x00"
        finally:
            sh.teardown()
