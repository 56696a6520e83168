"""BMv2's simple_switch_grpc behind the Device surface that tests/p4/omniswitch.OmniSwitch uses.

The switch runs in a network namespace the test creates, on veth pairs whose test-side ends live in the same
namespace; nothing outside it is touched. P4Runtime goes over a unix socket (namespaces do not share loopback) and
through omnireduce.controller, frames through AF_PACKET sockets opened inside the namespace (setns on this thread
only while the socket is created). Every frame is sent and its outputs collected before the next one goes out:
BMv2 on a veth loses most of a back-to-back burst.

Needs root, and simple_switch_grpc and simple_switch_CLI on PATH.
"""

from __future__ import annotations

import ctypes
import os
import select
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import grpc

from omnireduce.controller.client import ElectionId
from omnireduce.controller.entities import (
    ActionCall,
    CounterEntry,
    Exact,
    Lpm,
    MulticastGroupEntry,
    Replica,
    TableEntry,
)
from omnireduce.controller.p4info import P4InfoIndex
from omnireduce.controller.registers import ThriftRegisters
from omnireduce.controller.switch import Switch
from omnireduce.p4src import artifacts
from tests.polling import stop_process, wait_until

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
# How long to wait for the frames a packet produces after the last one arrived. BMv2 forwards a frame in well under
# a millisecond when idle; outputs are awaited with this quiet period after the probe below.
QUIET_SECONDS = 0.05


def bmv2_available() -> bool:
    return shutil.which("simple_switch_grpc") is not None and os.geteuid() == 0


class _Namespace:
    def __init__(self, name: str) -> None:
        self.name = name
        subprocess.run(["ip", "netns", "add", name], check=True)

    def run(self, *args: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.name, *args], check=True)

    def socket_in(self, make_socket):
        libc = ctypes.CDLL(None, use_errno=True)
        own = os.open("/proc/self/ns/net", os.O_RDONLY)
        target = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the test namespace failed")
            try:
                return make_socket()
            finally:
                libc.setns(own, CLONE_NEWNET)
        finally:
            os.close(own)
            os.close(target)

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], check=False)


class Bmv2Device:
    """simple_switch_grpc running p4src/build/omnireduce.json on `port_count` veth ports."""

    def __init__(self, port_count: int = 8, ready_timeout: float = 20.0) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="omni-bmv2-"))
        self.namespace = _Namespace(f"omnip4-{os.getpid()}")
        self.process: subprocess.Popen | None = None
        self.switch: Switch | None = None
        self.sockets: dict[int, socket.socket] = {}
        try:
            self._start(port_count, ready_timeout)
        except BaseException:
            self.close()
            raise

    def _start(self, port_count: int, ready_timeout: float) -> None:
        ns = self.namespace
        ns.run("ip", "link", "set", "lo", "up")  # BMv2's Thrift runtime listens on the namespace's loopback
        interfaces = []
        for port in range(1, port_count + 1):
            ns.run("ip", "link", "add", f"sw{port}", "type", "veth", "peer", "name", f"host{port}")
            for end in (f"sw{port}", f"host{port}"):
                ns.run("sysctl", "-q", "-w", f"net.ipv6.conf.{end}.disable_ipv6=1")
                ns.run("ip", "link", "set", end, "up")
            interfaces += ["-i", f"{port}@sw{port}"]
        grpc_socket = self.workdir / "grpc.sock"
        log = open(self.workdir / "bmv2.log", "wb")
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", ns.name, "simple_switch_grpc", "--no-p4", "--device-id", "0", *interfaces,
             "--", "--grpc-server-addr", f"unix://{grpc_socket}"],
            stdout=log, stderr=subprocess.STDOUT)
        self.address = f"unix://{grpc_socket}"
        wait_until(grpc_socket.exists, ready_timeout, f"simple_switch_grpc's gRPC socket (log: {self.workdir}/bmv2.log)",
                   abort=lambda: None if self.process.poll() is None else f"it exited with {self.process.returncode}")
        runtime_cli = self.workdir / "simple_switch_CLI"
        runtime_cli.write_text(f"#!/bin/sh\nexec ip netns exec {ns.name} simple_switch_CLI \"$@\"\n")
        runtime_cli.chmod(0o755)
        self.registers = ThriftRegisters(cli=str(runtime_cli))
        self.switch = Switch.connect(self.address, 0, ElectionId(0, 1), timeout=ready_timeout)
        self.switch.push_pipeline(P4InfoIndex.from_file(artifacts.P4INFO).p4info, artifacts.BMV2_JSON.read_bytes())
        for port in range(1, port_count + 1):
            def make(port=port):
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
                sock.bind((f"host{port}", 0))
                return sock
            self.sockets[port] = self.namespace.socket_in(make)

    # --- the Device surface used by OmniSwitch ---------------------------------------------------------------
    def table_insert(self, entry) -> None:
        info = self.switch.schema.table(entry.table)
        match = {}
        for field_info, field_match in zip(info.match_fields, entry.key):
            match[field_info.name] = (Lpm(field_match.value, field_match.prefix_len) if field_match.kind == "lpm"
                                      else Exact(field_match.value))
        action = self.switch.schema.action(entry.action)
        params = {param.name: value for param, value in zip(action.params, entry.params)}
        self.switch.insert([TableEntry(entry.table, match, ActionCall(entry.action, params))])

    def mc_group_insert(self, group_id: int, replicas) -> None:
        self.switch.insert([MulticastGroupEntry(group_id, tuple(Replica(p, r) for p, r in replicas))])

    def mc_group_modify(self, group_id: int, replicas) -> None:
        self.switch.modify([MulticastGroupEntry(group_id, tuple(Replica(p, r) for p, r in replicas))])

    def register_read(self, name: str, index: int) -> int:
        # simple_switch_grpc's P4Runtime server has no registers: they go over its Thrift runtime, which listens
        # inside the namespace, so simple_switch_CLI runs there too.
        info = self.switch.schema.register(name)
        return self.registers.read({info: [index]})[info.name][index]

    def counter_read(self, name: str, index: int) -> tuple[int, int]:
        (entry,) = [e for e in self.switch.read([CounterEntry(name, index)]) if isinstance(e, CounterEntry)]
        return entry.packets, entry.bytes

    def process_packet(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        # Wait until the switch has taken the frame in (port_rx counts it first thing in ingress), then collect
        # whatever comes out until the ports stay quiet.
        before = self.counter_read("IngressPipe.port_rx", port)[0]
        self.sockets[port].send(frame)
        deadline = time.monotonic() + 5
        while self.counter_read("IngressPipe.port_rx", port)[0] == before:
            if time.monotonic() > deadline:
                raise TimeoutError(f"BMv2 never took in the frame sent on port {port}")
        outputs = []
        ports_by_fd = {sock.fileno(): p for p, sock in self.sockets.items()}
        while True:
            ready, _, _ = select.select(list(self.sockets.values()), [], [], QUIET_SECONDS)
            if not ready:
                return outputs
            for sock in ready:
                data, address = sock.recvfrom(65535)
                if address[2] != socket.PACKET_OUTGOING:
                    outputs.append((ports_by_fd[sock.fileno()], data))

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        if self.switch is not None:
            try:
                self.switch.close()
            except grpc.RpcError:
                pass
        if self.process is not None:
            stop_process(self.process)
        self.namespace.delete()
        shutil.rmtree(self.workdir, ignore_errors=True)

