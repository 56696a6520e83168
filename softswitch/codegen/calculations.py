"""Named calculations (hash and checksum inputs) -> one generated function each.

BMv2 builds a calculation's input by bit-packing its fields in order (skipping fields of invalid headers),
padding the last byte with zeros, and appending the payload when asked (BufBuilder in calculations.cpp).
The generated function does the same with one big int: `acc = (acc << width) | value`.
"""

from __future__ import annotations

from ..errors import InvalidArgument, UnsupportedProgram
from ..hashes import ALGORITHMS, INT_ALGORITHMS
from ..program import Calculation, parse_hexstr
from .context import CompileContext
from .source import CodeWriter


def calculation_function(ctx: CompileContext, name: str) -> str:
    """Name of the generated function `f(F, payload) -> int` for calculation `name` (generated once)."""
    if name in ctx.calc_names:
        return ctx.calc_names[name]
    calc = ctx.program.calculations.get(name)
    if calc is None:
        raise InvalidArgument(f"unknown calculation '{name}'")
    algo = ALGORITHMS.get(calc.algo)
    if algo is None:
        raise UnsupportedProgram(
            f"calculation '{name}' uses hash algorithm '{calc.algo}', which is not supported "
            f"(supported: {', '.join(sorted(ALGORITHMS))})"
        )
    fn_name = f"CALC_{len(ctx.calc_names)}"
    algo_name = ctx.ns.bind(algo, "HASH")
    w = CodeWriter()
    with w.block(f"def {fn_name}(F, PL):"):
        w.line("acc = 0")
        w.line("nb = 0")
        with_payload = _emit_inputs(ctx, calc, w)
        w.line("pad = -nb % 8")
        if not with_payload and calc.algo in INT_ALGORITHMS:
            int_algo = ctx.ns.bind(INT_ALGORITHMS[calc.algo], "HASHI")
            w.line(f"return {int_algo}(acc << pad, (nb + pad) >> 3)")
        else:
            w.line("data = (acc << pad).to_bytes((nb + pad) >> 3, 'big')")
            if with_payload:
                w.line("data += PL")
            w.line(f"return {algo_name}(data)")
    ctx.ns.exec(w.source(), f"<calculation {name}>")
    ctx.calc_names[name] = fn_name
    return fn_name


def _emit_inputs(ctx: CompileContext, calc: Calculation, w: CodeWriter) -> bool:
    """Append code that packs the inputs; consecutive fields of one header share one validity test."""
    program, layout = ctx.program, ctx.layout
    with_payload = False
    group_header: str | None = None
    group: list[tuple[str, int | str]] = []  # (value code, width: bits, or code for a varbit's current width)

    def flush() -> None:
        nonlocal group, group_header
        if not group:
            return
        if any(isinstance(width, str) for _, width in group):
            lines = []
            for code, width in group:
                lines += [f"acc = (acc << {width}) | {code}", f"nb += {width}"]
        else:
            total = sum(width for _, width in group)
            parts = []
            shift = total
            for code, width in group:
                shift -= width
                parts.append(f"({code} << {shift})" if shift else code)
            lines = [f"acc = (acc << {total}) | {' | '.join(parts)}", f"nb += {total}"]
        header = program.headers[group_header]
        if header.metadata:
            w.extend(lines)
        else:
            with w.block(f"if F[{layout.valid_slot(group_header)}]:"):
                w.extend(lines)
        group = []
        group_header = None

    def width_of(header: str, spec) -> int | str:
        return f"F[{layout.varbit_slots(header)[1]}]" if spec.varbit else spec.width

    for item in calc.inputs:
        kind = item.get("type")
        if with_payload:
            raise UnsupportedProgram(f"calculation '{calc.name}': inputs after the payload")
        if kind == "field":
            header, fname = item["value"]
            spec = program.field_spec(header, fname)
            slot = layout.slot(header, fname)
            code = f"F[{slot}]" if not spec.signed else f"(F[{slot}] & {(1 << spec.width) - 1})"
            if fname == "$valid$":
                code = f"(1 if F[{slot}] else 0)"
            if header != group_header:
                flush()
                group_header = header
            group.append((code, width_of(header, spec)))
        elif kind == "hexstr":
            flush()
            width = int(item.get("bitwidth", 0))
            if width <= 0:
                raise InvalidArgument(f"calculation '{calc.name}': constant without a bitwidth")
            value = parse_hexstr(item["value"]) & ((1 << width) - 1)
            w.line(f"acc = (acc << {width}) | {value}")
            w.line(f"nb += {width}")
        elif kind == "header":
            flush()
            header = program.headers.get(item["value"])
            if header is None:
                raise InvalidArgument(f"calculation '{calc.name}': unknown header '{item['value']}'")
            group_header = header.name
            for spec in header.type.fields:
                slot = layout.slot(header.name, spec.name)
                code = f"F[{slot}]" if not spec.signed else f"(F[{slot}] & {(1 << spec.width) - 1})"
                group.append((code, width_of(header.name, spec)))
            flush()
        elif kind == "payload":
            flush()
            with_payload = True
        else:
            raise UnsupportedProgram(f"calculation '{calc.name}': input of type '{kind}' is not supported")
    flush()
    if with_payload:
        # BMv2 asserts byte alignment before the payload; keep the same requirement.
        w.line("if nb % 8: raise ValueError('calculation input before payload is not byte aligned')")
    return with_payload
