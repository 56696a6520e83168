"""Frame generators for bench.bench_softswitch: `function(device) -> [(port, frame), ...]` configures a freshly
loaded switch through the Device methods (table_insert, mc_group_insert, ...) and returns the frames to send, in
order. The bench calls a generator once, on a bench.control_plane.RecordingDevice, and replays what it installed into every
switch it measures.

Every built-in generator sends all frames into port 1, so that BMv2's pcap-file mode (one reader per port, which
interleaves ports by timestamp) sees them in exactly the order the softswitch does.
"""

from __future__ import annotations

import dataclasses
import struct

from omnireduce.softswitch.device import Device
from omnireduce.softswitch.entries import FieldMatch, TableEntry

from .protocol_driver import bench_workers, drive_allreduce, install_job, sparse_block_tensors

Frames = list[tuple[int, bytes]]
BENCH_PORT = 1


def _ethernet(ether_type: int) -> bytes:
    return bytes.fromhex("020000000002020000000001") + struct.pack(">H", ether_type)


def arith_frames(device) -> Frames:
    """tests/softswitch/p4/arith_test.p4: ~40 expressions, 6 register accesses, 4 hashes per packet."""
    ops = struct.pack(">BBHHIIbbhBBB", 200, 100, 40000, 30000, 0xDEADBEEF, 0x12345678, -5, 7, -300, 3, 1, 0)
    return [(BENCH_PORT, _ethernet(0x88B7) + ops)]


def tables_frames(device) -> Frames:
    """tests/softswitch/p4/tables_test.p4: nine table lookups of every match kind per packet."""
    src = 0x020000000001
    for kind in range(8):
        device.table_insert(
            TableEntry("TestIngress.t_exact", (FieldMatch("exact", kind), FieldMatch("exact", src)), "TestIngress.set_exact", (kind,))
        )
    for plen in (8, 16, 24):
        device.table_insert(
            TableEntry("TestIngress.t_lpm", (FieldMatch("lpm", 0x0A000000 & (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF, prefix_len=plen),), "TestIngress.set_lpm", (plen, plen))
        )
    device.table_insert(
        TableEntry("TestIngress.t_tern", (FieldMatch("ternary", 17, mask=0xFF), FieldMatch("ternary", 0, mask=0)), "TestIngress.set_tern", (1,), priority=10)
    )
    probe = struct.pack(">IHBBB9BI", 0x0A010203, 80, 17, 3, 0, *([0] * 9), 0)
    return [(BENCH_PORT, _ethernet(0x88B6) + probe)]


def omnireduce_frames(device, workers: int = 4, slots: int = 8, blocks: int = 6144, density: float = 0.5) -> Frames:
    """p4src/build/omnireduce.json: the frames of one all-reduce of `blocks` blocks of LANES lanes (a fraction
    `density` of them non-zero), recorded on a scratch switch and replayed.

    The recording drives the host agent's own protocol engine (bench/protocol_driver.py), which tells workers
    apart by their switch port. The replay puts every worker on port 1 instead, with its own IP address and UDP
    port: the workers table is keyed by (port, IP, UDP port), multicast replicas leave on port 1 with the worker
    id as rid, and result_destinations (keyed by job and rid) addresses them, so the switch computes exactly
    what it did in the recording.
    """
    job, group = 1, 1
    scratch = Device(name="bench-scratch")
    scratch.load_pipeline(device.pipeline_json)
    spread = bench_workers(workers)
    install_job(scratch, job, spread, slot_count=slots, mcast_group=group)
    recorded = drive_allreduce(scratch, job, spread, sparse_block_tensors(workers, blocks, density, 1),
                               slots).frames_in

    install_job(device, job, [dataclasses.replace(w, port=BENCH_PORT) for w in spread], slot_count=slots,
                mcast_group=group)
    return [(BENCH_PORT, frame) for _, frame in recorded]


GENERATORS = {
    "arith_test.json": arith_frames,
    "tables_test.json": tables_frames,
    "omnireduce.json": omnireduce_frames,
}
