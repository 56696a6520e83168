"""P4Runtime CounterEntry and RegisterEntry writes and reads (indexed arrays) on the softswitch Device.

Both are MODIFY-only in writes; an unset index means every cell (a wildcard write or read), an id of 0
in a read means every array of that kind. Indices are checked here so the client gets the spec's codes:
INVALID_ARGUMENT for a negative index, OUT_OF_RANGE past the end of the array.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING


import numpy as np

from omnireduce.p4proto import p4data_pb2, p4runtime_pb2
from omnireduce.softswitch.p4runtime.bytestrings import all_ones, decode_uint, encode_uint
from omnireduce.softswitch.p4runtime.errors import P4RuntimeError, device_errors
from omnireduce.softswitch.p4runtime import register_wire
from omnireduce.softswitch.p4runtime.p4info_map import CounterInfo, P4InfoMap, RegisterInfo

if TYPE_CHECKING:   # only for annotations: the Device module needs nothing from the server
    from omnireduce.softswitch.device import Device

Update = p4runtime_pb2.Update


@dataclass(frozen=True, slots=True)
class RegisterCells:
    """Consecutive cells of one register, read in one go: `values[i]` is cell `first_index + i`."""

    register_id: int
    first_index: int
    values: np.ndarray        # uint64, already masked to the register's width

    def encode(self) -> register_wire.EncodedCells:
        return register_wire.encode_register_cells(self.register_id, self.first_index, self.values)


def _indices(what: str, size: int, index: p4runtime_pb2.Index | None) -> range:
    """The cells an entry addresses: all of them when `index` is unset, else the one, bounds-checked."""
    if index is None:
        return range(size)
    if index.index < 0:
        raise P4RuntimeError.invalid_argument(f"{what}: index {index.index} is negative")
    if index.index >= size:
        raise P4RuntimeError.out_of_range(f"{what}: index {index.index} is past its {size} cells")
    return range(index.index, index.index + 1)


class ArrayOps:
    """Indexed counters and registers of one Device under one P4Info."""

    def __init__(self, device: Device, p4map: P4InfoMap) -> None:
        self.device = device
        self.p4map = p4map

    # --- counters --------------------------------------------------------------------------------------
    def write_counter(self, update_type: int, msg: p4runtime_pb2.CounterEntry) -> None:
        if update_type != Update.MODIFY:
            raise P4RuntimeError.invalid_argument("counter entries can only be MODIFYed")
        if msg.counter_id == 0:
            raise P4RuntimeError.invalid_argument("counter_id 0 is only a wildcard for reads")
        counter = self.p4map.counter(msg.counter_id)
        cells = _indices(f"counter '{counter.name}'", counter.size, msg.index if msg.HasField("index") else None)
        if not msg.HasField("data"):
            return   # the spec: without data the counter is not modified
        with device_errors():
            for index in cells:
                self.device.counter_write(counter.name, index, msg.data.packet_count, msg.data.byte_count)

    def read_counters(self, query: p4runtime_pb2.CounterEntry) -> Iterator[p4runtime_pb2.Entity]:
        counters: list[CounterInfo] = (list(self.p4map.counters) if query.counter_id == 0
                                       else [self.p4map.counter(query.counter_id)])
        index = query.index if query.HasField("index") and query.counter_id else None
        for counter in counters:
            for cell in _indices(f"counter '{counter.name}'", counter.size, index):
                with device_errors():
                    packets, octets = self.device.counter_read(counter.name, cell)
                entity = p4runtime_pb2.Entity()
                entry = entity.counter_entry
                entry.counter_id = counter.id
                entry.index.index = cell
                entry.data.packet_count, entry.data.byte_count = packets, octets
                yield entity

    # --- registers -------------------------------------------------------------------------------------
    def write_register(self, update_type: int, msg: p4runtime_pb2.RegisterEntry) -> None:
        if update_type != Update.MODIFY:
            raise P4RuntimeError.invalid_argument("register entries can only be MODIFYed")
        if msg.register_id == 0:
            raise P4RuntimeError.invalid_argument("register_id 0 is only a wildcard for reads")
        register = self.p4map.register(msg.register_id)
        what = f"register '{register.name}'"
        cells = _indices(what, register.size, msg.index if msg.HasField("index") else None)
        if msg.data.WhichOneof("data") != "bitstring":
            raise P4RuntimeError.invalid_argument(f"{what}: data must be a bitstring of {register.bitwidth} bits")
        value = decode_uint(msg.data.bitstring, register.bitwidth, what)
        with device_errors():
            for index in cells:
                self.device.register_write(register.name, index, value)

    def read_registers(self, query: p4runtime_pb2.RegisterEntry) -> Iterator[p4runtime_pb2.Entity | RegisterCells]:
        """Single cells as Entities; whole registers (up to 64 bits wide) as a snapshot of their values, which
        the server serializes while it sends them (register_wire.py), outside the lock this runs under."""
        registers: list[RegisterInfo] = (list(self.p4map.registers) if query.register_id == 0
                                         else [self.p4map.register(query.register_id)])
        index = query.index if query.HasField("index") and query.register_id else None
        for register in registers:
            cells = _indices(f"register '{register.name}'", register.size, index)
            mask = all_ones(register.bitwidth)   # int<W> cells travel as their two's complement bits
            with device_errors():
                if len(cells) == 1:
                    values = [self.device.register_read(register.name, cells[0])]
                elif register.bitwidth <= register_wire.MAX_BITWIDTH:
                    values = self.device.register_read_all(register.name)
                    yield RegisterCells(register.id, cells.start, values.astype(np.uint64) & np.uint64(mask))
                    continue
                else:
                    values = self.device.register_read_all(register.name).tolist()
            for cell, value in zip(cells, values):
                entity = p4runtime_pb2.Entity()
                entry = entity.register_entry
                entry.register_id = register.id
                entry.index.index = cell
                entry.data.CopyFrom(p4data_pb2.P4Data(bitstring=encode_uint(int(value) & mask, register.bitwidth)))
                yield entity
