"""Command lines of the switches the testbed runs: the softswitch (`omnireduce-switch`, softswitch/cli.py) and
BMv2's `simple_switch_grpc`.

Both take one `-i PORT@INTERFACE` per port and a P4Runtime server address; the pipeline is pushed afterwards by
the controller (BMv2 starts with `--no-p4`). The softswitch's loopback ports are UDP sockets carrying one Ethernet
frame per datagram: `-i PORT@udp:LOCAL_IP:LOCAL_PORT,PEER_IP:PEER_PORT`, or shared-memory ring files the switch
creates: `-i PORT@shm:PATH`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from omnireduce.softswitch.faults import ImpairmentPlan

SOFTSWITCH_MODULE = "omnireduce.softswitch.cli"
BMV2_BINARY = "simple_switch_grpc"


def grpc_server_addr(port: int) -> str:
    return f"127.0.0.1:{port}"


def softswitch_prefix(python: str = sys.executable) -> list[str]:
    """The softswitch run as a module of the venv's Python (works from the Mininet driver too, without PATH),
    without a pipeline (--no-p4): the controller pushes it, as it does to BMv2. Warnings only: at info level the
    softswitch logs per port, which would only fill the run's logs."""
    return [python, "-m", SOFTSWITCH_MODULE, "--no-p4", "--log-level", "warning"]


def softswitch_loopback_argv(ports: Sequence[tuple[int, tuple[str, int], tuple[str, int]]], grpc_port: int,
                             python: str = sys.executable, *, impairments: ImpairmentPlan = ImpairmentPlan(),
                             impair_seed: int = 0, pipeline: str = "auto") -> tuple[str, ...]:
    """`ports`: (switch port, the switch's UDP socket, the agent's UDP socket) per worker; `impairments`: the
    softswitch's fault injection (softswitch/faults.py), seeded by `impair_seed`; `pipeline`: its backend."""
    return softswitch_argv([f"{port}@udp:{local_ip}:{local_port},{peer_ip}:{peer_port}"
                            for port, (local_ip, local_port), (peer_ip, peer_port) in ports],
                           grpc_port, python, impairments=impairments, impair_seed=impair_seed, pipeline=pipeline)


def softswitch_ring_argv(ports: Sequence[tuple[int, Path]], grpc_port: int, python: str = sys.executable, *,
                         impairments: ImpairmentPlan = ImpairmentPlan(), impair_seed: int = 0,
                         pipeline: str = "auto") -> tuple[str, ...]:
    """`ports`: (switch port, the ring file the switch creates for it) per worker; the rest as above."""
    return softswitch_argv([f"{port}@shm:{path}" for port, path in ports], grpc_port, python,
                           impairments=impairments, impair_seed=impair_seed, pipeline=pipeline)


def softswitch_argv(interfaces: Sequence[str], grpc_port: int, python: str = sys.executable, *,
                    impairments: ImpairmentPlan = ImpairmentPlan(), impair_seed: int = 0,
                    pipeline: str = "auto") -> tuple[str, ...]:
    """The softswitch with one `-i` per entry of `interfaces` (`N@udp:...`, `N@shm:PATH`), the impairments, and
    its pipeline (`auto`: the softswitch's own default, which $OMNIREDUCE_SOFTSWITCH_BACKEND may set)."""
    argv = softswitch_prefix(python)
    for interface in interfaces:
        argv += ["-i", interface]
    argv += ["--grpc-server-addr", grpc_server_addr(grpc_port)]
    return tuple(argv + pipeline_argv(pipeline) + impairment_argv(impairments, impair_seed))


def pipeline_argv(pipeline: str) -> list[str]:
    """`--backend NAME` for the softswitch; nothing for `auto`, which leaves it to the softswitch's default."""
    return [] if pipeline == "auto" else ["--backend", pipeline]


def impairment_argv(impairments: ImpairmentPlan, seed: int) -> list[str]:
    """`--impair SPEC ... --impair-seed N` for the softswitch; nothing when there is no impairment."""
    if not impairments.rules:
        return []
    argv = []
    for spec in impairments.describe():
        argv += ["--impair", spec]
    return argv + ["--impair-seed", str(seed)]


def bmv2_binary() -> str | None:
    """simple_switch_grpc's path, or None when it is not on PATH."""
    return shutil.which(BMV2_BINARY)


def bmv2_prefix(binary: str, thrift_port: int, notifications: Path) -> list[str]:
    """--no-p4: the controller pushes the pipeline; device id 0 is what the controller uses by default. The Thrift
    port and the notifications socket default to fixed places (9090, /tmp/bmv2-0-notifications.ipc) that another
    BMv2 on the machine may hold, so each run gets its own (the socket only where BMv2 was built with nanomsg,
    which is when it has the option)."""
    argv = [binary, "--no-p4", "--device-id", "0", "--thrift-port", str(thrift_port)]
    if "--notifications-addr" in _help_text(binary):
        argv += ["--notifications-addr", f"ipc://{notifications}"]
    return argv


def _help_text(binary: str) -> str:
    try:
        done = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr


def bmv2_suffix(grpc_port: int) -> list[str]:
    # Options after `--` go to the gRPC target rather than to simple_switch itself.
    return ["--", "--grpc-server-addr", grpc_server_addr(grpc_port)]
