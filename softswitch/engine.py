"""The v1model packet path of simple_switch: parser -> ingress -> PRE -> egress -> deparser, with clones,
resubmits and recirculations, following BMv2 (targets/simple_switch/simple_switch.cpp, docs/simple_switch.md).

One frame in gives a list of (port, frame) out, synchronously. The engine never raises for a packet: an
exception inside the generated code drops that packet (or that copy) and is counted by reason in `stats`.
"""

from __future__ import annotations

import logging
from collections import Counter

from .codegen.context import LogMsgError, PipelineAssertion
from .phv import (
    DROP_PORT,
    H_CLONE,
    H_DIGEST,
    H_EXIT,
    H_INGLEN,
    H_PKTLEN,
    H_RECIRC,
    H_RESUBMIT,
    H_TRUNC,
    PKT_INSTANCE_TYPE_EGRESS_CLONE,
    PKT_INSTANCE_TYPE_INGRESS_CLONE,
    PKT_INSTANCE_TYPE_NORMAL,
    PKT_INSTANCE_TYPE_RECIRC,
    PKT_INSTANCE_TYPE_REPLICATION,
    PKT_INSTANCE_TYPE_RESUBMIT,
)
from .pipeline import CompiledPipeline
from .pre import ReplicationEngine

log = logging.getLogger(__name__)

# Passes through ingress (first pass, resubmits, recirculations) one input frame may cause; a program that
# resubmits or recirculates forever would otherwise never return.
MAX_PASSES = 32
# Warn for the first few packets dropped for a given reason, then only every this many.
LOG_EVERY = 1000


class PacketEngine:
    def __init__(self, pipeline: CompiledPipeline, pre: ReplicationEngine, stats: Counter,
                 digests: list | None = None) -> None:
        self.p = pipeline
        self.pre = pre
        self.stats = stats
        # (learn list name, field values) of every digest sent, appended in order; the Device delivers them.
        self.digests: list[tuple[str, tuple[int, ...]]] = digests if digests is not None else []
        self.layout = pipeline.layout
        self.std = pipeline.layout.std
        self.initial = pipeline.layout.initial
        self.metadata_slots = pipeline.layout.metadata_slots
        self._now_us = pipeline.clock.now_us
        # Hot-path shortcuts: bound functions and slot numbers looked up once.
        self._parse_fn = pipeline.parse
        self._verify_fn = pipeline.verify_checksums if pipeline.program.checksums else None
        self._update_fn = pipeline.update_checksums if pipeline.program.checksums else None
        self._ingress_fn = pipeline.ingress
        self._egress_fn = pipeline.egress
        self._deparse_fn = pipeline.deparse
        std = self.std
        self._s_parser_error = std.parser_error
        self._s_checksum_error = std.checksum_error
        self._s_instance_type = std.instance_type
        self._s_packet_length = std.packet_length
        self._s_egress_spec = std.egress_spec
        self._s_egress_port = std.egress_port
        self._s_mcast_grp = std.mcast_grp
        self._s_ingress_ts = std.ingress_global_timestamp
        self._s_egress_ts = std.egress_global_timestamp

    # -- helpers ------------------------------------------------------------------------------------------
    def _count_drop(self, reason: str, exc: BaseException | None = None) -> None:
        self.stats[f"drop:{reason}"] += 1
        n = self.stats[f"drop:{reason}"]
        if exc is not None and (n <= 5 or n % LOG_EVERY == 0):
            log.warning("packet dropped (%s, %d so far): %s", reason, n, exc)

    def _reset_metadata(self, phv: list) -> None:
        initial = self.initial
        for slot in self.metadata_slots:
            phv[slot] = initial[slot]

    def _copy_field_list(self, dst: list, src: list, field_list_id: int) -> None:
        for slot in self.p.field_list_slots.get(field_list_id, ()):
            dst[slot] = src[slot]

    @staticmethod
    def _clear_requests(phv: list) -> None:
        phv[H_EXIT] = False
        phv[H_CLONE] = None
        phv[H_RESUBMIT] = None
        phv[H_RECIRC] = None
        phv[H_TRUNC] = 0

    # -- packet path --------------------------------------------------------------------------------------
    def process_batch(self, frames: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        for port, frame in frames:
            if not 0 <= port < 512:
                self.stats["drop:bad_ingress_port"] += 1
                continue
            out.extend(self.process(port, bytes(frame)))
        return out

    def set_clock(self, frozen_us: int | None) -> None:
        self.p.clock.frozen = frozen_us

    def fold_direct_counters(self) -> None:
        """Nothing to fold: generated Python counts straight into the entries' counters (see NativeEngine)."""

    def process(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        stats = self.stats
        stats["rx_packets"] += 1
        # Work items: (True, port, frame, preserved PHV or None, instance_type, field list) for an ingress
        # pass, (False, egress_port, phv, payload) for a copy headed to egress. Processed in FIFO order.
        work: list = [(True, port, frame, None, PKT_INSTANCE_TYPE_NORMAL, 0)]
        passes = 0
        i = 0
        while i < len(work):
            item = work[i]
            i += 1
            try:
                if item[0]:
                    passes += 1
                    if passes > MAX_PASSES:
                        self._count_drop("recirculation_limit")
                        continue
                    self._ingress(item[1], item[2], item[3], item[4], item[5], work)
                else:
                    self._egress(item[1], item[2], item[3], work, out)
            except PipelineAssertion as exc:
                self._count_drop("assert_failed", exc)
            except LogMsgError as exc:
                self._count_drop("log_msg_error", exc)
            except Exception as exc:  # noqa: BLE001 - a packet must never take the switch down
                self._count_drop(f"error:{type(exc).__name__}", exc)
        if out:
            stats["tx_packets"] += len(out)
        return out

    def _parse(self, phv: list, frame: bytes) -> bytes:
        offset, error = self._parse_fn(phv, frame)
        payload = frame[offset:]
        if self._s_parser_error is not None:
            phv[self._s_parser_error] = error
        if self._verify_fn is not None:
            checksum_error = self._verify_fn(phv, payload)
            if self._s_checksum_error is not None:
                phv[self._s_checksum_error] = checksum_error
        return payload

    def _ingress(
        self, port: int, frame: bytes, preserved: list | None, instance_type: int, field_list: int, work: list
    ) -> None:
        std = self.std
        phv = list(self.initial)
        phv[std.ingress_port] = port
        if preserved is not None:
            # Listed fields win over the port (BMv2 keeps standard_metadata fields that a list names).
            self._copy_field_list(phv, preserved, field_list)
        length = len(frame)
        if self._s_instance_type is not None:
            phv[self._s_instance_type] = instance_type
        if self._s_packet_length is not None:
            phv[self._s_packet_length] = length
        if self._s_ingress_ts is not None:
            phv[self._s_ingress_ts] = self._now_us() & 0xFFFFFFFFFFFF
        phv[H_PKTLEN] = length
        phv[H_INGLEN] = length
        payload = self._parse(phv, frame)
        self._ingress_fn(phv)
        phv[H_EXIT] = False

        clone = phv[H_CLONE]
        if clone is not None:
            phv[H_CLONE] = None
            self._ingress_clone(port, frame, phv, clone[0], clone[1], work)
        if phv[H_DIGEST]:
            self._learn(phv, phv[H_DIGEST])
        resubmit = phv[H_RESUBMIT]
        if resubmit is not None:
            # Start over with the original frame; keep ingress_port and the listed metadata.
            self.stats["resubmitted"] += 1
            work.append((True, port, frame, phv, PKT_INSTANCE_TYPE_RESUBMIT, resubmit))
            return
        mgid = phv[self._s_mcast_grp] if self._s_mcast_grp is not None else 0
        if mgid:
            if self._s_instance_type is not None:
                phv[self._s_instance_type] = PKT_INSTANCE_TYPE_REPLICATION
            self._multicast(phv, payload, mgid, work)
            return
        egress_spec = phv[self._s_egress_spec]
        if egress_spec == DROP_PORT:
            self._count_drop("ingress_mark_to_drop")
            return
        if self._s_instance_type is not None:
            phv[self._s_instance_type] = PKT_INSTANCE_TYPE_NORMAL
        work.append((False, egress_spec, phv, payload))

    def _learn(self, phv: list, list_id: int) -> None:
        """BMv2's learn step after ingress (after the ingress clone, before a resubmit): the list's fields now."""
        name, slots, masks = self.p.learn_lists[list_id]
        self.digests.append((name, tuple(phv[slot] & mask for slot, mask in zip(slots, masks))))

    def _multicast(self, phv: list, payload: bytes, mgid: int, work: list) -> None:
        replicas = self.pre.groups.get(mgid)
        if not replicas:
            self._count_drop("unknown_multicast_group" if replicas is None else "empty_multicast_group")
            return
        rid_slot = self.std.egress_rid
        for egress_port, rid in replicas:
            copy = list(phv)
            if rid_slot is not None:
                copy[rid_slot] = rid
            self._clear_requests(copy)
            work.append((False, egress_port, copy, payload))

    def _ingress_clone(self, port: int, frame: bytes, phv: list, session_id: int, field_list: int, work: list) -> None:
        session = self.pre.sessions.get(session_id)
        if session is None:
            self._count_drop("unknown_clone_session")
            return
        std = self.std
        clone = list(self.initial)
        clone[std.ingress_port] = port
        clone[H_PKTLEN] = len(frame)
        clone[H_INGLEN] = len(frame)
        payload = self._parse(clone, frame)
        self._reset_metadata(clone)
        self._copy_field_list(clone, phv, field_list)
        if std.instance_type is not None:
            clone[std.instance_type] = PKT_INSTANCE_TYPE_INGRESS_CLONE
        self._send_clone(clone, payload, session, work)

    def _send_clone(self, clone: list, payload: bytes, session, work: list) -> None:
        self.stats["cloned"] += 1
        rid_slot = self.std.egress_rid
        for egress_port, rid in session.replicas:
            copy = list(clone)
            if rid_slot is not None:
                copy[rid_slot] = rid
            self._clear_requests(copy)
            copy[H_TRUNC] = session.packet_length_bytes
            work.append((False, egress_port, copy, payload))

    def _egress(self, port: int, phv: list, payload: bytes, work: list, out: list) -> None:
        std = self.std
        if self._s_egress_port is not None:
            phv[self._s_egress_port] = port
        phv[self._s_egress_spec] = DROP_PORT + 1
        if self._s_packet_length is not None:
            phv[self._s_packet_length] = phv[H_PKTLEN]
        if self._s_egress_ts is not None:
            phv[self._s_egress_ts] = self._now_us() & 0xFFFFFFFFFFFF
        self._egress_fn(phv)
        phv[H_EXIT] = False

        clone = phv[H_CLONE]
        if clone is not None:
            phv[H_CLONE] = None
            session = self.pre.sessions.get(clone[0])
            if session is None:
                self._count_drop("unknown_clone_session")
            else:
                copy = list(phv)
                self._reset_metadata(copy)
                self._copy_field_list(copy, phv, clone[1])
                if std.instance_type is not None:
                    copy[std.instance_type] = PKT_INSTANCE_TYPE_EGRESS_CLONE
                self._send_clone(copy, payload, session, work)
        if phv[self._s_egress_spec] == DROP_PORT:
            self._count_drop("egress_mark_to_drop")
            return
        if self._update_fn is not None:
            self._update_fn(phv, payload)
        frame = self._deparse_fn(phv) + payload
        recirc = phv[H_RECIRC]
        if recirc is not None:
            self.stats["recirculated"] += 1
            work.append((True, 0, frame, phv, PKT_INSTANCE_TYPE_RECIRC, recirc))
            return
        trunc = phv[H_TRUNC]
        if trunc and len(frame) > trunc:
            frame = frame[:trunc]
        out.append((port, frame))
