"""Register cells serialized straight into ReadResponse wire format with numpy, for whole-register reads.

A wildcard read of the omnireduce program's registers returns tens of thousands of cells; building a protobuf
Entity per cell in Python is most of what such a read costs. Every cell has the same shape, so its bytes are
computed for all cells at once: a cell is the ReadResponse field `entities` holding
`Entity{register_entry: RegisterEntry{register_id, index: Index{index}, data: P4Data{bitstring}}}`, where only
the index varint (1..5 bytes) and the canonical bitstring (1..8 bytes, P4Runtime's shortest form) vary in length.
Each segment is built as a matrix (one row per cell), the valid bytes of each row are masked in, and flattening
the masked matrix row by row concatenates the cells. Any prefix of whole cells is itself a serialized
ReadResponse, which is how a read is cut into bounded messages. Registers wider than 64 bits are not handled here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from omnireduce.p4proto import p4data_pb2, p4runtime_pb2

MAX_BITWIDTH = 64
MAX_INDEX = (1 << 35) - 1          # indices up to 5 varint bytes
_LEN = 2                            # protobuf wire type of a length-delimited field
_VARINT = 0


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _tag(message, field: str, wire_type: int) -> bytes:
    return _varint(message.DESCRIPTOR.fields_by_name[field].number << 3 | wire_type)


_ENTITIES_TAG = _tag(p4runtime_pb2.ReadResponse, "entities", _LEN)
_REGISTER_ENTRY_TAG = _tag(p4runtime_pb2.Entity, "register_entry", _LEN)
_REGISTER_ID_TAG = _tag(p4runtime_pb2.RegisterEntry, "register_id", _VARINT)
_INDEX_TAG = _tag(p4runtime_pb2.RegisterEntry, "index", _LEN)
_INDEX_VALUE_TAG = _tag(p4runtime_pb2.Index, "index", _VARINT)
_DATA_TAG = _tag(p4runtime_pb2.RegisterEntry, "data", _LEN)
_BITSTRING_TAG = _tag(p4data_pb2.P4Data, "bitstring", _LEN)


@dataclass(frozen=True, slots=True)
class EncodedCells:
    """Serialized `entities` fields of a ReadResponse, one per cell, and where each cell's bytes end."""

    data: bytes
    ends: np.ndarray          # int64, cumulative: cell i is data[ends[i-1]:ends[i]]

    def __len__(self) -> int:
        return len(self.ends)

    def chunks(self, max_bytes: int) -> Iterator[tuple[bytes, int]]:
        """(serialized ReadResponse, cells in it), each at most `max_bytes` long (or one cell)."""
        start_cell, start_byte = 0, 0
        while start_cell < len(self.ends):
            # The last cell that still ends within the budget; at least one cell per chunk.
            stop_cell = int(np.searchsorted(self.ends, start_byte + max_bytes, side="right"))
            stop_cell = max(stop_cell, start_cell + 1)
            stop_byte = int(self.ends[stop_cell - 1])
            yield self.data[start_byte:stop_byte], stop_cell - start_cell
            start_cell, start_byte = stop_cell, stop_byte


def _segment(matrix: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return matrix.astype(np.uint8), lengths.astype(np.int64)


def _constant(data: bytes, count: int) -> tuple[np.ndarray, np.ndarray]:
    return (np.broadcast_to(np.frombuffer(data, dtype=np.uint8), (count, len(data))),
            np.full(count, len(data), dtype=np.int64))


def _byte(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return values.astype(np.uint8).reshape(-1, 1), np.ones(len(values), dtype=np.int64)


def _varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Varints of `values` (< 2**35): a matrix of up to 5 bytes per row, and each row's length."""
    values = values.astype(np.uint64)
    lengths = 1 + sum((values >= np.uint64(1 << (7 * k))).astype(np.int64) for k in range(1, 5))
    positions = np.arange(5)
    groups = (values[:, None] >> (7 * positions[None, :]).astype(np.uint64)) & np.uint64(0x7F)
    more = positions[None, :] < (lengths[:, None] - 1)
    return _segment(groups | (more.astype(np.uint64) << np.uint64(7)), lengths)


def _bitstrings(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical (shortest big-endian, zero as one 0 byte) bitstrings of uint64 `values`."""
    lengths = 1 + sum((values >= np.uint64(1 << (8 * k))).astype(np.int64) for k in range(1, 8))
    shifts = 8 * (lengths[:, None] - 1 - np.arange(8)[None, :])
    matrix = (values[:, None] >> np.clip(shifts, 0, None).astype(np.uint64)) & np.uint64(0xFF)
    return _segment(matrix, lengths)


def _concatenate(segments: list[tuple[np.ndarray, np.ndarray]]) -> tuple[bytes, np.ndarray]:
    matrix = np.concatenate([m for m, _ in segments], axis=1)
    mask = np.concatenate([np.arange(m.shape[1])[None, :] < lengths[:, None] for m, lengths in segments], axis=1)
    row_lengths = sum(lengths for _, lengths in segments)
    return matrix[mask].tobytes(), np.cumsum(row_lengths)


def encode_register_cells(register_id: int, first_index: int, values: np.ndarray) -> EncodedCells:
    """Cells `first_index`, `first_index + 1`, ... of a register holding `values` (unsigned, < 2**64)."""
    count = len(values)
    values = np.asarray(values, dtype=np.uint64)
    indices = np.arange(first_index, first_index + count, dtype=np.uint64)
    index_varints = _varints(indices)
    bitstrings = _bitstrings(values)
    index_length = len(_INDEX_VALUE_TAG) + index_varints[1]
    data_length = len(_BITSTRING_TAG) + 1 + bitstrings[1]
    register_id_field = _REGISTER_ID_TAG + _varint(register_id)
    entry_length = (len(register_id_field) + len(_INDEX_TAG) + 1 + index_length
                    + len(_DATA_TAG) + 1 + data_length)
    entity_length = len(_REGISTER_ENTRY_TAG) + 1 + entry_length
    # Every length above is below 128, so each takes one varint byte.
    data, ends = _concatenate([
        _constant(_ENTITIES_TAG, count), _byte(entity_length),
        _constant(_REGISTER_ENTRY_TAG, count), _byte(entry_length),
        _constant(register_id_field + _INDEX_TAG, count), _byte(index_length),
        _constant(_INDEX_VALUE_TAG, count), index_varints,
        _constant(_DATA_TAG, count), _byte(data_length),
        _constant(_BITSTRING_TAG, count), _byte(bitstrings[1]), bitstrings,
    ])
    return EncodedCells(data, ends)
