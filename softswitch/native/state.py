"""Register and counter arrays whose cells live in the native pipeline's memory (numpy views of it), with the
interface of state.RegisterArrayState / CounterArrayState that the Device and P4Runtime use."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgument, OutOfRange
from ..meters import MeterArrayState, MeterConfig


def _check_index(kind: str, name: str, size: int, index: int) -> None:
    if not isinstance(index, int) or not 0 <= index < size:
        raise OutOfRange(f"{kind} '{name}' has {size} cells; index {index!r} is out of range")


class NativeRegisterArrayState:
    __slots__ = ("name", "size", "width", "cells")

    def __init__(self, name: str, size: int, width: int, cells: np.ndarray) -> None:
        self.name = name
        self.size = size
        self.width = width
        self.cells = cells  # uint64 view of the C array; never replaced

    def read(self, index: int) -> int:
        _check_index("register", self.name, self.size, index)
        return int(self.cells[index])

    def write(self, index: int, value: int) -> None:
        _check_index("register", self.name, self.size, index)
        if not isinstance(value, int) or not 0 <= value < (1 << self.width):
            raise InvalidArgument(f"value {value!r} does not fit register '{self.name}' ({self.width} bits)")
        self.cells[index] = value

    def read_all(self) -> np.ndarray:
        return self.cells[: self.size].copy()

    def reset(self) -> None:
        self.cells[:] = 0


class NativeCounterArrayState:
    __slots__ = ("name", "size", "packets", "bytes")

    def __init__(self, name: str, size: int, packets: np.ndarray, byte_counts: np.ndarray) -> None:
        self.name = name
        self.size = size
        self.packets = packets
        self.bytes = byte_counts

    def read(self, index: int) -> tuple[int, int]:
        _check_index("counter", self.name, self.size, index)
        return int(self.packets[index]), int(self.bytes[index])

    def write(self, index: int, packets: int, byte_count: int) -> None:
        _check_index("counter", self.name, self.size, index)
        if packets < 0 or byte_count < 0:
            raise InvalidArgument(f"counter '{self.name}': negative counts ({packets}, {byte_count})")
        self.packets[index] = packets
        self.bytes[index] = byte_count

    def reset(self) -> None:
        self.packets[:] = 0
        self.bytes[:] = 0


class NativeMeterArrayState(MeterArrayState):
    """A meter array whose buckets live in the native pipeline's memory (numpy views); the configurations written
    stay here, for reads. `execute` is the C code's (runtime.h), with the same arithmetic."""

    __slots__ = ()

    def __init__(self, name: str, size: int, unit: str, configured: np.ndarray, rates: np.ndarray,
                 bursts: np.ndarray, tokens: np.ndarray, last: np.ndarray) -> None:
        self.name = name
        self.size = size
        self.unit = unit
        self.configs: list[MeterConfig | None] = [None] * size
        self.configured = configured
        self.rates = rates
        self.bursts = bursts
        self.tokens = tokens
        self.last = last
