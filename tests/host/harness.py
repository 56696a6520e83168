"""In-process end-to-end harness: a switch's ports served as UDP sockets on loopback, and agents talking to them.

    server = PortServer(device, ports=[1, 2])          # device: softswitch Device or tests/host/model_device
    with server, cluster(...) as agents: results = run_workers(agents, tensors)

Each switch port is one UDP socket on 127.0.0.1; a datagram received on it is one Ethernet frame entering the
port (Device.process_packet), and every frame the device emits on a port is sent to the agent attached there.
A `lose` hook drops chosen frames in either direction, to test recovery.
"""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from omnireduce.host import AgentConfig, AllReduce, FrameLink, Pacing, Timeouts, TransportKind
from omnireduce.host.wire import Endpoint, parse_mac

#: lose(direction, port, frame) -> True drops the frame; direction is "in" (to the switch) or "out".
LossHook = Callable[[str, int, bytes], bool]

LOOPBACK = "127.0.0.1"


class PortServer:
    """Serve `device`'s `ports` as UDP sockets on loopback, from one thread."""

    def __init__(self, device, ports: Sequence[int], *, lose: LossHook | None = None) -> None:
        self.device = device
        self.lose = lose
        self._sockets: dict[int, socket.socket] = {}
        self._peers: dict[int, tuple[str, int]] = {}
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((LOOPBACK, 0))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self._sockets[port] = sock
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="port-server", daemon=True)
        self._stopping = False
        self.frames_in = 0
        self.frames_out = 0
        self.error: BaseException | None = None

    def address(self, port: int) -> tuple[str, int]:
        return self._sockets[port].getsockname()

    def attach(self, port: int, peer: tuple[str, int]) -> None:
        """Send the frames leaving `port` to `peer` (the agent's socket)."""
        self._peers[port] = peer

    def __enter__(self) -> "PortServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping = True
        self._wake_writer.send(b"x")
        self._thread.join(timeout=10)
        for sock in self._sockets.values():
            sock.close()
        self._wake_reader.close()
        self._wake_writer.close()

    def _serve(self) -> None:
        import selectors

        selector = selectors.DefaultSelector()
        for port, sock in self._sockets.items():
            selector.register(sock, selectors.EVENT_READ, port)
        selector.register(self._wake_reader, selectors.EVENT_READ, None)
        try:
            while not self._stopping:
                for key, _ in selector.select():
                    if key.data is None:
                        continue
                    self._drain(key.data, key.fileobj)
        except BaseException as error:  # surfaced by the tests through .error
            self.error = error
            raise
        finally:
            selector.close()

    def _drain(self, port: int, sock: socket.socket) -> None:
        sock.setblocking(False)
        while True:
            try:
                frame, source = sock.recvfrom(4096)
            except BlockingIOError:
                return
            # A port nobody was attached to answers whoever spoke to it first (agents in other processes).
            self._peers.setdefault(port, source)
            self.frames_in += 1
            if self.lose is not None and self.lose("in", port, frame):
                continue
            for out_port, out_frame in self.device.process_packet(port, frame):
                peer = self._peers.get(out_port)
                if peer is None or (self.lose is not None and self.lose("out", out_port, out_frame)):
                    continue
                self.frames_out += 1
                self._sockets[out_port].sendto(out_frame, peer)


@dataclass(frozen=True)
class WorkerSpec:
    """A worker as the switch knows it (same fields as tests/p4/omniswitch.Worker)."""

    worker_id: int
    port: int
    mac: str
    ip: str
    udp_port: int


def frame_configs(server: PortServer, workers: Sequence[WorkerSpec], *, job_id: int, slots: int, switch_ip: str,
                  switch_mac: str, worker_count: int | None = None, timeouts: Timeouts | None = None,
                  pacing: Pacing | None = None, **options) -> list[AgentConfig]:
    """One FRAME-transport AgentConfig per worker, each talking to its switch port through `server`."""
    return [
        AgentConfig(
            switch_ip=switch_ip, job_id=job_id, worker_id=w.worker_id, workers=worker_count or len(workers),
            slots=slots,
            transport=TransportKind.FRAME,
            frame_link=FrameLink(bind=(LOOPBACK, 0), peer=server.address(w.port),
                                 worker=Endpoint.of(w.mac, w.ip, w.udp_port), switch_mac=parse_mac(switch_mac)),
            timeouts=timeouts or Timeouts(retransmit_initial=0.05, retransmit_max=0.4, join=10, stall=10),
            pacing=pacing or Pacing(),
            **options,
        )
        for w in workers
    ]


@contextmanager
def agents_on(server: PortServer, workers: Sequence[WorkerSpec], configs: Sequence[AgentConfig]) -> Iterator[
        list[AllReduce]]:
    """Open one AllReduce per config and attach each agent's socket to its worker's switch port."""
    agents: list[AllReduce] = []
    try:
        for worker, config in zip(workers, configs):
            agent = AllReduce(config)
            agents.append(agent)
            server.attach(worker.port, agent.local_address)
        yield agents
    finally:
        for agent in agents:
            agent.close()


@dataclass
class Cluster:
    """A job installed on a switch whose ports are served on loopback, and one agent per worker."""

    switch: object  # tests/p4/omniswitch.OmniSwitch
    server: PortServer
    workers: list[WorkerSpec]
    agents: list[AllReduce]

    def run(self, tensors: Sequence[np.ndarray], **kwargs) -> list[np.ndarray | BaseException]:
        return run_workers(self.agents, tensors, **kwargs)

    def run_each(self, work: Callable[[int, AllReduce], object]) -> list[object]:
        return run_each(self.agents, work)


@contextmanager
def job_cluster(device, workers: int, slots: int, *, job_id: int = 1, agents: int | None = None,
                agent_workers: int | None = None, lose: LossHook | None = None, slot_base: int = 0,
                **options) -> Iterator[Cluster]:
    """Install a job of `workers` workers on `device` (through OmniSwitch) and open an agent for each.

    agents: open only the first `agents` of them (a worker that never shows up); agent_workers: the worker count
    the agents are configured with (to test a mismatch with the switch); options go to AgentConfig.
    """
    from tests.p4.omniswitch import SWITCH_IP, SWITCH_MAC, OmniSwitch, make_workers

    switch = OmniSwitch(device)
    installed = make_workers(workers)
    switch.add_job(job_id, installed, slot_base=slot_base, slot_count=slots, mcast_grp=job_id)
    specs = [WorkerSpec(w.worker_id, w.port, w.mac, w.ip, w.udp_port) for w in installed]
    opened = specs[: agents if agents is not None else workers]
    with PortServer(device, [w.port for w in specs], lose=lose) as server:
        configs = frame_configs(server, opened, job_id=job_id, slots=slots, switch_ip=SWITCH_IP,
                                switch_mac=SWITCH_MAC, worker_count=agent_workers or workers, **options)
        with agents_on(server, opened, configs) as open_agents:
            yield Cluster(switch, server, specs, open_agents)
        if server.error is not None:
            raise server.error


def run_workers(agents: Sequence[AllReduce], tensors: Sequence[np.ndarray],
                **kwargs) -> list[np.ndarray | BaseException]:
    """Every agent all-reduces its tensor concurrently (one thread each); a failed worker gives its exception."""

    return run_each(agents, lambda index, agent: agent.allreduce(tensors[index], **kwargs))


def run_each(agents: Sequence[AllReduce], work: Callable[[int, AllReduce], object]) -> list:
    """work(index, agent) for every agent concurrently; a call that raised gives its exception instead."""

    def one(index: int) -> object:
        try:
            return work(index, agents[index])
        except Exception as error:  # reported to the test, which asserts on it
            return error

    with ThreadPoolExecutor(max_workers=len(agents)) as pool:
        return list(pool.map(one, range(len(agents))))
