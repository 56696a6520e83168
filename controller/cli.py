"""omnireduce-ctl: install and inspect omnireduce jobs on a P4Runtime switch (BMv2 or the softswitch).

`main(argv)` is the entry point and returns the exit code; tests call it directly.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any, Callable

from omnireduce import argtypes
from omnireduce.clierrors import JsonArgumentParser, json_usage_errors, report_error, wants_json
from omnireduce.controller import counters as counters_module
from omnireduce.controller import jobs as jobs_module
from omnireduce.controller import render, routes as routes_module
from omnireduce.controller import status as status_module
from omnireduce.controller.client import ElectionId
from omnireduce.controller.config import load_config
from omnireduce.controller.encoding import parse_ipv4_prefix, parse_mac
from omnireduce.controller.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_NOT_PRIMARY,
    EXIT_OK,
    EXIT_PIPELINE_MISMATCH,
    EXIT_SWITCH_REFUSED,
    EXIT_UNREACHABLE,
    BadInputError,
    ControllerError,
)
from omnireduce.controller.model import Job, Route, Worker, validate_jobs_together
from omnireduce.controller.pipeline import PipelineFiles, push
from omnireduce.controller.registers import DEFAULT_THRIFT_PORT
from omnireduce.controller.switch import DEFAULT_GRPC_ADDR, Switch, connect
from omnireduce.p4src import artifacts, constants

log = logging.getLogger("omnireduce.controller.cli")

PROG = "omnireduce-ctl"
#: --timeout when not given.
DEFAULT_TIMEOUT_S = 10.0

DESCRIPTION = """\
Install and inspect omnireduce jobs on a P4Runtime switch running p4src/omnireduce.p4 (BMv2 simple_switch_grpc
or the embedded softswitch). Everything is read back from the switch: no local state file.

typical session:
  omnireduce-ctl push                                   # load the pipeline (clears all switch state)
  omnireduce-ctl job add --job 1 --slot-base 0 --slots 8 --mcast-group 1 \\
      --worker 1,02:00:00:00:00:01,10.0.0.1 --worker 2,02:00:00:00:00:02,10.0.0.2
  omnireduce-ctl route add 10.0.0.1/32 --port 1 --src-mac 02:00:00:00:01:00 --dst-mac 02:00:00:00:00:01
  omnireduce-ctl status --job 1 --watch                 # rounds in flight, workers' next blocks
  omnireduce-ctl counters                               # per port / job counters and drops by reason
  omnireduce-ctl reset --job 1                          # clear the job's slots; agents restart at set 0
  omnireduce-ctl job rm 1                               # remove it, leaving nothing behind
"""

EPILOG = f"""\
exit codes:
  {EXIT_OK}  success
  {EXIT_INTERNAL}  internal error (a bug: please report it)
  {EXIT_BAD_INPUT}  bad usage or input: arguments, config file, unknown job/route/table, conflict with installed jobs
  {EXIT_UNREACHABLE}  switch unreachable: the connection was refused (at once), or no P4Runtime server answered
     before --timeout
  {EXIT_SWITCH_REFUSED}  the switch refused a request (gRPC error; each refused update is listed)
  {EXIT_NOT_PRIMARY}  not the primary controller (another client holds a higher election id)
  {EXIT_PIPELINE_MISMATCH}  the switch runs no pipeline, or one whose P4Info differs from ours (run `push`)

errors: one line on stderr, `omnireduce-ctl: error: <what>, <why>, <what to do>`; with --json also
{{"ok": false, "error": ..., "exit_code": N, "kind": ...}} on stdout (usage errors too).

limits of the compiled program: MAX_JOBS={constants.MAX_JOBS}, SLOT_COUNT={constants.SLOT_COUNT},
MAX_WORKERS={constants.MAX_WORKERS}; a worker's UDP port defaults to {constants.OMNI_UDP_PORT}.
"""

CONFIG_HELP = """\
a TOML file of [[job]] (with [[job.worker]] entries) and [[route]] sections, e.g.
  [[job]]
  id = 1
  slot_base = 0
  slot_count = 8
  mcast_group = 1
  [[job.worker]]
  port = 1
  mac = "02:00:00:00:00:01"
  ip = "10.0.0.1"
  udp_port = 20306   # optional
  [[route]]
  prefix = "10.0.0.1/32"
  port = 1
  src_mac = "02:00:00:00:01:00"
  dst_mac = "02:00:00:00:00:01"
"""


# --- typed argument parsers (argparse turns ArgumentTypeError into a usage error, exit 2) --------------------

# Integers may be written in hex (0x..), as P4Runtime ids and ports often are.
non_negative_int = argtypes.integer(minimum=0, base=0)
grpc_address = argtypes.host_port(allow_port_zero=False, example=DEFAULT_GRPC_ADDR)


def _arg(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Adapt one of our model's parsers (they raise BadInputError) to argparse."""
    return argtypes.from_parser(parse, BadInputError)


def election_id(text: str) -> ElectionId:
    parts = text.split(",")
    try:
        if len(parts) == 1:
            high, low = 0, int(parts[0], 0)
        elif len(parts) == 2:
            high, low = int(parts[0], 0), int(parts[1], 0)
        else:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HI,LO (two integers, e.g. 0,1)") from None
    if not (0 <= high < 1 << 64 and 0 <= low < 1 << 64) or (high, low) == (0, 0):
        raise argparse.ArgumentTypeError(f"election id {text!r}: each half must be a 64-bit unsigned integer, "
                                         f"and 0,0 is not a valid election id")
    return ElectionId(high, low)


# --- the parser ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = JsonArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grpc-addr", type=grpc_address, default=DEFAULT_GRPC_ADDR, metavar="HOST:PORT",
                        help=f"the switch's P4Runtime server (default {DEFAULT_GRPC_ADDR})")
    parser.add_argument("--device-id", type=non_negative_int, default=0, metavar="N",
                        help="P4Runtime device id (default 0)")
    parser.add_argument("--election-id", type=election_id, default=ElectionId(0, 1), metavar="HI,LO",
                        help="master arbitration election id; the highest connected id is primary and may write "
                             "(default 0,1)")
    parser.add_argument("--timeout", type=argtypes.seconds, metavar="S",
                        help=f"deadline in seconds for connecting and for each RPC (default {DEFAULT_TIMEOUT_S:g}); "
                             "given explicitly, connecting also waits that long for a switch that is still starting "
                             "(by default a refused connection fails at once)")
    parser.add_argument("--p4info", type=argtypes.existing_file, default=artifacts.P4INFO, metavar="FILE",
                        help="the P4Info the switch must be running; every command but `push` checks it (names "
                             "and ids) before touching the switch (default: the committed p4src/build one)")
    parser.add_argument("--thrift-port", type=non_negative_int, metavar="PORT",
                        help="BMv2 only: reach registers (status, reset, job add/rm) over BMv2's Thrift runtime on "
                             f"this port (default {DEFAULT_THRIFT_PORT}) with simple_switch_CLI, because "
                             "simple_switch_grpc does not implement P4Runtime register access")
    parser.add_argument("--json", dest="json_output", action="store_true",
                        help="machine-readable JSON output (also accepted after the command)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", dest="json_output", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable JSON output")

    push_parser = commands.add_parser(
        "push", help="load the omnireduce pipeline onto the switch (clears every entry and register)",
        description="Load P4Info + BMv2 JSON onto the switch with SetForwardingPipelineConfig(VERIFY_AND_COMMIT). "
                    "The switch forgets every table entry, multicast group and register value.")
    push_parser.add_argument("--p4info", dest="push_p4info", type=argtypes.existing_file, metavar="FILE",
                             help="P4Info (text format) to push (default: the global --p4info)")
    push_parser.add_argument("--json", dest="bmv2_json", type=argtypes.existing_file, default=artifacts.BMV2_JSON,
                             metavar="FILE", help="BMv2 JSON to push (default p4src/build/omnireduce.json). "
                                                  "NOTE: here --json names a file; put the output flag before "
                                                  "`push` (omnireduce-ctl --json push)")
    push_parser.set_defaults(handler=cmd_push)

    info_parser = commands.add_parser("info", parents=[output], help="P4Runtime version, arbitration, pipeline check")
    info_parser.set_defaults(handler=cmd_info)

    job_parser = commands.add_parser("job", help="add, remove and list jobs")
    job_commands = job_parser.add_subparsers(dest="job_command", metavar="JOB_COMMAND", required=True)
    add = job_commands.add_parser(
        "add", parents=[output], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="install a job (all-or-nothing)",
        description="Install a job: one `workers` and one `result_destinations` entry per worker, a multicast\n"
                    "group, and the job's `jobs` entry, with the job's slots cleared first. Worker ids follow the\n"
                    "order given (the first --worker is worker 0). Refused, with nothing written, when the job id\n"
                    "exists, its slots overlap another job's, a worker belongs to another job, or it exceeds the\n"
                    "switch's limits; a failure half-way deletes what was written.",
        epilog=CONFIG_HELP)
    source = add.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=argtypes.existing_file, metavar="FILE",
                        help="install every [[job]] of this file")
    source.add_argument("--job", type=non_negative_int, metavar="J", help=f"job id, 0..{constants.MAX_JOBS - 1}")
    add.add_argument("--slot-base", type=non_negative_int, metavar="B", help="first switch slot the job owns")
    add.add_argument("--slots", type=non_negative_int, metavar="S", help="number of slots the job owns")
    add.add_argument("--mcast-group", type=non_negative_int, metavar="G", help="multicast group id, 1..65535")
    add.add_argument("--worker", type=_arg(Worker.parse), action="append", default=[],
                     metavar="PORT,MAC,IP[,UDPPORT]",
                     help=f"a worker (repeat, in worker-id order); UDPPORT defaults to {constants.OMNI_UDP_PORT}")
    add.set_defaults(handler=cmd_job_add)
    rm = job_commands.add_parser("rm", parents=[output], help="remove a job and clear its slots",
                                 description="Delete the job's entries (also of a half-installed job), its "
                                             "multicast group, and reset its slots' registers.")
    rm.add_argument("job_id", type=non_negative_int, metavar="J")
    rm.set_defaults(handler=cmd_job_rm)
    listing = job_commands.add_parser("list", parents=[output], help="list the jobs installed on the switch")
    listing.set_defaults(handler=cmd_job_list)

    route_parser = commands.add_parser("route", help="plain IPv4 routes between hosts")
    route_commands = route_parser.add_subparsers(dest="route_command", metavar="ROUTE_COMMAND", required=True)
    route_add = route_commands.add_parser("add", parents=[output], help="add a route (or every [[route]] of a file)",
                                          epilog=CONFIG_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    route_add.add_argument("prefix", nargs="?", type=_arg(parse_ipv4_prefix), metavar="PREFIX",
                           help="destination prefix, e.g. 10.0.0.1/32")
    route_add.add_argument("--config", type=argtypes.existing_file, metavar="FILE")
    route_add.add_argument("--port", type=non_negative_int, help="egress port")
    route_add.add_argument("--src-mac", type=_arg(parse_mac), metavar="MAC", help="source MAC written on the way out")
    route_add.add_argument("--dst-mac", type=_arg(parse_mac), metavar="MAC", help="destination MAC (the next hop)")
    route_add.set_defaults(handler=cmd_route_add)
    route_rm = route_commands.add_parser("rm", parents=[output], help="remove the route to a prefix")
    route_rm.add_argument("prefix", type=_arg(parse_ipv4_prefix), metavar="PREFIX")
    route_rm.set_defaults(handler=cmd_route_rm)
    route_list = route_commands.add_parser("list", parents=[output], help="list routes")
    route_list.set_defaults(handler=cmd_route_list)

    status_parser = commands.add_parser(
        "status", parents=[output], help="per job and slot: rounds in flight, who they wait for, workers' next blocks",
        description="For each slot of the job (or of every job) and each shadow set: round state, tensor, block, "
                    "which workers an aggregating round still waits for, the result's next block and exponent, and "
                    "each worker's announced next block (worker_next: the block it contributes next); and the job's "
                    "packet counters. Block numbers read 'end' for END_OF_TENSOR.")
    status_parser.add_argument("--job", type=non_negative_int, metavar="J", help="only this job")
    status_parser.add_argument("--watch", type=argtypes.seconds, nargs="?", const=1.0, metavar="SECONDS",
                               help="repeat every SECONDS (default 1) until Ctrl-C")
    status_parser.add_argument("--all-slots", action="store_true",
                               help="also list idle slots (folded by default; --json always lists every slot)")
    status_parser.set_defaults(handler=cmd_status)

    counters_parser = commands.add_parser("counters", parents=[output],
                                          help="per-port, per-job counters and drops by reason (non-zero only)")
    counters_parser.set_defaults(handler=cmd_counters)

    reset_parser = commands.add_parser("reset", parents=[output],
                                       help="clear a job's slot state so its agents start over at set 0")
    reset_parser.add_argument("--job", type=non_negative_int, metavar="J", required=True)
    reset_parser.set_defaults(handler=cmd_reset)

    entries_parser = commands.add_parser("entries", parents=[output], help="dump table entries (all tables or one)")
    entries_parser.add_argument("table", nargs="?", metavar="TABLE", help="a table name (full or short)")
    entries_parser.set_defaults(handler=cmd_entries)
    return parser


# --- commands ------------------------------------------------------------------------------------------------


def _open(args: argparse.Namespace, *, write: bool, bind: bool = True) -> Switch:
    return connect(str(args.grpc_addr), device_id=args.device_id, election_id=args.election_id,
                   timeout=args.timeout or DEFAULT_TIMEOUT_S, p4info=args.p4info if bind else None,
                   require_primary=write, thrift_port=args.thrift_port, fail_fast=args.timeout is None)


def _emit(args: argparse.Namespace, text: str, data: Any) -> None:
    if args.json_output:
        print(json.dumps(data, indent=2, sort_keys=False))
    else:
        print(text)


def cmd_push(args: argparse.Namespace) -> None:
    files = PipelineFiles(args.push_p4info or args.p4info, args.bmv2_json)
    with _open(args, write=True, bind=False) as switch:
        p4info = push(switch, files)
    _emit(args, f"pushed {files.p4info} and {files.bmv2_json} to {args.grpc_addr}: {len(p4info.tables)} tables, "
                f"{len(p4info.registers)} registers, {len(p4info.counters)} counters",
          {"pushed": True, "p4info": str(files.p4info), "bmv2_json": str(files.bmv2_json)})


def cmd_info(args: argparse.Namespace) -> None:
    with _open(args, write=False, bind=False) as switch:
        version = switch.capabilities()
        try:  # would our election id make us primary? (asked without requiring it)
            arbitration_text = switch.client.arbitrate().message
            primary = switch.is_primary
        except ControllerError as error:
            arbitration_text, primary = str(error), False
        running = switch.running_p4info()
        pipeline = ("none: the switch serves no P4Info (it runs no pipeline, or was started with a program but "
                    "without its P4Info); run `omnireduce-ctl push`")
        if running is not None:
            try:
                switch.bind_pipeline_file(args.p4info)
                pipeline = "omnireduce (matches our P4Info)"
            except ControllerError as error:
                pipeline = f"another pipeline: {error}"
    _emit(args, f"switch {args.grpc_addr} device {args.device_id}\n  P4Runtime {version}\n"
                f"  arbitration: {arbitration_text}\n  pipeline: {pipeline}",
          {"p4runtime_api_version": version, "primary": primary, "arbitration": arbitration_text,
           "pipeline": pipeline})


def _job_from_flags(args: argparse.Namespace) -> Job:
    missing = [flag for flag, value in (("--slot-base", args.slot_base), ("--slots", args.slots),
                                        ("--mcast-group", args.mcast_group)) if value is None]
    if not args.worker:
        missing.append("--worker (at least one)")
    if missing:
        raise BadInputError(f"job add --job needs {', '.join(missing)}")
    return Job(args.job, args.slot_base, args.slots, args.mcast_group, tuple(args.worker))


def cmd_job_add(args: argparse.Namespace) -> None:
    if args.config is not None:
        if args.worker or args.slot_base is not None or args.slots is not None or args.mcast_group is not None:
            raise BadInputError("job add: --config and the per-job flags (--slot-base, --slots, --mcast-group, "
                                "--worker) exclude each other")
        jobs = load_config(args.config).jobs
        if not jobs:
            raise BadInputError(f"{args.config} has no [[job]] sections")
    else:
        jobs = (_job_from_flags(args),)
        validate_jobs_together(jobs)
    with _open(args, write=True) as switch:
        installed = jobs_module.add_jobs(switch, jobs)
    _emit(args, "\n".join(f"job {job.job_id} installed: slots {job.slot_base}..{job.slot_base + job.slot_count - 1}"
                          f", {job.worker_count} workers, multicast group {job.mcast_group}" for job in jobs),
          [render.job_json(job) for job in installed])


def cmd_job_rm(args: argparse.Namespace) -> None:
    with _open(args, write=True) as switch:
        removed = jobs_module.remove_job(switch, args.job_id)
    _emit(args, f"job {args.job_id} removed ({len(removed.entries)} table entries"
                f"{', multicast group ' + str(removed.mcast_group) if removed.replicas is not None else ''})",
          render.job_json(removed))


def cmd_job_list(args: argparse.Namespace) -> None:
    with _open(args, write=False) as switch:
        jobs = list(jobs_module.read_jobs(switch).values())
    _emit(args, render.jobs_text(jobs), [render.job_json(job) for job in jobs])


def cmd_route_add(args: argparse.Namespace) -> None:
    if args.config is not None:
        if args.prefix is not None:
            raise BadInputError("route add: give either --config or a PREFIX, not both")
        routes = list(load_config(args.config).routes)
        if not routes:
            raise BadInputError(f"{args.config} has no [[route]] sections")
    else:
        missing = [flag for flag, value in (("PREFIX", args.prefix), ("--port", args.port),
                                            ("--src-mac", args.src_mac), ("--dst-mac", args.dst_mac))
                   if value is None]
        if missing:
            raise BadInputError(f"route add needs {', '.join(missing)} (or --config FILE)")
        routes = [Route(args.prefix, args.port, args.src_mac, args.dst_mac)]
    with _open(args, write=True) as switch:
        routes_module.add_routes(switch, routes)
    _emit(args, "\n".join(f"route added: {route}" for route in routes), [render.route_json(route) for route in routes])


def cmd_route_rm(args: argparse.Namespace) -> None:
    with _open(args, write=True) as switch:
        removed = routes_module.remove_route(switch, args.prefix)
    _emit(args, f"route removed: {removed}", render.route_json(removed))


def cmd_route_list(args: argparse.Namespace) -> None:
    with _open(args, write=False) as switch:
        routes = routes_module.read_routes(switch)
    _emit(args, render.routes_text(routes), [render.route_json(route) for route in routes])


def cmd_status(args: argparse.Namespace) -> None:
    previous: tuple[float, list[status_module.JobStatus]] | None = None
    with _open(args, write=False) as switch:
        while True:
            read_at = time.monotonic()
            statuses = status_module.read_status(switch, args.job)
            # While watching: each job's counters per second since the last read (rounds/s = results/s).
            rates, seconds = None, 0.0
            if args.watch:
                if previous is not None:
                    seconds = read_at - previous[0]
                    rates = status_module.counter_rates(previous[1], statuses, seconds)
                else:
                    rates = {}
                previous = (read_at, statuses)
            if args.json_output:
                documents = [render.status_json(item) for item in statuses]
                if rates:
                    for document, item in zip(documents, statuses):
                        if item.job.job_id in rates:
                            document["rates_per_s"] = rates[item.job.job_id]
                            document["rates_over_s"] = round(seconds, 3)
                # One JSON document per line while watching, so a script can read it as a stream.
                print(json.dumps(documents, indent=None if args.watch else 2), flush=True)
            else:
                if args.watch and sys.stdout.isatty():
                    print("\033[H\033[2J", end="")
                print(render.status_text(statuses, args.all_slots, rates, seconds), flush=True)
            if not args.watch:
                return
            time.sleep(args.watch)  # the refresh period the user asked for, not a synchronisation


def cmd_counters(args: argparse.Namespace) -> None:
    with _open(args, write=False) as switch:
        report = counters_module.read_counters(switch)
    _emit(args, render.counters_text(report), render.counters_json(report))


def cmd_reset(args: argparse.Namespace) -> None:
    with _open(args, write=True) as switch:
        written = jobs_module.reset_job(switch, args.job)
    _emit(args, f"job {args.job} reset ({written} register cells cleared); agents start over at set 0",
          {"job_id": args.job, "cells_written": written})


def cmd_entries(args: argparse.Namespace) -> None:
    with _open(args, write=False) as switch:
        assert switch.schema is not None
        tables = [switch.schema.table(args.table).name] if args.table else [table.name for table in
                                                                             switch.schema.tables]
        entries = [entry for table in tables for entry in switch.read_table(table)]
    _emit(args, render.entries_text(entries), [render.entry_json(entry) for entry in entries])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # After `push`, --json names the BMv2 JSON file, not the output format.
    words = list(sys.argv[1:] if argv is None else argv)
    json_usage_errors(parser, wants_json(words[:words.index("push")] if "push" in words else words))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help (0) and on usage errors (2); callers get the code
        return int(exit_.code or 0)
    logging.basicConfig(level={0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG),
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        args.handler(args)
    except ControllerError as error:
        notes = list(getattr(error, "__notes__", ()))
        report_error(PROG, str(error), error.exit_code, json_output=args.json_output, kind=type(error).__name__,
                     **({"notes": notes} if notes else {}))
        for note in notes:
            print(f"{PROG}: {note}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return EXIT_OK if getattr(args, "watch", None) else 130
    except BrokenPipeError:
        return EXIT_OK
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
