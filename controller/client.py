"""The P4Runtime gRPC client: connection with a deadline, master arbitration, and the raw RPCs.

This is the only module that touches grpc. Every `grpc.RpcError` is converted here, once, by `rpc_error()` into the
controller's exception family (`errors.py`): UNAVAILABLE becomes `SwitchUnreachableError`, PERMISSION_DENIED (a
write from a non-primary client) becomes `NotPrimaryError`, anything else a `P4RuntimeError` listing each failed
update of a batch, decoded from the `p4.v1.Error` details packed in the status (P4Runtime spec 12.3).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import grpc
from google.rpc import code_pb2, status_pb2

from omnireduce.controller.errors import (
    ControllerError,
    NotPrimaryError,
    P4RuntimeError,
    SwitchUnreachableError,
    UpdateFailure,
)
from omnireduce.p4proto import p4info_pb2, p4runtime_grpc, p4runtime_pb2

log = logging.getLogger(__name__)

# A BMv2 JSON of a large program is several MB; reads of whole registers are large too. gRPC's default is 4 MB.
_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True, slots=True)
class ElectionId:
    """The 128-bit election id of master arbitration; the highest id among connected clients is primary."""

    high: int = 0
    low: int = 1

    def message(self) -> p4runtime_pb2.Uint128:
        return p4runtime_pb2.Uint128(high=self.high, low=self.low)

    def __str__(self) -> str:
        return f"{self.high},{self.low}"


@dataclass(frozen=True, slots=True)
class ArbitrationResult:
    is_primary: bool
    # The election id of the current primary as the switch reports it (may be unset when there is none).
    primary_election_id: ElectionId | None
    message: str


def _code_name(code: int) -> str:
    try:
        return code_pb2.Code.Name(code)
    except ValueError:
        return f"CODE_{code}"


def rpc_error(error: grpc.RpcError, operation: str, address: str,
              descriptions: Sequence[str] | None = None) -> ControllerError:
    """The one conversion of a gRPC error into a controller error (see the module docstring)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else str(error)) or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return SwitchUnreachableError(f"{operation}: the P4Runtime server at {address} is unavailable: {details}")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return NotPrimaryError(f"{operation}: the switch at {address} refused it because this client is not the "
                               f"primary controller ({details}); use a higher --election-id or stop the other "
                               f"controller")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"no answer before the deadline ({details}); a larger --timeout may help"
    return P4RuntimeError(operation, code.name, details, _update_failures(error, descriptions))


def _update_failures(error: grpc.RpcError, descriptions: Sequence[str] | None) -> tuple[UpdateFailure, ...]:
    """The per-update `p4.v1.Error`s of a failed batch write, from the binary status details."""
    metadata = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    status = None
    for key, value in metadata or ():
        if key == _STATUS_DETAILS_KEY:
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except Exception:  # a malformed trailer is the server's bug; report the top-level status instead
                log.warning("undecodable %s trailer in a %s error", _STATUS_DETAILS_KEY, error.code())
                return ()
            break
    if status is None:
        return ()
    failures = []
    for index, detail in enumerate(status.details):
        p4_error = p4runtime_pb2.Error()
        if not detail.Unpack(p4_error):
            continue
        if p4_error.canonical_code == code_pb2.OK:
            continue
        description = descriptions[index] if descriptions and index < len(descriptions) else "?"
        failures.append(UpdateFailure(index, _code_name(p4_error.canonical_code), p4_error.message, description))
    return tuple(failures)


def _refusal(details: str) -> str:
    """Why a connection attempt failed for good ('' when waiting might help), from gRPC's UNAVAILABLE details."""
    if "Connection refused" in details:
        return "the connection was refused (nothing listens on that port)"
    if "resolving" in details or "Domain name not found" in details:
        return "its host name does not resolve"
    return ""


class P4RuntimeClient:
    """A connection to one device of one P4Runtime server, with the stream channel that holds arbitration open.

    Use as a context manager, or call `close()`: the stream channel is what makes this client primary, and it
    should not outlive the work.
    """

    def __init__(self, address: str, device_id: int = 0, election_id: ElectionId = ElectionId(),
                 timeout: float = 10.0, *, fail_fast: bool = False) -> None:
        self.address = address
        #: a refused connection or an unknown host fails at once instead of being retried until `timeout`
        #: (which suits a switch that is still starting; the CLI fails fast unless --timeout is given).
        self.fail_fast = fail_fast
        self.device_id = device_id
        self.election_id = election_id
        self.timeout = timeout
        self._channel: grpc.Channel | None = None
        self._stub: p4runtime_grpc.P4RuntimeStub | None = None
        self._requests: queue.Queue[p4runtime_pb2.StreamMessageRequest | None] = queue.Queue()
        self._arbitration: queue.Queue[p4runtime_pb2.StreamMessageResponse | ControllerError] = queue.Queue()
        self._stream = None
        self._reader: threading.Thread | None = None
        self._closing = threading.Event()
        self.arbitration: ArbitrationResult | None = None

    # --- connection ------------------------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the channel and wait (at most `timeout` seconds) for the server to answer; with `fail_fast`, a
        refused connection or an unknown host name fails at once."""
        options = [("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES)]
        self._channel = grpc.insecure_channel(self.address, options=options)
        stub = p4runtime_grpc.P4RuntimeStub(self._channel)
        # Readiness with a deadline: a Capabilities call that waits for the channel to become ready. It proves
        # what grpc.channel_ready_future proves (and that a P4Runtime server answers), without the connectivity
        # polling thread that future leaves behind, which makes every channel.close() block for 0.2 s.
        try:
            # fail_fast: first without waiting, so that a refused connection (nothing listens there) or an unknown
            # host name fails at once; any other failure gets the whole timeout.
            give_up_at = time.monotonic() + self.timeout
            try:
                stub.Capabilities(p4runtime_pb2.CapabilitiesRequest(), timeout=self.timeout,
                                  wait_for_ready=not self.fail_fast)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or not self.fail_fast:
                    raise
                refusal = _refusal(error.details() or "")
                if refusal:
                    self._channel.close()
                    self._channel = None
                    raise SwitchUnreachableError(
                        f"no P4Runtime server at {self.address}, {refusal}; start the switch (omnireduce-switch or "
                        f"simple_switch_grpc), fix --grpc-addr, or give --timeout S to wait for a switch that is "
                        f"still starting") from None
                stub.Capabilities(p4runtime_pb2.CapabilitiesRequest(), wait_for_ready=True,
                                  timeout=max(0.0, give_up_at - time.monotonic()))
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                self._channel.close()
                self._channel = None
                raise SwitchUnreachableError(
                    f"no P4Runtime server answered at {self.address} within {self.timeout:g} s, the connection "
                    f"was not refused but nothing answered; check that the switch runs and --grpc-addr, or give "
                    f"a slow switch a larger --timeout") from None
            # Anything else (UNIMPLEMENTED by an old server, say) is an answer: the server is there.
            log.debug("[%s] Capabilities answered %s", self.address, error.code())
        self._stub = stub
        log.debug("[%s] channel ready", self.address)

    def arbitrate(self) -> ArbitrationResult:
        """Open the stream channel and take part in master arbitration with our election id."""
        stub = self._require_stub()
        self._stream = stub.StreamChannel(self._request_iterator())
        self._reader = threading.Thread(target=self._read_stream, name=f"p4rt-stream-{self.address}", daemon=True)
        self._reader.start()
        request = p4runtime_pb2.StreamMessageRequest()
        request.arbitration.device_id = self.device_id
        request.arbitration.election_id.CopyFrom(self.election_id.message())
        self._requests.put(request)
        try:
            answer = self._arbitration.get(timeout=self.timeout)
        except queue.Empty:
            raise SwitchUnreachableError(f"the switch at {self.address} did not answer master arbitration within "
                                         f"{self.timeout:g} s") from None
        if isinstance(answer, ControllerError):
            raise answer
        self.arbitration = self._arbitration_result(answer.arbitration)
        log.info("[%s] arbitration: %s", self.address, self.arbitration.message)
        return self.arbitration

    def _arbitration_result(self, update: p4runtime_pb2.MasterArbitrationUpdate) -> ArbitrationResult:
        primary = None
        if update.HasField("election_id"):
            primary = ElectionId(update.election_id.high, update.election_id.low)
        if update.status.code == code_pb2.OK:
            return ArbitrationResult(True, primary, f"primary with election id {self.election_id}")
        holder = f" (primary election id {primary})" if primary else ""
        return ArbitrationResult(False, primary, f"not primary: election id {self.election_id} lost{holder}: "
                                                 f"{update.status.message or _code_name(update.status.code)}")

    def _request_iterator(self) -> Iterator[p4runtime_pb2.StreamMessageRequest]:
        while True:
            request = self._requests.get()
            if request is None:
                return
            yield request

    def _read_stream(self) -> None:
        try:
            for response in self._stream:
                kind = response.WhichOneof("update")
                if kind == "arbitration":
                    self._arbitration.put(response)
                    if self.arbitration is not None:
                        # A later update: someone with a higher id connected (or left).
                        self.arbitration = self._arbitration_result(response.arbitration)
                        log.warning("[%s] arbitration changed: %s", self.address, self.arbitration.message)
                elif kind == "error":
                    log.warning("[%s] stream error from the switch: %s", self.address, response.error.message)
                else:
                    log.debug("[%s] ignoring stream message %s", self.address, kind)
        except grpc.RpcError as error:
            if self._closing.is_set() or error.code() == grpc.StatusCode.CANCELLED:
                return
            converted = rpc_error(error, "master arbitration", self.address)
            if error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS):
                converted = NotPrimaryError(
                    f"the switch at {self.address} refused master arbitration for election id {self.election_id}: "
                    f"{error.details()} (another controller may hold the same id; pick another --election-id)")
            log.debug("[%s] stream closed: %s", self.address, converted)
            self._arbitration.put(converted)

    def close(self) -> None:
        self._closing.set()
        self._requests.put(None)
        if self._stream is not None:
            self._stream.cancel()
        if self._reader is not None:
            self._reader.join(timeout=self.timeout)
        if self._channel is not None:
            self._channel.close()
        self._channel = self._stub = self._stream = self._reader = None

    def __enter__(self) -> "P4RuntimeClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _require_stub(self) -> p4runtime_grpc.P4RuntimeStub:
        if self._stub is None:
            raise SwitchUnreachableError(f"not connected to {self.address} (call connect() first)")
        return self._stub

    # --- RPCs ------------------------------------------------------------------------------------------------

    def capabilities(self) -> str:
        """The P4Runtime API version the server implements."""
        try:
            response = self._require_stub().Capabilities(p4runtime_pb2.CapabilitiesRequest(), timeout=self.timeout)
        except grpc.RpcError as error:
            raise rpc_error(error, "Capabilities", self.address) from None
        return response.p4runtime_api_version

    def set_pipeline(self, p4info: p4info_pb2.P4Info, device_config: bytes, cookie: int = 0) -> None:
        """SetForwardingPipelineConfig(VERIFY_AND_COMMIT): the switch loads the program, dropping all state."""
        request = p4runtime_pb2.SetForwardingPipelineConfigRequest(
            device_id=self.device_id, election_id=self.election_id.message(),
            action=p4runtime_pb2.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT)
        request.config.p4info.CopyFrom(p4info)
        request.config.p4_device_config = device_config
        request.config.cookie.cookie = cookie
        try:
            self._require_stub().SetForwardingPipelineConfig(request, timeout=max(self.timeout, 30.0))
        except grpc.RpcError as error:
            raise rpc_error(error, "SetForwardingPipelineConfig", self.address) from None

    def get_pipeline(self, with_device_config: bool = False) -> p4runtime_pb2.ForwardingPipelineConfig | None:
        """The pipeline the switch runs, or None when it runs none."""
        kind = p4runtime_pb2.GetForwardingPipelineConfigRequest
        request = kind(device_id=self.device_id,
                       response_type=kind.ALL if with_device_config else kind.P4INFO_AND_COOKIE)
        try:
            response = self._require_stub().GetForwardingPipelineConfig(request, timeout=self.timeout)
        except grpc.RpcError as error:
            # Servers disagree on how to say "no pipeline": FAILED_PRECONDITION (PI/BMv2) or an empty config.
            # (NOT_FOUND means an unknown device id, a real error.)
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                log.debug("[%s] no pipeline: %s", self.address, error.details())
                return None
            raise rpc_error(error, "GetForwardingPipelineConfig", self.address) from None
        if not response.HasField("config") or not (response.config.p4info.tables or response.config.p4info.actions):
            return None
        return response.config

    def write(self, updates: Sequence[p4runtime_pb2.Update], descriptions: Sequence[str] | None = None) -> None:
        """One Write RPC (CONTINUE_ON_ERROR); a failure names each refused update via `descriptions`."""
        request = p4runtime_pb2.WriteRequest(device_id=self.device_id, election_id=self.election_id.message(),
                                             atomicity=p4runtime_pb2.WriteRequest.CONTINUE_ON_ERROR)
        request.updates.extend(updates)
        try:
            self._require_stub().Write(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise rpc_error(error, f"Write of {len(updates)} update(s)", self.address, descriptions) from None

    def read(self, entities: Sequence[p4runtime_pb2.Entity]) -> list[p4runtime_pb2.Entity]:
        """One Read RPC; the server may answer in several messages, which are gathered here."""
        request = p4runtime_pb2.ReadRequest(device_id=self.device_id)
        request.entities.extend(entities)
        result: list[p4runtime_pb2.Entity] = []
        try:
            for response in self._require_stub().Read(request, timeout=self.timeout):
                result.extend(response.entities)
        except grpc.RpcError as error:
            raise rpc_error(error, f"Read of {len(entities)} entity(ies)", self.address) from None
        return result
