"""`python -m omnireduce.testbed.provision_cli`: the controller steps of a Mininet run, as commands the Mininet
driver runs in the root namespace (it cannot import the venv's packages itself).

    python -m omnireduce.testbed.provision_cli --grpc-addr 127.0.0.1:PORT setup --plan plan.json
    python -m omnireduce.testbed.provision_cli --grpc-addr 127.0.0.1:PORT counters --out counters.json

Exit status 0 on success, 1 when the switch or the plan was refused (the reason is logged on stderr), 2 for bad
arguments. (A module of its own, which nothing imports, so that `-m` runs it without importing it twice.)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from omnireduce.controller.errors import ControllerError

from .provision import CONNECT_TIMEOUT_S, plan_from_json, read_counters, set_up_switch

log = logging.getLogger("omnireduce.testbed.provision")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m omnireduce.testbed.provision_cli",
                                     description="Set up the switch for a testbed run, or read its counters.")
    parser.add_argument("--grpc-addr", required=True, metavar="HOST:PORT")
    parser.add_argument("--timeout", type=float, default=CONNECT_TIMEOUT_S, metavar="S")
    commands = parser.add_subparsers(dest="command", required=True)
    setup = commands.add_parser("setup", help="push the pipeline and install the plan's jobs")
    setup.add_argument("--plan", type=Path, required=True, help="network plan JSON (written by the testbed)")
    setup.add_argument("--thrift-port", type=int, metavar="PORT",
                       help="BMv2 only: its Thrift runtime's port (registers are not on its P4Runtime server)")
    counters = commands.add_parser("counters", help="write the switch's counters as JSON")
    counters.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "setup":
            plan = plan_from_json(json.loads(args.plan.read_text()))
            set_up_switch(args.grpc_addr, plan, args.timeout, args.thrift_port)
        else:
            args.out.write_text(json.dumps(read_counters(args.grpc_addr, args.timeout), indent=1))
    except (ControllerError, ValueError, OSError) as error:
        log.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
