"""The switch session: a connected, arbitrated P4Runtime client bound to one P4Info, speaking entities.

`Switch.connect()` opens the session; `push_pipeline()` installs our program, `bind_pipeline()` checks that the
switch already runs it (same names and ids) before anything is written. Writes go out in batches and report each
refused update by name; reads come back as entities.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Sequence, TypeVar


from omnireduce.controller.client import ElectionId, P4RuntimeClient
from omnireduce.controller.entities import (
    CounterEntry,
    Entity,
    MulticastGroupEntry,
    RegisterEntry,
    TableEntry,
    describe,
    entity_from_message,
    entity_message,
)
from omnireduce.controller.errors import BadInputError, NotPrimaryError, P4RuntimeError, PipelineMismatchError
from omnireduce.controller.p4info import P4InfoIndex, RegisterInfo, load_p4info, p4info_differences
from omnireduce.controller.registers import (
    DEFAULT_THRIFT_PORT,
    RegisterAccess,
    RegisterReads,
    RegisterValues,
    ThriftRegisters,
    reads_whole,
)
from omnireduce.p4proto import p4info_pb2, p4runtime_pb2

log = logging.getLogger(__name__)

DEFAULT_GRPC_ADDR = "127.0.0.1:9559"
# Updates per Write RPC: large enough that resetting 512 slots is a few dozen RPCs, small enough to stay far below
# gRPC's message limit and to keep one refused batch readable.
WRITE_BATCH = 1000
# Entities per Read RPC (for reads of many single register cells).
READ_BATCH = 2000

INSERT = p4runtime_pb2.Update.INSERT
MODIFY = p4runtime_pb2.Update.MODIFY
DELETE = p4runtime_pb2.Update.DELETE
_UPDATE_NAMES = {INSERT: "insert", MODIFY: "modify", DELETE: "delete"}

_E = TypeVar("_E")


class Switch:
    """A P4Runtime session with one switch. Writes need primacy; reads do not."""

    def __init__(self, client: P4RuntimeClient, schema: P4InfoIndex | None = None,
                 registers: RegisterAccess | None = None) -> None:
        self.client = client
        self.schema = schema
        self.name = f"{client.address}/{client.device_id}"
        # Where register cells are read and written: P4Runtime unless told otherwise (BMv2: ThriftRegisters).
        self.registers: RegisterAccess = registers if registers is not None else P4RuntimeRegisters(self)

    @classmethod
    def connect(cls, address: str = DEFAULT_GRPC_ADDR, device_id: int = 0, election_id: ElectionId = ElectionId(),
                timeout: float = 10.0, require_primary: bool = True, fail_fast: bool = False) -> "Switch":
        """Connect (waiting at most `timeout` s), arbitrate, and return the session.

        With `require_primary` (for writers), the session takes part in master arbitration and losing it is a
        `NotPrimaryError` right here instead of a refused write later. Without it the session is read-only and
        does not arbitrate at all (P4Runtime reads need no stream channel), so `status --watch` can run beside
        a writer that uses the same election id. `fail_fast`: a refused connection fails at once instead of being
        retried until `timeout` (a switch still starting refuses connections too).
        """
        client = P4RuntimeClient(address, device_id, election_id, timeout, fail_fast=fail_fast)
        try:
            client.connect()
            if not require_primary:
                return cls(client)
            arbitration = client.arbitrate()
            if not arbitration.is_primary:
                raise NotPrimaryError(f"switch {address} (device {device_id}): {arbitration.message}; writes would "
                                      f"be refused. Use a higher --election-id or stop the other controller.")
        except BaseException:
            client.close()
            raise
        return cls(client)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "Switch":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def is_primary(self) -> bool:
        return self.client.arbitration is not None and self.client.arbitration.is_primary

    # --- pipeline --------------------------------------------------------------------------------------------

    def capabilities(self) -> str:
        return self.client.capabilities()

    def running_p4info(self) -> p4info_pb2.P4Info | None:
        config = self.client.get_pipeline()
        return config.p4info if config is not None else None

    def push_pipeline(self, p4info: p4info_pb2.P4Info, device_config: bytes) -> None:
        """Install the program: the switch drops every entry and register value it held."""
        self._require_primary("push the pipeline")
        self.client.set_pipeline(p4info, device_config)
        self.schema = P4InfoIndex(p4info)
        log.info("[%s] pipeline pushed: %d tables, %d actions, %d registers, %d counters", self.name,
                 len(p4info.tables), len(p4info.actions), len(p4info.registers), len(p4info.counters))

    def bind_pipeline(self, expected: p4info_pb2.P4Info) -> P4InfoIndex:
        """Check the switch runs `expected` (names and ids agree) and use it as this session's schema."""
        running = self.running_p4info()
        if running is None:
            raise PipelineMismatchError(f"switch {self.name} runs no pipeline; push one first "
                                        f"(omnireduce-ctl push)")
        differences = p4info_differences(expected, running)
        if differences:
            raise PipelineMismatchError(
                f"switch {self.name} runs a pipeline whose P4Info differs from ours; refusing to write to it. "
                f"Push ours (omnireduce-ctl push) or pass the P4Info it runs.\n  " + "\n  ".join(differences))
        self.schema = P4InfoIndex(expected)
        return self.schema

    def bind_pipeline_file(self, p4info_path: Path) -> P4InfoIndex:
        return self.bind_pipeline(load_p4info(p4info_path))

    def _require_schema(self) -> P4InfoIndex:
        if self.schema is None:
            raise PipelineMismatchError(f"session with {self.name} has no P4Info bound (push or bind a pipeline)")
        return self.schema

    def _require_primary(self, what: str) -> None:
        if not self.is_primary:
            message = (self.client.arbitration.message if self.client.arbitration
                       else "this is a read-only session (no master arbitration)")
            raise NotPrimaryError(f"cannot {what} on {self.name}: {message}")

    # --- writes ----------------------------------------------------------------------------------------------

    def write(self, update_type: int, entities: Sequence[Entity]) -> None:
        """Apply one kind of update to `entities`, in batches. A refusal names each failed update.

        Failure indexes in the raised `P4RuntimeError` are positions in `entities` (not in the batch).
        """
        if not entities:
            return
        self._require_primary(f"{_UPDATE_NAMES[update_type]} entries")
        schema = self._require_schema()
        updates = [p4runtime_pb2.Update(type=update_type, entity=entity_message(entity, schema))
                   for entity in entities]
        for start in range(0, len(updates), WRITE_BATCH):
            batch = updates[start:start + WRITE_BATCH]
            descriptions = [f"{_UPDATE_NAMES[update_type]} {describe(entity)}"
                            for entity in entities[start:start + WRITE_BATCH]]
            try:
                self.client.write(batch, descriptions)
            except P4RuntimeError as error:
                if start == 0:
                    raise
                raise _shift(error, start) from None
        log.debug("[%s] %s %d entities", self.name, _UPDATE_NAMES[update_type], len(entities))

    def insert(self, entities: Sequence[Entity]) -> None:
        self.write(INSERT, entities)

    def modify(self, entities: Sequence[Entity]) -> None:
        self.write(MODIFY, entities)

    def delete(self, entities: Sequence[Entity], ignore_missing: bool = False) -> None:
        """Delete `entities`; with `ignore_missing`, ones already gone (NOT_FOUND) are not an error."""
        try:
            self.write(DELETE, entities)
        except P4RuntimeError as error:
            if ignore_missing and error.only("NOT_FOUND"):
                log.debug("[%s] %d of %d entities to delete were already gone", self.name, len(error.failures),
                          len(entities))
                return
            raise

    def write_registers(self, register: str, values: dict[int, int]) -> None:
        """Set cells of one register (through `self.registers`: P4Runtime MODIFY, or BMv2's Thrift runtime)."""
        self.write_register_cells({register: values})

    def write_register_cells(self, values: dict[str, dict[int, int]]) -> None:
        """Set cells of several registers in as few round trips as the register access allows."""
        values = {name: cells for name, cells in values.items() if cells}
        if not values:
            return
        self._require_primary("write registers")
        schema = self._require_schema()
        self.registers.write({schema.register(name): cells for name, cells in values.items()})

    # --- reads -----------------------------------------------------------------------------------------------

    def read(self, templates: Sequence[Entity]) -> list[Entity]:
        """Read the entities matching `templates` (wildcards: a table with no match, a register with no index)."""
        schema = self._require_schema()
        result: list[Entity] = []
        for start in range(0, len(templates), READ_BATCH):
            messages = [entity_message(template, schema) for template in templates[start:start + READ_BATCH]]
            result.extend(entity_from_message(message, schema) for message in self.client.read(messages))
        return result

    def read_table(self, table: str) -> list[TableEntry]:
        """Every entry of `table` (not its default action)."""
        entries = self.read([TableEntry(self._require_schema().table(table).name)])
        return [entry for entry in entries if isinstance(entry, TableEntry) and not entry.is_default]

    def read_register(self, register: str, indexes: Iterable[int] | None = None) -> dict[int, int]:
        """Cells of one register by index: every cell, or just `indexes`."""
        return self.read_registers({register: indexes})[self._require_schema().register(register).name]

    def read_registers(self, requests: dict[str, Iterable[int] | None]) -> dict[str, dict[int, int]]:
        """Cells of several registers (by full name, then index) in as few round trips as possible."""
        schema = self._require_schema()
        return self.registers.read({schema.register(name): None if indexes is None else sorted(set(indexes))
                                    for name, indexes in requests.items()})

    def read_counter(self, counter: str) -> dict[int, CounterEntry]:
        """Every cell of an indirect counter, by index."""
        name = self._require_schema().counter(counter).name
        return {entry.index: entry for entry in _only(self.read([CounterEntry(name)]), CounterEntry)
                if entry.index is not None}

    def read_multicast_groups(self) -> dict[int, MulticastGroupEntry]:
        """Every multicast group of the PRE, by group id."""
        # A wildcard read of the PRE is a multicast group entry with id 0 (P4Runtime spec 9.5.1).
        return {group.group_id: group for group in _only(self.read([MulticastGroupEntry(0)]), MulticastGroupEntry)}


class P4RuntimeRegisters:
    """Registers through P4Runtime RegisterEntry reads and MODIFY writes (the softswitch; not BMv2, see registers.py)."""

    def __init__(self, switch: Switch) -> None:
        self.switch = switch

    def read(self, requests: RegisterReads) -> RegisterValues:
        templates: list[Entity] = []
        for register, indexes in requests.items():
            if reads_whole(register, indexes):
                templates.append(RegisterEntry(register.name))  # wildcard: every cell
            else:
                templates.extend(RegisterEntry(register.name, index) for index in indexes)
        try:
            entries = self.switch.read(templates)
        except P4RuntimeError as error:
            raise _hint_unimplemented(error) from None
        cells: dict[str, dict[int, int]] = {register.name: {} for register in requests}
        for entry in _only(entries, RegisterEntry):
            if entry.index is None or entry.value is None or entry.register not in cells:
                raise BadInputError(f"switch {self.switch.name} answered a register read with {entry}")
            cells[entry.register][entry.index] = entry.value
        result: RegisterValues = {}
        for register, indexes in requests.items():
            wanted = range(register.size) if indexes is None else indexes
            missing = [index for index in wanted if index not in cells[register.name]]
            if missing:
                raise BadInputError(f"switch {self.switch.name} returned no value for {register.name}{missing[:5]}")
            result[register.name] = {index: cells[register.name][index] for index in wanted}
        return result

    def write(self, values: dict[RegisterInfo, dict[int, int]]) -> None:
        entries: list[Entity] = [RegisterEntry(register.name, index, value)
                                 for register, cells in values.items() for index, value in sorted(cells.items())]
        try:
            self.switch.modify(entries)
        except P4RuntimeError as error:
            raise _hint_unimplemented(error) from None


def _hint_unimplemented(error: P4RuntimeError) -> P4RuntimeError:
    if error.code != "UNIMPLEMENTED" and not error.only("UNIMPLEMENTED"):
        return error
    return P4RuntimeError(error.operation, error.code,
                          f"{error.details} -- this P4Runtime server has no register access (BMv2's "
                          f"simple_switch_grpc serves registers over Thrift only: pass --thrift-port, default "
                          f"{DEFAULT_THRIFT_PORT})", error.failures[:1])


def connect(grpc_addr: str = DEFAULT_GRPC_ADDR, *, device_id: int = 0, election_id: ElectionId = ElectionId(),
            timeout: float = 10.0, p4info: Path | None = None, require_primary: bool = True,
            thrift_port: int | None = None, fail_fast: bool = False) -> Switch:
    """Open a session with the switch at `grpc_addr` (a clear `SwitchUnreachableError` after `timeout` s).

    With `p4info` (a P4Info file, e.g. `omnireduce.p4src.artifacts.P4INFO`) the session checks that the switch
    runs that pipeline and binds it, ready for job operations; without it, call `pipeline.push()` (or
    `bind_pipeline_file()`) next. `require_primary=False` opens a read-only session (no arbitration).
    `thrift_port` sends register access to BMv2's Thrift runtime on that port (simple_switch_grpc has no
    P4Runtime register access). `fail_fast`: see `Switch.connect`.
    """
    switch = Switch.connect(grpc_addr, device_id, election_id, timeout, require_primary=require_primary,
                            fail_fast=fail_fast)
    if thrift_port is not None:
        switch.registers = ThriftRegisters(thrift_port, grpc_addr.rsplit(":", 1)[0], timeout=max(timeout, 60.0))
    if p4info is not None:
        try:
            switch.bind_pipeline_file(p4info)
        except BaseException:
            switch.close()
            raise
    return switch


def _only(entities: Iterable[Entity], kind: type[_E]) -> list[_E]:
    return [entity for entity in entities if isinstance(entity, kind)]


def _shift(error: P4RuntimeError, offset: int) -> P4RuntimeError:
    failures = tuple(replace(failure, index=failure.index + offset) for failure in error.failures)
    return P4RuntimeError(error.operation, error.code, error.details, failures)
