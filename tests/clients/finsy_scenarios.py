# Run (by tests/clients/venvs.py, in the finsy venv):
#   python finsy_scenarios.py SCENARIO --address 127.0.0.1:PORT --p4info F --json F [--device-id N]
"""finsy scenarios against a P4Runtime server; each prints what it observed as one JSON line.

finsy (asyncio, its own P4Runtime bindings on protobuf 6) connects, becomes primary and pushes the pipeline
given, then the scenario runs. This script runs in finsy's own venv and imports nothing of omnireduce; the
tests that run it hold the assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import finsy as fy
from finsy.p4client import P4ClientError
from finsy.p4entity import P4Member, P4ValueSetMember

Scenario = Callable[[fy.Switch], Awaitable[dict]]
ARGS: argparse.Namespace
SCENARIOS: dict[str, Scenario] = {}


def scenario(function: Scenario) -> Scenario:
    SCENARIOS[function.__name__.replace("_", "-")] = function
    return function


async def read_all(switch: fy.Switch, query) -> list:
    return [entity async for entity in switch.read(query)]


def route(port: int) -> fy.P4TableEntry:
    return fy.P4TableEntry("MyIngress.lpm_t", match=fy.Match({"hdr.ipv4.dst_addr": "10.0.0.0/8"}),
                           action=fy.Action("MyIngress.fwd", port=port))


@scenario
async def tables(switch: fy.Switch) -> dict:
    await switch.insert([route(3)])
    (read,) = await read_all(switch, fy.P4TableEntry("MyIngress.lpm_t"))
    encoded = read.encode(switch.p4info).table_entry
    observed: dict = {"prefix_len": encoded.match[0].lpm.prefix_len,
                      "port_bytes": encoded.action.action.params[0].value.hex()}
    await switch.modify([route(4)])
    (read,) = await read_all(switch, fy.P4TableEntry("MyIngress.lpm_t"))
    observed["port_after_modify"] = int.from_bytes(read.encode(switch.p4info).table_entry.action.action.params[0].value, "big")
    try:
        await switch.insert([route(5)])
        observed["duplicate_insert"] = None
    except P4ClientError as error:
        observed["duplicate_insert"] = {"code": error.code.name,
                                        "details": {str(i): d.canonical_code.name for i, d in error.details.items()}}
    await switch.delete([route(4)])
    observed["entries_after_delete"] = len(await read_all(switch, fy.P4TableEntry("MyIngress.lpm_t")))
    return observed


@scenario
async def counters(switch: fy.Switch) -> dict:
    await switch.modify([fy.P4CounterEntry("MyIngress.pkts", index=2,
                                           data=fy.P4CounterData(packet_count=5, byte_count=500))])
    cells = await read_all(switch, fy.P4CounterEntry("MyIngress.pkts"))
    return {"cells": [[c.index, c.data.packet_count, c.data.byte_count] for c in cells]}


@scenario
async def registers(switch: fy.Switch) -> dict:
    await switch.modify([fy.P4RegisterEntry("MyIngress.slots", index=3, data=0xBEEF)])
    cells = await read_all(switch, fy.P4RegisterEntry("MyIngress.slots"))
    return {"cells": {str(c.index): c.data for c in cells}}


@scenario
async def multicast(switch: fy.Switch) -> dict:
    def replicas(groups: list) -> list:
        # finsy decodes a replica of instance 0 as its bare port number.
        return [[[r, 0] if isinstance(r, int) else [r.port, r.instance] for r in group.replicas] for group in groups]

    await switch.insert([fy.P4MulticastGroupEntry(7, replicas=[(1, 0), (2, 0)])])
    inserted = await read_all(switch, fy.P4MulticastGroupEntry(7))
    await switch.modify([fy.P4MulticastGroupEntry(7, replicas=[(3, 1)])])
    modified = await read_all(switch, fy.P4MulticastGroupEntry())
    await switch.delete([fy.P4MulticastGroupEntry(7)])
    return {"inserted": replicas(inserted), "modified": replicas(modified),
            "after_delete": len(await read_all(switch, fy.P4MulticastGroupEntry()))}


@scenario
async def delete_all(switch: fy.Switch) -> dict:
    def lpm_default_action(entries: list) -> int:
        (default,) = entries
        return default.encode(switch.p4info).table_entry.action.action.action_id

    initial_default = lpm_default_action(
        await read_all(switch, fy.P4TableEntry("MyIngress.lpm_t", is_default_action=True)))
    await switch.insert([route(3), fy.P4MulticastGroupEntry(7, replicas=[(1, 0)]),
                         fy.P4TableEntry("MyIngress.acl_t",
                                         match=fy.Match({"hdr.ipv4.src_addr": "10.0.0.0/8"}),
                                         action=fy.Action("MyIngress.drop"), priority=5)])
    await switch.modify([fy.P4TableEntry("MyIngress.lpm_t", action=fy.Action("MyIngress.drop"),
                                         is_default_action=True)])
    before = len(await read_all(switch, fy.P4TableEntry()))
    await switch.delete_all()
    final_default = lpm_default_action(
        await read_all(switch, fy.P4TableEntry("MyIngress.lpm_t", is_default_action=True)))
    return {"entries_before": before,
            "entries_after": len(await read_all(switch, fy.P4TableEntry())),
            "groups_after": len(await read_all(switch, fy.P4MulticastGroupEntry())),
            "lpm_default_restored": final_default == initial_default}


def error_report(error: P4ClientError) -> dict:
    return {"code": error.code.name, "details": {str(i): d.canonical_code.name for i, d in error.details.items()}}


@scenario
async def value_sets(switch: fy.Switch) -> dict:
    await switch.modify([fy.P4ValueSetEntry("pairs", members=[P4ValueSetMember(a=7, b=0x102), P4ValueSetMember(a=1, b=2)]),
                         fy.P4ValueSetEntry("ether_types", members=[P4ValueSetMember(0x1234)])])
    (pairs,) = await read_all(switch, fy.P4ValueSetEntry("pairs", members=[]))
    (ether_types,) = await read_all(switch, fy.P4ValueSetEntry("ether_types", members=[]))
    try:
        await switch.modify([fy.P4ValueSetEntry("ether_types", members=[P4ValueSetMember(v) for v in range(5)])])
        too_many = None
    except P4ClientError as error:
        too_many = error_report(error)
    return {"pairs": [dict(m) for m in pairs.members], "ether_types": [m.value for m in ether_types.members],
            "too_many": too_many}


@scenario
async def meters(switch: fy.Switch) -> dict:
    await switch.modify([fy.P4MeterEntry("pkt_meter", index=2, config=fy.P4MeterConfig(cir=0, cburst=1, pir=0,
                                                                                       pburst=2))])
    cells = await read_all(switch, fy.P4MeterEntry("pkt_meter"))
    flows = [fy.P4TableEntry("flows", match=fy.Match({"hdr.probe.key": key}), action=fy.Action("metered"),
                             meter_config=fy.P4MeterConfig(cir=0, cburst=0, pir=0, pburst=burst))
             for key, burst in ((5, 1), (6, 0))]
    await switch.insert(flows)
    await switch.modify([fy.P4DirectMeterEntry(
        table_entry=fy.P4TableEntry("flows", match=fy.Match({"hdr.probe.key": 5})),
        config=fy.P4MeterConfig(cir=0, cburst=0, pir=0, pburst=0))])
    direct = await read_all(switch, fy.P4DirectMeterEntry(table_entry=fy.P4TableEntry("flows")))
    try:
        await switch.modify([fy.P4MeterEntry("pkt_meter", index=8, config=fy.P4MeterConfig(cir=0, cburst=1, pir=0, pburst=1))])
        past_the_end = None
    except P4ClientError as error:
        past_the_end = error_report(error)
    return {"cells": {str(c.index): [c.config.cir, c.config.cburst, c.config.pir, c.config.pburst]
                      for c in cells if c.config is not None},
            "direct": sorted([next(iter(d.table_entry.match.values())), None if d.config is None else d.config.pburst]
                             for d in direct),
            "past_the_end": past_the_end}


@scenario
async def action_profiles(switch: fy.Switch) -> dict:
    await switch.insert([fy.P4ActionProfileMember("sel", member_id=m, action=fy.Action("set_sel", v=m * 10))
                         for m in (1, 2, 3)]
                        + [fy.P4ActionProfileMember("prof", member_id=1, action=fy.Action("set_prof", v=7, p=0x1234))])
    await switch.insert([fy.P4ActionProfileGroup("sel", group_id=100,
                                                 members=[P4Member(1, weight=1), P4Member(3, weight=2)])])
    await switch.insert([
        fy.P4TableEntry("t_sel", match=fy.Match({"hdr.probe.key": (1, 0xFF)}), priority=1,
                        action=fy.P4IndirectAction(group_id=100)),
        fy.P4TableEntry("t_prof", match=fy.Match({"hdr.probe.key": 3}), action=fy.P4IndirectAction(member_id=1)),
    ])
    groups = await read_all(switch, fy.P4ActionProfileGroup())
    try:
        await switch.delete([fy.P4ActionProfileMember("sel", member_id=3)])
        delete_in_use = None
    except P4ClientError as error:
        delete_in_use = error_report(error)
    before = {"members": len(await read_all(switch, fy.P4ActionProfileMember())),
              "groups": [[[m.member_id, m.weight] for m in g.members] for g in groups],
              "delete_in_use": delete_in_use}
    await switch.delete_all()   # entries first, then groups and members: nothing may be left
    return {**before, "members_after": len(await read_all(switch, fy.P4ActionProfileMember())),
            "groups_after": len(await read_all(switch, fy.P4ActionProfileGroup())),
            "entries_after": len(await read_all(switch, fy.P4TableEntry()))}


@scenario
async def digests(switch: fy.Switch) -> dict:
    """Configure mac_learn_t, then collect `--count` DigestLists of it (the test sends the packets), acking each."""
    received = []

    async def collect() -> None:
        async for digest_list in switch.read_digests("mac_learn_t"):
            received.append([digest_list.list_id, [dict(data) for data in digest_list.data]])
            await switch.write([digest_list.ack()])
            if len(received) >= ARGS.count:
                return

    # finsy drops ("digest ignored") a DigestList that arrives while no read_digests queue is open, and the test
    # sends its packets as soon as the DigestEntry shows up on the server: open the queue first. read_digests
    # opens it in the collector's first step, before its first await; one pass of the event loop runs that step
    # (a yield, not a timed wait).
    collector = asyncio.create_task(collect())
    await asyncio.sleep(0)
    await switch.insert([fy.P4DigestEntry("mac_learn_t", max_list_size=1, max_timeout_ns=0,
                                          ack_timeout_ns=2_000_000_000)])
    await asyncio.wait_for(collector, timeout=30)
    entries = await read_all(switch, fy.P4DigestEntry("mac_learn_t"))
    return {"received": received, "configs": [[e.max_list_size, e.ack_timeout_ns] for e in entries]}


async def run(args: argparse.Namespace) -> dict:
    options = fy.SwitchOptions(p4info=Path(args.p4info), p4blob=Path(args.json), device_id=args.device_id)
    async with fy.Switch("softswitch", args.address, options) as switch:
        return await SCENARIOS[args.scenario](switch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--address", required=True, help="the server, HOST:PORT")
    parser.add_argument("--device-id", type=int, default=1)
    parser.add_argument("--p4info", required=True, help="P4Info (text) finsy pushes")
    parser.add_argument("--json", required=True, help="the BMv2 JSON finsy pushes with it")
    parser.add_argument("--count", type=int, default=0, help="how many messages a receiving scenario waits for")
    global ARGS
    ARGS = args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), default=str))


if __name__ == "__main__":
    main()
