"""The control-plane state a benchmark installs, recorded once and replayed into any number of switches.

A frame generator configures a switch through the softswitch Device's methods; RecordingDevice forwards those
calls and keeps them as ControlOps. The same ops then configure every fresh softswitch of a timed run
(apply_ops) and BMv2's simple_switch through simple_switch_CLI (cli_commands), so both switches hold the same
tables, default actions, multicast groups and registers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from omnireduce.softswitch.entries import FieldMatch, TableEntry

# BMv2 picks the matching entry with the *smallest* priority number; the softswitch (like P4Runtime) the largest.
# Entries are mapped onto BMv2 as BMV2_TOP_PRIORITY - priority, the way BMv2's own P4Runtime server does.
BMV2_TOP_PRIORITY = (1 << 24) - 1


@dataclass(frozen=True, slots=True)
class TableAdd:
    entry: TableEntry


@dataclass(frozen=True, slots=True)
class DefaultAction:
    table: str
    action: str
    params: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class McGroup:
    group_id: int
    replicas: tuple[tuple[int, int], ...]  # (egress port, rid), in replication order


@dataclass(frozen=True, slots=True)
class RegisterWrite:
    register: str
    index: int
    value: int


ControlOp = TableAdd | DefaultAction | McGroup | RegisterWrite


class RecordingDevice:
    """Stands in for a softswitch Device while a frame generator configures it: each call is forwarded to
    `device` and recorded. Only the calls listed here are supported, so that nothing is installed that the BMv2
    side could not reproduce."""

    def __init__(self, device) -> None:
        self.device = device
        self.ops: list[ControlOp] = []

    @property
    def pipeline_json(self) -> bytes | None:
        return self.device.pipeline_json

    def table_insert(self, entry: TableEntry) -> None:
        self.device.table_insert(entry)
        self.ops.append(TableAdd(entry))

    def table_set_default(self, table: str, action: str, params) -> None:
        self.device.table_set_default(table, action, params)
        self.ops.append(DefaultAction(table, action, tuple(params)))

    def mc_group_insert(self, group_id: int, replicas) -> None:
        self.device.mc_group_insert(group_id, replicas)
        self.ops.append(McGroup(group_id, tuple((int(port), int(rid)) for port, rid in replicas)))

    def register_write(self, name: str, index: int, value: int) -> None:
        self.device.register_write(name, index, value)
        self.ops.append(RegisterWrite(name, index, value))

    def register_read(self, name: str, index: int) -> int:
        return self.device.register_read(name, index)

    def counter_read(self, name: str, index: int) -> tuple[int, int]:
        return self.device.counter_read(name, index)

    def process_packet(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        return self.device.process_packet(port, frame)


def apply_ops(device, ops: list[ControlOp]) -> None:
    """Install recorded ops into a freshly loaded softswitch Device."""
    for op in ops:
        if isinstance(op, TableAdd):
            device.table_insert(op.entry)
        elif isinstance(op, DefaultAction):
            device.table_set_default(op.table, op.action, op.params)
        elif isinstance(op, McGroup):
            device.mc_group_insert(op.group_id, list(op.replicas))
        else:
            device.register_write(op.register, op.index, op.value)


# --- simple_switch_CLI ----------------------------------------------------------------------------------------

def cli_match(field: FieldMatch) -> str:
    """One key field in simple_switch_CLI's syntax (docs/runtime_CLI.md of behavioral-model)."""
    if field.kind == "exact":
        return str(field.value)
    if field.kind == "lpm":
        return f"{field.value}/{field.prefix_len}"
    if field.kind in ("ternary", "optional"):  # optional keys are ternary in the BMv2 JSON
        return f"{field.value}&&&{field.mask}"
    if field.kind == "range":
        return f"{field.value}->{field.high}"
    raise ValueError(f"simple_switch_CLI has no syntax for a {field.kind!r} key field")


def cli_table_add(entry: TableEntry) -> str:
    tokens = ["table_add", entry.table, entry.action, *(cli_match(field) for field in entry.key), "=>",
              *(str(param) for param in entry.params)]
    if any(field.kind in ("ternary", "optional", "range") for field in entry.key):
        tokens.append(str(BMV2_TOP_PRIORITY - entry.priority))
    return " ".join(tokens)


def cli_commands(ops: list[ControlOp]) -> tuple[list[str], list[McGroup]]:
    """The commands of the first CLI session, and the groups whose nodes must then be associated with them
    (mc_node_associate needs the node handles that the first session prints)."""
    commands: list[str] = []
    groups: list[McGroup] = []
    for op in ops:
        if isinstance(op, TableAdd):
            commands.append(cli_table_add(op.entry))
        elif isinstance(op, DefaultAction):
            commands.append(" ".join(["table_set_default", op.table, op.action, *map(str, op.params)]))
        elif isinstance(op, McGroup):
            commands.append(f"mc_mgrp_create {op.group_id}")
            commands.extend(f"mc_node_create {rid} {port}" for port, rid in op.replicas)
            groups.append(op)
        else:
            commands.append(f"register_write {op.register} {op.index} {op.value}")
    return commands, groups


_NODE_HANDLE = re.compile(r"node was created with handle (\d+)")


def node_handles(cli_output: str) -> list[int]:
    """Handles of the multicast nodes a CLI session created, in creation order."""
    return [int(handle) for handle in _NODE_HANDLE.findall(cli_output)]


def association_commands(groups: list[McGroup], handles: list[int]) -> list[str]:
    """mc_node_associate for every node created by cli_commands, in the order the nodes were created."""
    expected = sum(len(group.replicas) for group in groups)
    if len(handles) != expected:
        raise ValueError(f"simple_switch_CLI reported {len(handles)} multicast node handles, expected {expected}")
    commands, position = [], 0
    for group in groups:
        for _ in group.replicas:
            commands.append(f"mc_node_associate {group.group_id} {handles[position]}")
            position += 1
    return commands


def cli_errors(cli_output: str) -> list[str]:
    """simple_switch_CLI exits 0 after a failed command and prints the failure; these are those lines."""
    return [line.strip() for line in cli_output.splitlines() if "Error" in line or "Invalid" in line]
