"""Stateful objects of a loaded program: register arrays and counter arrays.

Per-packet code indexes plain Python lists (one element access is a single BINARY_SUBSCR); control-plane
reads that want many cells at once get numpy copies. The list objects are never replaced, only updated in
place, because generated code holds direct references to them.
"""

from __future__ import annotations

import numpy as np

from .errors import InvalidArgument, OutOfRange


class RegisterArrayState:
    __slots__ = ("name", "size", "width", "cells")

    def __init__(self, name: str, size: int, width: int) -> None:
        self.name = name
        self.size = size
        self.width = width
        self.cells: list[int] = [0] * size

    def _check_index(self, index: int) -> None:
        if not isinstance(index, int) or not 0 <= index < self.size:
            raise OutOfRange(f"register '{self.name}' has {self.size} cells; index {index!r} is out of range")

    def read(self, index: int) -> int:
        self._check_index(index)
        return self.cells[index]

    def write(self, index: int, value: int) -> None:
        self._check_index(index)
        if not isinstance(value, int) or not 0 <= value < (1 << self.width):
            raise InvalidArgument(f"value {value!r} does not fit register '{self.name}' ({self.width} bits)")
        self.cells[index] = value

    def read_all(self) -> np.ndarray:
        dtype = np.uint64 if self.width <= 64 else object
        return np.array(self.cells, dtype=dtype)

    def reset(self) -> None:
        self.cells[:] = [0] * self.size


class CounterArrayState:
    """An indirect counter array: packets and bytes per index (BMv2 counters always count both)."""

    __slots__ = ("name", "size", "packets", "bytes")

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        self.packets: list[int] = [0] * size
        self.bytes: list[int] = [0] * size

    def _check_index(self, index: int) -> None:
        if not isinstance(index, int) or not 0 <= index < self.size:
            raise OutOfRange(f"counter '{self.name}' has {self.size} cells; index {index!r} is out of range")

    def read(self, index: int) -> tuple[int, int]:
        self._check_index(index)
        return self.packets[index], self.bytes[index]

    def write(self, index: int, packets: int, byte_count: int) -> None:
        self._check_index(index)
        if packets < 0 or byte_count < 0:
            raise InvalidArgument(f"counter '{self.name}': negative counts ({packets}, {byte_count})")
        self.packets[index] = packets
        self.bytes[index] = byte_count

    def reset(self) -> None:
        self.packets[:] = [0] * self.size
        self.bytes[:] = [0] * self.size
