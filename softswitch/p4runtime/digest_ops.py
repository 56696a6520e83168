"""P4Runtime digests: DigestEntry configuration, DigestList messages on the primary's StreamChannel, DigestListAck.

The Device hands over every digest its packets send (Device.set_digest_listener); this module batches them as the
spec's "DigestEntry" section says, close to its pseudo-code and to PI's digest manager:
- a digest is only sent while its DigestEntry exists (INSERT enables it, MODIFY changes the config, DELETE disables
  it and forgets its state); samples of a digest without one are dropped;
- samples are buffered, duplicates within the buffer and (when ack_timeout_ns > 0) samples sent but not yet
  acknowledged are left out; the buffer goes out as one DigestList when it holds max_list_size samples (0: no
  limit) or its first sample has waited max_timeout_ns (0: at once);
- a DigestList gets the digest's next list_id (from 1), the time in ns since the epoch, one P4Data per sample shaped
  as the P4Info's type_spec (a struct or tuple of bitstrings, or one bitstring; canonical bytestrings); it goes to
  the primary controller of the default role, and to nobody when there is none;
- its samples stay in the cache until a DigestListAck with its digest_id and list_id arrives or ack_timeout_ns has
  passed; an ack naming no digest of the P4Info gets a StreamError INVALID_ARGUMENT on the stream.

One timer thread per pipeline sends the buffers whose time is up and expires cache entries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from google.rpc import code_pb2

from omnireduce.p4proto import p4data_pb2, p4info_pb2, p4runtime_pb2
from omnireduce.softswitch.entries import DigestSample
from omnireduce.softswitch.p4runtime.bytestrings import encode_uint
from omnireduce.softswitch.p4runtime.errors import P4RuntimeError

if TYPE_CHECKING:   # only for annotations: the Device module needs nothing from the server
    from omnireduce.softswitch.device import Device
    from omnireduce.softswitch.p4runtime.arbitration import StreamSession

log = logging.getLogger(__name__)

Update = p4runtime_pb2.Update
Config = p4runtime_pb2.DigestEntry.Config


@dataclass(frozen=True, slots=True)
class DigestShape:
    """How a digest's samples travel: `kind` "struct", "tuple" or "bitstring", and the members' widths."""

    kind: str
    widths: tuple[int, ...]

    def encode(self, values: tuple[int, ...]) -> p4data_pb2.P4Data:
        if self.kind == "bitstring":
            return p4data_pb2.P4Data(bitstring=encode_uint(values[0]))
        members = [p4data_pb2.P4Data(bitstring=encode_uint(v)) for v in values]
        if self.kind == "struct":
            return p4data_pb2.P4Data(struct=p4data_pb2.P4StructLike(members=members))
        return p4data_pb2.P4Data(tuple=p4data_pb2.P4StructLike(members=members))


def digest_shape(digest: p4info_pb2.Digest, type_info: p4info_pb2.P4TypeInfo) -> DigestShape:
    """The shape of a P4Info digest; INVALID_ARGUMENT/UNIMPLEMENTED for what simple_switch_grpc refuses too."""
    name = digest.preamble.name

    def width(spec: p4info_pb2.P4DataTypeSpec, what: str) -> int:
        if spec.WhichOneof("type_spec") != "bitstring" or spec.bitstring.WhichOneof("type_spec") not in ("bit", "int"):
            raise P4RuntimeError.unimplemented(f"digest '{name}': {what} is not a bit<W> or int<W> (the only kinds "
                                               "BMv2 digests hold)")
        bits = spec.bitstring.bit if spec.bitstring.HasField("bit") else spec.bitstring.int
        return bits.bitwidth

    spec = digest.type_spec
    kind = spec.WhichOneof("type_spec")
    if kind == "struct":
        struct = type_info.structs.get(spec.struct.name)
        if struct is None:
            raise P4RuntimeError.invalid_argument(f"digest '{name}': struct '{spec.struct.name}' is not in the "
                                                  "P4Info's type_info")
        return DigestShape("struct", tuple(width(m.type_spec, f"member '{m.name}'") for m in struct.members))
    if kind == "tuple":
        return DigestShape("tuple", tuple(width(m, f"tuple member {i}") for i, m in enumerate(spec.tuple.members)))
    return DigestShape("bitstring", (width(spec, "its type"),))


def match_learn_lists(digests: list[tuple[int, str, tuple[int, ...]]],
                      learn_lists: dict[str, tuple[int, ...]]) -> dict[int, str]:
    """P4Info digest id -> the name of the JSON learn list that implements it: the list of the same name, else
    (p4c names a digest of a tuple `digest_N` in the P4Info but `tuple_N` in the JSON) the one list no digest has
    taken whose fields have the same widths. INVALID_ARGUMENT when there is none, or more than one."""
    matched: dict[int, str] = {}
    for digest_id, name, widths in digests:
        if name in learn_lists:
            if learn_lists[name] != widths:
                raise P4RuntimeError.invalid_argument(
                    f"P4Info and BMv2 JSON disagree: digest '{name}' has fields of {list(widths)} bits in the P4Info "
                    f"but {list(learn_lists[name])} in the JSON")
            matched[digest_id] = name
    for digest_id, name, widths in digests:
        if digest_id in matched:
            continue
        free = [n for n, w in learn_lists.items() if w == widths and n not in matched.values()]
        if len(free) != 1:
            raise P4RuntimeError.invalid_argument(
                f"P4Info and BMv2 JSON disagree: digest '{name}' ({list(widths)} bits) has "
                f"{'no' if not free else 'more than one'} learn list in the JSON")
        matched[digest_id] = free[0]
    return matched


@dataclass(slots=True)
class _Digest:
    id: int
    name: str
    shape: DigestShape
    config: Config | None = None
    next_list_id: int = 1
    buffer: dict[tuple[int, ...], None] = field(default_factory=dict)   # insertion-ordered set
    buffer_started: float = 0.0
    cache: dict[tuple[int, ...], int] = field(default_factory=dict)     # sample -> the list it went out in
    unacked: dict[int, tuple[float, list[tuple[int, ...]]]] = field(default_factory=dict)  # list -> (sent, samples)

    def reset(self) -> None:
        self.buffer.clear()
        self.cache.clear()
        self.unacked.clear()


class DigestOps:
    """Digest configuration and delivery for one pipeline; `close` stops its timer and detaches from the Device."""

    def __init__(self, device: Device, p4info: p4info_pb2.P4Info, primary: Callable[[], StreamSession | None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.device = device
        self._primary = primary
        self._clock = clock
        self._digests: dict[int, _Digest] = {}
        self._by_name: dict[str, _Digest] = {}   # by the Device's (JSON learn list) name
        shapes = {d.preamble.id: digest_shape(d, p4info.type_info) for d in p4info.digests}
        learn_lists = ({name: device.digest_info(name).widths for name in device.digest_names()}
                       if p4info.digests else {})
        learned_as = match_learn_lists([(d.preamble.id, d.preamble.name, shapes[d.preamble.id].widths)
                                        for d in p4info.digests], learn_lists)
        for digest in p4info.digests:
            entry = _Digest(digest.preamble.id, digest.preamble.name, shapes[digest.preamble.id])
            self._digests[entry.id] = entry
            self._by_name[learned_as[entry.id]] = entry
        self._lock = threading.Condition()
        self._closed = False
        self._timer: threading.Thread | None = None
        if self._digests:
            self._timer = threading.Thread(target=self._run_timer, name="p4rt-digests", daemon=True)
            self._timer.start()
            device.set_digest_listener(self.on_samples)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        if self._digests:
            self.device.set_digest_listener(None)

    def _digest(self, digest_id: int) -> _Digest:
        digest = self._digests.get(digest_id)
        if digest is None:
            raise P4RuntimeError.invalid_argument(f"no digest with id {digest_id} (0x{digest_id:08x}) in the P4Info")
        return digest

    # --- DigestEntry -----------------------------------------------------------------------------------
    def write(self, update_type: int, msg: p4runtime_pb2.DigestEntry) -> None:
        digest = self._digest(msg.digest_id)
        with self._lock:
            if update_type == Update.DELETE:
                if digest.config is None:
                    raise P4RuntimeError.not_found(f"digest '{digest.name}' is not configured")
                digest.config = None
                digest.reset()
                return
            config = msg.config
            for name in ("max_timeout_ns", "max_list_size", "ack_timeout_ns"):
                if getattr(config, name) < 0:
                    raise P4RuntimeError.invalid_argument(f"digest '{digest.name}': {name} {getattr(config, name)} "
                                                          "is negative")
            if update_type == Update.INSERT:
                if digest.config is not None:
                    raise P4RuntimeError.already_exists(f"digest '{digest.name}' is already configured (MODIFY it)")
            elif update_type == Update.MODIFY:
                if digest.config is None:
                    raise P4RuntimeError.not_found(f"digest '{digest.name}' is not configured (INSERT it first)")
            else:
                raise P4RuntimeError.invalid_argument(f"update type {update_type} is not INSERT, MODIFY or DELETE")
            digest.config = Config()
            digest.config.CopyFrom(config)
            if config.ack_timeout_ns == 0:
                digest.cache.clear()   # the spec: without an ack timeout the cache is always empty
                digest.unacked.clear()
            self._flush_due(digest, self._clock())
            self._lock.notify_all()

    def read(self, query: p4runtime_pb2.DigestEntry) -> Iterator[p4runtime_pb2.Entity]:
        digests = list(self._digests.values()) if query.digest_id == 0 else [self._digest(query.digest_id)]
        with self._lock:
            configured = [(d.id, d.config) for d in digests if d.config is not None]
            if query.digest_id and not configured:
                raise P4RuntimeError.not_found(f"digest '{digests[0].name}' is not configured")
        for digest_id, config in configured:
            entity = p4runtime_pb2.Entity()
            entity.digest_entry.digest_id = digest_id
            entity.digest_entry.config.CopyFrom(config)
            yield entity

    # --- the data plane's samples, the stream's acks ---------------------------------------------------
    def on_samples(self, samples: list[DigestSample]) -> None:
        """Called by the Device with the digests of a batch of packets (under its lock: only queue)."""
        now = self._clock()
        with self._lock:
            for sample in samples:
                digest = self._by_name.get(sample.name)
                if digest is None or digest.config is None:
                    continue
                values = sample.values
                if values in digest.buffer or values in digest.cache:
                    continue
                if not digest.buffer:
                    digest.buffer_started = now
                digest.buffer[values] = None
                limit = digest.config.max_list_size
                if (limit and len(digest.buffer) >= limit) or digest.config.max_timeout_ns == 0:
                    self._send(digest, now)
            self._lock.notify_all()

    def ack(self, session: StreamSession, ack: p4runtime_pb2.DigestListAck) -> None:
        digest = self._digests.get(ack.digest_id)
        if digest is None:
            error = p4runtime_pb2.StreamError(
                canonical_code=code_pb2.INVALID_ARGUMENT,
                message=f"DigestListAck for digest id {ack.digest_id}, which the P4Info does not have")
            error.digest_list_ack.digest_list_ack.CopyFrom(ack)
            session.send(p4runtime_pb2.StreamMessageResponse(error=error))
            return
        with self._lock:
            self._forget(digest, ack.list_id)

    # --- internals (under the lock) --------------------------------------------------------------------
    def _send(self, digest: _Digest, now: float) -> None:
        samples = list(digest.buffer)
        digest.buffer.clear()
        message = p4runtime_pb2.DigestList(digest_id=digest.id, list_id=digest.next_list_id,
                                           timestamp=time.time_ns())
        message.data.extend(digest.shape.encode(values) for values in samples)
        if digest.config is not None and digest.config.ack_timeout_ns > 0:
            digest.unacked[digest.next_list_id] = (now, samples)
            for values in samples:
                digest.cache[values] = digest.next_list_id
        digest.next_list_id += 1
        session = self._primary()
        if session is None:
            log.debug("digest '%s' list %d dropped: no primary controller", digest.name, message.list_id)
            return
        session.send(p4runtime_pb2.StreamMessageResponse(digest=message))

    @staticmethod
    def _forget(digest: _Digest, list_id: int) -> None:
        sent = digest.unacked.pop(list_id, None)
        if sent is not None:
            for values in sent[1]:
                if digest.cache.get(values) == list_id:
                    del digest.cache[values]

    def _flush_due(self, digest: _Digest, now: float) -> float | None:
        """Send the buffer if its time is up and expire the cache; the next time something is due, or None."""
        config = digest.config
        if config is None:
            return None
        due: list[float] = []
        if digest.buffer:
            deadline = digest.buffer_started + config.max_timeout_ns / 1e9
            if now >= deadline:
                self._send(digest, now)
            else:
                due.append(deadline)
        if config.ack_timeout_ns:
            for list_id, (sent, _) in list(digest.unacked.items()):
                expiry = sent + config.ack_timeout_ns / 1e9
                if now >= expiry:
                    self._forget(digest, list_id)
                else:
                    due.append(expiry)
        return min(due) if due else None

    def _run_timer(self) -> None:
        with self._lock:
            while not self._closed:
                now = self._clock()
                due = [d for d in (self._flush_due(digest, now) for digest in self._digests.values()) if d]
                self._lock.wait(timeout=max(min(due) - now, 0.0) if due else None)
