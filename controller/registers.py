"""Register access: over P4Runtime (the softswitch), or over BMv2's Thrift runtime (simple_switch_grpc).

NOTE: PI, the P4Runtime server inside BMv2's simple_switch_grpc, answers every RegisterEntry read or write with
UNIMPLEMENTED ("Register reads are not supported yet", PI/proto/frontend/src/device_mgr.cpp). BMv2 still serves
its registers over its Thrift runtime (port 9090 by default), which `simple_switch_CLI` speaks; `ThriftRegisters`
drives that CLI with one batch of commands per call. Everything else (tables, PRE, counters) stays on P4Runtime.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from typing import Protocol

from omnireduce.controller.errors import BadInputError, ControllerError, SwitchUnreachableError
from omnireduce.controller.p4info import RegisterInfo

log = logging.getLogger(__name__)

DEFAULT_THRIFT_PORT = 9090
DEFAULT_RUNTIME_CLI = "simple_switch_CLI"
# Commands per CLI run: one process start per batch, and a batch small enough to report a failure usefully.
_COMMANDS_PER_RUN = 20000

# `simple_switch_CLI` prints, after its "RuntimeCmd: " prompt, `name[index]= value` for one cell and
# `name= v0, v1, ...` for a whole array.
_CELL = re.compile(r"(?P<name>[\w.$\[\]]+?)\[(?P<index>\d+)\]=\s*(?P<value>\d+)")
_ARRAY = re.compile(r"(?P<name>[\w.$]+)=\s*(?P<values>\d+(?:,\s*\d+)*)\s*$")
_ERROR = re.compile(r"^(?:RuntimeCmd: )*(Error: .*|Invalid .*|.*\bnot a valid register name\b.*)$", re.MULTILINE)


class RegisterAccessError(ControllerError):
    """The register runtime refused a read or write (bad name or index, or a runtime error)."""

    exit_code = 4  # EXIT_SWITCH_REFUSED: the switch (its runtime) said no


# What to read: register -> the cells wanted (None: every cell). What is read: register name -> {index: value}.
RegisterReads = dict[RegisterInfo, "list[int] | None"]
RegisterValues = dict[str, dict[int, int]]


class RegisterAccess(Protocol):
    """How a switch session reads and writes register cells, several registers per round trip."""

    def read(self, requests: RegisterReads) -> RegisterValues:
        """Cells by register name and index: every cell (`None`) or the given ones, of each register."""

    def write(self, values: dict[RegisterInfo, dict[int, int]]) -> None:
        """Set cells of each register."""


def reads_whole(register: RegisterInfo, indexes: list[int] | None) -> bool:
    """Whether one read of the whole array beats reading `indexes` one by one (a quarter of it or more)."""
    return indexes is None or len(indexes) * 4 > register.size


class ThriftRegisters:
    """Registers through BMv2's Thrift runtime, by running `simple_switch_CLI --thrift-port PORT`: one CLI run
    per batch of commands, since each run starts by fetching the program's JSON from the switch."""

    def __init__(self, thrift_port: int = DEFAULT_THRIFT_PORT, thrift_ip: str = "127.0.0.1",
                 cli: str = DEFAULT_RUNTIME_CLI, timeout: float = 60.0) -> None:
        self.thrift_port = thrift_port
        self.thrift_ip = thrift_ip
        self.cli = cli
        self.timeout = timeout

    def read(self, requests: RegisterReads) -> RegisterValues:
        commands = []
        for register, indexes in requests.items():
            if reads_whole(register, indexes):
                commands.append(f"register_read {register.name}")
            else:
                commands.extend(f"register_read {register.name} {index}" for index in indexes)
        output = "".join(self._run(commands[start:start + _COMMANDS_PER_RUN])
                         for start in range(0, len(commands), _COMMANDS_PER_RUN))
        result: RegisterValues = {}
        for register, indexes in requests.items():
            if reads_whole(register, indexes):
                cells = _parse_array(output, register.name)
                if len(cells) != register.size:
                    raise RegisterAccessError(f"BMv2 returned {len(cells)} cells of {register.name}, expected "
                                              f"{register.size}")
            else:
                cells = _parse_cells(output, register.name)
            wanted = range(register.size) if indexes is None else indexes
            missing = [index for index in wanted if index not in cells]
            if missing:
                raise RegisterAccessError(f"BMv2 returned no value for {register.name}{missing[:5]}")
            result[register.name] = {index: cells[index] for index in wanted}
        return result

    def write(self, values: dict[RegisterInfo, dict[int, int]]) -> None:
        commands = [f"register_write {register.name} {index} {value}"
                    for register, cells in values.items() for index, value in sorted(cells.items())]
        for start in range(0, len(commands), _COMMANDS_PER_RUN):
            self._run(commands[start:start + _COMMANDS_PER_RUN])

    def _run(self, commands: list[str]) -> str:
        if not commands:
            return ""
        executable = shutil.which(self.cli)
        if executable is None:
            raise BadInputError(f"{self.cli} not found on PATH: it is needed to reach BMv2's registers over Thrift")
        argv = [executable, "--thrift-port", str(self.thrift_port), "--thrift-ip", self.thrift_ip]
        try:
            result = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True, text=True,
                                    timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise SwitchUnreachableError(f"{self.cli} on Thrift port {self.thrift_port} did not finish "
                                         f"{len(commands)} command(s) within {self.timeout:g} s") from None
        output = result.stdout + result.stderr
        if "Could not connect to thrift client" in output or (result.returncode != 0 and not result.stdout):
            raise SwitchUnreachableError(f"no BMv2 Thrift runtime at {self.thrift_ip}:{self.thrift_port} "
                                         f"({self.cli} said: {output.strip()[-300:]}); is --thrift-port right?")
        errors = _ERROR.findall(result.stdout)
        if errors:
            raise RegisterAccessError(f"{self.cli} refused {len(errors)} of {len(commands)} command(s); first: "
                                      f"{errors[0].strip()}")
        log.debug("%s: %d command(s) ok", self.cli, len(commands))
        return result.stdout


def _parse_cells(output: str, name: str) -> dict[int, int]:
    return {int(match["index"]): int(match["value"]) for match in _CELL.finditer(output) if match["name"] == name}


def _parse_array(output: str, name: str) -> dict[int, int]:
    for line in output.splitlines():
        line = line.replace("RuntimeCmd:", "").strip()
        match = _ARRAY.match(line)
        if match and match["name"] == name:
            return {index: int(value) for index, value in enumerate(match["values"].split(","))}
    raise RegisterAccessError(f"no values for {name} in the runtime's answer:\n{output[-500:]}")
