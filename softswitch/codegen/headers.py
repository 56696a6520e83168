"""Extract and emit code for one header type, built around one precompiled struct.Struct per header.

A header's fields are split into chunks that start and end on byte boundaries. A chunk holding a single
8/16/32/64-bit field maps onto one struct code ('B', 'H', 'I', 'Q', signed 'b'...); any other chunk is read as
big-endian pieces of 8/4/2/1 bytes that are combined with shifts and split into fields with masks. A header
made of direct chunks only (the 32 x bit<32> lanes, say) is extracted with one `unpack_from` into a PHV slice.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import InvalidArgument
from ..phv import PhvLayout
from ..program import Header
from .source import CodeWriter, Namespace

_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


@dataclass(frozen=True, slots=True)
class _Field:
    slot: int
    width: int
    signed: bool


@dataclass(frozen=True, slots=True)
class _Chunk:
    fields: tuple[_Field, ...]
    nbytes: int
    pieces: tuple[int, ...]  # byte sizes of the struct items covering this chunk, big-endian order

    @property
    def direct(self) -> bool:
        return len(self.fields) == 1 and len(self.pieces) == 1 and self.fields[0].width == self.nbytes * 8


def _pieces(nbytes: int) -> tuple[int, ...]:
    out = []
    for size in (8, 4, 2, 1):
        while nbytes >= size:
            out.append(size)
            nbytes -= size
    return tuple(out)


def _signed(code: str, width: int) -> str:
    half = 1 << (width - 1)
    return f"(({code} ^ {half}) - {half})"


class HeaderCodec:
    def __init__(self, header: Header, layout: PhvLayout, ns: Namespace) -> None:
        if header.type.bit_width % 8:
            raise InvalidArgument(f"header '{header.name}' is {header.type.bit_width} bits, not whole bytes")
        self.header = header
        self.nbytes = header.type.bit_width // 8
        self.valid_slot = layout.valid_slot(header.name)
        self.first_slot = layout.first_field_slot(header.name)
        self.nfields = len(header.type.fields)
        chunks: list[_Chunk] = []
        pending: list[_Field] = []
        bits = 0
        for spec in header.type.fields:
            pending.append(_Field(layout.slot(header.name, spec.name), spec.width, spec.signed))
            bits += spec.width
            if bits % 8 == 0:
                chunks.append(_Chunk(tuple(pending), bits // 8, _pieces(bits // 8)))
                pending, bits = [], 0
        self.chunks = tuple(chunks)
        fmt = ">"
        for chunk in self.chunks:
            if chunk.direct:
                code = _CODES[chunk.nbytes]
                fmt += code.lower() if chunk.fields[0].signed else code
            else:
                fmt += "".join(_CODES[p] for p in chunk.pieces)
        self.struct = struct.Struct(fmt)
        assert self.struct.size == self.nbytes, (header.name, fmt)
        self.struct_name = ns.bind(self.struct, f"S_{_ident(header.name)}")
        self.all_direct = all(chunk.direct for chunk in self.chunks)

    def extract(self, w: CodeWriter, data: str, offset: str) -> None:
        """Lines that fill the fields from `data[offset:]` (length already checked) and set validity."""
        first, n = self.first_slot, self.nfields
        if self.all_direct:
            w.line(f"F[{first}:{first + n}] = {self.struct_name}.unpack_from({data}, {offset})")
        else:
            t = w.temp("t")
            w.line(f"{t} = {self.struct_name}.unpack_from({data}, {offset})")
            index = 0
            for chunk in self.chunks:
                if chunk.direct:
                    w.line(f"F[{chunk.fields[0].slot}] = {t}[{index}]")
                    index += 1
                    continue
                parts = []
                shift = chunk.nbytes * 8
                for size in chunk.pieces:
                    shift -= size * 8
                    parts.append(f"({t}[{index}] << {shift})" if shift else f"{t}[{index}]")
                    index += 1
                combined = " | ".join(parts)
                if len(chunk.fields) == 1:
                    f = chunk.fields[0]
                    value = f"({combined})"
                    w.line(f"F[{f.slot}] = {_signed(value, f.width) if f.signed else value}")
                    continue
                c = w.temp("c")
                w.line(f"{c} = {combined}")
                shift = chunk.nbytes * 8
                for i, f in enumerate(chunk.fields):
                    shift -= f.width
                    value = f"({c} >> {shift})" if shift else c
                    if i > 0:
                        value = f"({value} & {(1 << f.width) - 1})"
                    w.line(f"F[{f.slot}] = {_signed(value, f.width) if f.signed else value}")
        if not self.header.metadata:
            w.line(f"F[{self.valid_slot}] = True")

    def emit_expr(self, w: CodeWriter) -> str:
        """Code (possibly preceded by helper lines written into `w`) for the header's bytes."""
        first, n = self.first_slot, self.nfields
        if self.all_direct:
            return f"{self.struct_name}.pack(*F[{first}:{first + n}])"
        args = []
        for chunk in self.chunks:
            if chunk.direct:
                args.append(f"F[{chunk.fields[0].slot}]")
                continue
            parts = []
            shift = chunk.nbytes * 8
            for f in chunk.fields:
                shift -= f.width
                value = f"(F[{f.slot}] & {(1 << f.width) - 1})" if f.signed else f"F[{f.slot}]"
                parts.append(f"({value} << {shift})" if shift else value)
            combined = " | ".join(parts)
            if len(chunk.pieces) == 1:
                args.append(combined if len(parts) == 1 else f"({combined})")
                continue
            c = w.temp("c")
            w.line(f"{c} = {combined}")
            shift = chunk.nbytes * 8
            for size in chunk.pieces:
                shift -= size * 8
                piece = f"({c} >> {shift})" if shift else c
                args.append(f"({piece} & {(1 << (size * 8)) - 1})")
        return f"{self.struct_name}.pack({', '.join(args)})"


def _ident(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


class VarbitCodec:
    """Extract and emit for a header with a varbit field (BMv2's extract_VL and deparse): the varbit's width
    comes from the parser's length expression when extracted and sits in the header's width slot; the whole
    header is read and written as one big-endian integer of its current length."""

    def __init__(self, header: Header, layout: PhvLayout, ns: Namespace) -> None:
        if header.type.bit_width % 8:
            raise InvalidArgument(f"header '{header.name}' has {header.type.bit_width} fixed bits, not whole bytes")
        self.header = header
        self.fixed_bytes = header.type.bit_width // 8
        self.varbit = header.type.varbit
        assert self.varbit is not None
        self.max_bytes = self.fixed_bytes + self.varbit.width // 8
        self.valid_slot = layout.valid_slot(header.name)
        self.value_slot, self.width_slot, _ = layout.varbit_slots(header.name)
        # (slot, width or None for the varbit, signed), in wire order
        self.fields = tuple((layout.slot(header.name, f.name), None if f.varbit else f.width, f.signed)
                            for f in header.type.fields)

    def extract_vl(self, w: CodeWriter, data: str, offset: str, length: str, errors: dict[str, int]) -> None:
        """Lines that extract the header with a varbit of `length` bits, with BMv2's checks in its order:
        ParserInvalidArgument (not whole bytes), PacketTooShort, HeaderTooShort (longer than max_length)."""
        n, v = w.temp("n"), w.temp("v")
        w.line(f"{n} = {length}")
        with w.block(f"if {n} % 8:"):
            w.line(f"raise ParserException({errors['ParserInvalidArgument']}, {offset})")
        w.line(f"{n} = {self.fixed_bytes} + ({n} >> 3)")
        with w.block(f"if {offset} + {n} > L:"):
            w.line(f"raise ParserException({errors['PacketTooShort']}, {offset})")
        with w.block(f"if {n} > {self.max_bytes}:"):
            w.line(f"raise ParserException({errors['HeaderTooShort']}, {offset})")
        w.line(f"{v} = int.from_bytes({data}[{offset}:{offset} + {n}], 'big')")
        w.line(f"F[{self.width_slot}] = ({n} - {self.fixed_bytes}) << 3")
        vl = self._vl_index()
        # A field before the varbit lies at a fixed distance from the start, one after it from the end.
        start = 0
        for i, (slot, width, signed) in enumerate(self.fields):
            if i == vl:
                after = sum(width for _, width, _ in self.fields[vl + 1:])
                value = f"({v} >> {after})" if after else v
                w.line(f"F[{slot}] = {value} & ((1 << F[{self.width_slot}]) - 1)")
                continue
            if i < vl:
                start += width
                shift = f"({n} << 3) - {start}"
            else:
                shift = str(sum(width for _, width, _ in self.fields[i + 1:]))
            value = f"(({v} >> ({shift})) & {(1 << width) - 1})" if shift != "0" else f"({v} & {(1 << width) - 1})"
            if signed:
                half = 1 << (width - 1)
                value = f"(({value} ^ {half}) - {half})"
            w.line(f"F[{slot}] = {value}")
        if not self.header.metadata:
            w.line(f"F[{self.valid_slot}] = True")
        w.line(f"{offset} += {n}")

    def _vl_index(self) -> int:
        return next(i for i, (_, width, _) in enumerate(self.fields) if width is None)

    def emit_expr(self, w: CodeWriter) -> str:
        acc = w.temp("c")
        w.line(f"{acc} = 0")
        for slot, width, signed in self.fields:
            if width is None:
                w.line(f"{acc} = ({acc} << F[{self.width_slot}]) | F[{slot}]")
            else:
                value = f"(F[{slot}] & {(1 << width) - 1})" if signed else f"F[{slot}]"
                w.line(f"{acc} = ({acc} << {width}) | {value}")
        return f"{acc}.to_bytes({self.fixed_bytes} + (F[{self.width_slot}] >> 3), 'big')"
