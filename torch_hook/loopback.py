"""A loopback softswitch with one job installed, for training ranks on this machine, from the testbed's parts.

    with loopback_switch(workers=2, log_dir=Path("runs/x")) as switch:
        config = switch.config                  # HookConfig: give it to every rank's OmniReduceState
        ...spawn the ranks...

The softswitch runs as a child process (`omnireduce-switch`), the controller pushes the pipeline and installs job 0
for `workers` workers in-process, as `omnireduce-testbed` does; the config names, for rank r, its frame link to
switch port r+1: a shared-memory ring file in a private folder under /dev/shm where the rings build (`ports="shm"`,
the default there: about half the time per bucket of UDP on loopback, docs/pytorch.md), else a UDP socket on 127.0.0.1
(`ports="udp"`). Leaving the block stops the switch and removes the ring folder.

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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from omnireduce import argtypes
from omnireduce.addresses import parse_mac
from omnireduce.host import Timeouts
from omnireduce.testbed.loopback import port_kind, ring_folder
from omnireduce.testbed.model import PortKind, TestbedConfig
from omnireduce.testbed.plan import NetworkPlan, plan_network
from omnireduce.testbed.ports import LOOPBACK, free_ports, free_tcp_port, wait_for_grpc
from omnireduce.testbed.processes import ManagedProcess, ProcessSpec, Supervisor
from omnireduce.testbed.provision import set_up_switch
from omnireduce.testbed.switches import grpc_server_addr, softswitch_loopback_argv, softswitch_ring_argv

from .config import FrameSettings, HookConfig, RankSettings

log = logging.getLogger(__name__)

#: Longest the softswitch may take to open its gRPC port (a Python process importing grpc and numpy, busy machine).
SWITCH_START_S = 60.0
#: Longest the controller may take to push the pipeline and install the job.
PROVISION_S = 60.0
#: The job's slots (columns in flight) unless told. A bucket's rounds follow one another in each column, so more
#: slots mean fewer rounds one after the other: the example's recommender (228,258 values, 15% of the blocks
#: non-zero) spends 19-20 ms a step in the hook over 64 slots against 45-47 ms over 16 (2 ranks; 48 against 99 ms
#: with 4), for the same bytes. But every slot costs each rank one first-round block per bucket whatever its
#: values: top-k 1% of a 3,096-block bucket sends 2.9% of its blocks over 64 slots, 1.35% over 16. DDP's default
#: buckets (25 MB) make 200,000 blocks, where 64 is nothing; small top-k buckets want fewer (--slots).
DEFAULT_SLOTS = 64


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


def hook_config_for(plan: NetworkPlan, links: Sequence[tuple[int, int] | Path], slots: int,
                    timeouts: Timeouts) -> HookConfig:
    """The hook config of job 0 of `plan`: rank r's link is links[r], the switch port's ring file, or (agent UDP port,
    switch UDP port) on 127.0.0.1."""
    job = plan.jobs[0]
    ranks = []
    for worker, link in zip(job.workers, links):
        frame = dict(worker_ip=worker.ip, worker_port=worker.udp_port, mac=parse_mac(worker.mac),
                     switch_mac=parse_mac(plan.aggregator_mac))
        if isinstance(link, Path):
            ranks.append(RankSettings(frame=FrameSettings(peer=None, ring=link, **frame)))
        else:
            agent_port, switch_port = link
            ranks.append(RankSettings(bind=(LOOPBACK, agent_port),
                                      frame=FrameSettings(peer=(LOOPBACK, switch_port), **frame)))
    return HookConfig(switch_ip=plan.aggregator_ip, job_id=job.job_id, slots=slots, workers=len(job.workers),
                      ranks=tuple(ranks), timeouts=timeouts)


@contextmanager
def loopback_switch(workers: int, log_dir: Path, *, slots: int = DEFAULT_SLOTS, timeouts: Timeouts = Timeouts(),
                    ports: PortKind | str | None = None) -> Iterator[LoopbackSwitch]:
    """Start the softswitch, install job 0 for `workers` workers, yield it; stop it on the way out. ports: "shm" or
    "udp" (PortKind); None: shared memory where the rings build, else UDP."""
    problems = TestbedConfig(workers=workers, slots=slots).problems()
    if problems:
        raise ValueError("; ".join(problems))
    kind = port_kind(ports)
    plan = plan_network(TestbedConfig(workers=workers, slots=slots))
    grpc_port = free_tcp_port()
    grpc_addr = grpc_server_addr(grpc_port)
    job_workers = plan.jobs[0].workers
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        links: list[tuple[int, int] | Path]
        if kind is PortKind.SHM:
            folder = stack.enter_context(ring_folder(Path(log_dir)))
            links = [folder / f"port{worker.port}" for worker in job_workers]
            argv = softswitch_ring_argv([(worker.port, path) for worker, path in zip(job_workers, links)], grpc_port)
        else:
            udp_ports = free_ports(2 * workers)
            links = list(zip(udp_ports[0::2], udp_ports[1::2]))
            argv = softswitch_loopback_argv(
                [(worker.port, (LOOPBACK, switch_port), (LOOPBACK, agent_port))
                 for worker, (agent_port, switch_port) in zip(job_workers, links)], grpc_port)
        supervisor = stack.enter_context(Supervisor(Path(log_dir)))
        switch = supervisor.start(ProcessSpec("switch", argv))
        try:
            wait_for_grpc(grpc_addr, switch, SWITCH_START_S)
            set_up_switch(grpc_addr, plan, timeout=PROVISION_S)
        except Exception as error:  # noqa: BLE001 -- any failure to come up ends here, with its message
            why = switch.failure_message() if not switch.alive() else str(error)
            raise SwitchStartError(f"the loopback softswitch did not come up: {why}") from None
        log.info("softswitch up at %s with job 0 for %d workers, %d slots, %s ports", grpc_addr, workers, slots,
                 kind.value)
        yield LoopbackSwitch(hook_config_for(plan, links, slots, timeouts), switch, grpc_addr)


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
    parser.add_argument("--slots", type=argtypes.integer(1), default=DEFAULT_SLOTS,
                        help=f"the job's slots (default {DEFAULT_SLOTS})")
    parser.add_argument("--ports", choices=[kind.value for kind in PortKind],
                        help="the switch ports: shm (ring files under /dev/shm; the default where they build) or udp "
                             "(sockets on 127.0.0.1)")
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
            with loopback_switch(args.workers, log_dir, slots=args.slots, ports=args.ports) as switch:
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
