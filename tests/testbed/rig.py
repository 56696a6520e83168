"""A loopback job made of processes, for tests that kill parts of it: the softswitch (`omnireduce-switch`), the
controller (the library in this process, or `omnireduce-ctl` and controller processes), and one `omnireduce-agent`
process per worker, each all-reducing a synthetic tensor `--repeat` times and checking the sum (`--verify`).

    with Rig(tmp_path, workers=3) as rig:
        rig.start_switch()
        rig.set_up()                                   # push the pipeline, install job 0
        agents = rig.start_agents("first", repeat=500)
        rig.wait_for_progress(agents[1])
        ...

Every process is started by the rig's Supervisor (own session, logs under tmp_path/logs, stopped at the end however
the test ends) and addressed as the testbed's plan says (plan.py). Only 127.0.0.1 is used.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from omnireduce.testbed.agents import read_agent_report
from omnireduce.testbed.layout import RunLayout
from omnireduce.testbed.model import TestbedConfig
from omnireduce.testbed.plan import plan_network
from omnireduce.testbed.ports import LOOPBACK, free_ports, free_tcp_port, wait_for_grpc
from omnireduce.testbed.processes import ManagedProcess, ProcessSpec, Supervisor
from omnireduce.testbed.provision import set_up_switch
from omnireduce.testbed.switches import grpc_server_addr, softswitch_loopback_argv
from tests.polling import wait_until

SWITCH_START_S = 60.0
#: Long enough for a Python process to start and a few all-reduces to run on a loaded 2-core machine.
PROCESS_DEADLINE_S = 120.0


class Rig:
    def __init__(self, root: Path, workers: int = 3, slots: int = 8, size: int = 65536, density: float = 0.2) -> None:
        self.plan = plan_network(TestbedConfig(workers=workers, slots=slots))
        self.job = self.plan.jobs[0]
        self.workers, self.slots, self.size, self.density = workers, slots, size, density
        self.layout = RunLayout(root).create()
        ports = free_ports(2 * workers)
        self.agent_ports, self.switch_ports = ports[0::2], ports[1::2]
        self.grpc_addr = grpc_server_addr(free_tcp_port())
        self.supervisor = Supervisor(self.layout.logs, tag=self.layout.tag)
        self.switch: ManagedProcess | None = None

    def __enter__(self) -> "Rig":
        self.supervisor.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.supervisor.__exit__(*exc_info)

    # --- the switch and the controller ---------------------------------------------------------------------------

    def start_switch(self, name: str = "switch") -> ManagedProcess:
        argv = softswitch_loopback_argv(
            [(worker.port, (LOOPBACK, switch_port), (LOOPBACK, agent_port))
             for worker, agent_port, switch_port in zip(self.job.workers, self.agent_ports, self.switch_ports)],
            int(self.grpc_addr.rsplit(":", 1)[1]))
        self.switch = self.supervisor.start(ProcessSpec(name, argv))
        wait_for_grpc(self.grpc_addr, self.switch, SWITCH_START_S)
        return self.switch

    def set_up(self) -> None:
        """Push the pipeline and install job 0, through the controller library (what the testbed does)."""
        set_up_switch(self.grpc_addr, self.plan, timeout=SWITCH_START_S)

    def ctl(self, *arguments: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """`omnireduce-ctl --grpc-addr ADDR --json ARGUMENTS...` to completion; its JSON is in .stdout."""
        return subprocess.run([sys.executable, "-m", "omnireduce.controller.cli", "--grpc-addr", self.grpc_addr,
                               "--timeout", "30", "--json", *arguments], capture_output=True, text=True,
                              timeout=timeout)

    # --- agents --------------------------------------------------------------------------------------------------

    def agent_argv(self, worker_id: int, run: str, *, repeat: int, seed: int, extra: tuple[str, ...]) -> tuple:
        worker = self.job.workers[worker_id]
        return (sys.executable, "-m", "omnireduce.host.cli", "--switch", str(self.plan.aggregator_ip),
                "--job", str(worker.job_id), "--worker-id", str(worker_id), "--workers", str(self.workers),
                "--slots", str(self.slots), "--synthetic", str(self.size), "--density", str(self.density),
                "--seed", str(seed), "--verify", "--repeat", str(repeat), "--json",
                "--progress-file", str(self.progress_path(run, worker_id)), "--progress-interval", "0.1",
                "--transport", "frame", "--bind", f"{LOOPBACK}:{self.agent_ports[worker_id]}",
                "--frame-peer", f"{LOOPBACK}:{self.switch_ports[worker_id]}",
                "--worker-addr", f"{worker.ip}:{worker.udp_port}", "--mac", worker.mac,
                "--switch-mac", self.plan.aggregator_mac, *extra)

    def progress_path(self, run: str, worker_id: int) -> Path:
        return self.layout.logs / f"{run}-w{worker_id}.progress"

    def start_agents(self, run: str, *, repeat: int = 1, seed: int = 0, extra: tuple[str, ...] = ()) -> list:
        return [self.supervisor.start(ProcessSpec(f"{run}-w{worker_id}",
                                                  self.agent_argv(worker_id, run, repeat=repeat, seed=seed,
                                                                  extra=extra)))
                for worker_id in range(self.workers)]

    def blocks_done(self, run: str, worker_id: int) -> int:
        """The worker's last progress line's blocks_done (0 before any)."""
        try:
            lines = self.progress_path(run, worker_id).read_text().splitlines()
        except OSError:
            return 0
        done = 0
        for line in lines:
            try:
                done = max(done, int(json.loads(line).get("blocks_done", 0)))
            except (json.JSONDecodeError, ValueError, AttributeError):
                continue  # a line still being written
        return done

    def wait_for_progress(self, run: str, worker_id: int, beyond: int = 0) -> int:
        """Until the worker has done more than `beyond` blocks (over all its all-reduces); returns the count."""
        wait_until(lambda: self.blocks_done(run, worker_id) > beyond, PROCESS_DEADLINE_S,
                   f"worker {worker_id} of run {run} to get past {beyond} blocks", abort=self.anyone_failed(run))
        return self.blocks_done(run, worker_id)

    def anyone_failed(self, run: str):
        def reason() -> str | None:
            for process in self.supervisor.processes:
                if process.name.startswith(run) and process.returncode not in (None, 0):
                    return process.failure_message()
            return None

        return reason

    def wait_for_exit(self, processes: list[ManagedProcess], timeout: float = PROCESS_DEADLINE_S) -> list[int]:
        wait_until(lambda: all(process.returncode is not None for process in processes), timeout,
                   ", ".join(process.name for process in processes) + " to exit")
        return [process.returncode for process in processes]

    @staticmethod
    def report(process: ManagedProcess):
        return read_agent_report(process.stdout_path)

    @staticmethod
    def kill(process: ManagedProcess) -> None:
        """SIGKILL, as a crash: no handler runs, sockets close as the kernel tears the process down."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30.0)
