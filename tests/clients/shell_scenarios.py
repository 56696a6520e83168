# Run (by tests/clients/venvs.py, in the p4runtime-shell venv):
#   python shell_scenarios.py SCENARIO --address 127.0.0.1:PORT [--device-id N] [--election-id N] [--p4info F --json F]
"""p4runtime-shell scenarios against a P4Runtime server; each prints what it observed as one JSON line.

This script runs in p4runtime-shell's own venv (p4runtime 1.4.1, protobuf 3.20), never in ours: it imports
nothing of omnireduce. The tests that run it hold the assertions; a scenario only does and reports.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import grpc
import p4runtime_sh.shell as sh
from p4.v1 import p4data_pb2, p4runtime_pb2
from p4runtime_sh.p4runtime import P4RuntimeWriteException

SCENARIOS: dict[str, Callable[[], dict]] = {}


def scenario(function: Callable[[], dict]) -> Callable[[], dict]:
    SCENARIOS[function.__name__.replace("_", "-")] = function
    return function


def write_error(action: Callable[[], object]) -> str | None:
    """The shell's report of a refused write, None when the write succeeded."""
    try:
        action()
    except P4RuntimeWriteException as error:
        return str(error)
    return None


def as_int(value: bytes) -> int:
    return int.from_bytes(value, "big")


@scenario
def tables() -> dict:
    observed: dict = {"api_version": sh.APIVersion()}
    route = sh.TableEntry("MyIngress.lpm_t")(action="MyIngress.fwd")
    route.match["hdr.ipv4.dst_addr"] = "10.0.0.0/8"
    route.action["port"] = "3"
    route.insert()
    (read,) = list(sh.TableEntry("MyIngress.lpm_t").read())
    observed["prefix_len"] = read.match["hdr.ipv4.dst_addr"].lpm.prefix_len
    observed["port_bytes"] = read.action["port"].value.hex()   # the shell sent b"\x00\x03"
    route.action["port"] = "4"
    route.modify()
    (read,) = list(sh.TableEntry("MyIngress.lpm_t").read())
    observed["port_after_modify"] = as_int(read.action["port"].value)
    observed["duplicate_insert_error"] = write_error(route.insert)
    acl = sh.TableEntry("MyIngress.acl_t")(action="MyIngress.drop")
    acl.match["hdr.ipv4.src_addr"] = "10.0.0.0&&&255.0.0.0"
    acl.match["hdr.tcp.dst_port"] = "80..443"
    acl.priority = 5
    acl.insert()
    (read,) = list(sh.TableEntry("MyIngress.acl_t").read())
    observed["acl_priority"] = read.priority
    observed["acl_fields"] = sorted(read.match._mk)
    route.delete()
    observed["lpm_entries_after_delete"] = len(list(sh.TableEntry("MyIngress.lpm_t").read()))
    return observed


@scenario
def default_entry() -> dict:
    sh.TableEntry("MyIngress.lpm_t")(action="MyIngress.drop", is_default=True).modify()
    (read,) = list(sh.TableEntry("MyIngress.lpm_t")(is_default=True).read())
    const_default = sh.TableEntry("MyIngress.const_default_t")(action="MyIngress.drop", is_default=True)
    return {"is_default": read.is_default, "action": read.action.action_name,
            "const_default_error": write_error(const_default.modify)}


@scenario
def counters() -> dict:
    cell = sh.CounterEntry("MyIngress.pkts")
    cell.index = 2
    cell.packet_count, cell.byte_count = 5, 500
    cell.modify()
    cells = [(c.index, c.packet_count) for c in sh.CounterEntry("MyIngress.pkts").read()]
    hit = sh.TableEntry("MyIngress.exact_t")(action="NoAction")
    hit.match["hdr.ethernet.dst_addr"] = "00:00:00:00:00:05"
    hit.insert()
    direct = sh.DirectCounterEntry("MyIngress.exact_hits")
    direct.table_entry = hit
    direct.packet_count = 9
    direct.modify()
    direct_packets = [d.packet_count for d in sh.DirectCounterEntry("MyIngress.exact_hits").read()]
    return {"cells": cells, "direct_packets": direct_packets}


@scenario
def registers() -> dict:
    # p4runtime-shell 0.0.6 has no RegisterEntry helper; its client still speaks raw P4Runtime.
    p4info = sh.client.get_p4info()
    slots = next(r for r in p4info.registers if r.preamble.name == "MyIngress.slots")
    update = p4runtime_pb2.Update(type=p4runtime_pb2.Update.MODIFY)
    update.entity.register_entry.register_id = slots.preamble.id
    update.entity.register_entry.index.index = 3
    update.entity.register_entry.data.CopyFrom(p4data_pb2.P4Data(bitstring=b"\xbe\xef"))
    sh.client.write_update(update)
    query = p4runtime_pb2.Entity()
    query.register_entry.register_id = slots.preamble.id
    values = {e.register_entry.index.index: e.register_entry.data.bitstring.hex()
              for reply in sh.client.read_one(query) for e in reply.entities}
    query.register_entry.index.index = slots.size
    try:
        list(sh.client.read_one(query))   # read_one's errors surface while iterating
        past_the_end = "OK"
    except grpc.RpcError as error:
        past_the_end = error.code().name
    return {"size": slots.size, "cells": len(values), "cell3": values[3], "cell0": values[0],
            "past_the_end": past_the_end}


@scenario
def multicast() -> dict:
    def replicas(group) -> list:
        return [(r.egress_port, r.instance) for r in group.replicas]

    sh.MulticastGroupEntry(7).add(1, 0).add(2, 0).insert()
    (inserted,) = list(sh.MulticastGroupEntry(7).read())
    sh.MulticastGroupEntry(7).add(3, 1).modify()
    (modified,) = list(sh.MulticastGroupEntry().read())
    sh.MulticastGroupEntry(7).delete()
    return {"inserted": replicas(inserted), "modified": replicas(modified),
            "after_delete": len(list(sh.MulticastGroupEntry().read()))}


@scenario
def read_program() -> dict:
    """Every table (entries, default entry) and the last cell of every register of the pipeline."""
    p4info = sh.client.get_p4info()
    tables = {}
    for table in p4info.tables:
        (default,) = list(sh.TableEntry(table.preamble.name)(is_default=True).read())
        tables[table.preamble.name] = {"entries": len(list(sh.TableEntry(table.preamble.name).read())),
                                       "has_initial_entries": table.has_initial_entries,
                                       "default_is_default": default.is_default}
    last_cells = {}
    for register in p4info.registers:
        query = p4runtime_pb2.Entity()
        query.register_entry.register_id = register.preamble.id
        query.register_entry.index.index = register.size - 1
        (cell,) = [e for reply in sh.client.read_one(query) for e in reply.entities]
        last_cells[register.preamble.name] = cell.register_entry.data.bitstring.hex()
    return {"tables": tables, "register_last_cells": last_cells}


@scenario
def read_job_tables() -> dict:
    """The entries of the omnireduce job tables and multicast group 5 (`--tables` names the tables)."""
    observed: dict = {}
    for table in ARGS.tables:
        observed[table] = [
            [{name: as_int(field.exact.value) for name, field in entry.match._mk.items()},
             entry.action.action_name,
             {name: as_int(param.value) for name, param in entry.action._param_values.items()}]
            for entry in sh.TableEntry(table).read()]
    (group,) = list(sh.MulticastGroupEntry(5).read())
    observed["group_5"] = sorted((r._msg.egress_port, r._msg.instance) for r in group.replicas)
    return observed


@scenario
def insert_route() -> dict:
    """An IPv4 route 10.9.0.0/16 -> port 7 in `--tables`' one table through `--action`."""
    (table,) = ARGS.tables
    route = sh.TableEntry(table)(action=ARGS.action)
    route.match["dst_addr"] = "10.9.0.0/16"
    route.action["port"] = "7"
    route.action["src_mac"] = "02:00:00:00:01:00"
    route.action["dst_mac"] = "02:00:00:00:00:09"
    route.insert()
    return {"inserted": True}


def p4info_object(kind: str, name: str):
    """The P4Info object of `kind` ("value_sets", "meters", ...) named `name`."""
    return next(o for o in getattr(sh.client.get_p4info(), kind) if o.preamble.name == name)


def read_entities(entity: p4runtime_pb2.Entity) -> list:
    return [e for reply in sh.client.read_one(entity) for e in reply.entities]


@scenario
def value_sets() -> dict:
    """A two-field value set written with a raw ValueSetEntry (p4runtime-shell 0.0.6 has no helper for them)."""
    pairs = p4info_object("value_sets", "VsetParser.pairs")
    update = p4runtime_pb2.Update(type=p4runtime_pb2.Update.MODIFY)
    update.entity.value_set_entry.value_set_id = pairs.preamble.id
    for a, b in ((7, b"\x01\x02"), (1, b"\x00\x02")):
        member = update.entity.value_set_entry.members.add()
        member.match.add(field_id=1).exact.value = bytes([a])
        member.match.add(field_id=2).exact.value = b   # the shell's own padding: the server answers canonically
    sh.client.write_update(update)
    query = p4runtime_pb2.Entity()
    query.value_set_entry.value_set_id = pairs.preamble.id
    members = [[[fm.field_id, fm.exact.value.hex()] for fm in member.match]
               for e in read_entities(query) for member in e.value_set_entry.members]
    update.type = p4runtime_pb2.Update.INSERT
    return {"members": members, "insert_error": write_error(lambda: sh.client.write_update(update))}


@scenario
def meters() -> dict:
    """An indirect meter cell, a table entry with a direct meter config, and a DirectMeterEntry."""
    cell = sh.MeterEntry("MeterIngress.pkt_meter")
    cell.index = 2
    cell.cir, cell.cburst, cell.pir, cell.pburst = 0, 1, 0, 2
    cell.modify()
    cells = {c.index: [c.config.cir, c.config.cburst, c.config.pir, c.config.pburst]
             for c in sh.MeterEntry("MeterIngress.pkt_meter").read() if c._entry.HasField("config")}
    flow = sh.TableEntry("MeterIngress.flows")(action="MeterIngress.metered")
    flow.match["hdr.probe.key"] = "5"
    flow.meter_config.cburst = 1
    flow.meter_config.pburst = 1
    flow.insert()
    other = sh.TableEntry("MeterIngress.flows")(action="MeterIngress.metered")
    other.match["hdr.probe.key"] = "6"
    other.insert()
    direct = sh.DirectMeterEntry("MeterIngress.flow_meter")
    direct.table_entry = other
    direct.cburst, direct.pburst = 0, 0
    direct.modify()
    direct_reads = sorted([d.table_entry.match["hdr.probe.key"].exact.value.hex(), d.config.pburst]
                          for d in sh.DirectMeterEntry("MeterIngress.flow_meter").read())
    bad = sh.MeterEntry("MeterIngress.pkt_meter")
    bad.index = 0
    bad.cir, bad.cburst, bad.pir, bad.pburst = 10, 1, 5, 1
    return {"cells": cells, "direct": direct_reads, "pir_below_cir": write_error(bad.modify),
            "insert_error": write_error(lambda: sh.client.write_update(p4runtime_pb2.Update(
                type=p4runtime_pb2.Update.INSERT, entity=p4runtime_pb2.Entity(meter_entry=cell._entry))))}


@scenario
def action_profiles() -> dict:
    """Members of a profile and a selector, a weighted group, entries pointing at a member and at the group."""
    for member_id, value in ((1, "10"), (2, "20"), (3, "30")):
        member = sh.ActionProfileMember("SelIngress.sel")(member_id=member_id, action="SelIngress.set_sel")
        member.action["v"] = value
        member.insert()
    prof = sh.ActionProfileMember("SelIngress.prof")(member_id=1, action="SelIngress.set_prof")
    prof.action["v"], prof.action["p"] = "7", "0x1234"
    prof.insert()
    group = sh.ActionProfileGroup("SelIngress.sel")(group_id=100)
    group.add(1, weight=1).add(3, weight=2)
    group.insert()
    by_group = sh.TableEntry("SelIngress.t_sel")
    by_group.match["hdr.probe.key"] = "1&&&0xff"
    by_group.priority = 1
    by_group.group_id = 100
    by_group.insert()
    by_member = sh.TableEntry("SelIngress.t_prof")
    by_member.match["hdr.probe.key"] = "3"
    by_member.member_id = 1
    by_member.insert()
    groups = [[[m.member_id, m.weight] for m in g.members] for g in sh.ActionProfileGroup("SelIngress.sel").read()]
    entries = {"group_ids": [e.group_id for e in sh.TableEntry("SelIngress.t_sel").read()],
               "member_ids": [e.member_id for e in sh.TableEntry("SelIngress.t_prof").read()]}
    in_use = sh.ActionProfileMember("SelIngress.sel")(member_id=3, action="SelIngress.set_sel")
    in_use.action["v"] = "1"
    return {"members": sorted(m.member_id for m in sh.ActionProfileMember("SelIngress.sel").read()),
            "groups": groups, "entries": entries, "delete_in_use": write_error(in_use.delete)}


@scenario
def digests() -> dict:
    """Configure both digests, then collect `--count` DigestLists (the test sends the packets; the shell acks)."""
    import time

    for name in ("mac_learn_t", "tag_t"):
        entry = sh.DigestEntry(name)
        entry.max_timeout_ns, entry.max_list_size, entry.ack_timeout_ns = 0, 1, 2_000_000_000
        entry.insert()
    configs = sorted([e.max_list_size, e.ack_timeout_ns] for e in sh.DigestEntry("mac_learn_t").read())
    digest_lists = sh.DigestList()
    names = {d.preamble.id: d.preamble.name for d in sh.client.get_p4info().digests}
    received = []
    deadline = time.time() + 30
    while len(received) < ARGS.count and time.time() < deadline:
        for message in digest_lists.sniff(timeout=0.2):
            digest = message.digest
            received.append([names[digest.digest_id], digest.list_id,
                             [[m.bitstring.hex() for m in data.struct.members] for data in digest.data]])
    sh.client.stream_in_q["digest"].put(None)   # ends the shell's digest thread
    return {"configs": configs, "received": received}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--address", required=True, help="the server, HOST:PORT")
    parser.add_argument("--device-id", type=int, default=1)
    parser.add_argument("--election-id", type=int, default=1, help="low 64 bits; the high ones are 0")
    parser.add_argument("--p4info", help="push this P4Info (text) with --json, else use the switch's pipeline")
    parser.add_argument("--json", help="the BMv2 JSON pushed with --p4info")
    parser.add_argument("--tables", nargs="*", default=[])
    parser.add_argument("--action")
    parser.add_argument("--count", type=int, default=0, help="how many messages a receiving scenario waits for")
    return parser.parse_args()


ARGS = parse_args()


def main() -> None:
    config = sh.FwdPipeConfig(ARGS.p4info, ARGS.json) if ARGS.p4info else None
    sh.setup(device_id=ARGS.device_id, grpc_addr=ARGS.address, election_id=(0, ARGS.election_id), config=config,
             verbose=False)
    try:
        observed = SCENARIOS[ARGS.scenario]()
    finally:
        sh.teardown()
    print(json.dumps(observed))


if __name__ == "__main__":
    main()
