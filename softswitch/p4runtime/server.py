"""P4Runtime gRPC server of the softswitch, the way simple_switch_grpc serves BMv2.

    server = P4RuntimeServer(device, "127.0.0.1:9559", device_id=0)
    server.start()            # returns once the port is bound; raises P4RuntimeServerError if it is taken
    ...
    server.stop()

Standard clients (p4runtime-shell, ONOS, our controller) connect unchanged: arbitration on the
StreamChannel, SetForwardingPipelineConfig with a P4Info plus the BMv2 JSON as `p4_device_config`,
then Write/Read of table entries, counters, registers and PRE entries.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import TYPE_CHECKING

import grpc

from omnireduce.p4proto import p4info_pb2, p4runtime_grpc
from omnireduce.softswitch.p4runtime.arbitration import Arbiter
from omnireduce.softswitch.p4runtime.errors import P4RuntimeError
from omnireduce.softswitch.p4runtime.service import P4RuntimeService

if TYPE_CHECKING:   # only for annotations: the Device module needs nothing from the server
    from omnireduce.softswitch.device import Device

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1:9559"
# Pipeline configs (P4Info + BMv2 JSON) and wildcard reads can be large; the spec's implementation
# guidelines recommend raising gRPC's 4 MiB default.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
# Arbitrated controllers per role (P4Runtime leaves the number to the target).
MAX_STREAMS_PER_ROLE = 8
# gRPC's synchronous server holds a worker thread for as long as a StreamChannel is open. Open streams, arbitrated
# or not, are therefore bounded (past the bound a new one is refused with RESOURCE_EXHAUSTED), and the pool has
# UNARY_WORKERS threads more than that, which no stream can take: Capabilities, Read, Write and the pipeline RPCs
# stay answered whatever any client opens.
MAX_STREAMS = 64
UNARY_WORKERS = 16
WORKER_THREADS = MAX_STREAMS + UNARY_WORKERS


class P4RuntimeServerError(RuntimeError):
    """The server could not start (address taken or invalid) or was misused."""


class P4RuntimeServer:
    """A P4Runtime server for one softswitch `Device`.

    `address` is "host:port"; port 0 picks a free port (see `bound_port`). `p4info` is for a Device
    that already has a pipeline loaded (e.g. by the CLI): the server then serves it right away;
    otherwise clients push one with SetForwardingPipelineConfig.
    """

    def __init__(self, device: Device, address: str = DEFAULT_ADDRESS, device_id: int = 0,
                 p4info: p4info_pb2.P4Info | None = None) -> None:
        self.device = device
        self.address = address
        self.device_id = device_id
        self.arbiter = Arbiter(device_id, max_sessions_per_role=MAX_STREAMS_PER_ROLE)
        try:
            self.service = P4RuntimeService(device, device_id, self.arbiter, p4info, max_streams=MAX_STREAMS)
        except P4RuntimeError as error:   # the given P4Info does not fit the Device's loaded pipeline
            raise P4RuntimeServerError(f"cannot serve the given P4Info: {error.message}") from None
        self._server: grpc.Server | None = None
        self._port: int | None = None

    @property
    def bound_port(self) -> int:
        if self._port is None:
            raise P4RuntimeServerError("the P4Runtime server is not started")
        return self._port

    @property
    def open_streams(self) -> int:
        """StreamChannel calls being served now (at most MAX_STREAMS)."""
        return self.service.open_streams

    @property
    def bound_address(self) -> str:
        host = self.address.rsplit(":", 1)[0]
        return f"{host}:{self.bound_port}"

    def start(self) -> None:
        """Bind and start serving; returns once the port is bound."""
        if self._server is not None:
            raise P4RuntimeServerError("the P4Runtime server is already started")
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="p4rt"),
            options=[
                # Without this, gRPC sets SO_REUSEPORT and a second server would silently share the port.
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        p4runtime_grpc.add_P4RuntimeServicer_to_server(self.service, server)
        try:
            port = server.add_insecure_port(self.address)
        except RuntimeError as error:   # recent grpcio raises instead of returning 0
            raise P4RuntimeServerError(f"cannot bind the P4Runtime server to {self.address}: {error} "
                                       f"(is another switch using this port?)") from None
        if port == 0:
            raise P4RuntimeServerError(f"cannot bind the P4Runtime server to {self.address} "
                                       f"(is another switch using this port?)")
        server.start()
        self._server, self._port = server, port
        log.debug("P4Runtime server for device %d listening on %s", self.device_id, self.bound_address)

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving; open streams are cancelled after `grace` seconds. Safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait()
            self.service.close()
            log.info("P4Runtime server on %s stopped", self.address)

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Block until the server stops (True) or `timeout` passes (False)."""
        if self._server is None:
            return True
        return self._server.wait_for_termination(timeout)

    def __enter__(self) -> P4RuntimeServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
