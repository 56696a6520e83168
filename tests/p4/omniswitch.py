"""Test helpers that speak the omnireduce domain over a softswitch Device running p4src/build/omnireduce.json.

Frames are built and dissected with scapy (omnireduce.p4src.scapy_omni) so that expected packets are written out
field by field, independently of the agent's fast packet code.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from omnireduce.p4src import constants as C
from omnireduce.p4src.scapy_omni import Omni
from omnireduce.softswitch.entries import FieldMatch, TableEntry

SWITCH_MAC = "02:00:00:00:00:fe"
SWITCH_IP = "10.0.0.254"



@dataclass(frozen=True, slots=True)
class ProgramView:
    """One program's control-plane names and register encodings, as the tests use them: the v1model program
    (p4src/omnireduce.p4) or the Tofino program (p4src/tna/tna.p4, on tests/p4/tna_model.py)."""

    ingress: str  # the ingress control's name: tables, actions and counters are under it
    egress: str
    # Register name prefixes: the first whose key the short name starts with.
    register_prefixes: tuple[tuple[str, str], ...]
    # Tofino stores (tensor_id << 16) | TNA_TENSOR_MARK in slot_tensor and round_tensor (p4src/tna/include/defines.p4).
    tna_tensor_cells: bool = False
    workers_per_register: int = C.WORKERS_PER_GROUP
    # Tofino: the port the job's packets take their second pass through (set_job's last parameter).
    recirculation_port: int | None = None

    def register_name(self, name: str) -> str:
        return next(prefix for start, prefix in self.register_prefixes if name.startswith(start)) + name

    def decode_register(self, name: str, value: int) -> int:
        """A register cell as the v1model program would hold it (only the tensor cells differ)."""
        if self.tna_tensor_cells and name in ("slot_tensor", "round_tensor") and value:
            return C.TENSOR_VALID | (value >> 16)
        return value


V1MODEL = ProgramView("IngressPipe", "EgressPipe", (("", "IngressPipe.aggregation."),))
# The Tofino recirculation port of pipe 0 (ports 0-71): the tests' workers are on ports 1-32 of the same pipe.
TNA = ProgramView("Ingress", "Egress", (("slot_tensor", "Ingress.admission."), ("round_value_", "Ingress.rounds.values."),
                                        ("round_", "Ingress.rounds."), ("worker_next_", "Egress.announcements.workers.")),
                  tna_tensor_cells=True, workers_per_register=1, recirculation_port=68)

# The v1model program's tables (tests that talk to the softswitch directly use them).
WORKERS_TABLE = f"{V1MODEL.ingress}.identity.workers"
JOBS_TABLE = f"{V1MODEL.ingress}.identity.jobs"
ROUTES_TABLE = f"{V1MODEL.ingress}.forwarding.ipv4_routes"
DESTINATIONS_TABLE = f"{V1MODEL.egress}.delivery.result_destinations"


@dataclass(frozen=True, slots=True)
class Worker:
    worker_id: int
    port: int
    mac: str
    ip: str
    udp_port: int


def make_workers(count: int, first_port: int = 1, host_base: int = 1) -> list[Worker]:
    return [
        Worker(w, first_port + w, f"02:00:00:00:{(host_base + w) >> 8:02x}:{(host_base + w) & 0xFF:02x}",
               f"10.0.{(host_base + w) >> 8}.{(host_base + w) & 0xFF}", 5000 + w)
        for w in range(count)
    ]


def _ip(text: str) -> int:
    a, b, c, d = (int(part) for part in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def _mac(text: str) -> int:
    return int(text.replace(":", ""), 16)


def exact(value: int) -> FieldMatch:
    return FieldMatch("exact", value)


@dataclass
class OmniSwitch:
    """A Device with the omnireduce program, plus domain-level helpers."""

    device: object
    jobs: dict[int, list[Worker]] = field(default_factory=dict)
    view: ProgramView = V1MODEL

    # --- control plane -------------------------------------------------------------------------------------------
    def add_job(self, job_id: int, workers: list[Worker], slot_base: int, slot_count: int, mcast_grp: int) -> None:
        for worker in workers:
            self.add_worker(job_id, worker)
        params = (slot_base, slot_count, len(workers), mcast_grp)
        if self.view.recirculation_port is not None:
            params += (self.view.recirculation_port,)
        self.device.table_insert(TableEntry(f"{self.view.ingress}.identity.jobs", (exact(job_id),),
                                            f"{self.view.ingress}.identity.set_job", params))
        self.device.mc_group_insert(mcast_grp, [(w.port, w.worker_id) for w in workers])
        self.jobs[job_id] = workers

    def add_worker(self, job_id: int, worker: Worker) -> None:
        self.device.table_insert(TableEntry(
            f"{self.view.ingress}.identity.workers", (exact(worker.port), exact(_ip(worker.ip)), exact(worker.udp_port)),
            f"{self.view.ingress}.identity.set_worker", (job_id, worker.worker_id)))
        self.device.table_insert(TableEntry(
            f"{self.view.egress}.delivery.result_destinations", (exact(job_id), exact(worker.worker_id)),
            f"{self.view.egress}.delivery.set_result_destination", (_mac(worker.mac), _ip(worker.ip), worker.udp_port)))

    def add_route(self, prefix: str, prefix_len: int, port: int, dst_mac: str) -> None:
        self.device.table_insert(TableEntry(
            f"{self.view.ingress}.forwarding.ipv4_routes", (FieldMatch("lpm", _ip(prefix), prefix_len=prefix_len),),
            f"{self.view.ingress}.forwarding.route", (port, _mac(SWITCH_MAC), _mac(dst_mac))))

    # --- state -----------------------------------------------------------------------------------------------
    def register(self, name: str, index: int) -> int:
        """A register cell, in the v1model program's encoding whichever program runs."""
        return self.view.decode_register(name, self.device.register_read(self.view.register_name(name), index))

    def round_register(self, name: str, global_slot: int, shadow_set: int) -> int:
        return self.register(name, (global_slot << C.SET_INDEX_BITS) | shadow_set)

    def worker_next(self, global_slot: int, workers: int) -> list[int]:
        """The announced next block of workers 0 .. workers-1 in the slot (lanes of the worker_next_<g> cells)."""
        per = self.view.workers_per_register
        cells = [self.register(f"worker_next_{group}", global_slot) for group in range(C.MAX_WORKERS // per)]
        return [(cells[w // per] >> (32 * (w % per))) & 0xFFFFFFFF for w in range(workers)]

    def drops(self, reason: int) -> int:
        ingress, _ = self.device.counter_read(f"{self.view.ingress}.drops", reason)
        egress, _ = self.device.counter_read(f"{self.view.egress}.drops", reason)
        return ingress + egress

    def job_counter(self, name: str, job_id: int) -> int:
        return self.device.counter_read(f"{self.view.ingress}.job_{name}", job_id)[0]

    # --- data plane ------------------------------------------------------------------------------------------
    def send(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        return self.device.process_packet(port, bytes(frame))


def omni_frame(worker: Worker, msg_type: int, job: int, tensor: int, slot: int, shadow_set: int, block: int,
               next_block: int = 0, values=None, exponent: int = 0, peer: int = 0) -> Ether:
    """A worker's packet to the switch, as the agent would build it."""
    return (Ether(src=worker.mac, dst=SWITCH_MAC) / IP(src=worker.ip, dst=SWITCH_IP, id=0, ttl=64)
            / UDP(sport=worker.udp_port, dport=C.OMNI_UDP_PORT)
            / Omni(msg_type=msg_type, flags=shadow_set, job_id=job, tensor_id=tensor, slot=slot, block_index=block,
                   next_block=next_block, exponent=exponent, peer=peer,
                   values=list(values) if values is not None else []))


def contrib(worker, job, tensor, slot, shadow_set, block, next_block, values, exponent=0) -> Ether:
    return omni_frame(worker, C.MSG_CONTRIB, job, tensor, slot, shadow_set, block, next_block, values, exponent)


def request(worker, job, tensor, slot, shadow_set, block, peer=0) -> Ether:
    """A REQUEST for a missed result; `peer`: whom the switch forwards it to once it no longer holds the round."""
    return omni_frame(worker, C.MSG_REQUEST, job, tensor, slot, shadow_set, block, peer=peer)


def repair(worker, job, tensor, slot, shadow_set, block, next_block, values, requester, exponent=0) -> Ether:
    """A worker's copy of a result for the peer that requested it."""
    return omni_frame(worker, C.MSG_REPAIR, job, tensor, slot, shadow_set, block, next_block, values, exponent,
                      peer=requester)


def expected_result(worker: Worker, job: int, tensor: int, slot: int, shadow_set: int, block: int, next_block: int,
                    values, exponent: int = 0) -> bytes:
    """The RESULT frame the switch must deliver to `worker`, written out field by field."""
    return bytes(
        Ether(src=SWITCH_MAC, dst=worker.mac) / IP(src=SWITCH_IP, dst=worker.ip, id=0, ttl=64)
        / UDP(sport=C.OMNI_UDP_PORT, dport=worker.udp_port, chksum=0)
        / Omni(msg_type=C.MSG_RESULT, flags=shadow_set, job_id=job, tensor_id=tensor, slot=slot, block_index=block,
               next_block=next_block, exponent=exponent, lane_count=C.LANES, values=[int(v) for v in values])
    )


def expected_forward(worker: Worker, msg_type: int, job: int, tensor: int, slot: int, shadow_set: int, block: int,
                     sender: int, next_block: int = 0, values=None, exponent: int = 0) -> bytes:
    """A REQUEST or REPAIR as the switch forwards it to `worker`: from the aggregator, naming `sender` in peer."""
    return bytes(
        Ether(src=SWITCH_MAC, dst=worker.mac) / IP(src=SWITCH_IP, dst=worker.ip, id=0, ttl=64)
        / UDP(sport=C.OMNI_UDP_PORT, dport=worker.udp_port, chksum=0)
        / Omni(msg_type=msg_type, flags=shadow_set, job_id=job, tensor_id=tensor, slot=slot, block_index=block,
               next_block=next_block, exponent=exponent, peer=sender,
               values=[int(v) for v in values] if values is not None else [])
    )


def lanes(*values: int) -> list[int]:
    """A block whose first lanes are `values` and the rest zero."""
    return list(values) + [0] * (C.LANES - len(values))


def as_int32(values) -> list[int]:
    return [int(v) for v in np.asarray(values, dtype=np.int64).astype(np.int32)]


# --- a small synchronous run of the worker side of the protocol, for end-to-end packet tests -------------------

@dataclass
class AllReduceTrace:
    sums: dict[int, np.ndarray]  # per worker: the tensor it assembled
    rounds: list[tuple[int, int]]  # (slot, block) of every result, in order
    packets_sent: int


def run_allreduce(switch: OmniSwitch, job: int, tensors: list[np.ndarray], slots: int, tensor_id: int = 1,
                  dense: bool = False, start_sets: dict | None = None) -> AllReduceTrace:
    """Drive every worker of `job` through one all-reduce (docs/protocol.md section 4.6) and collect the results.

    Packets are sent breadth-first through one FIFO, the way concurrent workers interleave.
    """
    workers = switch.jobs[job]
    by_port = {w.port: w for w in workers}
    n_blocks = len(tensors[0]) // C.LANES
    blocks = [t.reshape(n_blocks, C.LANES) for t in tensors]

    def next_in_column(w: int, b: int) -> int:
        for later in range(b + slots, n_blocks, slots):
            if dense or blocks[w][later].any():
                return later
        return C.END_OF_TENSOR

    shadow = {(w.worker_id, s): (start_sets or {}).get(s, 0) for w in workers for s in range(slots)}
    announced = {(w.worker_id, s): s for w in workers for s in range(slots)}
    sums = {w.worker_id: np.zeros((n_blocks, C.LANES), dtype=np.int64) for w in workers}
    queue: deque[tuple[Worker, Ether]] = deque()
    for s in range(min(slots, n_blocks)):
        for w in workers:
            nxt = next_in_column(w.worker_id, s)
            announced[(w.worker_id, s)] = nxt
            queue.append((w, contrib(w, job, tensor_id, s, shadow[(w.worker_id, s)], s, nxt,
                                     as_int32(blocks[w.worker_id][s]))))
    rounds, sent = [], 0
    while queue:
        worker, frame = queue.popleft()
        sent += 1
        for port, out in switch.send(worker.port, frame):
            receiver = by_port[port]
            result = Ether(out)[Omni]
            assert result.msg_type == C.MSG_RESULT, result.summary()
            key = (receiver.worker_id, result.slot)
            assert result.flags == shadow[key], "result on an unexpected shadow set"
            sums[receiver.worker_id][result.block_index] = result.values
            if receiver is workers[0]:
                rounds.append((result.slot, result.block_index))
            shadow[key] = (shadow[key] + 1) & C.SET_MASK
            if result.next_block == announced[key] and result.next_block != C.END_OF_TENSOR:
                b = result.next_block
                nxt = next_in_column(receiver.worker_id, b)
                announced[key] = nxt
                queue.append((receiver, contrib(receiver, job, tensor_id, result.slot, shadow[key], b, nxt,
                                                as_int32(blocks[receiver.worker_id][b]))))
    return AllReduceTrace({w: s.reshape(-1) for w, s in sums.items()}, rounds, sent)
