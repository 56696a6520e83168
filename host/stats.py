"""Counters of one all-reduce (and their running total over an agent's life)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(slots=True)
class Stats:
    """What one worker did and saw. Bytes are Ethernet frame bytes (FCS excluded), whatever the transport.

    blocks_total/blocks_sent: blocks of the data tensor, and how many of them this worker sent (the scale round is
    not counted there). contribs_sent: first transmissions of CONTRIBs; retransmissions: CONTRIBs sent again after
    a timeout in the data tensor; rendezvous_resends: CONTRIBs of the one-block scale and closing rounds sent again
    after a timeout (those rounds wait for every worker, so a resend there is mostly a worker that arrived before
    its peers, which a timer cannot tell from a lost CONTRIB: counted apart from the data's loss recovery);
    spurious_timeouts: retransmissions whose original was answered after all (its result came sooner
    after the retransmission than a round trip could); requests_sent: REQUESTs for a missed result (on a gap in a
    column or a timer); repairs_sent: peers' forwarded REQUESTs answered from our results; repairs_unknown:
    forwarded REQUESTs for a result we did not have; repairs_received: missed results that came from a peer.
    results: results consumed; duplicates: results for rounds already consumed (ignored); early: results that
    arrived before the one expected in their column (kept and used in turn); ignored: datagrams that were
    malformed, for another job or worker, or of no known kind. elapsed_s: the whole call; joined_s: from the call
    until its scale round completed, i.e. until every worker of the job had joined: elapsed_s - joined_s is the
    all-reduce as it would be timed after a barrier (what benchmarks of other all-reduces time); cpu_s: the agent
    process's CPU time (user and system, all threads) during the call. exchange_s: the data tensor's exchange, from
    its first CONTRIB to its last result, the part of the call in which the switch has this worker's data traffic
    (the rest is the scan, the scale and closing rounds, quantizing, planning and writing the result: this host's
    own passes over the tensor). timers_deferred: first timeouts put off
    because the round's CONTRIB was still queued at a busy switch behind this worker's earlier frames (results
    for those still coming, none yet for a later one; TensorExchange.on_timer): no packet, a sign of a switch
    slower than the window.
    On a loss-free path only contributions (and the results) travel: every other traffic count stays 0.
    """

    blocks_total: int = 0
    blocks_sent: int = 0
    packets_sent: int = 0
    packets_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    contribs_sent: int = 0
    requests_sent: int = 0
    retransmissions: int = 0
    rendezvous_resends: int = 0
    spurious_timeouts: int = 0
    timers_deferred: int = 0
    repairs_sent: int = 0
    repairs_unknown: int = 0
    repairs_received: int = 0
    results: int = 0
    duplicates: int = 0
    early: int = 0
    ignored: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    joined_s: float = 0.0
    exchange_s: float = 0.0

    def add(self, other: "Stats") -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)
