"""Configuration of an all-reduce agent: one frozen dataclass per concern, validated on construction."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from omnireduce.p4src import constants as C

from .wire import Endpoint


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Time limits, in seconds.

    retransmit_*: per slot, a CONTRIB is sent again after the measured round trip plus its variation, at least
    `retransmit_initial`, then after `backoff` times as long each time, up to `retransmit_max`; a worker waiting
    for a round it did not contribute to sends its first REQUEST after three times that. Before any round trip has
    been measured (the agent's first data rounds) the timeout is `retransmit_first`: the first round of a tensor
    waits for every worker's whole first burst, which a guess from nothing would cut short (RFC 6298 starts at
    1 s for the same reason); it is capped at `retransmit_max` like every timeout. `request_fallback`: a worker
    waiting for a round it did not contribute to detects a lost result from the gap when the column's next result
    arrives; its own REQUEST waits at least this long (for the two losses that leave no gap). 0.08 s: a round
    takes milliseconds, and the lost results that leave no gap set the time under loss (1 s cost a 1% loss 16x
    the loss-free time; 0.25 s, 8-19x; 0.08 s, 5-11x on 4M values and a third less in the fault suite's means,
    A/B in one session), with no REQUEST on a loss-free path up to 16 workers on 2 cores (2 at 32 workers,
    where 33 processes share them and the measured round trip's three timeouts set the wait rather than this
    floor; docs/reliability.md).
    join: the scale round (first exchange of every all-reduce) must complete within it: a worker that never shows
    up, or a switch that ignores us, fails here. stall: in the middle of a tensor, no result for this long is an
    error; it leaves room for several recoveries at `retransmit_max`, since under loss the timers sit there and a
    worker may wait for another's recovery (10 s, two attempts, failed 2 of 81 all-reduces at 5% loss:
    docs/reliability.md). deadline: limit for one whole all-reduce (None: no limit beyond join and stall).
    """

    retransmit_initial: float = 0.02
    retransmit_first: float = 0.25
    request_fallback: float = 0.08
    backoff: float = 2.0
    retransmit_max: float = 4.0
    join: float = 30.0
    stall: float = 30.0
    deadline: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.retransmit_initial <= self.retransmit_max:
            raise ValueError("need 0 < retransmit_initial <= retransmit_max")
        if not self.retransmit_first > 0 or not self.request_fallback > 0:
            raise ValueError("retransmit_first and request_fallback must be positive")
        if self.backoff < 1:
            raise ValueError("backoff factor must be >= 1")
        if self.join <= 0 or self.stall <= 0 or (self.deadline is not None and self.deadline <= 0):
            raise ValueError("join, stall and deadline must be positive")


@dataclass(frozen=True, slots=True)
class Pacing:
    """Limits on the first (dense) round, whose S CONTRIBs would otherwise leave back to back.

    After it, the window of S in-flight packets (one outstanding round per slot) paces the worker by itself.
    max_burst: at most this many first-round CONTRIBs awaiting their first result. pps: at most this many
    first-round CONTRIBs per second.
    """

    max_burst: int | None = None
    pps: float | None = None

    def __post_init__(self) -> None:
        if self.max_burst is not None and self.max_burst < 1:
            raise ValueError("max_burst must be at least 1")
        if self.pps is not None and self.pps <= 0:
            raise ValueError("pps must be positive")


class TransportKind(enum.Enum):
    """KERNEL_UDP: a plain UDP socket (the kernel builds Ethernet/IPv4/UDP; Mininet hosts).
    FRAME: whole Ethernet frames carried in UDP datagrams to a softswitch port on loopback.
    SHM: the same frames through a softswitch shared-memory port (a ring file the switch made)."""

    KERNEL_UDP = "udp"
    FRAME = "frame"
    SHM = "shm"


@dataclass(frozen=True, slots=True)
class FrameLink:
    """Where a FRAME or SHM transport sends its frames, and the addresses written inside them.

    bind: the local UDP socket (loopback) and peer: the softswitch port's UDP endpoint (FRAME); ring: the
    softswitch port's ring file (SHM); worker: this worker's MAC, IPv4 address and UDP port inside the frames (what
    the controller registered); switch_mac: destination MAC of frames to the aggregator.
    """

    bind: tuple[str, int] | None
    peer: tuple[str, int] | None
    worker: Endpoint
    switch_mac: bytes
    ring: Path | None = None

    def __post_init__(self) -> None:
        if len(self.switch_mac) != 6:
            raise ValueError("switch_mac must be 6 bytes")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """One worker of one job.

    switch_ip/switch_port: the aggregator's address (destination of CONTRIB/ACK/REQUEST). bind: the worker's own
    UDP address for the kernel transport (port OMNI_UDP_PORT by default; the switch knows workers by address and
    port). slots: the job's slot count S (blocks in flight); lanes must equal the P4 program's LANES.
    zero_threshold: blocks whose largest magnitude is at or below it are not sent (their values are dropped from
    the sum); None sends every block with a non-zero value. dense: send every block (SwitchML-style baseline).
    lookahead: send every k-th row of every column even when zero, so no announced next is more than k*S blocks
    ahead. first_tensor_id: tensor id of the first all-reduce (agents of a job must agree; 0 after a job install).
    """

    switch_ip: IPv4Address
    job_id: int
    worker_id: int
    workers: int
    slots: int
    switch_port: int = C.OMNI_UDP_PORT
    lanes: int = C.LANES
    bind: tuple[str, int] = ("0.0.0.0", C.OMNI_UDP_PORT)
    transport: TransportKind = TransportKind.KERNEL_UDP
    frame_link: FrameLink | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    pacing: Pacing = field(default_factory=Pacing)
    zero_threshold: float | None = None
    dense: bool = False
    lookahead: int | None = None
    first_tensor_id: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.switch_ip, IPv4Address):
            object.__setattr__(self, "switch_ip", IPv4Address(self.switch_ip))
        if self.lanes != C.LANES:
            raise ValueError(f"lanes must equal the P4 program's LANES = {C.LANES}, got {self.lanes}")
        if not 0 <= self.job_id <= 0xFFFF:
            raise ValueError(f"job id {self.job_id} does not fit the 16-bit job_id field")
        if not 1 <= self.workers <= C.MAX_WORKERS:
            raise ValueError(f"worker count {self.workers} must be in 1..{C.MAX_WORKERS}")
        if not 0 <= self.worker_id < self.workers:
            raise ValueError(f"worker id {self.worker_id} must be in 0..{self.workers - 1}")
        if not 1 <= self.slots <= C.SLOT_COUNT:
            raise ValueError(f"slot count {self.slots} must be in 1..{C.SLOT_COUNT}")
        link = self.frame_link
        if self.transport is TransportKind.FRAME and (link is None or link.bind is None or link.peer is None):
            raise ValueError("the frame transport needs a frame_link (bind, peer, worker endpoint, switch MAC)")
        if self.transport is TransportKind.SHM and (link is None or link.ring is None):
            raise ValueError("the shm transport needs a frame_link (ring file, worker endpoint, switch MAC)")
        if self.zero_threshold is not None and not self.zero_threshold >= 0:
            raise ValueError("zero_threshold must be >= 0")
        if self.lookahead is not None and self.lookahead < 1:
            raise ValueError("lookahead must be at least 1 row")
        if not 0 <= self.first_tensor_id <= 0xFFFF:
            raise ValueError("first_tensor_id must fit 16 bits")

    @property
    def name(self) -> str:
        """Tag for logs: job and worker."""
        return f"job{self.job_id}/w{self.worker_id}"
