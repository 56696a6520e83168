"""The fuzzer: malformed and spoofed packets into a running job, each one accounted for by the switch's counters.

    omnireduce-bench fuzz                               # 10,000 packets (docs/reliability.md)
    omnireduce-bench fuzz --packets 500 --seed 3        # fewer, another sequence

Two jobs run on one switch (the in-process loopback testbed, omnireduce.testbed.inprocess): the target, job 0, and a
neighbour, job 1, each of W workers, all-reducing block-sparse float32 tensors over and over. Their inputs are run
once without the fuzzer first, and every result under fuzzing must be bit-identical to that reference run's (and
within the fixed-point bound of numpy's sum). Meanwhile a seeded generator builds hostile frames and injects each
one into the switch at the port it names, on the switch's packet thread, reading the drop and job counters just
before and just after it, with no other frame in between: so each frame's fate is read from the switch itself.

The kinds of frame (each a family of variants, chosen at random by the seed):
- malformed: truncated anywhere, UDP or IPv4 lengths that disagree, lane counts other than the type's, a wrong
  IPv4 checksum, IPv4 options, other ethertypes, other UDP ports, TTL 1, random bytes, jumbo frames;
- unknown-worker: well-formed packets from an unregistered address, from a registered address with another UDP
  port, from a worker's address on another worker's port, on a port with no worker;
- other-job: from a target worker with the neighbour's (or an unknown) job id, from a neighbour with the target's,
  slot numbers past the job's slot count (the neighbour's slots, as the target would have to name them);
- forged: from a registered target worker's own address, contributions of blocks it never announced (past the
  tensor's end, of the tensor in flight, older or newer ones), REQUESTs and REPAIRs naming itself or a worker
  the job does not have as the peer;
- replay: the agents' own earlier CONTRIBs, REQUESTs and REPAIRs (of rounds, sets and tensors long done or just
  done), sent again unchanged or with their set bits, exponent or lanes changed;
- result-type: RESULTs the switch emitted, sent back to it, and other message types (the old ACK, unknown ones).

Every frame must be counted: under a drop reason (ingress or egress `drops`), or as a replay to its sender or a
forward to a peer (a well-formed REQUEST or REPAIR from a registered address is protocol traffic: the switch
answers it as it would the worker; docs/reliability.md says why that is safe). None may enter a round
(`job_contributions`): a sender that forges a registered worker's contribution of its announced block is that
worker (the trust boundary), and the fuzzer does not send those. Exit status 0 when every frame was counted, none
entered a round, and every all-reduce was exact.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import struct
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from omnireduce.host import Timeouts
from omnireduce.host.wire import (
    DATA_FRAME_BYTES,
    ETHERNET_HEADER_BYTES,
    FRAME_OVERHEAD_BYTES,
    HEADER,
    Endpoint,
    OmniHeader,
    frame_prefix,
    ipv4_checksum,
    parse_mac,
)
from omnireduce.p4src import constants as C
from omnireduce.softswitch.faults import ImpairmentPlan
from omnireduce.testbed.inprocess import InProcessConfig, InProcessTestbed, counter_delta, read_device_counters
from omnireduce.testbed.inputs import InputSpec, block_count, make_inputs
from omnireduce.testbed.plan import WorkerPlace
from omnireduce.testbed.verify import check_result, results_agree

log = logging.getLogger("omnireduce.bench.fuzz")

KINDS = ("malformed", "unknown-worker", "other-job", "forged", "replay", "result-type")
IPV4_OFFSET = ETHERNET_HEADER_BYTES
UDP_OFFSET = ETHERNET_HEADER_BYTES + C.IPV4_HEADER_BYTES
OMNI_OFFSET = FRAME_OVERHEAD_BYTES
#: Frames handed to the packet thread per call (each still audited alone).
CHUNK = 25
#: Captured frames kept per message type for replays.
CAPTURE_DEPTH = 4000

DROP = "drop"
REPLAY = "replayed to its sender"
FORWARD = "forwarded to a peer"
ACCEPTED = "ACCEPTED INTO A ROUND"
UNCOUNTED = "UNCOUNTED"


@dataclass(frozen=True, slots=True)
class FuzzConfig:
    packets: int = 10_000
    seed: int = 0
    workers: int = 3
    size: int = 4096
    density: float = 0.3
    slots: int = 8
    #: distinct input sets the jobs cycle through (each checked against its reference run)
    inputs: int = 8
    #: fuzzed packets per second at most (spreads the campaign over many all-reduces)
    rate: float = 250.0
    #: impairments of the jobs' own links while the fuzzer runs, so that REQUESTs, replays and REPAIRs are in flight
    #: (and can be replayed); the reference runs have none
    impairments: tuple[str, ...] = ("drop=2%",)
    time_limit_s: float = 600.0
    timeouts: Timeouts | None = None


@dataclass(frozen=True, slots=True)
class FuzzFrame:
    kind: str
    variant: str
    port: int
    frame: bytes


@dataclass(slots=True)
class FuzzReport:
    config: FuzzConfig
    packets: int = 0
    dispositions: Counter = field(default_factory=Counter)  # (kind, variant, disposition) -> frames
    uncounted: list[str] = field(default_factory=list)  # descriptions of frames no counter saw
    accepted: list[str] = field(default_factory=list)
    allreduces: int = 0
    exact: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    load_before: tuple[float, ...] = ()
    load_after: tuple[float, ...] = ()
    agent_stats: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (not self.uncounted and not self.accepted and not self.failures and self.allreduces > 0
                and self.exact == self.allreduces)

    def by_disposition(self) -> Counter:
        totals: Counter = Counter()
        for (_kind, _variant, disposition), count in self.dispositions.items():
            totals[disposition] += count
        return totals

    def by_kind(self) -> dict[str, Counter]:
        kinds: dict[str, Counter] = {}
        for (kind, _variant, disposition), count in self.dispositions.items():
            kinds.setdefault(kind, Counter())[disposition] += count
        return kinds


def disposition_of(delta: dict[str, int], job_ids: Sequence[int]) -> str:
    """What the counters say one frame became (the delta of its audit)."""
    for job_id in job_ids:
        if delta.get(f"job{job_id}:contributions") or delta.get(f"job{job_id}:results"):
            return ACCEPTED
    drops = [name for name in delta if name.startswith("ingress:")]
    if drops:
        return f"{DROP} {drops[0].split(':', 1)[1]}"
    for job_id in job_ids:
        if delta.get(f"job{job_id}:replays"):
            return REPLAY
        if delta.get(f"job{job_id}:forwards"):
            egress = [name for name in delta if name.startswith("egress:")]
            return FORWARD + (f" (then dropped at egress: {egress[0].split(':', 1)[1]})" if egress else "")
    egress = [name for name in delta if name.startswith("egress:")]
    if egress:
        return f"{DROP} {egress[0].split(':', 1)[1]} (egress)"
    return UNCOUNTED


class Recorder:
    """Sits in front of the device and keeps the agents' frames (by message type) and the switch's RESULTs, for
    replays; frames the fuzzer injects are not kept (`muted`)."""

    def __init__(self, device) -> None:
        self.device = device
        self.muted = False
        self.sent: dict[int, deque] = {kind: deque(maxlen=CAPTURE_DEPTH) for kind in (C.MSG_CONTRIB, C.MSG_REQUEST,
                                                                                       C.MSG_REPAIR)}
        self.results: deque = deque(maxlen=CAPTURE_DEPTH)
        self.lock = threading.Lock()

    def process_batch(self, frames):
        outputs = self.device.process_batch(frames)
        if not self.muted:
            with self.lock:
                for port, frame in frames:
                    if len(frame) >= OMNI_OFFSET + C.OMNI_HEADER_BYTES and frame[OMNI_OFFSET] in self.sent:
                        self.sent[frame[OMNI_OFFSET]].append((port, bytes(frame)))
                for port, frame in outputs:
                    if len(frame) == DATA_FRAME_BYTES and frame[OMNI_OFFSET] == C.MSG_RESULT:
                        self.results.append((port, bytes(frame)))
        return outputs

    def process_packet(self, port, frame):
        return self.process_batch([(port, frame)])

    def sample(self, rng: random.Random, kind: int) -> tuple[int, bytes] | None:
        with self.lock:
            pool = self.sent[kind] if kind != C.MSG_RESULT else self.results
            return pool[rng.randrange(len(pool))] if pool else None

    def __getattr__(self, name: str):
        return getattr(self.device, name)


def _fix_ipv4_checksum(frame: bytearray) -> None:
    frame[IPV4_OFFSET + 10:IPV4_OFFSET + 12] = b"\0\0"
    checksum = ipv4_checksum(memoryview(frame)[IPV4_OFFSET:IPV4_OFFSET + C.IPV4_HEADER_BYTES])
    struct.pack_into("!H", frame, IPV4_OFFSET + 10, checksum)


class FrameFactory:
    """Builds the hostile frames of one fuzzing campaign from a seeded generator and what the run looks like."""

    def __init__(self, rng: random.Random, bed: InProcessTestbed, recorder: Recorder, config: FuzzConfig) -> None:
        self.rng = rng
        self.bed = bed
        self.recorder = recorder
        self.config = config
        self.target = bed.workers_of(0)
        self.neighbour = bed.workers_of(1)
        self.switch = Endpoint.of(bed.plan.aggregator_mac, str(bed.plan.aggregator_ip), C.OMNI_UDP_PORT)
        self.blocks = block_count(config.size)
        self.variants: dict[str, list[Callable[[], FuzzFrame]]] = {
            "malformed": [self.truncated, self.bad_udp_length, self.bad_ipv4_length, self.bad_lane_count,
                          self.bad_checksum, self.ipv4_options, self.other_ethertype, self.other_udp_port,
                          self.ttl_one, self.random_bytes, self.jumbo],
            "unknown-worker": [self.unregistered_address, self.other_udp_port_of_worker, self.worker_on_wrong_port,
                               self.port_without_worker],
            "other-job": [self.neighbour_job_id, self.unknown_job_id, self.target_job_from_neighbour,
                          self.neighbour_slots],
            "forged": [self.unannounced_contribution, self.forged_tensor_contribution, self.self_peer,
                       self.missing_peer],
            "replay": [self.replay_unchanged, self.replay_changed],
            "result-type": [self.result_sent_back, self.other_message_type],
        }

    # --- helpers -------------------------------------------------------------------------------------------------

    def endpoint(self, worker: WorkerPlace) -> Endpoint:
        return Endpoint.of(worker.mac, str(worker.ip), worker.udp_port)

    def tensor_now(self) -> int:
        """A tensor id the job has in flight (from the agents' own counters)."""
        agent = self.bed.agents.get(self.target[0])
        base = agent.tensor_id if agent is not None else 0
        return (base - self.rng.choice((1, 2, 3))) % (1 << 16)

    def packet(self, source: Endpoint, header: OmniHeader, lanes: bool | None = None) -> bytearray:
        with_lanes = header.msg_type != C.MSG_REQUEST if lanes is None else lanes
        payload = header.pack() + (np.frombuffer(self.rng.randbytes(C.LANES * 4), ">i4").tobytes()
                                   if with_lanes else b"")
        return bytearray(frame_prefix(source, self.switch, len(payload)) + payload)

    def header(self, msg_type: int, job_id: int = 0, **fields) -> OmniHeader:
        rng = self.rng
        slot = fields.pop("slot", rng.randrange(self.config.slots))
        values = dict(msg_type=msg_type, flags=rng.randrange(C.SETS), job_id=job_id, tensor_id=self.tensor_now(),
                      slot=slot, block_index=slot + self.config.slots * rng.randrange(self.blocks),
                      next_block=rng.choice((C.END_OF_TENSOR, rng.randrange(1 << 32))),
                      exponent=rng.randrange(256), lane_count=C.LANES if msg_type != C.MSG_REQUEST else 0,
                      peer=0 if msg_type == C.MSG_CONTRIB else rng.randrange(self.config.workers))
        values.update(fields)
        return OmniHeader(**values)

    def any_message(self) -> int:
        return self.rng.choice((C.MSG_CONTRIB, C.MSG_REQUEST, C.MSG_REPAIR))

    def valid_from(self, worker: WorkerPlace, **fields) -> bytearray:
        return self.packet(self.endpoint(worker), self.header(self.any_message(), worker.job_id, **fields))

    def frame(self, kind: str, variant: str, port: int, data: bytes | bytearray) -> FuzzFrame:
        return FuzzFrame(kind, variant, port, bytes(data))

    def anyone(self) -> WorkerPlace:
        return self.rng.choice(self.target)

    # --- malformed -------------------------------------------------------------------------------------------------

    def truncated(self) -> FuzzFrame:
        worker = self.anyone()
        data = self.valid_from(worker)
        return self.frame("malformed", "truncated", worker.port, data[:self.rng.randrange(len(data))])

    def bad_udp_length(self) -> FuzzFrame:
        worker = self.anyone()
        data = self.valid_from(worker)
        right = struct.unpack_from("!H", data, UDP_OFFSET + 4)[0]
        wrong = self.rng.choice([value for value in (0, 7, 8, right - 4, right + 4, 0xFFFF) if value != right])
        struct.pack_into("!H", data, UDP_OFFSET + 4, wrong)
        return self.frame("malformed", "UDP length", worker.port, data)

    def bad_ipv4_length(self) -> FuzzFrame:
        worker = self.anyone()
        data = self.valid_from(worker)
        right = struct.unpack_from("!H", data, IPV4_OFFSET + 2)[0]
        struct.pack_into("!H", data, IPV4_OFFSET + 2, self.rng.choice((right - 1, right + 1, 20, 0xFFFF)))
        _fix_ipv4_checksum(data)
        return self.frame("malformed", "IPv4 length", worker.port, data)

    def bad_lane_count(self) -> FuzzFrame:
        """A lane count the type does not have, with lengths (and bytes) that agree with it."""
        worker = self.anyone()
        msg_type = self.any_message()
        wrong = self.rng.choice([count for count in (0, 1, 16, 31, 33, 255) if count != (
            0 if msg_type == C.MSG_REQUEST else C.LANES)] + ([C.LANES] if msg_type == C.MSG_REQUEST else []))
        header = self.header(msg_type, lane_count=wrong)
        payload = header.pack() + self.rng.randbytes(4 * wrong)
        data = frame_prefix(self.endpoint(worker), self.switch, len(payload)) + payload
        return self.frame("malformed", "lane count", worker.port, data)

    def bad_checksum(self) -> FuzzFrame:
        worker = self.anyone()
        data = self.valid_from(worker)
        data[IPV4_OFFSET + 10] ^= 1 + self.rng.randrange(255)
        return self.frame("malformed", "IPv4 checksum", worker.port, data)

    def ipv4_options(self) -> FuzzFrame:
        """IPv4 with 4 bytes of options, its checksum over the whole header as RFC 791 has it, or over the first
        20 bytes only (what the P4 program checks: docs/reliability.md)."""
        worker = self.anyone()
        data = self.valid_from(worker)
        options = b"\x01\x01\x01\x00"  # NOP NOP NOP EOL
        data[IPV4_OFFSET] = 0x46
        data[IPV4_OFFSET + C.IPV4_HEADER_BYTES:IPV4_OFFSET + C.IPV4_HEADER_BYTES] = options
        struct.pack_into("!H", data, IPV4_OFFSET + 2, struct.unpack_from("!H", data, IPV4_OFFSET + 2)[0] + 4)
        data[IPV4_OFFSET + 10:IPV4_OFFSET + 12] = b"\0\0"
        rfc = self.rng.random() < 0.5
        words = struct.unpack_from("!12H" if rfc else "!10H", data, IPV4_OFFSET)
        total = sum(words)
        total = (total & 0xFFFF) + (total >> 16)
        total = (total & 0xFFFF) + (total >> 16)
        struct.pack_into("!H", data, IPV4_OFFSET + 10, ~total & 0xFFFF)
        return self.frame("malformed", "IPv4 options, RFC 791 checksum" if rfc else
                          "IPv4 options, checksum of the first 20 bytes", worker.port, data)

    def other_ethertype(self) -> FuzzFrame:
        worker = self.anyone()
        data = self.valid_from(worker)
        data[12:14] = struct.pack("!H", self.rng.choice((0x0806, 0x86DD, 0x8100, 0x88CC, self.rng.randrange(1 << 16))))
        if data[12:14] == b"\x08\x00":
            data[12:14] = b"\x08\x06"
        return self.frame("malformed", "ethertype", worker.port, data)

    def other_udp_port(self) -> FuzzFrame:
        worker = self.anyone()
        data = self.valid_from(worker)
        port = self.rng.randrange(1 << 16)
        struct.pack_into("!H", data, UDP_OFFSET + 2, port if port != C.OMNI_UDP_PORT else port + 1)
        return self.frame("malformed", "UDP port", worker.port, data)

    def ttl_one(self) -> FuzzFrame:
        worker = self.anyone()
        data = self.valid_from(worker)
        struct.pack_into("!H", data, UDP_OFFSET + 2, 9)  # plain traffic, so that the TTL matters
        data[IPV4_OFFSET + 8] = self.rng.choice((0, 1))
        _fix_ipv4_checksum(data)
        return self.frame("malformed", "TTL", worker.port, data)

    def random_bytes(self) -> FuzzFrame:
        worker = self.anyone()
        return self.frame("malformed", "random bytes", worker.port, self.rng.randbytes(self.rng.randrange(0, 300)))

    def jumbo(self) -> FuzzFrame:
        """A 9000-byte frame whose lengths claim all of it."""
        worker = self.anyone()
        data = self.valid_from(worker)
        data += self.rng.randbytes(9000 - len(data))
        struct.pack_into("!H", data, UDP_OFFSET + 4, len(data) - UDP_OFFSET)
        struct.pack_into("!H", data, IPV4_OFFSET + 2, len(data) - IPV4_OFFSET)
        _fix_ipv4_checksum(data)
        return self.frame("malformed", "jumbo", worker.port, data)

    # --- unknown workers -------------------------------------------------------------------------------------------

    def unregistered_address(self) -> FuzzFrame:
        worker = self.anyone()
        source = Endpoint.of(worker.mac, f"10.0.0.{self.rng.randrange(100, 250)}", worker.udp_port)
        return self.frame("unknown-worker", "unregistered address", worker.port,
                          self.packet(source, self.header(self.any_message())))

    def other_udp_port_of_worker(self) -> FuzzFrame:
        worker = self.anyone()
        source = Endpoint.of(worker.mac, str(worker.ip), worker.udp_port + 1 + self.rng.randrange(100))
        return self.frame("unknown-worker", "registered address, other UDP port", worker.port,
                          self.packet(source, self.header(self.any_message())))

    def worker_on_wrong_port(self) -> FuzzFrame:
        worker, other = self.rng.sample(self.target + self.neighbour, 2)
        return self.frame("unknown-worker", "worker's address on another worker's port", other.port,
                          self.valid_from(worker))

    def port_without_worker(self) -> FuzzFrame:
        worker = self.anyone()
        used = {place.port for place in self.bed.plan.workers}
        port = self.rng.choice([port for port in (0, 60, 200, 510) if port not in used])
        return self.frame("unknown-worker", "port with no worker", port, self.valid_from(worker))

    # --- other jobs ----------------------------------------------------------------------------------------------

    def neighbour_job_id(self) -> FuzzFrame:
        worker = self.anyone()
        return self.frame("other-job", "target worker, neighbour's job id", worker.port,
                          self.packet(self.endpoint(worker), self.header(self.any_message(), job_id=1)))

    def unknown_job_id(self) -> FuzzFrame:
        worker = self.anyone()
        job_id = self.rng.choice((2, 63, 64, 0xFFFF))
        return self.frame("other-job", "target worker, unknown job id", worker.port,
                          self.packet(self.endpoint(worker), self.header(self.any_message(), job_id=job_id)))

    def target_job_from_neighbour(self) -> FuzzFrame:
        worker = self.rng.choice(self.neighbour)
        return self.frame("other-job", "neighbour worker, target's job id", worker.port,
                          self.packet(self.endpoint(worker), self.header(self.any_message(), job_id=0)))

    def neighbour_slots(self) -> FuzzFrame:
        """The slot numbers the neighbour's slots would have relative to the target's base (and beyond)."""
        worker = self.anyone()
        slot = self.config.slots + self.rng.choice((0, self.rng.randrange(self.config.slots), 100, 0xFFFF - 8))
        slot = min(slot, 0xFFFF)
        return self.frame("other-job", "slot past the job's slot count", worker.port,
                          self.packet(self.endpoint(worker), self.header(self.any_message(), slot=slot)))

    # --- forged, from a registered worker's own address ------------------------------------------------------------

    def unannounced_contribution(self) -> FuzzFrame:
        """A block past the tensor's end in the right column, of the tensor in flight: no worker announces it."""
        worker = self.anyone()
        slot = self.rng.randrange(self.config.slots)
        rows = -(-max(self.blocks, self.config.slots) // self.config.slots)
        block = slot + self.config.slots * (rows + self.rng.randrange(1000))
        header = self.header(C.MSG_CONTRIB, slot=slot, block_index=block)
        return self.frame("forged", "unannounced block", worker.port, self.packet(self.endpoint(worker), header))

    def forged_tensor_contribution(self) -> FuzzFrame:
        """A tensor id other than the one in flight (older or newer), on a block that is not its column's first."""
        worker = self.anyone()
        slot = self.rng.randrange(self.config.slots)
        tensor = (self.tensor_now() + self.rng.choice((-7, -4, 3, 5, 100, 1 << 14))) % (1 << 16)
        block = slot + self.config.slots * (1 + self.rng.randrange(self.blocks))
        header = self.header(C.MSG_CONTRIB, slot=slot, block_index=block, tensor_id=tensor)
        return self.frame("forged", "other tensor id, not a first block", worker.port,
                          self.packet(self.endpoint(worker), header))

    def self_peer(self) -> FuzzFrame:
        worker = self.anyone()
        msg_type = self.rng.choice((C.MSG_REQUEST, C.MSG_REPAIR))
        header = self.header(msg_type, peer=worker.worker_id)
        return self.frame("forged", f"{C.MSG_TYPES[msg_type]} naming its sender as peer", worker.port,
                          self.packet(self.endpoint(worker), header))

    def missing_peer(self) -> FuzzFrame:
        worker = self.anyone()
        msg_type = self.rng.choice((C.MSG_REQUEST, C.MSG_REPAIR))
        header = self.header(msg_type, peer=self.rng.choice((self.config.workers, C.MAX_WORKERS - 1, 255)))
        return self.frame("forged", f"{C.MSG_TYPES[msg_type]} naming a worker the job lacks", worker.port,
                          self.packet(self.endpoint(worker), header))

    # --- replays ---------------------------------------------------------------------------------------------------

    def captured(self) -> tuple[int, bytes] | None:
        kinds = [C.MSG_CONTRIB, C.MSG_REQUEST, C.MSG_REPAIR]
        self.rng.shuffle(kinds)
        for kind in kinds:
            item = self.recorder.sample(self.rng, kind)
            if item is not None:
                return item
        return None

    def replay_unchanged(self) -> FuzzFrame:
        item = self.captured()
        if item is None:
            return self.unannounced_contribution()
        port, data = item
        return self.frame("replay", f"{C.MSG_TYPES.get(data[OMNI_OFFSET], '?')} unchanged", port, data)

    def replay_changed(self) -> FuzzFrame:
        """A captured CONTRIB or REQUEST with its set bits, exponent or lanes changed (the same round, other
        contents). Not a REPAIR: a REPAIR with other contents for a round its addressee still awaits is a forged
        answer, which a sender with a registered address can give (the trust boundary)."""
        item = None
        for kind in self.rng.sample([C.MSG_CONTRIB, C.MSG_REQUEST], 2):
            item = item or self.recorder.sample(self.rng, kind)
        if item is None:
            return self.unannounced_contribution()
        port, data = item
        data = bytearray(data)
        change = self.rng.choice(("set", "exponent", "lanes") if len(data) == DATA_FRAME_BYTES else ("set", "exponent"))
        if change == "set":
            data[OMNI_OFFSET + 1] = (data[OMNI_OFFSET + 1] + 1 + self.rng.randrange(C.SETS - 1)) % C.SETS
        elif change == "exponent":
            data[OMNI_OFFSET + 16] = self.rng.randrange(256)
        else:
            data[OMNI_OFFSET + C.OMNI_HEADER_BYTES:] = self.rng.randbytes(C.LANES * 4)
        return self.frame("replay", f"{C.MSG_TYPES.get(data[OMNI_OFFSET], '?')} with other {change}", port, data)

    # --- result-type -----------------------------------------------------------------------------------------------

    def result_sent_back(self) -> FuzzFrame:
        """A RESULT the switch sent a worker, sent back to the switch from that worker."""
        item = self.recorder.sample(self.rng, C.MSG_RESULT)
        worker = self.anyone()
        if item is None:
            header = self.header(C.MSG_RESULT)
            return self.frame("result-type", "RESULT", worker.port, self.packet(self.endpoint(worker), header))
        port, data = item
        data = bytearray(data)
        data[0:6], data[6:12] = data[6:12], data[0:6]
        data[IPV4_OFFSET + 12:IPV4_OFFSET + 16], data[IPV4_OFFSET + 16:IPV4_OFFSET + 20] = (
            data[IPV4_OFFSET + 16:IPV4_OFFSET + 20], data[IPV4_OFFSET + 12:IPV4_OFFSET + 16])
        data[UDP_OFFSET:UDP_OFFSET + 2], data[UDP_OFFSET + 2:UDP_OFFSET + 4] = (
            data[UDP_OFFSET + 2:UDP_OFFSET + 4], data[UDP_OFFSET:UDP_OFFSET + 2])
        _fix_ipv4_checksum(data)
        return self.frame("result-type", "RESULT sent back", port, data)

    def other_message_type(self) -> FuzzFrame:
        worker = self.anyone()
        msg_type = self.rng.choice([value for value in (0, 2, 3, 6, 7, 128, 255)])
        header = self.header(msg_type, lane_count=self.rng.choice((0, C.LANES)))
        return self.frame("result-type", f"type {msg_type}", worker.port,
                          self.packet(self.endpoint(worker), header, lanes=header.lane_count == C.LANES))

    # --- the campaign ----------------------------------------------------------------------------------------------

    def next(self) -> FuzzFrame:
        kind = self.rng.choice(KINDS)
        return self.rng.choice(self.variants[kind])()


def describe(item: FuzzFrame) -> str:
    head = item.frame[OMNI_OFFSET:OMNI_OFFSET + C.OMNI_HEADER_BYTES]
    fields = OmniHeader.unpack(head) if len(head) == C.OMNI_HEADER_BYTES else None
    return (f"{item.kind}/{item.variant} on port {item.port}, {len(item.frame)} bytes"
            + (f", {fields}" if fields is not None else "") + f", sha256 {hashlib.sha256(item.frame).hexdigest()[:12]}")


def run_fuzzer(config: FuzzConfig, progress: Callable[[str], None] | None = None) -> FuzzReport:
    """Fuzz a running pair of jobs; see the module doc."""
    report = FuzzReport(config, load_before=os.getloadavg())
    started = time.monotonic()
    bed_config = InProcessConfig(workers=config.workers, slots=config.slots, jobs=2,
                                 timeouts=config.timeouts or Timeouts(), impairments=ImpairmentPlan())
    job_ids = (0, 1)
    with InProcessTestbed(bed_config) as bed:
        recorder = Recorder(bed.impaired.device)
        bed.impaired.device = recorder
        inputs = [{job: make_inputs(InputSpec(config.workers, config.size, config.density, "float32",
                                              seed=config.seed * 1000 + index, job_index=job))
                   for job in job_ids} for index in range(config.inputs)]
        references = [reference_digests(bed, tensors) for tensors in inputs]
        bed.impair(ImpairmentPlan.parse(config.impairments), config.seed)
        stop = threading.Event()
        trainer = threading.Thread(target=train, args=(bed, inputs, references, report, stop), name="trainer")
        trainer.start()
        try:
            factory = FrameFactory(random.Random(config.seed), bed, recorder, config)
            deadline = started + config.time_limit_s
            fuzz_started = time.monotonic()
            while report.packets < config.packets and time.monotonic() < deadline and trainer.is_alive():
                # Pace: the campaign spreads over many all-reduces rather than swamping one.
                due = fuzz_started + report.packets / config.rate
                if due > time.monotonic():
                    stop.wait(due - time.monotonic())
                chunk = [factory.next() for _ in range(min(CHUNK, config.packets - report.packets))]
                verdicts = bed.loop.submit(lambda chunk=chunk: audit(bed, recorder, chunk, job_ids)).result(60)
                for item, disposition in zip(chunk, verdicts):
                    report.packets += 1
                    report.dispositions[item.kind, item.variant, disposition] += 1
                    if disposition == UNCOUNTED:
                        report.uncounted.append(describe(item))
                    elif disposition == ACCEPTED:
                        report.accepted.append(describe(item))
                if progress is not None:
                    progress(f"{report.packets}/{config.packets} packets, {report.allreduces} all-reduces")
        finally:
            stop.set()
            trainer.join()
        for agent in bed.agents.values():
            for name, value in agent.total_stats.as_dict().items():
                if isinstance(value, int) and name in ("ignored", "duplicates", "repairs_sent", "repairs_unknown",
                                                       "retransmissions", "requests_sent"):
                    report.agent_stats[name] = report.agent_stats.get(name, 0) + value
    report.seconds = time.monotonic() - started
    report.load_after = os.getloadavg()
    return report


def reference_digests(bed: InProcessTestbed, tensors: dict[int, list[np.ndarray]]) -> dict[int, str]:
    results = bed.allreduce(tensors)
    digests = {}
    for job, job_results in results.items():
        failure = judge(job_results, tensors[job], None)
        if failure is not None:
            raise RuntimeError(f"the reference run of job {job} failed: {failure}")
        digests[job] = hashlib.sha256(job_results[0].tobytes()).hexdigest()
    return digests


def judge(results, inputs, reference: str | None) -> str | None:
    failed = [(worker, result) for worker, result in enumerate(results) if not isinstance(result, np.ndarray)]
    if failed:
        worker, error = failed[0]
        return f"worker {worker}: {type(error).__name__}: {error}"
    disagreement = results_agree(results)
    if disagreement:
        return disagreement
    if reference is not None and hashlib.sha256(results[0].tobytes()).hexdigest() != reference:
        return "result differs from the reference run's on the same inputs"
    verdict = check_result(results[0], inputs)
    return None if verdict.ok else verdict.message


def train(bed: InProcessTestbed, inputs, references, report: FuzzReport, stop: threading.Event) -> None:
    """All-reduce both jobs over and over until `stop`, checking each result against its reference."""
    index = 0
    while not stop.is_set():
        tensors = inputs[index % len(inputs)]
        results = bed.allreduce(tensors)
        for job, job_results in results.items():
            report.allreduces += 1
            failure = judge(job_results, tensors[job], references[index % len(inputs)][job])
            if failure is None:
                report.exact += 1
            else:
                report.failures.append(f"all-reduce {index} of job {job}: {failure}")
                log.warning("all-reduce %d of job %d: %s", index, job, failure)
                bed.wait_idle()
                bed.reset_job(job)
        index += 1


def audit(bed: InProcessTestbed, recorder: Recorder, chunk: Sequence[FuzzFrame], job_ids) -> list[str]:
    """On the packet thread: each frame into the pipeline at its port (past the links' impairments: the fuzzer sits
    at the switch's port), with the counters read just before and after it; what the pipeline emits goes out of
    the switch's ports as anything else it emits."""
    verdicts = []
    device = bed.device
    for item in chunk:
        before = read_device_counters(device, job_ids)
        recorder.muted = True
        try:
            outputs = recorder.process_batch([(item.port, item.frame)])
        finally:
            recorder.muted = False
        verdicts.append(disposition_of(counter_delta(read_device_counters(device, job_ids), before), job_ids))
        bed.loop.transmit(outputs)
    return verdicts


# --- reporting -----------------------------------------------------------------------------------------------------

def format_report(report: FuzzReport, markdown: bool = False) -> str:
    config = report.config
    lines = [f"{report.packets:,} fuzzed packets (seed {config.seed}) into 2 running jobs of {config.workers} "
             f"workers ({config.size:,} float32 values at density {config.density:g}, {config.slots} slots) in "
             f"{report.seconds:.0f} s, load average {report.load_before[0]:.1f} before, {report.load_after[0]:.1f} "
             f"after",
             f"all-reduces during the campaign: {report.allreduces} ({report.exact} exact, bit-identical to the "
             f"reference run)",
             f"counted: {report.packets - len(report.uncounted):,} of {report.packets:,}; uncounted: "
             f"{len(report.uncounted)}; entered a round: {len(report.accepted)}"]
    totals = report.by_disposition()
    kinds = report.by_kind()
    dispositions = sorted(totals, key=lambda name: -totals[name])
    if markdown:
        lines += ["", "| kind | " + " | ".join(dispositions) + " | total |",
                  "|---|" + "---|" * (len(dispositions) + 1)]
        for kind in KINDS:
            counts = kinds.get(kind, Counter())
            lines.append(f"| {kind} | " + " | ".join(f"{counts.get(name, 0):,}" for name in dispositions)
                         + f" | {sum(counts.values()):,} |")
        lines.append("| all | " + " | ".join(f"{totals[name]:,}" for name in dispositions)
                     + f" | {report.packets:,} |")
    else:
        lines.append("")
        lines.append("by disposition: " + ", ".join(f"{name} {totals[name]:,}" for name in dispositions))
        for kind in KINDS:
            counts = kinds.get(kind, Counter())
            lines.append(f"  {kind:15s} {sum(counts.values()):6,}: "
                         + ", ".join(f"{name} {count:,}" for name, count in counts.most_common()))
    lines.append("")
    lines.append("agents: " + ", ".join(f"{name} {value:,}" for name, value in sorted(report.agent_stats.items())))
    for title, items in (("uncounted", report.uncounted), ("entered a round", report.accepted),
                         ("all-reduces not exact", report.failures)):
        if items:
            lines.append(f"{title} ({len(items)}):")
            lines += [f"  {item}" for item in items[:20]]
    lines.append("RESULT: " + ("every packet counted, none entered a round, every all-reduce exact" if report.ok
                               else "FAILED"))
    return "\n".join(lines)


def variant_table(report: FuzzReport) -> str:
    """Markdown: every (kind, variant) with its dispositions."""
    rows: dict[tuple[str, str], Counter] = {}
    for (kind, variant, disposition), count in report.dispositions.items():
        rows.setdefault((kind, variant), Counter())[disposition] += count
    lines = ["| kind | variant | frames | counted as |", "|---|---|---|---|"]
    for (kind, variant), counts in sorted(rows.items(), key=lambda item: (KINDS.index(item[0][0]), item[0][1])):
        lines.append(f"| {kind} | {variant} | {sum(counts.values()):,} | "
                     + ", ".join(f"{name} {count:,}" for name, count in counts.most_common()) + " |")
    return "\n".join(lines)


def report_to_json(report: FuzzReport) -> dict:
    config = asdict(report.config)
    if report.config.timeouts is not None:
        config["timeouts"] = asdict(report.config.timeouts)
    return {"config": config, "ok": report.ok, "packets": report.packets,
            "counted": report.packets - len(report.uncounted), "uncounted": report.uncounted,
            "entered_a_round": report.accepted, "allreduces": report.allreduces, "exact": report.exact,
            "failures": report.failures, "seconds": round(report.seconds, 1), "load_before": report.load_before,
            "load_after": report.load_after, "agents": report.agent_stats,
            "by_disposition": dict(report.by_disposition()),
            "frames": [{"kind": kind, "variant": variant, "disposition": disposition, "count": count}
                       for (kind, variant, disposition), count in sorted(report.dispositions.items())]}
