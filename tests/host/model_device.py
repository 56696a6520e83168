"""A reference model of the omnireduce switch (docs/protocol.md sections 3, 4 and 6), in plain Python.

It offers the few Device methods that tests/p4/omniswitch.OmniSwitch uses (table_insert for the identity and
delivery tables, mc_group_insert, counter_read of drops, process_packet), so the agent's end-to-end tests run the
same way against it and against the softswitch running the compiled P4 program. Written from protocol.md alone,
it is a second reading of the specification: where the agent works against both, both readings agree.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import numpy as np

from omnireduce.host.wire import HEADER, LANE_DTYPE, Endpoint, MalformedPacket, frame_prefix, parse_udp_frame
from omnireduce.p4src import constants as C

IDLE, AGGREGATING, COMPLETE = C.ROUND_IDLE, C.ROUND_AGGREGATING, C.ROUND_COMPLETE


@dataclass
class _Round:
    state: int = IDLE
    tensor: int = 0
    block: int = 0
    contributed: int = 0
    unacked: int = 0
    next: int = 0
    exponent: int = 0
    values: np.ndarray = field(default_factory=lambda: np.zeros(C.LANES, dtype=np.int32))


@dataclass(frozen=True)
class _Job:
    slot_base: int
    slot_count: int
    worker_count: int
    mcast_grp: int


class ModelDevice:
    """Protocol model with a Device-shaped surface (only what the agent's tests need)."""

    def __init__(self, switch_mac: str, switch_ip: str) -> None:
        self.switch_mac = bytes.fromhex(switch_mac.replace(":", ""))
        self.switch_ip = IPv4Address(switch_ip)
        self.workers: dict[tuple[int, int, int], tuple[int, int]] = {}
        self.jobs: dict[int, _Job] = {}
        self.destinations: dict[tuple[int, int], Endpoint] = {}
        self.groups: dict[int, list[tuple[int, int]]] = {}
        self.rounds: dict[tuple[int, int], _Round] = {}
        self.slot_tensor: dict[int, int] = {}
        self.worker_next: dict[tuple[int, int], int] = {}
        self.drops: Counter[int] = Counter()
        self.results = 0

    # --- the control plane subset of Device ----------------------------------------------------------------------

    def table_insert(self, entry) -> None:
        keys = tuple(match.value for match in entry.key)
        table = entry.table.rsplit(".", 1)[-1]
        if table == "workers":
            self.workers[keys] = (entry.params[0], entry.params[1])
        elif table == "jobs":
            self.jobs[keys[0]] = _Job(*entry.params)
        elif table == "result_destinations":
            mac, ip, port = entry.params
            self.destinations[keys] = Endpoint(mac.to_bytes(6, "big"), IPv4Address(ip), port)
        else:
            raise NotImplementedError(f"the model has no table {entry.table}")

    def mc_group_insert(self, group: int, replicas: list[tuple[int, int]]) -> None:
        self.groups[group] = list(replicas)

    def counter_read(self, name: str, index: int) -> tuple[int, int]:
        if name == "IngressPipe.drops":
            return self.drops[index], 0
        if name == "EgressPipe.drops":
            return 0, 0
        raise NotImplementedError(name)

    # --- packets -------------------------------------------------------------------------------------------------

    def process_packet(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        try:
            udp = parse_udp_frame(frame)
        except MalformedPacket:
            self.drops[C.DROP_PARSER_ERROR] += 1
            return []
        if udp.dst_port != C.OMNI_UDP_PORT:
            self.drops[C.DROP_NO_ROUTE] += 1
            return []
        payload = bytes(udp.payload)
        if len(payload) < C.OMNI_HEADER_BYTES:
            self.drops[C.DROP_PARSER_ERROR] += 1
            return []
        header = list(HEADER.unpack_from(payload))
        msg_type, flags, job_id, tensor, slot, block, next_block, exponent, lane_count, _ = header
        if msg_type not in (C.MSG_CONTRIB, C.MSG_ACK, C.MSG_REQUEST):
            return self._drop(C.DROP_BAD_MSG_TYPE)
        if lane_count != (C.LANES if msg_type == C.MSG_CONTRIB else 0):
            return self._drop(C.DROP_BAD_LANE_COUNT)
        if len(payload) != C.OMNI_HEADER_BYTES + 4 * lane_count:
            return self._drop(C.DROP_BAD_LENGTH)
        identity = self.workers.get((port, int(udp.src_ip), udp.src_port))
        if identity is None or identity[0] not in self.jobs:
            return self._drop(C.DROP_UNKNOWN_WORKER)
        job_of_worker, worker = identity
        if job_id != job_of_worker:
            return self._drop(C.DROP_JOB_MISMATCH)
        job = self.jobs[job_id]
        if slot >= job.slot_count:
            return self._drop(C.DROP_SLOT_OUT_OF_RANGE)
        g = job.slot_base + slot
        shadow = flags & C.FLAG_SET
        held = self.rounds.setdefault((g, shadow), _Round())
        other = self.rounds.setdefault((g, shadow ^ 1), _Round())
        delta = (tensor - held.tensor) & 0xFFFF
        same = held.state != IDLE and delta == 0 and block == held.block
        newer = held.state == IDLE or 0 < delta < 0x8000 or (delta == 0 and block > held.block)
        bit = 1 << worker

        if msg_type == C.MSG_ACK:
            if same and held.state == COMPLETE:
                held.unacked &= ~bit
                return []
            return self._drop(C.DROP_ROUND_NOT_READY)
        if msg_type == C.MSG_REQUEST:
            if same and held.state == COMPLETE:
                return [(port, self._result_frame(job_id, worker, shadow, slot, held))]
            return self._drop(C.DROP_ROUND_NOT_READY)

        lanes = np.frombuffer(payload, dtype=LANE_DTYPE, offset=C.OMNI_HEADER_BYTES).astype(np.int32)
        if same:
            if held.contributed & bit:
                if held.state == COMPLETE:
                    return [(port, self._result_frame(job_id, worker, shadow, slot, held))]
                return self._drop(C.DROP_DUPLICATE)
            if held.state == COMPLETE:
                return self._drop(C.DROP_LATE_CONTRIBUTION)
            with np.errstate(over="ignore"):
                held.values = (held.values + lanes).astype(np.int32)
            held.contributed |= bit
            held.exponent = max(held.exponent, exponent)
        elif newer:
            if held.state == AGGREGATING or (held.state == COMPLETE and held.unacked):
                return self._drop(C.DROP_SET_BUSY)
            if self.slot_tensor.get(g, 0) != tensor:
                for w in range(C.MAX_WORKERS):
                    self.worker_next[(g, w)] = 0
                self.slot_tensor[g] = tensor
            self.rounds[(g, shadow)] = held = _Round(AGGREGATING, tensor, block, bit, 0, 0, exponent, lanes.copy())
        else:
            return self._drop(C.DROP_STALE)
        self.worker_next[(g, worker)] = next_block
        other.unacked &= ~bit
        smallest = min(self.worker_next.get((g, w), 0) for w in range(job.worker_count))
        if smallest <= block:
            return []
        held.state, held.next, held.unacked = COMPLETE, smallest, (1 << job.worker_count) - 1
        self.results += 1
        return [(out_port, self._result_frame(job_id, rid, shadow, slot, held))
                for out_port, rid in self.groups[job.mcast_grp]]

    def _drop(self, reason: int) -> list[tuple[int, bytes]]:
        self.drops[reason] += 1
        return []

    def _result_frame(self, job_id: int, worker: int, shadow: int, slot: int, held: _Round) -> bytes:
        payload = HEADER.pack(C.MSG_RESULT, shadow, job_id, held.tensor, slot, held.block, held.next, held.exponent,
                              C.LANES, 0) + held.values.astype(LANE_DTYPE).tobytes()
        switch = Endpoint(self.switch_mac, self.switch_ip, C.OMNI_UDP_PORT)
        return frame_prefix(switch, self.destinations[(job_id, worker)], len(payload)) + payload
