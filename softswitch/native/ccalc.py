"""Named calculations (hash and checksum inputs) -> one C function each, as codegen/calculations.py does for
Python: the inputs are bit-packed in order (fields of invalid headers skipped, the last byte zero-padded), the
payload appended when asked, and the algorithm (runtime.h, the same as hashes.py) run over the bytes."""

from __future__ import annotations

from ..errors import InvalidArgument, UnsupportedProgram
from ..hashes import ALGORITHMS
from ..program import Calculation, parse_hexstr
from .context import CCodeWriter, CContext
from .support import NativeUnsupported

# C function per hashes.ALGORITHMS name (runtime.h); each takes the packed bytes and the payload.
C_ALGORITHMS = {
    "crc16": "ss_crc16",
    "crc32": "ss_crc32",
    "crcCCITT": "ss_crc_ccitt",
    "csum16": "ss_csum16",
    "cksum16": "ss_csum16",
    "identity": "ss_identity",
    "xor16": "ss_xor16",
    "xor32": "ss_xor32",
}


def calculation_function(ctx: CContext, name: str) -> str:
    """Name of the C function `u64 f(St*, const u64 *F, const u8 *PL, u32 PLN)` for calculation `name`."""
    if name in ctx.calc_names:
        return ctx.calc_names[name]
    calc = ctx.program.calculations.get(name)
    if calc is None:
        raise InvalidArgument(f"unknown calculation '{name}'")
    if calc.algo not in ALGORITHMS:
        raise UnsupportedProgram(f"calculation '{name}' uses hash algorithm '{calc.algo}', which is not supported "
                                 f"(supported: {', '.join(sorted(ALGORITHMS))})")
    if calc.algo not in C_ALGORITHMS:
        raise NativeUnsupported(f"calculation '{name}': algorithm '{calc.algo}'")
    fn_name = f"CALC_{len(ctx.calc_names)}"
    w = CCodeWriter()
    prototype = f"static u64 {fn_name}(St *st, const u64 *F, const u8 *PL, u32 PLN)"
    with w.block(prototype):
        w.line("(void)st; (void)F; (void)PL; (void)PLN;")
        total_bits = _max_bits(ctx, calc)
        w.line(f"u8 buf[{(total_bits + 7) // 8 + 8}] = {{0}};")
        w.line("u32 nb = 0;")
        with_payload = _emit_inputs(ctx, calc, w)
        if with_payload:
            w.line("if (nb % 8) ss_fail(st, R_VALUE_ERROR);")
        else:
            w.line("PL = 0; PLN = 0;")
        w.line(f"return {C_ALGORITHMS[calc.algo]}(buf, (nb + 7) >> 3, PL, PLN);")
    ctx.add_function(prototype, w)
    ctx.calc_names[name] = fn_name
    return fn_name


def _max_bits(ctx: CContext, calc: Calculation) -> int:
    total = 0
    for item in calc.inputs:
        kind = item.get("type")
        if kind == "field":
            total += ctx.program.field_spec(*item["value"]).width
        elif kind == "hexstr":
            total += int(item.get("bitwidth", 0))
        elif kind == "header":
            header = ctx.program.headers.get(item["value"])
            if header is not None:
                total += header.type.bit_width
    return total


def _emit_inputs(ctx: CContext, calc: Calculation, w: CCodeWriter) -> bool:
    """Append code that packs the inputs; consecutive fields of one header share one validity test."""
    program, layout = ctx.program, ctx.layout
    with_payload = False
    group_header: str | None = None
    group: list[tuple[str, int]] = []  # (uint64_t value code, width)

    def flush() -> None:
        nonlocal group, group_header
        if not group:
            return
        header = program.headers[group_header]
        puts = [code if width is None else f"ss_put_bits(buf, nb, {width}, {code}); nb += {width};"
                for code, width in group]
        if header.metadata:
            w.extend(puts)
        else:
            with w.if_(f"F[{layout.valid_slot(group_header)}]"):
                w.extend(puts)
        group = []
        group_header = None

    def value_code(header: str, fname: str) -> tuple[str, int | None]:
        """(code that gives the field's value, its width), or for a varbit (a statement that appends it, None)."""
        spec = program.field_spec(header, fname)
        slot = layout.slot(header, fname)
        if spec.varbit:
            _, width, limbs = layout.varbit_slots(header)
            limb_list = ", ".join(map(str, limbs))
            return (f"{{ static const u32 _l[] = {{{limb_list}}}; ss_put_varbit(buf, nb, F, _l, {len(limbs)}, "
                    f"(u32)F[{width}]); nb += (u32)F[{width}]; }}"), None
        if fname == "$valid$":
            return f"(F[{slot}] ? 1 : 0)", 1
        if spec.signed and spec.width < 64:
            return f"(F[{slot}] & {(1 << spec.width) - 1:#x}ULL)", spec.width
        return f"F[{slot}]", spec.width

    for item in calc.inputs:
        kind = item.get("type")
        if with_payload:
            raise UnsupportedProgram(f"calculation '{calc.name}': inputs after the payload")
        if kind == "field":
            header, fname = item["value"]
            if header != group_header:
                flush()
                group_header = header
            group.append(value_code(header, fname))
        elif kind == "hexstr":
            flush()
            width = int(item.get("bitwidth", 0))
            if width <= 0:
                raise InvalidArgument(f"calculation '{calc.name}': constant without a bitwidth")
            value = parse_hexstr(item["value"]) & ((1 << width) - 1)
            # Constants wider than a word go in 64-bit pieces, most significant first.
            while width > 64:
                width -= 64
                w.line(f"ss_put_bits(buf, nb, 64, {(value >> width) & ((1 << 64) - 1):#x}ULL); nb += 64;")
            w.line(f"ss_put_bits(buf, nb, {width}, {value & ((1 << width) - 1):#x}ULL); nb += {width};")
        elif kind == "header":
            flush()
            header = program.headers.get(item["value"])
            if header is None:
                raise InvalidArgument(f"calculation '{calc.name}': unknown header '{item['value']}'")
            group_header = header.name
            for spec in header.type.fields:
                group.append(value_code(header.name, spec.name))
            flush()
        elif kind == "payload":
            flush()
            with_payload = True
        else:
            raise UnsupportedProgram(f"calculation '{calc.name}': input of type '{kind}' is not supported")
    flush()
    return with_payload
