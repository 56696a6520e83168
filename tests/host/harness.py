"""In-process end-to-end harness: a switch's ports served as UDP sockets on loopback, and agents talking to them.

    with job_cluster(device, workers=4, slots=8) as cluster:   # device: a softswitch Device
        results = cluster.run(tensors)

Each switch port is one UDP socket on 127.0.0.1 (the softswitch's own PacketLoop and UdpPort); a datagram
received on it is one Ethernet frame entering the port (Device.process_packet), and every frame the device emits
on a port is sent to the agent attached there. A `lose` hook drops chosen frames in either direction.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from omnireduce.host import AgentConfig, AllReduce, FrameLink, Pacing, Timeouts, TransportKind
from omnireduce.host.wire import Endpoint, parse_mac
from omnireduce.softswitch.faults import LossHook, LossyDevice
from omnireduce.softswitch.ports import PacketLoop, PortSpec, UdpPort
from tests.p4.omniswitch import SWITCH_IP, SWITCH_MAC, OmniSwitch, Worker, make_workers

LOOPBACK = "127.0.0.1"


class PortServer:
    """Serve `device`'s `ports` as UDP sockets on loopback through the softswitch's own port loop.

    Each port answers the agent attached to it, or else whoever sent it the last frame (agents in other processes).
    """

    def __init__(self, device, ports: Sequence[int], *, lose: LossHook | None = None) -> None:
        self.device = device
        self._ports = {number: UdpPort(PortSpec(number, "udp", bind=(LOOPBACK, 0))) for number in ports}
        self.loop = PacketLoop(LossyDevice(device, lose), list(self._ports.values()))

    def address(self, port: int) -> tuple[str, int]:
        return self._ports[port].bound

    def attach(self, port: int, peer: tuple[str, int]) -> None:
        """Send the frames leaving `port` to `peer` (the agent's socket)."""
        self._ports[port].peer = peer

    @property
    def frames_in(self) -> int:
        return self.loop.stats["rx"]

    @property
    def errors(self) -> int:
        """Frames the device failed on (the loop logs and counts them instead of stopping)."""
        return self.loop.stats["process_error"]

    def __enter__(self) -> "PortServer":
        self.loop.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.loop.stop()


def frame_configs(server: PortServer, workers: Sequence[Worker], *, job_id: int, slots: int, switch_ip: str,
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
def agents_on(server: PortServer, workers: Sequence[Worker], configs: Sequence[AgentConfig]) -> Iterator[
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

    switch: OmniSwitch
    server: PortServer
    workers: list[Worker]
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
    switch = OmniSwitch(device)
    installed = make_workers(workers)
    switch.add_job(job_id, installed, slot_base=slot_base, slot_count=slots, mcast_grp=job_id)
    opened = installed[: agents if agents is not None else workers]
    with PortServer(device, [w.port for w in installed], lose=lose) as server:
        configs = frame_configs(server, opened, job_id=job_id, slots=slots, switch_ip=SWITCH_IP,
                                switch_mac=SWITCH_MAC, worker_count=agent_workers or workers, **options)
        with agents_on(server, opened, configs) as open_agents:
            yield Cluster(switch, server, installed, open_agents)
        assert server.errors == 0, "the device failed on some frames (see the log)"


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
