# Run: .venv/bin/pytest tests/host/test_full_stack.py
"""The whole stack in one process: the softswitch running the compiled P4 program behind its P4Runtime server,
the controller installing the job over gRPC, agents all-reducing through the switch's ports on loopback; then the
controller resets the job and new agents start over at set 0 and tensor 0."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Iterator

import numpy as np
import pytest

from omnireduce.host import Timeouts
from omnireduce.p4src import artifacts
from omnireduce.p4src import constants as C

from tests.p4.omniswitch import SWITCH_IP, SWITCH_MAC, Worker, make_workers

from .harness import PortServer, agents_on, frame_configs, run_workers

pytestmark = pytest.mark.skipif(not artifacts.BMV2_JSON.exists(),
                                reason=f"{artifacts.BMV2_JSON} is not compiled yet (needs p4c: `make p4`)")

JOB_ID = 7
SLOTS = 8
FAST = Timeouts(retransmit_initial=0.03, retransmit_max=0.3, join=10, stall=10)


def worker_specs(count: int) -> list[Worker]:
    return make_workers(count, first_port=10, host_base=0x101)


def as_controller_worker(worker: Worker):
    from omnireduce.controller.model import Worker as ControllerWorker

    return ControllerWorker(worker.port, int(worker.mac.replace(":", ""), 16), int(IPv4Address(worker.ip)),
                            worker.udp_port)


@pytest.fixture
def controlled_switch() -> Iterator[tuple[object, object]]:
    """(device, controller session) with the pipeline pushed and job JOB_ID installed by the controller."""
    from omnireduce.controller.client import P4RuntimeClient
    from omnireduce.controller.jobs import add_job
    from omnireduce.controller.model import Job
    from omnireduce.controller.pipeline import PipelineFiles, push
    from omnireduce.controller.switch import Switch
    from omnireduce.softswitch.device import Device
    from omnireduce.softswitch.p4runtime.server import P4RuntimeServer

    server = P4RuntimeServer(Device(), "127.0.0.1:0", device_id=0)
    server.start()
    try:
        with P4RuntimeClient(server.bound_address, timeout=10) as client:
            client.connect()  # readiness, with a deadline
        with Switch.connect(server.bound_address, timeout=10) as switch:
            push(switch, PipelineFiles(artifacts.P4INFO, artifacts.BMV2_JSON))
            workers = tuple(as_controller_worker(w) for w in worker_specs(3))
            add_job(switch, Job(JOB_ID, slot_base=16, slot_count=SLOTS, mcast_group=5, workers=workers))
            yield server.device, switch
    finally:
        server.stop(grace=None)


def allreduce_twice(server: PortServer, specs: list[Worker]) -> None:
    configs = frame_configs(server, specs, job_id=JOB_ID, slots=SLOTS, switch_ip=SWITCH_IP, switch_mac=SWITCH_MAC,
                            timeouts=FAST)
    tensors = [np.random.default_rng(w).standard_normal(30 * C.LANES).astype(np.float32) for w in range(3)]
    exact = np.sum(np.array(tensors, dtype=np.float64), axis=0)
    with agents_on(server, specs, configs) as agents:
        for _ in range(2):
            results = run_workers(agents, tensors)
            for result in results:
                assert isinstance(result, np.ndarray), result
                assert np.allclose(result, exact, rtol=0, atol=1e-5)


def test_controller_installed_job_then_reset(controlled_switch):
    from omnireduce.controller.jobs import reset_job

    device, switch = controlled_switch
    specs = worker_specs(3)
    with PortServer(device, [w.port for w in specs]) as server:
        allreduce_twice(server, specs)
        # New agents start at set 0 and tensor 0: only after the controller has reset the job's slots.
        assert reset_job(switch, JOB_ID) > 0
        allreduce_twice(server, specs)
    assert server.errors == 0
