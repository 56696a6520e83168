"""A loopback softswitch with one job installed, for training ranks on this machine, from the testbed's parts.

    with loopback_switch(workers=2, log_dir=Path("runs/x")) as switch:
        config = switch.config                  # HookConfig: give it to every rank's OmniReduceState
        ...spawn the ranks...

The softswitch runs as a child process (`omnireduce-switch`, UDP port per rank on 127.0.0.1), the controller
pushes the pipeline and installs job 0 for `workers` workers in-process, as `omnireduce-testbed` does; the config
names, for rank r, its frame link to switch port r+1. Leaving the block stops the switch.

As a command, it starts the switch, prints the config (TOML, or JSON with --json) and keeps the switch up until
interrupted, so that any DDP script on this machine can use it through OMNIREDUCE_TORCH_CONFIG:

    python -m omnireduce.torch.loopback --workers 2 --config-out /tmp/omnireduce.toml
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from omnireduce import argtypes
from omnireduce.addresses import parse_mac
from omnireduce.host import Timeouts
from omnireduce.testbed.model import TestbedConfig
from omnireduce.testbed.plan import NetworkPlan, plan_network
from omnireduce.testbed.ports import LOOPBACK, free_ports, free_tcp_port, wait_for_grpc
from omnireduce.testbed.processes import ManagedProcess, ProcessSpec, Supervisor
from omnireduce.testbed.provision import set_up_switch
from omnireduce.testbed.switches import grpc_server_addr, softswitch_loopback_argv

from .config import FrameSettings, HookConfig, RankSettings

log = logging.getLogger(__name__)

#: Longest the softswitch may take to open its gRPC port (a Python process importing grpc and numpy, busy machine).
SWITCH_START_S = 60.0
#: Longest the controller may take to push the pipeline and install the job.
PROVISION_S = 60.0


class SwitchStartError(RuntimeError):
    """The softswitch did not come up, or the controller could not install the job; the message says which."""


@dataclass(frozen=True, slots=True)
class LoopbackSwitch:
    """A running softswitch with the job installed: the hook config for it, its process and P4Runtime address."""

    config: HookConfig
    process: ManagedProcess
    grpc_addr: str

    def kill(self) -> None:
        """SIGKILL the switch (tests: a switch that dies mid-training)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10.0)


def hook_config_for(plan: NetworkPlan, agent_ports: Sequence[int], switch_ports: Sequence[int], slots: int,
                    timeouts: Timeouts) -> HookConfig:
    """The hook config of job 0 of `plan`: rank r binds 127.0.0.1:agent_ports[r] and talks to switch_ports[r]."""
    job = plan.jobs[0]
    ranks = tuple(
        RankSettings(bind=(LOOPBACK, agent_port),
                     frame=FrameSettings(peer=(LOOPBACK, switch_port), worker_ip=worker.ip,
                                         worker_port=worker.udp_port, mac=parse_mac(worker.mac),
                                         switch_mac=parse_mac(plan.aggregator_mac)))
        for worker, agent_port, switch_port in zip(job.workers, agent_ports, switch_ports))
    return HookConfig(switch_ip=plan.aggregator_ip, job_id=job.job_id, slots=slots, workers=len(job.workers),
                      ranks=ranks, timeouts=timeouts)


@contextmanager
def loopback_switch(workers: int, log_dir: Path, *, slots: int = 16, timeouts: Timeouts = Timeouts()
                    ) -> Iterator[LoopbackSwitch]:
    """Start the softswitch, install job 0 for `workers` workers, yield it; stop it on the way out."""
    problems = TestbedConfig(workers=workers, slots=slots).problems()
    if problems:
        raise ValueError("; ".join(problems))
    plan = plan_network(TestbedConfig(workers=workers, slots=slots))
    udp_ports = free_ports(2 * workers)
    agent_ports, switch_ports = udp_ports[0::2], udp_ports[1::2]
    grpc_port = free_tcp_port()
    grpc_addr = grpc_server_addr(grpc_port)
    argv = softswitch_loopback_argv(
        [(worker.port, (LOOPBACK, switch_port), (LOOPBACK, agent_port))
         for worker, agent_port, switch_port in zip(plan.jobs[0].workers, agent_ports, switch_ports)], grpc_port)
    with Supervisor(Path(log_dir)) as supervisor:
        switch = supervisor.start(ProcessSpec("switch", argv))
        try:
            wait_for_grpc(grpc_addr, switch, SWITCH_START_S)
            set_up_switch(grpc_addr, plan, timeout=PROVISION_S)
        except Exception as error:  # noqa: BLE001 -- any failure to come up ends here, with its message
            why = switch.failure_message() if not switch.alive() else str(error)
            raise SwitchStartError(f"the loopback softswitch did not come up: {why}") from None
        log.info("softswitch up at %s with job 0 for %d workers, %d slots", grpc_addr, workers, slots)
        yield LoopbackSwitch(hook_config_for(plan, agent_ports, switch_ports, slots, timeouts), switch, grpc_addr)


def reset_job_state(grpc_addr: str, job_id: int = 0) -> None:
    """Clear the job's slot state on the switch, so that new agents (tensor 0, set 0) can start over: between two
    trainings on one switch, or after agents failed and left the job's state unknown (host/README.md, Errors)."""
    from omnireduce.controller import connect, reset_job
    from omnireduce.p4src import artifacts

    with connect(grpc_addr, p4info=artifacts.P4INFO) as switch:
        reset_job(switch, job_id)


# --- the command ---------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m omnireduce.torch.loopback", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=argtypes.integer(1, 32), required=True, help="ranks of the job")
    parser.add_argument("--slots", type=argtypes.integer(1), default=16, help="the job's slots (default 16)")
    parser.add_argument("--config-out", type=Path, help="also write the config to this file")
    parser.add_argument("--json", action="store_true", help="print the config as JSON instead of TOML")
    parser.add_argument("--log-dir", type=Path, help="keep the switch's logs here (default: a temporary directory)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    stop = {"signal": 0}

    def on_signal(signum: int, _frame: object) -> None:
        stop["signal"] = signum
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    with tempfile.TemporaryDirectory(prefix="omnireduce-torch-") as scratch:
        log_dir = args.log_dir or Path(scratch)
        try:
            with loopback_switch(args.workers, log_dir, slots=args.slots) as switch:
                text = switch.config.to_json() if args.json else switch.config.to_toml()
                if args.config_out:
                    args.config_out.write_text(text, encoding="utf-8")
                sys.stdout.write(text)
                sys.stdout.flush()
                log.info("switch running; interrupt (Ctrl-C) to stop it")
                code = switch.process.wait(None)
                log.error("the softswitch exited (%s)", switch.process.failure_message())
                return 1 if code else 0
        except SwitchStartError as error:
            log.error("%s", error)
            return 1
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    sys.exit(main())
