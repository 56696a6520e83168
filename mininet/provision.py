"""The controller's part of a testbed run, through the controller library: push the pipeline and install the jobs
of a `NetworkPlan`; afterwards, read the switch's counters.

The loopback runner calls these functions in-process. In Mininet mode the driver runs them as a command in the
root namespace, `python -m omnireduce.testbed.provision_cli setup|counters ...`, because the driver cannot import
the venv's packages; the plan then travels as JSON.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from .plan import JobPlace, NetworkPlan, WorkerPlace

if TYPE_CHECKING:
    from omnireduce.controller.counters import CounterReport
    from omnireduce.controller.model import Job

# NOTE: the controller library (gRPC and the P4Runtime protobufs, seconds to import on a busy machine) is imported
# where it is used, so that `omnireduce-testbed` starts showing what it does at once.

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 15.0


def controller_jobs(plan: NetworkPlan) -> list[Job]:
    """The plan's jobs as the controller library's `Job`s."""
    from omnireduce.controller.encoding import parse_ipv4, parse_mac
    from omnireduce.controller.model import Job, Worker

    return [Job(job.job_id, job.slot_base, job.slot_count, job.mcast_group,
                tuple(Worker(worker.port, parse_mac(worker.mac), parse_ipv4(str(worker.ip)), worker.udp_port)
                      for worker in job.workers))
            for job in plan.jobs]


def set_up_switch(grpc_addr: str, plan: NetworkPlan, timeout: float = CONNECT_TIMEOUT_S,
                  thrift_port: int | None = None) -> None:
    """Push the omnireduce pipeline and install every job of `plan` (all or none).

    thrift_port: BMv2 only; installing a job clears its slots' registers, which simple_switch_grpc serves over
    its Thrift runtime rather than P4Runtime.
    """
    from omnireduce.controller import jobs as job_operations
    from omnireduce.controller.pipeline import PipelineFiles, push
    from omnireduce.controller.switch import connect

    with connect(grpc_addr, timeout=timeout, thrift_port=thrift_port) as switch:
        push(switch, PipelineFiles())
        job_operations.add_jobs(switch, controller_jobs(plan))
    log.info("switch %s: pipeline pushed, %d job(s) installed", grpc_addr, len(plan.jobs))


def read_counters(grpc_addr: str, timeout: float = CONNECT_TIMEOUT_S) -> dict[str, Any]:
    """The switch's counters as plain JSON-able data (see `counters_to_json`)."""
    from omnireduce.controller import counters as counter_reading
    from omnireduce.controller.pipeline import PipelineFiles
    from omnireduce.controller.switch import Switch

    with Switch.connect(grpc_addr, timeout=timeout, require_primary=False) as switch:
        switch.bind_pipeline_file(PipelineFiles().p4info)
        return counters_to_json(counter_reading.read_counters(switch))


def counters_to_json(report: CounterReport) -> dict[str, Any]:
    """{port_rx|port_tx: {port: {packets, bytes}}, jobs: {job: {kind: {packets, bytes}}}, drops: [...]}, with
    string keys (JSON objects have no integer keys)."""
    return {
        "port_rx": {str(port): asdict(count) for port, count in report.port_rx.items()},
        "port_tx": {str(port): asdict(count) for port, count in report.port_tx.items()},
        "jobs": {str(job): {kind: asdict(count) for kind, count in kinds.items()} for job, kinds in report.jobs.items()},
        "drops": [{"pipe": drop.pipe, "reason": drop.reason, "name": drop.name, **asdict(drop.count)}
                  for drop in report.drops],
    }


# --- the plan as JSON, for the command line ------------------------------------------------------------------


def plan_to_json(plan: NetworkPlan) -> dict[str, Any]:
    return {"aggregator_ip": str(plan.aggregator_ip), "aggregator_mac": plan.aggregator_mac,
            "prefix_len": plan.prefix_len,
            "jobs": [{"job_id": job.job_id, "slot_base": job.slot_base, "slot_count": job.slot_count,
                      "mcast_group": job.mcast_group,
                      "workers": [{"job_id": worker.job_id, "worker_id": worker.worker_id, "port": worker.port,
                                   "ip": str(worker.ip), "mac": worker.mac, "udp_port": worker.udp_port}
                                  for worker in job.workers]}
                     for job in plan.jobs]}


def plan_from_json(data: dict[str, Any]) -> NetworkPlan:
    try:
        jobs = tuple(JobPlace(job["job_id"], job["slot_base"], job["slot_count"], job["mcast_group"],
                              tuple(WorkerPlace(worker["job_id"], worker["worker_id"], worker["port"],
                                                ipaddress.IPv4Address(worker["ip"]), worker["mac"],
                                                worker["udp_port"])
                                    for worker in job["workers"]))
                     for job in data["jobs"])
        return NetworkPlan(jobs, ipaddress.IPv4Address(data["aggregator_ip"]), data["aggregator_mac"],
                           data["prefix_len"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"malformed network plan: {error!r}") from None
