"""Free loopback ports, and waiting for a process's gRPC server to answer."""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack

from .processes import ManagedProcess

LOOPBACK = "127.0.0.1"


class NotReady(Exception):
    """A process did not become ready (it died, or its deadline passed); the message says which."""


def free_ports(count: int, kind: int = socket.SOCK_DGRAM) -> list[int]:
    """`count` distinct ports on 127.0.0.1 that the kernel just handed out for binding port 0.

    All sockets stay open until every port is picked, so the ports are distinct. Another process could take one
    between here and its use; the kernel hands out ephemeral ports in sequence, which makes that rare, and a port
    taken meanwhile shows up as a bind error in the process that wanted it.
    """
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, kind))
            sock.bind((LOOPBACK, 0))
            ports.append(sock.getsockname()[1])
        return ports


def free_tcp_port() -> int:
    return free_ports(1, socket.SOCK_STREAM)[0]


def wait_for_grpc(address: str, process: ManagedProcess, timeout: float, what: str = "switch") -> None:
    """Wait until the gRPC server at `address` accepts a channel, failing early when `process` exits.

    channel_ready_future blocks on the connection itself; the short slices let a dead process end the wait at once
    instead of at the deadline.
    """
    import grpc  # here: gRPC takes a while to import, and only this function of the module needs it

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        ready = grpc.channel_ready_future(channel)
        try:
            while True:
                if not process.alive():
                    raise NotReady(f"{what} process died before its gRPC server at {address} answered: "
                                   f"{process.failure_message()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NotReady(f"{what}'s gRPC server at {address} did not answer within {timeout:g} s")
                try:
                    ready.result(timeout=min(0.25, remaining))
                    return
                except grpc.FutureTimeoutError:
                    continue
        finally:
            ready.cancel()
