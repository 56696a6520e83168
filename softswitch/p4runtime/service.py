"""The P4Runtime gRPC service of the softswitch: RPC-level rules, then dispatch to the entity operations.

Each RPC checks what the spec asks for in the spec's order (device id -> NOT_FOUND, primary ->
PERMISSION_DENIED, pipeline -> FAILED_PRECONDITION), then applies or reads entities. Batch errors are
reported as the spec (and PI/simple_switch_grpc) do: gRPC code UNKNOWN with one `p4.v1.Error` per item
in the status details. A bug or a malformed message yields an error status for that request, never a
dead server.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING

import grpc

from omnireduce.p4proto import p4info_pb2, p4runtime_grpc, p4runtime_pb2
from omnireduce.softswitch.p4runtime.arbitration import DEFAULT_ROLE, Arbiter, StreamEnd, StreamSession
from omnireduce.softswitch.p4runtime.digest_ops import DigestOps
from omnireduce.softswitch.p4runtime.array_ops import ArrayOps, RegisterCells
from omnireduce.softswitch.p4runtime.errors import P4RuntimeError, device_errors
from omnireduce.softswitch.p4runtime.meter_ops import MeterOps
from omnireduce.softswitch.p4runtime.p4info_map import P4InfoMap
from omnireduce.softswitch.p4runtime.pipeline_check import check_p4info_matches_json, parse_bmv2_json
from omnireduce.softswitch.p4runtime.pre_ops import PreOps
from omnireduce.softswitch.p4runtime.profile_ops import ProfileOps
from omnireduce.softswitch.p4runtime.rich_status import batch_status, first_failures
from omnireduce.softswitch.p4runtime.table_ops import TableOps
from omnireduce.softswitch.p4runtime.unserved_ops import UnservedOps
from omnireduce.softswitch.p4runtime.value_set_ops import ValueSetOps

if TYPE_CHECKING:   # only for annotations: the Device module needs nothing from the server
    from omnireduce.softswitch.device import Device

log = logging.getLogger(__name__)

SetConfig = p4runtime_pb2.SetForwardingPipelineConfigRequest
GetConfig = p4runtime_pb2.GetForwardingPipelineConfigRequest
# The most bytes of entities one ReadResponse carries: far below gRPC's default 4 MiB receive limit, and small
# enough that a large read reaches the client as a stream of messages, the first long before the last is built.
READ_RESPONSE_BYTES = 1 << 20


def p4runtime_api_version() -> str:
    """The P4Runtime version this server speaks: that of the installed p4runtime protos."""
    try:
        return metadata.version("p4runtime")
    except metadata.PackageNotFoundError:
        return "1.4.1"


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A forwarding pipeline config the server accepted: P4Info (indexed), BMv2 JSON, cookie."""

    p4info: p4info_pb2.P4Info
    p4map: P4InfoMap
    device_config: bytes
    cookie: p4runtime_pb2.ForwardingPipelineConfig.Cookie | None

    @classmethod
    def from_config(cls, config: p4runtime_pb2.ForwardingPipelineConfig) -> Pipeline:
        """Verify a client's config: a P4Info, a BMv2 JSON, and the two describing the same program."""
        if not config.HasField("p4info"):
            raise P4RuntimeError.invalid_argument("the forwarding pipeline config has no p4info")
        p4map = P4InfoMap(config.p4info)
        check_p4info_matches_json(p4map, parse_bmv2_json(config.p4_device_config))
        cookie = config.cookie if config.HasField("cookie") else None
        return cls(config.p4info, p4map, bytes(config.p4_device_config), cookie)


class _Entities:
    """The entity operations of one committed pipeline (rebuilt, with their side state, on each commit)."""

    def __init__(self, device: Device, p4map: P4InfoMap, arbiter: Arbiter) -> None:
        self.tables = TableOps(device, p4map)
        # Digests go to the primary controller of the default role.
        self.digests = DigestOps(device, p4map.p4info, lambda: arbiter.primary_of(DEFAULT_ROLE))
        self.arrays = ArrayOps(device, p4map)
        self.pre = PreOps(device)
        self.value_sets = ValueSetOps(device, p4map)
        self.meters = MeterOps(device, p4map, self.tables.device_kinds)
        self.profiles = ProfileOps(device, p4map)
        self.unserved = UnservedOps(p4map)
        # Entity kind -> operation, built once per pipeline (a batch can hold thousands of updates).
        self._writers: dict[str, Callable] = {
            "table_entry": self.tables.write,
            "direct_counter_entry": self.tables.write_direct_counter,
            "counter_entry": self.arrays.write_counter,
            "register_entry": self.arrays.write_register,
            "packet_replication_engine_entry": self.pre.write,
            "value_set_entry": self.value_sets.write,
            "meter_entry": self.meters.write_meter,
            "digest_entry": self.digests.write,
            "action_profile_member": self.profiles.write_member,
            "action_profile_group": self.profiles.write_group,
            "direct_meter_entry": self.meters.write_direct_meter,
        }
        self._readers: dict[str, Callable] = {
            "table_entry": self.tables.read,
            "direct_counter_entry": self.tables.read_direct_counters,
            "counter_entry": self.arrays.read_counters,
            "register_entry": self.arrays.read_registers,
            "packet_replication_engine_entry": self.pre.read,
            "value_set_entry": self.value_sets.read,
            "meter_entry": self.meters.read_meters,
            "digest_entry": self.digests.read,
            "action_profile_member": self.profiles.read_members,
            "action_profile_group": self.profiles.read_groups,
            "direct_meter_entry": self.meters.read_direct_meters,
        }

    def close(self) -> None:
        """Stop what runs on its own (the digest timer) when another pipeline replaces this one."""
        self.digests.close()

    def write(self, update: p4runtime_pb2.Update) -> None:
        if update.type == p4runtime_pb2.Update.UNSPECIFIED:
            raise P4RuntimeError.invalid_argument("update type is not set")
        kind = update.entity.WhichOneof("entity")
        writer = self._writers.get(kind or "")
        if kind is None:
            raise P4RuntimeError.invalid_argument("update has no entity")
        if writer is None:
            raise P4RuntimeError.unimplemented(f"{kind} is not supported by the softswitch")
        writer(update.type, getattr(update.entity, kind))

    def read(self, entity: p4runtime_pb2.Entity) -> Iterator[p4runtime_pb2.Entity]:
        unserved = self.unserved.kind_of(entity)
        if unserved is not None:
            return self.unserved.read(unserved)
        kind = entity.WhichOneof("entity")
        reader = self._readers.get(kind or "")
        if kind is None:
            raise P4RuntimeError.invalid_argument("read request entity has no type set")
        if reader is None:
            raise P4RuntimeError.unimplemented(f"{kind} is not supported by the softswitch")
        return reader(getattr(entity, kind))


def _read_responses(found: list[p4runtime_pb2.Entity | RegisterCells]) -> Iterator[p4runtime_pb2.ReadResponse]:
    """The ReadResponses carrying `found`, in order, each with at most READ_RESPONSE_BYTES of entities."""
    batch: list[p4runtime_pb2.Entity] = []
    size = 0
    for item in found:
        if isinstance(item, RegisterCells):
            if batch:
                yield p4runtime_pb2.ReadResponse(entities=batch)
                batch, size = [], 0
            for chunk, _ in item.encode().chunks(READ_RESPONSE_BYTES):
                yield p4runtime_pb2.ReadResponse.FromString(chunk)
            continue
        item_size = item.ByteSize()
        if batch and size + item_size > READ_RESPONSE_BYTES:
            yield p4runtime_pb2.ReadResponse(entities=batch)
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield p4runtime_pb2.ReadResponse(entities=batch)


def _internal(error: Exception) -> P4RuntimeError:
    log.exception("internal error while serving a P4Runtime request")
    return P4RuntimeError(grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}: {error}")


class P4RuntimeService(p4runtime_grpc.P4RuntimeServicer):
    """The P4Runtime servicer for one softswitch Device."""

    def __init__(self, device: Device, device_id: int, arbiter: Arbiter,
                 p4info: p4info_pb2.P4Info | None = None, max_streams: int = 64) -> None:
        self.device = device
        self.device_id = device_id
        self.arbiter = arbiter
        self.max_streams = max_streams
        self._open_streams = 0
        self._streams_lock = threading.Lock()
        # One lock makes each Write batch, Read batch and pipeline change serializable against the others.
        self._lock = threading.RLock()
        self._pipeline: Pipeline | None = None
        self._saved: Pipeline | None = None      # VERIFY_AND_SAVE'd, waiting for COMMIT
        self._entities: _Entities | None = None
        if p4info is not None:
            self._adopt_loaded_pipeline(p4info)

    def _adopt_loaded_pipeline(self, p4info: p4info_pb2.P4Info) -> None:
        """Serve a pipeline the Device was given before the server started (e.g. by the CLI)."""
        bmv2_json = self.device.pipeline_json if self.device.pipeline_loaded else None
        if bmv2_json is None:
            raise P4RuntimeError.failed_precondition("a P4Info was given but the device has no pipeline loaded")
        config = p4runtime_pb2.ForwardingPipelineConfig(p4info=p4info, p4_device_config=bmv2_json)
        self._pipeline = Pipeline.from_config(config)
        self._entities = _Entities(self.device, self._pipeline.p4map, self.arbiter)

    def close(self) -> None:
        """Release what the served pipeline runs on its own (the digest timer, the Device's digest listener)."""
        with self._lock:
            if self._entities is not None:
                self._entities.close()

    # --- common checks ---------------------------------------------------------------------------------
    def _check_device(self, device_id: int) -> None:
        if device_id != self.device_id:
            raise P4RuntimeError.not_found(f"unknown device id {device_id}: this switch is device {self.device_id}")

    def _entities_or_fail(self) -> _Entities:
        if self._entities is None:
            raise P4RuntimeError.failed_precondition("no forwarding pipeline config has been set on this device")
        return self._entities

    # --- RPCs ------------------------------------------------------------------------------------------
    def Capabilities(self, request, context):
        return p4runtime_pb2.CapabilitiesResponse(p4runtime_api_version=p4runtime_api_version())

    def Write(self, request: p4runtime_pb2.WriteRequest, context: grpc.ServicerContext):
        failure: P4RuntimeError | None = None
        errors: list[P4RuntimeError | None] = []
        try:
            self._check_device(request.device_id)
            self.arbiter.check_writer(request.role,
                                      request.election_id if request.HasField("election_id") else None)
            if request.atomicity != p4runtime_pb2.WriteRequest.CONTINUE_ON_ERROR:
                raise P4RuntimeError.unimplemented(
                    "only CONTINUE_ON_ERROR atomicity is supported (like simple_switch_grpc)")
            with self._lock:
                entities = self._entities_or_fail()
                for index, update in enumerate(request.updates):
                    try:
                        entities.write(update)
                        errors.append(None)
                    except P4RuntimeError as error:
                        log.debug("write update %d refused: %s", index, error)
                        errors.append(error)
                    except Exception as error:   # a bug must fail one update, not the server
                        errors.append(_internal(error))
        except P4RuntimeError as error:
            failure = error
        except Exception as error:
            failure = _internal(error)
        if failure is not None:
            context.abort(failure.code, failure.message)
        failed = sum(error is not None for error in errors)
        if failed:
            summary = (f"{failed} of {len(errors)} updates failed, {len(errors) - failed} applied; "
                       f"first failures: {first_failures(errors, 'update')}")
            # One line per batch: a client sending thousands of bad updates must not flood the log.
            log.info("write from %s: %s", context.peer(), summary)
            context.abort_with_status(batch_status(errors, summary, item="update"))
        return p4runtime_pb2.WriteResponse()

    def Read(self, request: p4runtime_pb2.ReadRequest, context: grpc.ServicerContext):
        failure: P4RuntimeError | None = None
        # What every entity of the request matched, read under the lock (a consistent snapshot); whole registers
        # stay numpy snapshots here and are serialized while being sent, after the lock is released.
        found: list[p4runtime_pb2.Entity | RegisterCells] = []
        errors: list[P4RuntimeError | None] = []
        try:
            self._check_device(request.device_id)
            with self._lock:
                entities = self._entities_or_fail()
                for entity in request.entities:
                    try:
                        matches = list(entities.read(entity))
                        found.extend(matches)
                        errors.append(None)
                    except P4RuntimeError as error:
                        errors.append(error)
                    except Exception as error:
                        errors.append(_internal(error))
        except P4RuntimeError as error:
            failure = error
        except Exception as error:
            failure = _internal(error)
        if failure is not None:
            context.abort(failure.code, failure.message)
        sent = 0
        for response in _read_responses(found):   # what succeeded, even when other entities of the batch failed
            sent += 1
            yield response
        failed = [error for error in errors if error is not None]
        if failed:
            # A single-entity read fails with that entity's own code (what simple_switch_grpc's clients
            # see); a batch fails with UNKNOWN and per-entity details, as the spec says.
            code = failed[0].code if len(errors) == 1 else grpc.StatusCode.UNKNOWN
            summary = (failed[0].message if len(errors) == 1 else f"{len(failed)} of {len(errors)} reads failed; "
                                                                  f"first failures: {first_failures(errors, 'entity')}")
            context.abort_with_status(batch_status(errors, summary, code, item="entity"))
        elif not sent:
            # gRPC clients expect at least one message from a server stream that succeeded.
            yield p4runtime_pb2.ReadResponse()

    def SetForwardingPipelineConfig(self, request: SetConfig, context: grpc.ServicerContext):
        failure: P4RuntimeError | None = None
        try:
            self._check_device(request.device_id)
            self.arbiter.check_writer(request.role,
                                      request.election_id if request.HasField("election_id") else None)
            self._set_pipeline(request.action, request.config if request.HasField("config") else None)
        except P4RuntimeError as error:
            log.info("SetForwardingPipelineConfig refused: %s", error)
            failure = error
        except Exception as error:
            failure = _internal(error)
        if failure is not None:
            context.abort(failure.code, failure.message)
        return p4runtime_pb2.SetForwardingPipelineConfigResponse()

    def _set_pipeline(self, action: int, config: p4runtime_pb2.ForwardingPipelineConfig | None) -> None:
        if action == SetConfig.COMMIT:
            if config is not None and (config.HasField("p4info") or config.p4_device_config):
                raise P4RuntimeError.invalid_argument("COMMIT takes no config: it commits the one saved before")
            with self._lock:
                if self._saved is None:
                    raise P4RuntimeError.not_found("COMMIT: no config was saved with VERIFY_AND_SAVE")
                self._commit(self._saved)
            return
        if action not in (SetConfig.VERIFY, SetConfig.VERIFY_AND_SAVE, SetConfig.VERIFY_AND_COMMIT,
                          SetConfig.RECONCILE_AND_COMMIT):
            raise P4RuntimeError.invalid_argument(f"unknown SetForwardingPipelineConfig action {action}")
        if config is None:
            raise P4RuntimeError.invalid_argument(f"{SetConfig.Action.Name(action)} needs a config")
        pipeline = Pipeline.from_config(config)
        with self._lock:
            if action == SetConfig.VERIFY_AND_SAVE:
                self._saved = pipeline
            elif action != SetConfig.VERIFY:
                # RECONCILE_AND_COMMIT does not preserve forwarding state here: like VERIFY_AND_COMMIT.
                self._commit(pipeline)

    def _commit(self, pipeline: Pipeline) -> None:
        with device_errors():
            self.device.load_pipeline(pipeline.device_config)
        self._pipeline, self._saved = pipeline, None
        if self._entities is not None:
            self._entities.close()
        self._entities = _Entities(self.device, pipeline.p4map, self.arbiter)
        log.info("pipeline committed: %d tables, %d actions, %d registers, %d counters",
                 len(pipeline.p4map.tables), len(pipeline.p4map.actions),
                 len(pipeline.p4map.registers), len(pipeline.p4map.counters))

    def GetForwardingPipelineConfig(self, request: GetConfig, context: grpc.ServicerContext):
        kind = request.response_type
        failure: P4RuntimeError | None = None
        try:
            self._check_device(request.device_id)
            if kind not in GetConfig.ResponseType.values():
                raise P4RuntimeError.invalid_argument(f"unknown response_type {kind}")
        except P4RuntimeError as error:
            failure = error
        if failure is not None:
            context.abort(failure.code, failure.message)
        response = p4runtime_pb2.GetForwardingPipelineConfigResponse()
        with self._lock:
            pipeline = self._pipeline
        if pipeline is None:
            return response   # spec: the config field is left unset when none is known
        config = response.config
        if pipeline.cookie is not None:
            config.cookie.CopyFrom(pipeline.cookie)
        if kind in (GetConfig.ALL, GetConfig.P4INFO_AND_COOKIE):
            config.p4info.CopyFrom(pipeline.p4info)
        if kind in (GetConfig.ALL, GetConfig.DEVICE_CONFIG_AND_COOKIE):
            config.p4_device_config = pipeline.device_config
        return response

    @property
    def open_streams(self) -> int:
        with self._streams_lock:
            return self._open_streams

    def _admit_stream(self) -> bool:
        with self._streams_lock:
            if self._open_streams >= self.max_streams:
                return False
            self._open_streams += 1
            return True

    def _release_stream(self) -> None:
        with self._streams_lock:
            self._open_streams -= 1

    def StreamChannel(self, request_iterator, context: grpc.ServicerContext):
        # Each open stream holds a server thread: past the bound, refuse rather than starve the other RPCs.
        if not self._admit_stream():
            log.debug("StreamChannel from %s refused: %d streams open", context.peer(), self.max_streams)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"too many open StreamChannel streams: this switch serves at most {self.max_streams} "
                          f"streams at once; close one first")
        try:
            yield from self._serve_stream(request_iterator, context)
        finally:
            self._release_stream()

    def _serve_stream(self, request_iterator, context: grpc.ServicerContext):
        session = StreamSession(peer=context.peer(), alive=context.is_active)
        reader = threading.Thread(target=self._read_stream, args=(session, request_iterator),
                                  name=f"p4rt-stream-{session.number}", daemon=True)
        # Whatever ends the RPC (client gone, server stopping) also ends our send loop below.
        context.add_callback(lambda: session.end())
        reader.start()
        try:
            while True:
                item = session.outbox.get()
                if isinstance(item, StreamEnd):
                    if item.code != grpc.StatusCode.OK:
                        context.abort(item.code, item.message)
                    return
                yield item
        finally:
            self.arbiter.disconnect(session)

    def _read_stream(self, session: StreamSession, request_iterator) -> None:
        """Consume one controller's stream messages until it closes or breaks."""
        try:
            for request in request_iterator:
                kind = request.WhichOneof("update")
                if kind == "arbitration":
                    try:
                        self.arbiter.arbitrate(session, request.arbitration)
                    except P4RuntimeError as error:
                        log.info("%s terminated: %s", session, error)
                        session.end(error.code, error.message)
                        return
                elif kind == "packet":
                    log.debug("%s: PacketOut ignored (packet I/O is not supported)", session)
                elif kind == "digest_ack":
                    entities = self._entities
                    if entities is not None:
                        entities.digests.ack(session, request.digest_ack)
                else:
                    log.debug("%s: stream message '%s' ignored", session, kind)
        except Exception as error:   # the client went away (grpc raises on a cancelled stream)
            log.debug("%s: request stream ended: %s", session, error)
        finally:
            self.arbiter.disconnect(session)
            session.end()
