"""omnireduce-switch: the softswitch as a process, with a command line close to simple_switch_grpc's.

    omnireduce-switch [--device-id N] [--grpc-server-addr HOST:PORT] [-i N@IFACE ...] [--log-level LEVEL]
                      [--pcap DIR] [--p4info FILE] [--no-grpc] [--impair SPEC ...] [JSON | --no-p4]

Once everything listens it prints one line per listener and then `omnireduce-switch: ready` on stdout, so a
parent process can wait for readiness by reading lines. SIGINT/SIGTERM stop it cleanly (exit status 0).
Exit status 1: the switch could not start (bad JSON, port in use, ...); 2: bad command line. Errors are one line on
stderr, `omnireduce-switch: error: <what>, <why>, <what to do>`; the log (timestamped) is for what happens after.

Code and tests use `setup(argv)`, which returns a started-but-not-waiting `Switch` to stop() themselves.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from omnireduce import argtypes

from .backend import BACKEND_ENV, BACKENDS, default_backend
from .device import Device
from .errors import DeviceError
from .faults import ImpairedDevice, ImpairmentError, ImpairmentPlan, parse_rule
from .ports import PacketLoop, PortSpec, PortSpecError, open_port, parse_port_spec

log = logging.getLogger("omnireduce.softswitch")

PROG = "omnireduce-switch"
EXIT_OK = 0
EXIT_CANNOT_START = 1
EXIT_USAGE = 2

DEFAULT_GRPC_ADDRESS = "127.0.0.1:9559"


@dataclass(frozen=True, slots=True)
class SwitchConfig:
    json_path: Path | None
    ports: tuple[PortSpec, ...] = ()
    device_id: int = 0
    grpc_address: str | None = DEFAULT_GRPC_ADDRESS
    p4info_path: Path | None = None
    pcap_dir: Path | None = None
    dump_code_dir: Path | None = None
    #: fault injection between the ports and the pipeline (faults.py; None: no impairment layer at all; an empty
    #: plan: the layer, passing every frame, so that a program can impair later), and the seed of its draws
    impairments: ImpairmentPlan | None = None
    impair_seed: int = 0
    backend: str = "auto"


@dataclass(slots=True)
class Switch:
    """A running softswitch: device, packet loop and (optionally) P4Runtime server."""

    config: SwitchConfig
    device: Device
    loop: PacketLoop
    server: object | None = None
    listening: list[str] = field(default_factory=list)
    _stop_requested: threading.Event = field(default_factory=threading.Event)
    _stopped: bool = False

    def request_stop(self) -> None:
        """Ask wait() to return (safe from a signal handler)."""
        self._stop_requested.set()

    def stop(self) -> None:
        self._stop_requested.set()
        if self._stopped:
            return
        self._stopped = True
        if self.server is not None:
            self.server.stop()
        self.loop.stop()
        log.info("stopped; packet loop stats %s, device stats %s", dict(self.loop.stats), self.device.stats_snapshot())
        injected = getattr(self.loop.device, "injected", None)
        if injected:
            log.info("impairments injected (kind, direction, port): %s", dict(sorted(injected.items())))

    def wait(self) -> None:
        while not self._stop_requested.wait(0.5):
            pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="omnireduce-switch",
        description="Software v1model switch running p4c-bm2-ss BMv2 JSON, with a P4Runtime server.",
        epilog="examples:\n"
        "  omnireduce-switch -i 1@udp:127.0.0.1:40001,127.0.0.1:50001 -i 2@udp:127.0.0.1:40002 "
        "p4src/build/omnireduce.json\n"
        "  omnireduce-switch --no-p4 -i 1@veth1 -i 2@veth2 --grpc-server-addr 127.0.0.1:50051\n"
        "  omnireduce-switch -i 1@shm:/dev/shm/or/port1 -i 2@shm:/dev/shm/or/port2 p4src/build/omnireduce.json\n"
        "UDP ports carry one Ethernet frame per datagram; without a peer, a port answers the last sender.\n"
        "shm ports are ring files the switch creates (and removes on exit) for `omnireduce-agent --transport shm`:\n"
        "whole frames through shared memory, no system call per frame (needs a C compiler, like the native\n"
        "pipeline).\n"
        "Started with a JSON, the switch serves its P4Info: --p4info, else the p4c output next to the JSON\n"
        "(NAME.p4info.txtpb or NAME.p4info.txt, as p4src/build/ holds for the project's program).\n"
        "\n"
        "errors: one line on stderr, `omnireduce-switch: error: <what>, <why>, <what to do>`.\n"
        "exit codes:\n"
        f"  {EXIT_OK}  stopped by SIGINT/SIGTERM\n"
        f"  {EXIT_CANNOT_START}  could not start: unreadable or unsupported JSON or P4Info, an interface that does not exist\n"
        "     or needs root, an address in use\n"
        f"  {EXIT_USAGE}  bad command line",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("json", nargs="?", type=Path, help="BMv2 JSON from p4c-bm2-ss (omit with --no-p4)")
    p.add_argument("--no-p4", action="store_true", help="start without a pipeline; a P4Runtime client pushes one")
    p.add_argument("-i", "--interface", action="append", default=[], metavar="N@IFACE",
                   help="port N on interface IFACE (raw socket, needs root), udp:HOST:PORT[,PEER:PORT] or shm:PATH (a "
                        "shared-memory ring file the switch creates)")
    p.add_argument("--device-id", type=argtypes.integer(minimum=0), default=0, help="P4Runtime device id (default 0)")
    p.add_argument("--grpc-server-addr", default=DEFAULT_GRPC_ADDRESS,
                   help=f"P4Runtime server address (default {DEFAULT_GRPC_ADDRESS}; port 0 picks a free one)")
    p.add_argument("--no-grpc", action="store_true", help="do not start the P4Runtime server")
    p.add_argument("--p4info", type=Path, help="P4Info (text format) of JSON, to serve it before any client pushes one")
    p.add_argument("--pcap", type=Path, metavar="DIR", help="write portN_in.pcap/portN_out.pcap captures into DIR")
    p.add_argument("--dump-code", type=Path, metavar="DIR",
                   help="write the Python (and, on the native backend, the C) generated from the JSON into DIR "
                        "(debugging)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="packet pipeline: native (the program compiled to C at load, cached), python (the "
                        f"reference), or auto: native where it can be built, else python (default: ${BACKEND_ENV} "
                        "or auto); the log says which runs and why")
    p.add_argument("--impair", action="append", default=[], type=argtypes.from_parser(parse_rule, ImpairmentError),
                   metavar="SPEC",
                   help="fault injection between the ports and the pipeline, as netem does on a link: "
                        "[PORT[/in|out]:|in:|out:]KEY=VALUE,... with KEY drop, duplicate, reorder (probabilities: "
                        "0.01 or 1%%), delay, jitter (times: 5ms), hold (longest a reordered frame waits for one to "
                        "overtake it, default 20ms); 'in' is towards the pipeline. Repeatable: the more specific "
                        "spec wins per key. Example: --impair drop=1%% --impair 2/out:delay=5ms,jitter=1ms")
    p.add_argument("--impair-seed", "--loss-seed", dest="impair_seed", type=int, default=0, metavar="N",
                   help="seed of the impairments' random draws (one generator per port and direction; default 0)")
    p.add_argument("--loss", type=argtypes.number(minimum=0.0, maximum=0.99), default=0.0, metavar="P",
                   help="short for --impair drop=P: lose each frame entering or leaving the pipeline with "
                        "probability P (default 0)")
    p.add_argument("--log-level", default="info",
                   choices=["trace", "debug", "info", "warn", "warning", "error", "critical", "off"],
                   help="log level (default info)")
    return p


#: Where p4c-bm2-ss writes the P4Info of NAME.json (`--p4runtime-files NAME.p4info.txtpb`, or .txt).
P4INFO_SUFFIXES = (".p4info.txtpb", ".p4info.txt")


def p4info_beside(json_path: Path) -> Path | None:
    """The P4Info p4c wrote next to a BMv2 JSON (NAME.json -> NAME.p4info.txtpb or .txt), if there is one."""
    for suffix in P4INFO_SUFFIXES:
        candidate = json_path.with_name(json_path.name.removesuffix(".json") + suffix)
        if candidate.is_file():
            return candidate
    return None


def parse_args(argv: list[str] | None) -> tuple[SwitchConfig, str]:
    p = _parser()
    args = p.parse_args(argv)
    if args.no_p4 == (args.json is not None):
        p.error("give exactly one of JSON or --no-p4")
    if args.p4info is not None and args.json is None:
        p.error("--p4info needs a JSON")
    try:
        ports = tuple(parse_port_spec(spec) for spec in args.interface)
    except PortSpecError as exc:
        p.error(str(exc))
    numbers = [spec.number for spec in ports]
    if len(set(numbers)) != len(numbers):
        p.error("a port number is given twice")
    config = SwitchConfig(
        json_path=args.json,
        ports=ports,
        device_id=args.device_id,
        grpc_address=None if args.no_grpc else args.grpc_server_addr,
        p4info_path=args.p4info if args.p4info is not None or args.json is None else p4info_beside(args.json),
        pcap_dir=args.pcap,
        dump_code_dir=args.dump_code,
        impairments=impairment_plan(p, args.loss, args.impair),
        impair_seed=args.impair_seed,
        backend=args.backend or default_backend(),
    )
    return config, args.log_level


def impairment_plan(parser: argparse.ArgumentParser, loss: float, rules) -> ImpairmentPlan | None:
    """--loss P (as a first rule `drop=P`) and the --impair rules, checked together; None when there are none."""
    if not loss and not rules:
        return None
    plan = ImpairmentPlan(tuple(rules))
    if loss:
        plan = ImpairmentPlan.parse([f"drop={loss!r}"]).then(plan)
    try:
        plan.check()
    except ImpairmentError as error:
        parser.error(f"argument --impair: {error}")
    return plan


def configure_logging(level: str) -> None:
    names = {"trace": logging.DEBUG, "warn": logging.WARNING, "off": logging.CRITICAL + 10}
    value = names.get(level, getattr(logging, level.upper(), logging.INFO))
    logging.basicConfig(level=value, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def start_p4runtime_server(device: Device, config: SwitchConfig):
    """Start the P4Runtime server (softswitch/p4runtime/, imported lazily: it pulls in gRPC)."""
    from google.protobuf import text_format
    from omnireduce.p4proto import p4info_pb2

    from .p4runtime.server import P4RuntimeServer

    p4info = None
    if config.p4info_path is not None:
        p4info = p4info_pb2.P4Info()
        try:
            text_format.Parse(config.p4info_path.read_text(), p4info)
        except text_format.ParseError as error:
            raise StartError(f"cannot read the P4Info {config.p4info_path}, it is not P4Info text format ({error}); "
                             f"give the P4Info p4c wrote for the JSON") from None
        log.info("serving the P4Info %s", config.p4info_path)
    server = P4RuntimeServer(device, config.grpc_address, device_id=config.device_id, p4info=p4info)
    server.start()
    return server


def dump_generated_code(device: Device, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for part, source in device.generated_sources().items():
        name = "".join(ch if ch.isalnum() else "_" for ch in part.strip("<>")).strip("_")
        suffix = ".c" if part == "<native>" else ".py"
        (directory / f"{name}{suffix}").write_text(source)
    log.info("generated code written to %s", directory)


def setup(argv: list[str] | None = None, config: SwitchConfig | None = None) -> Switch:
    """Build and start a switch from a command line (or a ready config); raises on failure."""
    if config is None:
        config, _ = parse_args(argv)
    device = Device(name=f"switch{config.device_id}", backend=config.backend)
    if config.json_path is not None:
        device.load_pipeline(config.json_path.read_bytes())
        if config.dump_code_dir is not None:
            dump_generated_code(device, config.dump_code_dir)
    opened = []
    try:
        for spec in config.ports:
            opened.append(open_port(spec))
        # Impairments sit between the ports and the pipeline, as on a faulty link; the P4Runtime server sees the
        # device itself.
        impaired = (ImpairedDevice(device, config.impairments, config.impair_seed)
                    if config.impairments is not None else device)
        loop = PacketLoop(impaired, opened, config.pcap_dir)
    except Exception:
        for port in opened:
            port.close()
        raise
    switch = Switch(config, device, loop)
    for port in opened:
        where = port.spec.describe()
        if port.spec.kind == "udp":
            host, number = port.bound
            where = f"udp:{host}:{number}"
        switch.listening.append(f"port {port.spec.number} listening on {where}")
    if config.impairments is not None and config.impairments.rules:
        switch.listening.append(f"impairing frames: {' '.join(config.impairments.describe())} "
                                f"(seed {config.impair_seed})")
    loop.start()
    try:
        if config.grpc_address is not None:
            switch.server = start_p4runtime_server(device, config)
            switch.listening.append(f"P4Runtime server listening on {switch.server.bound_address}")
    except BaseException:
        loop.stop()
        raise
    return switch


def check_before_start(config: SwitchConfig) -> None:
    """What can be checked before the (slow) pipeline load: files readable, raw interfaces present. Raises
    StartError saying what to do."""
    for what, path in (("the JSON", config.json_path), ("the P4Info", config.p4info_path)):
        if path is not None and not path.is_file():
            raise StartError(f"cannot read {what} {path}, "
                             f"{'no such file' if not path.exists() else 'it is not a file'}; check the path")
    for spec in config.ports:
        if spec.kind == "raw":
            try:
                socket.if_nametoindex(spec.iface)
            except OSError:
                raise StartError(f"cannot open port {spec.number} on interface {spec.iface}, no such interface; "
                                 f"give an existing one (ip link lists them) or udp:HOST:PORT") from None
        if spec.kind == "shm":
            if not spec.path.parent.is_dir():
                raise StartError(f"cannot open port {spec.number} at shm:{spec.path}, the folder "
                                 f"{spec.path.parent} does not exist; create it (e.g. under /dev/shm)")
            from omnireduce.shm import unavailable_reason

            problem = unavailable_reason()
            if problem is not None:
                raise StartError(f"cannot open port {spec.number} at shm:{spec.path}, the shared-memory rings "
                                 f"need a C compiler and cffi ({problem}); use udp:HOST:PORT ports instead")


class StartError(Exception):
    """The switch cannot start; the message says what, why and what to do."""


def describe_start_failure(error: BaseException, config: SwitchConfig) -> str:
    """One line for a failure to start: device errors without their gRPC status word, OS errors with the thing
    they concern."""
    if isinstance(error, StartError):
        return str(error)
    if isinstance(error, DeviceError):
        return f"cannot load {config.json_path}, {error.message}; give the BMv2 JSON p4c-bm2-ss wrote"
    if isinstance(error, PermissionError):
        return f"cannot open a port, {error.strerror or error}; raw interfaces need root (or CAP_NET_RAW)"
    if isinstance(error, OSError):
        where = f" ({error.filename})" if error.filename else ""
        return (f"cannot start, {error.strerror or error}{where}; check the -i ports and --grpc-server-addr "
                f"(an address in use?)")
    return f"cannot start, {error}"


def main(argv: list[str] | None = None) -> int:
    config, level = parse_args(argv)
    configure_logging(level)
    try:
        check_before_start(config)
        if config.json_path is not None and config.p4info_path is None and config.grpc_address is not None:
            log.warning("no P4Info next to %s (give --p4info FILE): P4Runtime clients see no pipeline until one "
                        "pushes it", config.json_path)
        switch = setup(config=config)
    except (StartError, DeviceError, OSError, ValueError, RuntimeError) as exc:
        sys.stderr.write(f"{PROG}: error: {describe_start_failure(exc, config)}\n")
        return EXIT_CANNOT_START

    def on_signal(signum, frame):  # noqa: ARG001
        log.info("signal %d: stopping", signum)
        switch.request_stop()

    # Handlers go in before the readiness lines: a parent may signal as soon as it reads "ready".
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # On stdout only (a parent reads them): logging them too printed each line twice on a terminal.
    for line in switch.listening:
        print(f"omnireduce-switch: {line}", flush=True)
    print("omnireduce-switch: ready", flush=True)
    switch.wait()
    switch.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
