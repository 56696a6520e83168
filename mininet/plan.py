"""Addresses and ports of a testbed run: which worker sits behind which switch port, with which MAC and IPv4
address, and which slots each job owns. Both network modes (loopback and Mininet) use the same plan, so the
controller installs the same jobs in both.

Worker k (counted over all jobs, job-major) is behind switch port k+1 with IPv4 10.0.0.(k+1)/24 and MAC
02:00:00:00:00:(k+1); the aggregator is the virtual 10.0.0.254 / 02:00:00:00:00:fe (no host owns it: the switch
recognises aggregation traffic by UDP port, and the hosts get a static ARP entry for it). Job j is job id j with
slots [j*S, (j+1)*S) and multicast group j+1.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from omnireduce.p4src import constants

from .model import MAX_HOSTS, TestbedConfig

SUBNET = ipaddress.IPv4Network("10.0.0.0/24")
AGGREGATOR_IP = ipaddress.IPv4Address("10.0.0.254")
AGGREGATOR_MAC = "02:00:00:00:00:fe"


@dataclass(frozen=True, slots=True)
class WorkerPlace:
    """Where one worker is: its job and worker id, switch port, addresses, and a short label for names."""

    job_id: int
    worker_id: int
    port: int
    ip: ipaddress.IPv4Address
    mac: str
    udp_port: int = constants.OMNI_UDP_PORT

    @property
    def label(self) -> str:
        """'h<port>': a Mininet host name suffix and log file prefix (short: interface names have 15 chars)."""
        return f"h{self.port}"

    @property
    def name(self) -> str:
        """'job0-w2': how messages name the worker."""
        return f"job{self.job_id}-w{self.worker_id}"


@dataclass(frozen=True, slots=True)
class JobPlace:
    job_id: int
    slot_base: int
    slot_count: int
    mcast_group: int
    workers: tuple[WorkerPlace, ...]


@dataclass(frozen=True, slots=True)
class NetworkPlan:
    jobs: tuple[JobPlace, ...]
    aggregator_ip: ipaddress.IPv4Address = AGGREGATOR_IP
    aggregator_mac: str = AGGREGATOR_MAC
    prefix_len: int = SUBNET.prefixlen

    @property
    def workers(self) -> tuple[WorkerPlace, ...]:
        return tuple(worker for job in self.jobs for worker in job.workers)


def mac_of(index: int) -> str:
    return "02:00:00:00:{:02x}:{:02x}".format(index >> 8, index & 0xFF)


def plan_network(config: TestbedConfig) -> NetworkPlan:
    total = config.workers * config.jobs
    if total > MAX_HOSTS:
        raise ValueError(f"{config.jobs} jobs x {config.workers} workers = {total} hosts; the testbed's /24 holds at "
                         f"most {MAX_HOSTS}")
    jobs = []
    for job_id in range(config.jobs):
        workers = []
        for worker_id in range(config.workers):
            index = job_id * config.workers + worker_id + 1
            workers.append(WorkerPlace(job_id, worker_id, port=index, ip=SUBNET.network_address + index,
                                       mac=mac_of(index)))
        jobs.append(JobPlace(job_id, job_id * config.slots, config.slots, job_id + 1, tuple(workers)))
    return NetworkPlan(tuple(jobs))
