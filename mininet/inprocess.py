"""An in-process loopback testbed: the softswitch, its controller and every job's agents in one Python process.

    with InProcessTestbed(InProcessConfig(workers=4, slots=16)) as bed:
        results = bed.allreduce({0: tensors})          # {job: [result or exception, by worker]}
        bed.impair(ImpairmentPlan.parse(["drop=1%"]), seed=7)   # the next all-reduce's faults
        counters = bed.counters()                     # the switch's counters, read over P4Runtime

It is `omnireduce-testbed --net loopback` without the process starts (a second or more each on a loaded machine),
for what runs many all-reduces on one switch: the fault suite (`omnireduce-bench faults`) and the fuzzer
(`omnireduce-bench fuzz`), and their tests. The parts are the same: the softswitch started by
`omnireduce.softswitch.cli.setup` (native pipeline, UDP ports on 127.0.0.1, the impairments of softswitch/faults.py
between ports and pipeline), the pipeline pushed and the jobs installed through the controller library over
P4Runtime, addresses from the testbed's plan (plan.py), and one `AllReduce` agent per worker (frame transport), each
running its all-reduces in a thread of its own. Agents share the interpreter, so one run takes longer than with
agent processes; the packets are the same.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from omnireduce.host import AgentConfig, AllReduce, FrameLink, Timeouts, TransportKind
from omnireduce.host.wire import Endpoint, parse_mac
from omnireduce.softswitch.faults import ImpairedDevice, ImpairmentPlan

from .model import TestbedConfig
from .plan import NetworkPlan, WorkerPlace, plan_network
from .provision import counters_to_json, set_up_switch

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
SETUP_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class InProcessConfig:
    """`jobs` jobs of `workers` workers with `slots` slots each (job j: slots [jS, (j+1)S), the testbed's plan).

    timeouts: the agents' time limits (the agent's defaults unless given); impairments and impair_seed: the
    switch's fault injection to start with (`InProcessTestbed.impair` changes them between runs)."""

    workers: int = 4
    slots: int = 16
    jobs: int = 1
    timeouts: Timeouts = field(default_factory=Timeouts)
    impairments: ImpairmentPlan = ImpairmentPlan()
    impair_seed: int = 0
    backend: str = "auto"


class InProcessTestbed:
    """A switch with every job installed, and open agents; use as a context manager (`close` stops everything)."""

    def __init__(self, config: InProcessConfig) -> None:
        self.config = config
        self.plan: NetworkPlan = plan_network(TestbedConfig(workers=config.workers, jobs=config.jobs,
                                                            slots=config.slots))
        self.switch = None
        self.grpc_addr = ""
        self.agents: dict[WorkerPlace, AllReduce] = {}
        self._pool: ThreadPoolExecutor | None = None

    # --- life cycle ----------------------------------------------------------------------------------------------

    def __enter__(self) -> "InProcessTestbed":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        from omnireduce.softswitch.backend import default_backend
        from omnireduce.softswitch.cli import SwitchConfig, setup
        from omnireduce.softswitch.ports import PortSpec

        config = self.config
        ports = tuple(PortSpec(worker.port, "udp", bind=(LOOPBACK, 0)) for worker in self.plan.workers)
        backend = default_backend() if config.backend == "auto" else config.backend
        # The impairment layer is there even with no impairment, so that later runs can have some.
        self.switch = setup(config=SwitchConfig(json_path=None, ports=ports, grpc_address=f"{LOOPBACK}:0",
                                                impairments=config.impairments, impair_seed=config.impair_seed,
                                                backend=backend))
        self.grpc_addr = self.switch.server.bound_address
        set_up_switch(self.grpc_addr, self.plan, timeout=SETUP_TIMEOUT_S)
        self.open_agents()
        self._pool = ThreadPoolExecutor(max_workers=len(self.plan.workers), thread_name_prefix="agent")

    def open_agents(self, jobs: Sequence[int] | None = None) -> None:
        """Open a fresh agent (tensor id 0, set 0) for every worker of `jobs` (default all), closing the old ones:
        after a failure, with `reset_job`, as docs/protocol.md section 4.6 asks."""
        for worker in self.plan.workers:
            if jobs is not None and worker.job_id not in jobs:
                continue
            old = self.agents.pop(worker, None)
            if old is not None:
                old.close()
            port = self.switch.loop.ports[worker.port]
            agent = AllReduce(self.agent_config(worker, port.bound))
            port.connect_peer(agent.local_address)
            self.agents[worker] = agent

    def agent_config(self, worker: WorkerPlace, switch_port: tuple[str, int]) -> AgentConfig:
        return AgentConfig(
            switch_ip=self.plan.aggregator_ip, job_id=worker.job_id, worker_id=worker.worker_id,
            workers=self.config.workers, slots=self.config.slots, transport=TransportKind.FRAME,
            frame_link=FrameLink(bind=(LOOPBACK, 0), peer=switch_port,
                                 worker=Endpoint.of(worker.mac, str(worker.ip), worker.udp_port),
                                 switch_mac=parse_mac(self.plan.aggregator_mac)),
            timeouts=self.config.timeouts)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for agent in self.agents.values():
            agent.close()
        self.agents.clear()
        if self.switch is not None:
            self.switch.stop()
            self.switch = None

    # --- what runs use -------------------------------------------------------------------------------------------

    @property
    def device(self):
        """The softswitch's Device (the pipeline itself, without the impairments)."""
        return self.switch.device

    @property
    def impaired(self) -> ImpairedDevice:
        return self.switch.loop.device

    @property
    def loop(self):
        return self.switch.loop

    def impair(self, plan: ImpairmentPlan, seed: int) -> None:
        """The faults of the next runs (frames still held from earlier ones leave when due)."""
        self.impaired.reconfigure(plan, seed)

    def workers_of(self, job_id: int) -> list[WorkerPlace]:
        return [worker for worker in self.plan.workers if worker.job_id == job_id]

    def allreduce(self, tensors: Mapping[int, Sequence[np.ndarray]]) -> dict[int, list[np.ndarray | BaseException]]:
        """Every worker of every job in `tensors` all-reduces its tensor, all at once; per job, per worker id, the
        result or the exception the agent raised."""
        assert self._pool is not None, "not started"
        futures = {}
        for job_id, job_tensors in tensors.items():
            for worker in self.workers_of(job_id):
                agent = self.agents[worker]
                futures[worker] = self._pool.submit(agent.allreduce, job_tensors[worker.worker_id])
        results: dict[int, list] = {job_id: [None] * len(self.workers_of(job_id)) for job_id in tensors}
        for worker, future in futures.items():
            try:
                results[worker.job_id][worker.worker_id] = future.result()
            except Exception as error:  # the caller judges each worker's outcome
                results[worker.job_id][worker.worker_id] = error
        return results

    def reset_job(self, job_id: int) -> None:
        """`omnireduce-ctl reset`: clear the job's slots, then open fresh agents for it."""
        from omnireduce.controller import connect, reset_job
        from omnireduce.p4src import artifacts

        with connect(self.grpc_addr, timeout=SETUP_TIMEOUT_S, p4info=artifacts.P4INFO) as switch:
            reset_job(switch, job_id)
        self.open_agents([job_id])

    def counters(self) -> dict:
        """The switch's counters (provision.counters_to_json's shape), read over P4Runtime."""
        from omnireduce.controller import counters as counter_reading
        from omnireduce.controller.pipeline import PipelineFiles
        from omnireduce.controller.switch import Switch

        with Switch.connect(self.grpc_addr, timeout=SETUP_TIMEOUT_S, require_primary=False) as switch:
            switch.bind_pipeline_file(PipelineFiles().p4info)
            return counters_to_json(counter_reading.read_counters(switch))

    def switch_counters(self) -> dict[str, int]:
        """The switch's drop and job counters (packets), read from the device itself (cheap enough to read around
        every frame): `ingress:<reason>`, `egress:<reason>` and `job<J>:<kind>` (contributions, results, replays,
        forwards) for every job."""
        return read_device_counters(self.device, [job.job_id for job in self.plan.jobs])

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Until no impaired frame is held any more (delays, reordering) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while self.impaired.next_due() is not None and time.monotonic() < deadline:
            time.sleep(0.01)


def read_device_counters(device, job_ids: Sequence[int]) -> dict[str, int]:
    """See `InProcessTestbed.switch_counters`."""
    from omnireduce.controller import program
    from omnireduce.p4src import constants

    counters = {}
    for pipe, name in (("ingress", program.INGRESS_DROPS), ("egress", program.EGRESS_DROPS)):
        for code, reason in constants.DROP_REASONS.items():
            counters[f"{pipe}:{reason}"] = device.counter_read(name, code)[0]
    for job_id in job_ids:
        for kind, name in program.JOB_COUNTERS.items():
            counters[f"job{job_id}:{kind}"] = device.counter_read(name, job_id)[0]
    return counters


def counter_delta(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    """The counters that moved from `before` to `after`, by how much."""
    return {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
