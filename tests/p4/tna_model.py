"""A Python model of the Tofino program (p4src/tna/tna.p4), to run the packet tests without a Tofino.

No Tofino (nor its software model) is available to run the TNA program, so this module restates it: the parsers,
every control, every RegisterAction (one function each, named as in the P4 code, with the same conditions), the
PRE, and the passes through the pipe (ingress, egress of the job's recirculation port, ingress again, egress). It
offers the softswitch Device's methods that tests/p4/omniswitch.py uses, so tests/p4/test_packets.py runs on it
unchanged (the `switch` fixture's "tna-model"), and tests/p4/test_tna_model.py drives it and the v1model program side
by side with random packets.

What this checks: that the TNA program's control flow -- the two passes, the split of each register's decision
into one RegisterAction chosen from values computed before it, the min/max rewrites of comparisons, the
announcement extraction and minimum -- makes the same decisions as the v1model program. What it does not check:
that this module follows tna.p4 (that is by reading both; each function names the P4 it restates), nor anything of
Tofino itself (timing, PHV, the compiler's placement).

Header layouts come from the P4 sources (generate.header_layout), sizes and codes from the generated constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from omnireduce.p4src import constants as C
from omnireduce.p4src import generate
from omnireduce.softswitch.entries import TableEntry

U32 = 0xFFFFFFFF
U16 = 0xFFFF

# bf-rt names (without the "pipe." prefix) of what the controller and the tests touch.
WORKERS = "Ingress.identity.workers"
SET_WORKER = "Ingress.identity.set_worker"
JOBS = "Ingress.identity.jobs"
SET_JOB = "Ingress.identity.set_job"
ROUTES = "Ingress.forwarding.ipv4_routes"
ROUTE = "Ingress.forwarding.route"
DESTINATIONS = "Egress.delivery.result_destinations"
SET_DESTINATION = "Egress.delivery.set_result_destination"
RECIRCULATION_PORTS = "IngressParser.recirculation_ports"
SLOT_TENSOR = "Ingress.admission.slot_tensor"
ROUND_REGISTERS = ("round_tensor", "round_block", "round_exponent", "round_next")
WORKER_NEXT = "Egress.announcements.workers.worker_next_"
ROUND_VALUE = "Ingress.rounds.values.round_value_"
INGRESS_COUNTERS = ("port_rx", "drops", "job_contributions", "job_results", "job_replays", "job_forwards")
EGRESS_COUNTERS = ("port_tx", "drops")


# --- headers ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Layout:
    name: str
    fields: tuple[tuple[str, int], ...]

    @property
    def size(self) -> int:
        return sum(width for _, width in self.fields) // 8

    def unpack(self, data: bytes) -> dict[str, int]:
        word = int.from_bytes(data[:self.size], "big")
        values, shift = {}, self.size * 8
        for name, width in self.fields:
            shift -= width
            values[name] = (word >> shift) & ((1 << width) - 1)
        return values

    def pack(self, values: dict[str, int]) -> bytes:
        word = 0
        for name, width in self.fields:
            word = (word << width) | (values[name] & ((1 << width) - 1))
        return word.to_bytes(self.size, "big")


LAYOUTS = {name: Layout(name, generate.header_layout(name))
           for name in ("ethernet_t", "ipv4_t", "udp_t", "omni_t", "omni_bridge_t")}
LAYOUTS["omni_lanes_t"] = Layout("omni_lanes_t", tuple((f"value_{k}", 32) for k in range(C.LANES)))


class Header:
    """A header instance: its validity and its field values (the P4 program's hdr.<name>)."""

    __slots__ = ("layout", "valid", "f")

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.valid = False
        self.f = {name: 0 for name, _ in layout.fields}

    def set_valid(self) -> None:
        self.valid = True

    def copy(self) -> "Header":
        other = Header(self.layout)
        other.valid, other.f = self.valid, dict(self.f)
        return other


@dataclass
class Packet:
    """tna_headers_t plus what follows the parsed headers (payload) and the parser's error flag."""

    bridge: Header = field(default_factory=lambda: Header(LAYOUTS["omni_bridge_t"]))
    ethernet: Header = field(default_factory=lambda: Header(LAYOUTS["ethernet_t"]))
    ipv4: Header = field(default_factory=lambda: Header(LAYOUTS["ipv4_t"]))
    udp: Header = field(default_factory=lambda: Header(LAYOUTS["udp_t"]))
    omni: Header = field(default_factory=lambda: Header(LAYOUTS["omni_t"]))
    lanes: Header = field(default_factory=lambda: Header(LAYOUTS["omni_lanes_t"]))
    payload: bytes = b""
    parser_err: bool = False

    def copy(self) -> "Packet":
        return Packet(self.bridge.copy(), self.ethernet.copy(), self.ipv4.copy(), self.udp.copy(), self.omni.copy(),
                      self.lanes.copy(), self.payload, self.parser_err)


class _Cursor:
    """Extraction from a frame; running out of bytes sets the parser error (Tofino: partial header)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def extract(self, header: Header) -> bool:
        size = header.layout.size
        if self.offset + size > len(self.data):
            return False
        header.f = header.layout.unpack(self.data[self.offset:self.offset + size])
        header.valid = True
        self.offset += size
        return True

    def rest(self) -> bytes:
        return self.data[self.offset:]


def ipv4_checksum(ipv4: Header) -> int:
    """The ones' complement sum over the header with its checksum field zero (Checksum.update)."""
    data = LAYOUTS["ipv4_t"].pack({**ipv4.f, "hdr_checksum": 0})
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & U16) + (total >> 16)
    return ~total & U16


# --- state -----------------------------------------------------------------------------------------------------

class Register:
    def __init__(self, size: int, width: int, initial: int = 0) -> None:
        self.cells = [initial] * size
        self.mask = (1 << width) - 1

    def execute(self, index: int, action: Callable[[int], tuple[int, int]]) -> int:
        """Run one RegisterAction on cell `index`: action(value) -> (new value, output)."""
        value, out = action(self.cells[index])
        self.cells[index] = value & self.mask
        return out


class Counter:
    def __init__(self, size: int) -> None:
        self.cells = [[0, 0] for _ in range(size)]

    def count(self, index: int, length: int) -> None:
        cell = self.cells[index]
        cell[0] += 1
        cell[1] += length


@dataclass
class IngressMeta:
    """ingress_metadata_t (only what the model needs to follow the P4 code)."""

    checksum_error: int = 0
    job_id: int = 0
    worker_id: int = 0
    slot_base: int = 0
    slot_count: int = 0
    worker_count: int = 0
    mcast_grp: int = 0
    recirculation_port: int = 0
    drop_reason: int = 0
    outcome: int = C.OUTCOME_NONE
    to_announce: int = 0
    new_tensor: int = 0
    global_slot: int = 0
    tensor_cell: int = 0
    forward_to: int = 0


@dataclass
class TmDecision:
    """What ingress hands the traffic manager."""

    drop: bool = False
    ucast_port: int | None = None
    mcast_grp: int | None = None


def tensor_cell(tensor_id: int) -> int:
    """(tensor_id << 16) | TNA_TENSOR_MARK: slot_tensor and round_tensor cells on Tofino."""
    return ((tensor_id << 16) | C.TNA_TENSOR_MARK) & U32


def signed32(value: int) -> int:
    value &= U32
    return value - (1 << 32) if value >> 31 else value


# --- the program -----------------------------------------------------------------------------------------------

class TnaModel:
    """The TNA program on one pipe, with the Device methods tests/p4/omniswitch.py calls."""

    def __init__(self) -> None:
        self.workers: dict[tuple[int, int, int], tuple[int, int]] = {}
        self.jobs: dict[int, tuple[int, int, int, int, int]] = {}
        self.routes: list[tuple[int, int, tuple[int, int, int]]] = []
        self.destinations: dict[tuple[int, int], tuple[int, int, int]] = {}
        self.recirculation_ports: set[int] = set()
        self.mc_groups: dict[int, list[tuple[int, int]]] = {}
        self.registers: dict[str, Register] = {SLOT_TENSOR: Register(C.TNA_SLOT_COUNT, 32)}
        for name in ROUND_REGISTERS:
            width = 8 if name == "round_exponent" else 32
            self.registers["Ingress.rounds." + name] = Register(C.TNA_ROUND_COUNT, width)
        for k in range(C.LANES):
            self.registers[f"{ROUND_VALUE}{k}"] = Register(C.TNA_ROUND_COUNT, 32)
        for w in range(C.MAX_WORKERS):
            self.registers[f"{WORKER_NEXT}{w}"] = Register(C.TNA_SLOT_COUNT, 32, C.END_OF_TENSOR)
        sizes = {"port_rx": C.PORT_COUNT, "port_tx": C.PORT_COUNT, "drops": C.DROP_REASON_COUNT}
        self.counters = {f"Ingress.{name}": Counter(sizes.get(name, C.MAX_JOBS)) for name in INGRESS_COUNTERS}
        self.counters.update({f"Egress.{name}": Counter(sizes[name]) for name in EGRESS_COUNTERS})
        self.passes: list[str] = []  # the passes of the last packet, for tests that look at the path

    # --- control plane (the softswitch Device's method names) ---------------------------------------------------
    def table_insert(self, entry: TableEntry) -> None:
        key = tuple(match.value for match in entry.key)
        if entry.table == WORKERS and entry.action == SET_WORKER:
            self.workers[key] = tuple(entry.params)
        elif entry.table == JOBS and entry.action == SET_JOB:
            self.jobs[key[0]] = tuple(entry.params)
        elif entry.table == DESTINATIONS and entry.action == SET_DESTINATION:
            self.destinations[key] = tuple(entry.params)
        elif entry.table == ROUTES and entry.action == ROUTE:
            self.routes.append((key[0], entry.key[0].prefix_len or 0, tuple(entry.params)))
        else:
            raise KeyError(f"the TNA model has no table {entry.table!r} with action {entry.action!r}")

    def value_set_insert(self, name: str, value: int) -> None:
        if name != RECIRCULATION_PORTS:
            raise KeyError(f"the TNA model has no parser value set {name!r}")
        if len(self.recirculation_ports) >= C.TNA_RECIRCULATION_PORTS:
            raise ValueError("recirculation_ports is full")
        self.recirculation_ports.add(value)

    def mc_group_insert(self, group_id: int, replicas: list[tuple[int, int]]) -> None:
        self.mc_groups[group_id] = list(replicas)

    mc_group_modify = mc_group_insert

    def register_read(self, name: str, index: int) -> int:
        return self.registers[name].cells[index]

    def counter_read(self, name: str, index: int) -> tuple[int, int]:
        packets, byte_count = self.counters[name].cells[index]
        return packets, byte_count

    # --- data plane -------------------------------------------------------------------------------------------
    def process_packet(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        """One frame in; the frames that leave the switch out (the recirculation is internal)."""
        self.passes = []
        out: list[tuple[int, bytes]] = []
        arrivals = [(port, bytes(frame))]
        while arrivals:
            in_port, data = arrivals.pop(0)
            pkt = self._ingress_parser(in_port, data)
            self.passes.append("ingress (round)" if pkt.bridge.valid else "ingress")
            tm = self._ingress(pkt, in_port, len(data))
            if tm.drop:
                continue
            data = self._ingress_deparser(pkt)
            copies = ([(tm.ucast_port, 0)] if tm.mcast_grp is None else self.mc_groups.get(tm.mcast_grp, []))
            for egress_port, rid in copies:
                epkt = self._egress_parser(data)
                self.passes.append("egress (announce)" if epkt.bridge.f["phase"] == C.PHASE_ANNOUNCE else "egress")
                if self._egress(epkt, egress_port, rid):
                    continue
                sent = self._egress_deparser(epkt)
                if egress_port in self.recirculation_ports:
                    arrivals.append((egress_port, sent))
                else:
                    out.append((egress_port, sent))
        return out

    # IngressParser (parser.p4).
    def _ingress_parser(self, port: int, data: bytes) -> Packet:
        pkt, cur = Packet(), _Cursor(data)
        pkt.parser_err = not self._parse(pkt, cur, bridge=port in self.recirculation_ports, lanes=True)
        pkt.payload = cur.rest()
        return pkt

    @staticmethod
    def _parse(pkt: Packet, cur: _Cursor, bridge: bool, lanes: bool) -> bool:
        if bridge and not cur.extract(pkt.bridge):
            return False
        if not cur.extract(pkt.ethernet):
            return False
        if pkt.ethernet.f["ether_type"] != C.ETHERTYPE_IPV4:
            return True
        if not cur.extract(pkt.ipv4):
            return False
        if (pkt.ipv4.f["ihl"], pkt.ipv4.f["protocol"]) != (5, C.IP_PROTO_UDP):
            return True
        if not cur.extract(pkt.udp):
            return False
        if pkt.udp.f["dst_port"] != C.OMNI_UDP_PORT:
            return True
        if not cur.extract(pkt.omni):
            return False
        if lanes and pkt.omni.f["lane_count"] == C.LANES:
            return cur.extract(pkt.lanes)
        return True

    @staticmethod
    def _ingress_deparser(pkt: Packet) -> bytes:
        headers = (pkt.bridge, pkt.ethernet, pkt.ipv4, pkt.udp, pkt.omni, pkt.lanes)
        return b"".join(h.layout.pack(h.f) for h in headers if h.valid) + pkt.payload

    # Ingress (tna.p4).
    def _ingress(self, pkt: Packet, port: int, length: int) -> TmDecision:
        meta = IngressMeta()
        if pkt.ipv4.valid and not pkt.bridge.valid:
            meta.checksum_error = int(ipv4_checksum(pkt.ipv4) != pkt.ipv4.f["hdr_checksum"])
        tm = TmDecision()
        omni, udp, ipv4 = pkt.omni.f, pkt.udp.f, pkt.ipv4.f
        if pkt.bridge.valid:
            meta.job_id = pkt.bridge.f["job_id"]
            self._rounds(pkt, meta)
        else:
            self.counters["Ingress.port_rx"].count(port, length)
            if pkt.parser_err:
                meta.drop_reason = C.DROP_PARSER_ERROR
            elif not pkt.ipv4.valid:
                meta.drop_reason = C.DROP_NOT_IPV4
            elif meta.checksum_error:
                meta.drop_reason = C.DROP_BAD_CHECKSUM
            elif pkt.omni.valid:
                lanes_bytes = C.LANES << 2 if pkt.lanes.valid else 0
                expected_udp_length = C.UDP_HEADER_BYTES + C.OMNI_HEADER_BYTES + lanes_bytes
                expected_ipv4_length = C.IPV4_HEADER_BYTES + expected_udp_length
                if omni["msg_type"] not in (C.MSG_CONTRIB, C.MSG_REQUEST, C.MSG_REPAIR):
                    meta.drop_reason = C.DROP_BAD_MSG_TYPE
                elif ((omni["msg_type"] != C.MSG_REQUEST) != pkt.lanes.valid
                      or (not pkt.lanes.valid and omni["lane_count"] != 0)):
                    meta.drop_reason = C.DROP_BAD_LANE_COUNT
                elif udp["length"] != expected_udp_length or ipv4["total_len"] != expected_ipv4_length:
                    meta.drop_reason = C.DROP_BAD_LENGTH
                else:
                    self._identity(pkt, meta, port)
                    if meta.drop_reason == 0:
                        self._admission(pkt, meta)
            else:
                self._forwarding(pkt, meta, tm)

        if meta.outcome in (C.OUTCOME_RESULT, C.OUTCOME_REPLAY, C.OUTCOME_FORWARD):
            udp["checksum"] = 0
            if meta.outcome != C.OUTCOME_FORWARD:
                udp["length"] = C.UDP_HEADER_BYTES + C.OMNI_HEADER_BYTES + (C.LANES << 2)
                ipv4["total_len"] = C.IPV4_HEADER_BYTES + C.UDP_HEADER_BYTES + C.OMNI_HEADER_BYTES + (C.LANES << 2)
            ipv4["ttl"] = 64

        bridge = pkt.bridge
        if meta.drop_reason != 0:
            self.counters["Ingress.drops"].count(meta.drop_reason, length)
            tm.drop = True
        elif meta.outcome == C.OUTCOME_ABSORBED:
            self.counters["Ingress.job_contributions"].count(meta.job_id, length)
            tm.drop = True
        elif meta.to_announce:
            tm.ucast_port = meta.recirculation_port
            bridge.set_valid()
            bridge.f.update(phase=C.PHASE_ANNOUNCE, outcome=C.OUTCOME_NONE, job_id=meta.job_id,
                            worker_id=meta.worker_id, worker_count=meta.worker_count, global_slot=meta.global_slot,
                            mcast_grp=meta.mcast_grp, ingress_port=port, forward_to=0, deliver_by_multicast=0,
                            new_tensor=meta.new_tensor, accepted=0, announced=0, min_next=0)
        else:
            for outcome, counter in ((C.OUTCOME_RESULT, "job_contributions"), (C.OUTCOME_RESULT, "job_results"),
                                     (C.OUTCOME_FORWARD, "job_forwards"), (C.OUTCOME_REPLAY, "job_replays")):
                if meta.outcome == outcome:
                    self.counters["Ingress." + counter].count(meta.job_id, length)
            if not bridge.valid:
                bridge.set_valid()
                bridge.f.update(mcast_grp=meta.mcast_grp, ingress_port=port)
            bridge.f.update(phase=C.PHASE_DELIVER, outcome=meta.outcome, job_id=meta.job_id,
                            forward_to=meta.forward_to)
            if meta.outcome in (C.OUTCOME_RESULT, C.OUTCOME_FORWARD):
                tm.mcast_grp = bridge.f["mcast_grp"]
                bridge.f["deliver_by_multicast"] = 1
            else:
                bridge.f["deliver_by_multicast"] = 0
            if meta.outcome == C.OUTCOME_REPLAY:
                tm.ucast_port = bridge.f["ingress_port"]
                eth = pkt.ethernet.f
                eth["dst_addr"], eth["src_addr"] = eth["src_addr"], eth["dst_addr"]
                ipv4["dst_addr"], ipv4["src_addr"] = ipv4["src_addr"], ipv4["dst_addr"]
                udp["dst_port"], udp["src_port"] = udp["src_port"], C.OMNI_UDP_PORT
        return tm

    # WorkerIdentity (control/identity.p4).
    def _identity(self, pkt: Packet, meta: IngressMeta, port: int) -> None:
        worker = self.workers.get((port, pkt.ipv4.f["src_addr"], pkt.udp.f["src_port"]))
        if worker is None:
            meta.drop_reason = C.DROP_UNKNOWN_WORKER
        else:
            meta.job_id, meta.worker_id = worker
        if meta.drop_reason == 0:
            job = self.jobs.get(meta.job_id)
            if job is None:
                meta.drop_reason = C.DROP_UNKNOWN_WORKER
            else:
                (meta.slot_base, meta.slot_count, meta.worker_count, meta.mcast_grp,
                 meta.recirculation_port) = job
                meta.global_slot = (meta.slot_base + pkt.omni.f["slot"]) & U16  # set_job
        slot_max = max(pkt.omni.f["slot"], meta.slot_count)
        if meta.drop_reason == 0 and pkt.omni.f["job_id"] != meta.job_id:
            meta.drop_reason = C.DROP_JOB_MISMATCH
        if meta.drop_reason == 0 and slot_max == pkt.omni.f["slot"]:
            meta.drop_reason = C.DROP_SLOT_OUT_OF_RANGE

    # Admission (control/admission.p4).
    def _admission(self, pkt: Packet, meta: IngressMeta) -> None:
        omni = pkt.omni.f
        meta.tensor_cell = tensor_cell(omni["tensor_id"])
        peer_max = max(omni["peer"], meta.worker_count)
        peer_valid = omni["peer"] != meta.worker_id and peer_max != omni["peer"]

        def tensor_delta(value: int) -> int:  # what both RegisterActions return
            return C.TNA_UNUSED_DELTA if value == 0 else (meta.tensor_cell - value) & U32

        def slot_tensor_claim(value: int) -> tuple[int, int]:
            if value == 0 or signed32(meta.tensor_cell - value) > 0:
                return meta.tensor_cell, tensor_delta(value)
            return value, tensor_delta(value)

        def slot_tensor_read(value: int) -> tuple[int, int]:
            return value, tensor_delta(value)

        def forward_to_peer() -> None:
            meta.forward_to = omni["peer"]
            omni["peer"] = meta.worker_id
            meta.outcome = C.OUTCOME_FORWARD

        if omni["msg_type"] == C.MSG_REPAIR:
            if peer_valid:
                forward_to_peer()
            else:
                meta.drop_reason = C.DROP_BAD_PEER
            return
        first_block_contribution = omni["msg_type"] == C.MSG_CONTRIB and omni["block_index"] == omni["slot"]
        index = meta.global_slot & (C.TNA_SLOT_COUNT - 1)
        delta = self.registers[SLOT_TENSOR].execute(
            index, slot_tensor_claim if first_block_contribution else slot_tensor_read)
        same_tensor = delta == 0
        older_tensor = delta >> 31 == 1
        newer_tensor = not same_tensor and delta >> 31 == 0
        meta.new_tensor = int(first_block_contribution and newer_tensor)
        if not same_tensor and not meta.new_tensor and omni["msg_type"] == C.MSG_REQUEST and older_tensor:
            if peer_valid:
                forward_to_peer()
            else:
                meta.drop_reason = C.DROP_BAD_PEER
        elif not same_tensor and not meta.new_tensor:
            meta.drop_reason = C.DROP_STALE
        else:
            meta.to_announce = 1

    # Ipv4Forwarding (control/forwarding.p4).
    def _forwarding(self, pkt: Packet, meta: IngressMeta, tm: TmDecision) -> None:
        ipv4 = pkt.ipv4.f
        if ipv4["ttl"] <= 1:
            meta.drop_reason = C.DROP_TTL_EXPIRED
            return
        best = None
        for prefix, length, params in self.routes:
            mask = (U32 << (32 - length)) & U32 if length else 0
            if ipv4["dst_addr"] & mask == prefix & mask and (best is None or length > best[0]):
                best = (length, params)
        if best is None:
            meta.drop_reason = C.DROP_NO_ROUTE
            return
        tm.ucast_port, pkt.ethernet.f["src_addr"], pkt.ethernet.f["dst_addr"] = best[1]
        ipv4["ttl"] -= 1

    # Rounds (control/rounds.p4) with RoundValues (generated/round_values.p4).
    def _rounds(self, pkt: Packet, meta: IngressMeta) -> None:
        omni, bridge = pkt.omni.f, pkt.bridge.f
        reg = {name: self.registers["Ingress.rounds." + name] for name in ROUND_REGISTERS}
        index = ((bridge["global_slot"] & (C.TNA_SLOT_COUNT - 1)) << C.SET_INDEX_BITS) | (omni["flags"] & C.SET_MASK)
        cell = tensor_cell(omni["tensor_id"])
        block, min_next = omni["block_index"], bridge["min_next"]
        block_floor = min(min_next, block)
        complete = block_floor != min_next
        announced_floor = min(bridge["announced"], block)
        peer_max = max(omni["peer"], bridge["worker_count"])
        peer_valid = omni["peer"] != bridge["worker_id"] and peer_max != omni["peer"]
        accepted = bridge["accepted"] == 1
        reuse_below = min(min_next, block) if accepted else 0

        def round_tensor_claim(value: int) -> tuple[int, int]:
            return cell, value

        def read(value: int) -> tuple[int, int]:
            return value, value

        def round_block_start(value: int) -> tuple[int, int]:
            return block, 0

        def round_block_update(value: int) -> tuple[int, int]:
            cmplo, cmphi = value < reuse_below, value == block
            predicate = 1 << (int(cmplo) + 2 * int(cmphi))  # the stateful ALU's predicate output
            return (block if cmplo else value), predicate

        held_tensor = reg["round_tensor"].execute(index, round_tensor_claim if accepted else read)
        same_tensor = held_tensor == cell
        if accepted and not same_tensor:
            reg["round_block"].execute(index, round_block_start)
            state = C.ROUND_DONE
        elif same_tensor:
            state = reg["round_block"].execute(index, round_block_update)
        else:
            state = C.ROUND_OTHER
        same_round, held_done = state == C.ROUND_SAME, state & C.ROUND_DONE_MASK != 0

        lane_op = C.LANE_NONE
        next_to_store = 0
        if omni["msg_type"] == C.MSG_CONTRIB:
            if accepted and same_round:
                lane_op = C.LANE_ADD
            elif accepted and held_done:
                lane_op = C.LANE_STORE
            elif accepted:
                meta.drop_reason = C.DROP_SET_BUSY
            elif bridge["announced"] == omni["next_block"] and same_round:
                if complete:
                    meta.outcome = C.OUTCOME_REPLAY
                else:
                    meta.drop_reason = C.DROP_DUPLICATE
            elif announced_floor != bridge["announced"]:
                meta.drop_reason = C.DROP_STALE
            else:
                meta.drop_reason = C.DROP_NOT_ANNOUNCED
            if lane_op != C.LANE_NONE:
                next_to_store = min_next if complete else 0
                meta.outcome = C.OUTCOME_RESULT if complete else C.OUTCOME_ABSORBED
        else:
            if same_round and complete:
                meta.outcome = C.OUTCOME_REPLAY
            elif not same_round and complete:
                if peer_valid:
                    meta.forward_to = omni["peer"]
                    omni["peer"] = bridge["worker_id"]
                    meta.outcome = C.OUTCOME_FORWARD
                else:
                    meta.drop_reason = C.DROP_BAD_PEER
            else:
                meta.drop_reason = C.DROP_ROUND_NOT_READY
        if meta.outcome == C.OUTCOME_REPLAY:
            lane_op = C.LANE_LOAD

        exponent = omni["exponent"]
        result_exponent = result_next = 0
        if lane_op == C.LANE_ADD:
            result_exponent = reg["round_exponent"].execute(index, lambda v: (max(v, exponent),) * 2)
        elif lane_op == C.LANE_STORE:
            result_exponent = reg["round_exponent"].execute(index, lambda v: (exponent, exponent))
        elif lane_op == C.LANE_LOAD:
            result_exponent = reg["round_exponent"].execute(index, read)
        if lane_op in (C.LANE_ADD, C.LANE_STORE):
            reg["round_next"].execute(index, lambda v: (next_to_store, 0))
        elif lane_op == C.LANE_LOAD:
            result_next = reg["round_next"].execute(index, read)
        if lane_op == C.LANE_LOAD:
            pkt.lanes.set_valid()
        lanes = pkt.lanes.f
        for k in range(C.LANES):
            register, value = self.registers[f"{ROUND_VALUE}{k}"], lanes[f"value_{k}"]
            if lane_op == C.LANE_STORE:
                register.execute(index, lambda v, x=value: (x, 0))
            elif lane_op == C.LANE_ADD:
                lanes[f"value_{k}"] = register.execute(index, lambda v, x=value: ((v + x) & U32,) * 2)
            elif lane_op == C.LANE_LOAD:
                lanes[f"value_{k}"] = register.execute(index, read)

        if meta.outcome in (C.OUTCOME_RESULT, C.OUTCOME_REPLAY):
            omni.update(msg_type=C.MSG_RESULT, lane_count=C.LANES, peer=0, exponent=result_exponent,
                        next_block=min_next if meta.outcome == C.OUTCOME_RESULT else result_next)

    # EgressParser / EgressDeparser (parser.p4): lanes are not parsed in egress.
    def _egress_parser(self, data: bytes) -> Packet:
        pkt, cur = Packet(), _Cursor(data)
        cur.extract(pkt.bridge)
        self._parse(pkt, cur, bridge=False, lanes=False)
        pkt.payload = cur.rest()
        return pkt

    @staticmethod
    def _egress_deparser(pkt: Packet) -> bytes:
        if pkt.ipv4.valid:
            pkt.ipv4.f["hdr_checksum"] = ipv4_checksum(pkt.ipv4)
        headers = (pkt.bridge, pkt.ethernet, pkt.ipv4, pkt.udp, pkt.omni)
        return b"".join(h.layout.pack(h.f) for h in headers if h.valid) + pkt.payload

    # Egress (tna.p4); returns True when the copy is dropped.
    def _egress(self, pkt: Packet, port: int, rid: int) -> bool:
        bridge = pkt.bridge.f
        if bridge["phase"] == C.PHASE_ANNOUNCE:
            self._announcements(pkt)
            return False
        dropped = False
        if bridge["outcome"] == C.OUTCOME_FORWARD and rid != bridge["forward_to"]:
            dropped = True
        else:
            drop_reason = 0
            if bridge["deliver_by_multicast"] == 1:
                drop_reason = self._delivery(pkt, rid)
            length = sum(h.layout.size for h in (pkt.ethernet, pkt.ipv4, pkt.udp, pkt.omni) if h.valid)
            length += len(pkt.payload)
            if drop_reason != 0:
                self.counters["Egress.drops"].count(drop_reason, length)
                dropped = True
            else:
                self.counters["Egress.port_tx"].count(port, length)
        pkt.bridge.valid = False
        return dropped

    # ResultDelivery (control/delivery.p4); returns the drop reason.
    def _delivery(self, pkt: Packet, rid: int) -> int:
        destination = self.destinations.get((pkt.bridge.f["job_id"], rid))
        if destination is None:
            return C.DROP_NO_RESULT_DESTINATION
        eth, ipv4, udp = pkt.ethernet.f, pkt.ipv4.f, pkt.udp.f
        eth["src_addr"], eth["dst_addr"] = eth["dst_addr"], destination[0]
        ipv4["src_addr"], ipv4["dst_addr"] = ipv4["dst_addr"], destination[1]
        udp["src_port"], udp["dst_port"] = C.OMNI_UDP_PORT, destination[2]
        return 0

    # Announcements (control/announcements.p4) with WorkerAnnouncements (generated/worker_announcements.p4).
    def _announcements(self, pkt: Packet) -> None:
        omni, bridge = pkt.omni.f, pkt.bridge.f
        slot = bridge["global_slot"] & (C.TNA_SLOT_COUNT - 1)
        contrib = omni["msg_type"] == C.MSG_CONTRIB
        accept_block = omni["block_index"] if contrib else C.END_OF_TENSOR
        accept_next = omni["next_block"] if contrib else C.END_OF_TENSOR

        # Four running minima (chain c: workers c, c + 4, ...): each lane read into lane_<c> is folded into chain_<c>;
        # the sender's ALU returns its lane into announced_<c> instead (generated/worker_announcements.p4).
        chain = [C.END_OF_TENSOR] * 4
        lane = [C.END_OF_TENSOR] * 4
        announced = [0] * 4

        def read(value: int) -> tuple[int, int]:
            return value, value

        def reset(value: int) -> tuple[int, int]:
            return accept_block, accept_block

        def contribute(value: int) -> tuple[int, int]:
            return (accept_next if value == accept_block else value), value

        def start(value: int) -> tuple[int, int]:
            return accept_next, value

        for w in range(C.MAX_WORKERS):  # table worker_<w>_access
            register, c = self.registers[f"{WORKER_NEXT}{w}"], w % 4
            if bridge["worker_id"] == w:
                announced[c] = register.execute(slot, start if bridge["new_tensor"] == 1 else contribute)
            elif bridge["new_tensor"] == 1 and bridge["worker_count"] > w:
                lane[c] = register.execute(slot, reset)
            else:
                lane[c] = register.execute(slot, read)
            chain[c] = min(chain[c], lane[c])
        bridge["announced"] = announced[bridge["worker_id"] % 4]  # announced_in_chain_<worker_id % 4> (identity hash)
        lowest = min(min(chain[0], chain[1]), min(chain[2], chain[3]))

        if contrib and (bridge["new_tensor"] == 1 or bridge["announced"] == accept_block):
            bridge["accepted"], bridge["min_next"] = 1, min(lowest, accept_next)
        else:
            bridge["accepted"], bridge["min_next"] = 0, min(lowest, bridge["announced"])
        bridge["phase"] = C.PHASE_ROUND
