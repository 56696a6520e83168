"""The parser, the deparser and checksum verify/update -> C, with the semantics of codegen/parser.py and
codegen/deparser.py (BMv2's): a parser error stops parsing, keeps what was extracted, and is returned with
the offset reached; select keys are packed byte-aligned into one value and compared against value/mask."""

from __future__ import annotations

import contextlib
from typing import Any

from ..codegen.parser import MAX_PARSE_STATES, _key_width, extract_targets, invalidate_union_siblings, stack_push
from ..errors import InvalidArgument, UnsupportedProgram
from ..program import Header, ParseState, parse_hexstr
from .cactions import CPrimitiveCompiler
from .ccalc import calculation_function
from .cexpr import CExpr, CExpressionCompiler, store_c, w_literal
from .context import CCodeWriter, CContext
from .support import NativeUnsupported

ALIGNED_WIDTHS = (8, 16, 32, 64)


def _field_layout(header: Header) -> list[tuple[Any, int]]:
    """(field spec, bit offset in the header) for each field."""
    out, bit = [], 0
    for spec in header.type.fields:
        out.append((spec, bit))
        bit += spec.width
    return out


def emit_extract(ctx: CContext, w: CCodeWriter, header: Header, base: str) -> None:
    layout = ctx.layout
    for spec, bit in _field_layout(header):
        slot = layout.slot(header.name, spec.name)
        if bit % 8 == 0 and spec.width in ALIGNED_WIDTHS:
            raw = f"ss_ld{spec.width}({base} + {bit // 8})"
        else:
            raw = f"ss_get_bits({base}, {bit}, {spec.width})"
        if spec.signed and spec.width < 64:
            raw = f"ss_sext64({raw}, {spec.width})"
        w.line(f"F[{slot}] = {raw};")
    if not header.metadata:
        w.line(f"F[{layout.valid_slot(header.name)}] = 1;")


def emit_header_bytes(ctx: CContext, w: CCodeWriter, header: Header, base: str) -> None:
    """Write the header's fields big-endian at `base` (header.type.bit_width / 8 bytes)."""
    layout = ctx.layout
    fields = _field_layout(header)
    if any(not (bit % 8 == 0 and spec.width in ALIGNED_WIDTHS) for spec, bit in fields):
        w.line(f"memset({base}, 0, {header.type.bit_width // 8});")
    for spec, bit in fields:
        value = f"F[{layout.slot(header.name, spec.name)}]"
        if bit % 8 == 0 and spec.width in ALIGNED_WIDTHS:
            w.line(f"ss_st{spec.width}({base} + {bit // 8}, {value});")
        else:
            if spec.width < 64:
                value = f"({value} & {(1 << spec.width) - 1:#x}ULL)"
            w.line(f"ss_put_bits({base}, {bit}, {spec.width}, {value});")


def compile_parser(ctx: CContext) -> None:
    """`static u32 ss_parse(St *st, u64 *F, const u8 *D, u32 L, u32 *offset)`: returns the parser error."""
    program = ctx.program
    errors = program.errors
    too_short = errors["PacketTooShort"]
    state_label = {name: f"PS_{i}" for i, name in enumerate(program.parser.states)}
    states = CCodeWriter()
    states.level = 1
    indexes = False
    for state in program.parser.states.values():
        states.line(f"{state_label[state.name]}:")
        with states.block(""):
            states.line(f"if (++n > {MAX_PARSE_STATES}) {{ *offset = o; return {errors['ParserTimeout']}; }}")
            indexes |= _compile_state(ctx, state, state_label, states, too_short, errors["ParserInvalidArgument"])
    w = CCodeWriter()
    prototype = "static u32 ss_parse(St *st, u64 *F, const u8 *D, u32 L, u32 *offset)"
    with w.block(prototype):
        w.line("u32 o = 0, n = 0, err = 0; W k = 0;")
        w.line("(void)st; (void)k; (void)err;")
        if indexes:
            # A stack index out of bounds inside an expression (ss_pix) comes back here as a parser error.
            w.line("if (setjmp(st->pjb)) { err = st->perr; o = st->poffset; goto fail; }")
        init = program.parser.init_state
        w.line(f"goto {state_label[init] if init else 'accept'};")
        w.lines.extend(states.lines)
        w.line("accept:")
        w.line(f"*offset = o; return {errors['NoError']};")
        w.line("fail:")
        w.line("*offset = o; return err;")
    ctx.add_function(prototype, w)


def _compile_state(ctx: CContext, state: ParseState, labels: dict[str, str], w: CCodeWriter,
                   too_short: int, invalid_arg: int) -> bool:
    """The state's operations and transitions; True when an expression in it indexes a stack (ss_pix)."""
    program, layout = ctx.program, ctx.layout
    where = f"parse state '{state.name}'"
    errors = program.errors

    def lookahead(bit_offset: int, width: int) -> CExpr:
        if width > 64:
            raise NativeUnsupported(f"{where}: lookahead of {width} bits")
        # The bounds check goes before the statement that uses the value (a Python ParserException).
        w.line(f"if ((u64)o * 8 + {bit_offset + width} > (u64)L * 8) {{ err = {too_short}; goto fail; }}")
        return CExpr(f"((W)ss_get_bits(D + o, {bit_offset}, {width}))", "data", 0, (1 << width) - 1)

    exprs = CExpressionCompiler(program, layout, lookahead=lookahead, where=where, in_parser=True)
    for op in state.ops:
        kind = op.get("op")
        params: list[Any] = op.get("parameters", [])
        if kind in ("extract", "extract_VL"):
            length = None
            if kind == "extract_VL":
                if len(params) < 2 or params[1].get("type") != "expression":
                    raise InvalidArgument(f"{where}: extract_VL without a length expression")
                length = exprs.compile_data(params[1]["value"])
                exprs._window(length)
            targets = extract_targets(program, layout, params[0], where)
            for i, (name, guard) in enumerate(targets):
                header = program.headers.get(name)
                if header is None:
                    raise InvalidArgument(f"{where}: extract of unknown header '{name}'")
                if (header.type.varbit is not None) != (length is not None):
                    raise InvalidArgument(f"{where}: '{name}' {'needs' if length is None else 'takes no'} "
                                          "a varbit length (extract_VL)")
                opener = contextlib.nullcontext() if guard is None else (
                    w.if_(_c_guard(guard)) if i == 0 else w.elif_(_c_guard(guard)))
                with opener:
                    if length is None:
                        nbytes = header.type.bit_width // 8
                        w.line(f"if ((u64)o + {nbytes} > L) {{ err = {too_short}; goto fail; }}")
                        emit_extract(ctx, w, header, "(D + o)")
                        w.line(f"o += {nbytes};")
                    else:
                        _extract_varbit(ctx, w, header, length.code, errors)
                    invalidate_union_siblings(program, layout, name, w, "0", ";")
                    for line in stack_push(program, layout, params[0]):
                        w.line(line + ";")
            if params[0].get("type") in ("stack", "union_stack"):
                with w.else_():
                    w.line(f"err = {errors['StackOutOfBounds']}; goto fail;")
        elif kind == "set":
            dst, src = params[0], params[1]
            if dst.get("type") != "field":
                raise UnsupportedProgram(f"{where}: set of a {dst.get('type')}")
            header, fname = dst["value"]
            spec = program.field_spec(header, fname)
            value = exprs.compile_data(src)
            w.line(f"F[{layout.slot(header, fname)}] = {store_c(value, spec.width, spec.signed)};")
        elif kind == "verify":
            cond = exprs.compile_bool(params[0])
            error = exprs.compile_data(params[1])
            w.line(f"if (!({cond})) {{ err = (u32)({error.code}); goto fail; }}")
        elif kind in ("advance", "shift"):
            amount = exprs.compile_data(params[0])
            exprs._window(amount)
            with w.block(""):
                w.line(f"SW _n = (SW)({amount.code});")
                if kind == "advance":
                    w.line(f"if (_n % 8 || _n < 0) {{ err = {invalid_arg}; goto fail; }}")
                    w.line("_n >>= 3;")
                w.line(f"if ((SW)o + _n > (SW)L) {{ err = {too_short}; goto fail; }}")
                w.line("o += (u32)_n;")
        elif kind == "primitive":
            CPrimitiveCompiler(ctx, exprs, w, where).primitive(params[0])
        else:
            raise UnsupportedProgram(f"{where}: parser operation '{kind}' is not supported")
    _compile_transitions(exprs, state, labels, w, where, ctx.value_set_index)
    return exprs.parser_index_used


def _c_guard(guard: str) -> str:
    """The Python guard of codegen.parser.extract_targets (`if F[n] == i:`) as a C condition."""
    return guard.split(" ", 1)[1].rstrip(":")


def _extract_varbit(ctx: CContext, w: CCodeWriter, header: Header, length: str, errors: dict[str, int]) -> None:
    """BMv2's extract_VL, with its checks in its order (see codegen.headers.VarbitCodec.extract_vl)."""
    layout = ctx.layout
    fixed = header.type.bit_width // 8
    varbit = header.type.varbit
    max_bytes = fixed + varbit.width // 8
    _, width_slot, limbs = layout.varbit_slots(header.name)
    with w.block(""):
        w.line(f"W _nb = {length};")
        w.line(f"if (_nb % 8) {{ err = {errors['ParserInvalidArgument']}; goto fail; }}")
        w.line(f"_nb = {fixed} + (_nb >> 3);")
        w.line(f"if ((W)o + _nb > L) {{ err = {errors['PacketTooShort']}; goto fail; }}")
        w.line(f"if (_nb > {max_bytes}) {{ err = {errors['HeaderTooShort']}; goto fail; }}")
        w.line(f"u32 _vl = ((u32)_nb - {fixed}) << 3;")
        w.line(f"F[{width_slot}] = _vl;")
        w.line(f"static const u32 _limbs[] = {{{', '.join(map(str, limbs))}}};")
        bit = "0"
        for spec in header.type.fields:
            slot = layout.slot(header.name, spec.name)
            if spec.varbit:
                w.line(f"ss_get_varbit(F, _limbs, {len(limbs)}, D + o, {bit}, _vl);")
                bit = f"{bit} + _vl"
                continue
            raw = f"ss_get_bits(D + o, {bit}, {spec.width})"
            if spec.signed and spec.width < 64:
                raw = f"ss_sext64({raw}, {spec.width})"
            w.line(f"F[{slot}] = {raw};")
            bit = f"{bit} + {spec.width}"
        if not header.metadata:
            w.line(f"F[{layout.valid_slot(header.name)}] = 1;")
        w.line("o += (u32)_nb;")


def _compile_transitions(exprs: CExpressionCompiler, state: ParseState, labels: dict[str, str], w: CCodeWriter,
                         where: str, value_sets: dict[str, int]) -> None:
    def goto(t: dict) -> str:
        nxt = t.get("next_state")
        return "goto accept;" if nxt is None else f"goto {labels[nxt]};"

    cases = [t for t in state.transitions if t.get("type") != "default"]
    default = next((t for t in state.transitions if t.get("type") == "default"), None)
    if cases:
        if not state.transition_key:
            raise InvalidArgument(f"{where}: select cases without a key")
        total_bits = sum(((_key_width(exprs, k, where) + 7) // 8) * 8 for k in state.transition_key)
        if total_bits > 128:
            raise NativeUnsupported(f"{where}: select key of {total_bits} bits")
        shift = total_bits
        parts = []
        for key in state.transition_key:
            width = _key_width(exprs, key, where)
            expr = exprs.compile_data(key)
            shift -= ((width + 7) // 8) * 8
            code = expr.code if expr.within(0, (1 << width) - 1) else f"({expr.code} & {w_literal((1 << width) - 1)})"
            parts.append(f"({code} << {shift})" if shift else code)
        w.line(f"k = {' | '.join(parts)};")
        for t in state.transitions:
            kind = t.get("type")
            if kind == "default":
                w.line(goto(t))
                return
            if kind == "parse_vset":
                mask = (1 << 128) - 1 if t.get("mask") is None else parse_hexstr(t["mask"])
                w.line(f"if (ss_vset_contains(&st->vsets[{value_sets[t['value']]}], k, {w_literal(mask)})) {goto(t)}")
                continue
            if kind != "hexstr":
                raise UnsupportedProgram(f"{where}: transition of type '{kind}' is not supported")
            value = parse_hexstr(t["value"])
            if t.get("mask") is None:
                w.line(f"if (k == {w_literal(value)}) {goto(t)}")
            else:
                mask = parse_hexstr(t["mask"])
                w.line(f"if ((k & {w_literal(mask)}) == {w_literal(value & mask)}) {goto(t)}")
    w.line(goto(default) if default else "goto accept;")


def compile_deparser(ctx: CContext) -> int:
    """`static u32 ss_deparse(St *st, const u64 *F, u8 *out)`; returns the most bytes it can write."""
    w = CCodeWriter()
    prototype = "static u32 ss_deparse(St *st, const u64 *F, u8 *out)"
    most = 0
    with w.block(prototype):
        w.line("u32 n = 0; (void)st;")
        for name in ctx.program.deparser.order:
            header = ctx.program.headers[name]
            nbytes = header.type.bit_width // 8
            test = "1" if header.metadata else f"F[{ctx.layout.valid_slot(name)}]"
            with w.if_(test):
                if header.type.varbit is None:
                    emit_header_bytes(ctx, w, header, "(out + n)")
                    w.line(f"n += {nbytes};")
                else:
                    nbytes += _emit_varbit_header(ctx, w, header)
            most += nbytes
        w.line("return n;")
    ctx.add_function(prototype, w)
    return most


def _emit_varbit_header(ctx: CContext, w: CCodeWriter, header: Header) -> int:
    """Write a header with a varbit field at out + n, its varbit at its current width; returns the varbit's
    largest size in bytes (beyond the fixed fields)."""
    layout = ctx.layout
    fixed = header.type.bit_width // 8
    _, width_slot, limbs = layout.varbit_slots(header.name)
    w.line(f"u32 _vl = (u32)F[{width_slot}], _nb = {fixed} + (_vl >> 3);")
    w.line(f"static const u32 _limbs[] = {{{', '.join(map(str, limbs))}}};")
    w.line("memset(out + n, 0, _nb);")
    bit = "0"
    for spec in header.type.fields:
        slot = layout.slot(header.name, spec.name)
        if spec.varbit:
            w.line(f"ss_put_varbit(out + n, {bit}, F, _limbs, {len(limbs)}, _vl);")
            bit = f"{bit} + _vl"
            continue
        value = f"F[{slot}]"
        if spec.width < 64:
            value = f"({value} & {(1 << spec.width) - 1:#x}ULL)"
        w.line(f"ss_put_bits(out + n, {bit}, {spec.width}, {value});")
        bit = f"{bit} + {spec.width}"
    w.line("n += _nb;")
    return header.type.varbit.width // 8


def compile_checksums(ctx: CContext) -> None:
    """`ss_verify_checksums(st, F, PL, PLN) -> 1 if a verified checksum is wrong`, `ss_update_checksums(...)`."""
    program, layout = ctx.program, ctx.layout
    w = CCodeWriter()
    verify = "static u64 ss_verify_checksums(St *st, u64 *F, const u8 *PL, u32 PLN)"
    with w.block(verify):
        w.line("u64 bad = 0; (void)st; (void)PL; (void)PLN;")
        for ck in program.checksums:
            if not ck.verify:
                continue
            fn, spec, slot, exprs = _checksum_target(ctx, ck)
            tests = []
            if not program.headers[ck.target[0]].metadata:
                tests.append(f"F[{layout.valid_slot(ck.target[0])}]")
            if ck.if_cond is not None:
                tests.append(exprs.compile_bool(ck.if_cond))
            actual = f"(F[{slot}] & {(1 << spec.width) - 1:#x}ULL)" if spec.signed else f"F[{slot}]"
            with w.if_(" && ".join(tests) or "1"):
                w.line(f"if ({fn}(st, F, PL, PLN) != {actual}) bad = 1;")
        w.line("return bad;")
    ctx.add_function(verify, w)
    w = CCodeWriter()
    update = "static void ss_update_checksums(St *st, u64 *F, const u8 *PL, u32 PLN)"
    with w.block(update):
        w.line("(void)st; (void)F; (void)PL; (void)PLN;")
        for ck in program.checksums:
            if not ck.update:
                continue
            fn, spec, slot, exprs = _checksum_target(ctx, ck)
            value = store_c(CExpr(f"((W){fn}(st, F, PL, PLN))", "data"), spec.width, spec.signed)
            if ck.if_cond is not None:
                with w.if_(exprs.compile_bool(ck.if_cond)):
                    w.line(f"F[{slot}] = {value};")
            else:
                w.line(f"F[{slot}] = {value};")
    ctx.add_function(update, w)


def _checksum_target(ctx: CContext, ck):
    header, fname = ck.target
    return (calculation_function(ctx, ck.calculation), ctx.program.field_spec(header, fname),
            ctx.layout.slot(header, fname), CExpressionCompiler(ctx.program, ctx.layout, where=f"checksum {ck.name}"))
