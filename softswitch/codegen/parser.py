"""The v1model parser -> one generated function per parse state plus a driver.

Semantics follow BMv2 (src/bm_sim/parser.cpp): an error (too short, verify() failing, ...) stops parsing;
headers extracted so far stay valid, the bytes consumed so far are removed from the payload, and the error
code goes to standard_metadata.parser_error; the packet then continues into ingress. A select with no
matching case goes to the default transition, or accepts when there is none (p4c adds the NoMatch state).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from ..errors import InvalidArgument, UnsupportedProgram
from ..program import ParseState, parse_hexstr
from .actions import PrimitiveCompiler
from .context import CompileContext, ParserException
from .expressions import Expr, ExpressionCompiler, store_code
from .headers import HeaderCodec, VarbitCodec
from .source import CodeWriter

# Parsing stops with ParserTimeout after this many states (a loop in the parse graph that never consumes
# bytes would otherwise spin forever; BMv2 has no such guard).
MAX_PARSE_STATES = 256

ParseFn = Callable[[list, bytes], tuple[int, int]]


def _lookahead_fn(too_short: int) -> Callable[[bytes, int, int, int], int]:
    def lookahead(data: bytes, offset: int, bit_offset: int, width: int) -> int:
        start = offset * 8 + bit_offset
        end = start + width
        if end > len(data) * 8:
            raise ParserException(too_short, offset)
        first, last = start >> 3, (end + 7) >> 3
        value = int.from_bytes(data[first:last], "big")
        return (value >> (last * 8 - end)) & ((1 << width) - 1)

    return lookahead


def compile_parser(ctx: CompileContext, codecs: dict[str, HeaderCodec | VarbitCodec]) -> ParseFn:
    program = ctx.program
    errors = program.errors
    too_short = errors["PacketTooShort"]
    timeout = errors["ParserTimeout"]
    invalid_arg = errors["ParserInvalidArgument"]
    ctx.ns.set("_lookahead", _lookahead_fn(too_short))
    state_fn = {name: f"PS_{i}" for i, name in enumerate(program.parser.states)}
    w = CodeWriter()
    value_sets = {name: (ctx.ns.bind(vs.contains, "VS"), ctx.ns.bind(vs.contains_masked, "VSM"))
                  for name, vs in ctx.value_sets.items()}
    for name, state in program.parser.states.items():
        _compile_state(ctx, codecs, state, state_fn, w, too_short, invalid_arg, value_sets)
    init = state_fn.get(program.parser.init_state) if program.parser.init_state else None
    with w.block("def parse(F, D):"):
        w.line("L = len(D)")
        w.line(f"st = {init}")
        w.line("o = 0")
        w.line("n = 0")
        with w.block("try:"):
            with w.block("while st is not None:"):
                w.line("n += 1")
                with w.block(f"if n > {MAX_PARSE_STATES}:"):
                    w.line(f"return o, {timeout}")
                w.line("st, o = st(F, D, L, o)")
        with w.block("except ParserException as e:"):
            w.line("return e.offset, e.code")
        w.line(f"return o, {errors['NoError']}")
    ctx.ns.exec(w.source(), "<parser>")
    return ctx.ns.globals["parse"]


def _compile_state(
    ctx: CompileContext,
    codecs: dict[str, HeaderCodec | VarbitCodec],
    state: ParseState,
    state_fn: dict[str, str],
    w: CodeWriter,
    too_short: int,
    invalid_arg: int,
    value_sets: dict[str, tuple[str, str]],
) -> None:
    program, layout = ctx.program, ctx.layout
    where = f"parse state '{state.name}'"

    def lookahead(bit_offset: int, width: int) -> Expr:
        return Expr(f"_lookahead(D, o, {bit_offset}, {width})", "data", 0, (1 << width) - 1)

    exprs = ExpressionCompiler(program, layout, lookahead=lookahead, where=where, in_parser=True)
    errors = program.errors
    with w.block(f"def {state_fn[state.name]}(F, D, L, o):"):
        for op in state.ops:
            kind = op.get("op")
            params: list[Any] = op.get("parameters", [])
            if kind in ("extract", "extract_VL"):
                length = None
                if kind == "extract_VL":
                    if len(params) < 2 or params[1].get("type") != "expression":
                        raise InvalidArgument(f"{where}: extract_VL without a length expression")
                    length = exprs.compile_data(params[1]["value"])
                for header, guard in extract_targets(program, layout, params[0], where):
                    codec = codecs.get(header)
                    if codec is None:
                        raise InvalidArgument(f"{where}: extract of unknown header '{header}'")
                    if isinstance(codec, VarbitCodec) != (length is not None):
                        raise InvalidArgument(f"{where}: '{header}' {'needs' if length is None else 'takes no'} "
                                              "a varbit length (extract_VL)")
                    with (w.block(guard) if guard else contextlib.nullcontext()):
                        if length is None:
                            with w.block(f"if o + {codec.nbytes} > L:"):
                                w.line(f"raise ParserException({too_short}, o)")
                            codec.extract(w, "D", "o")
                            w.line(f"o += {codec.nbytes}")
                        else:
                            codec.extract_vl(w, "D", "o", length.code, errors)
                        invalidate_union_siblings(program, layout, header, w, "False")
                        w.extend(stack_push(program, layout, params[0]))
                if params[0].get("type") in ("stack", "union_stack"):
                    with w.block("else:"):
                        w.line(f"raise ParserException({errors['StackOutOfBounds']}, o)")
            elif kind == "set":
                dst, src = params[0], params[1]
                if dst.get("type") != "field":
                    raise UnsupportedProgram(f"{where}: set of a {dst.get('type')}")
                header, fname = dst["value"]
                spec = program.field_spec(header, fname)
                value = exprs.compile_data(src)
                w.line(f"F[{layout.slot(header, fname)}] = {store_code(value, spec.width, spec.signed)}")
            elif kind == "verify":
                cond = exprs.compile_bool(params[0])
                error = exprs.compile_data(params[1])
                with w.block(f"if not {cond}:"):
                    w.line(f"raise ParserException({error.code}, o)")
            elif kind in ("advance", "shift"):
                amount = exprs.compile_data(params[0])
                n = w.temp("n")
                if kind == "shift":
                    w.line(f"{n} = {amount.code}")
                else:
                    w.line(f"{n} = {amount.code}")
                    with w.block(f"if {n} % 8 or {n} < 0:"):
                        w.line(f"raise ParserException({invalid_arg}, o)")
                    w.line(f"{n} >>= 3")
                with w.block(f"if o + {n} > L:"):
                    w.line(f"raise ParserException({too_short}, o)")
                w.line(f"o += {n}")
            elif kind == "primitive":
                PrimitiveCompiler(ctx, exprs, w, where).primitive(params[0])
            else:
                raise UnsupportedProgram(f"{where}: parser operation '{kind}' is not supported")
        _compile_transitions(exprs, state, state_fn, w, where, value_sets)


def extract_targets(program, layout, target: dict, where: str) -> list[tuple[str, str | None]]:
    """The headers an extract may fill, each with the (Python) condition under which it does: one header
    for a `regular` extract; for a stack, element i when the stack's next index is i (none: the stack is
    full, a StackOutOfBounds parser error)."""
    kind, value = target.get("type"), target.get("value")
    if kind == "regular":
        return [(value, None)]
    if kind == "stack":
        if value not in program.stacks:
            raise InvalidArgument(f"{where}: extract into unknown header stack '{value}'")
        nxt = layout.stack_next_slot(value)
        return [(h, f"{'if' if i == 0 else 'elif'} F[{nxt}] == {i}:")
                for i, h in enumerate(program.stacks[value].elements)]
    if kind == "union_stack":
        stack, member = value
        if stack not in program.union_stacks:
            raise InvalidArgument(f"{where}: extract into unknown header union stack '{stack}'")
        nxt = layout.stack_next_slot(stack)
        out = []
        for i, union in enumerate(program.union_stacks[stack].elements):
            out.append((program.unions[union].members[program.union_member(union, member)][1],
                        f"{'if' if i == 0 else 'elif'} F[{nxt}] == {i}:"))
        return out
    raise UnsupportedProgram(f"{where}: extract into a {kind}")


def stack_push(program, layout, target: dict) -> list[str]:
    """After an extract into a stack: its next index moves on (BMv2's push_back)."""
    kind, value = target.get("type"), target.get("value")
    if kind == "stack":
        return [f"F[{layout.stack_next_slot(value)}] += 1"]
    if kind == "union_stack":
        return [f"F[{layout.stack_next_slot(value[0])}] += 1"]
    return []


def invalidate_union_siblings(program, layout, header: str, w, false: str, end: str = "") -> None:
    """A union member just became valid: BMv2 invalidates the member that was valid before."""
    if header not in program.union_of:
        return
    union, index = program.union_of[header]
    for i, (_, other) in enumerate(program.unions[union].members):
        if i != index:
            w.line(f"F[{layout.valid_slot(other)}] = {false}{end}")


def _compile_transitions(
    exprs: ExpressionCompiler, state: ParseState, state_fn: dict[str, str], w: CodeWriter, where: str,
    value_sets: dict[str, tuple[str, str]],
) -> None:
    def target(t: dict) -> str:
        nxt = t.get("next_state")
        return "None" if nxt is None else state_fn[nxt]

    cases = [t for t in state.transitions if t.get("type") != "default"]
    default = next((t for t in state.transitions if t.get("type") == "default"), None)
    if cases:
        if not state.transition_key:
            raise InvalidArgument(f"{where}: select cases without a key")
        parts = []
        total_bits = sum(((_key_width(exprs, k, where) + 7) // 8) * 8 for k in state.transition_key)
        shift = total_bits
        for key in state.transition_key:
            width = _key_width(exprs, key, where)
            expr = exprs.compile_data(key)
            shift -= ((width + 7) // 8) * 8
            code = expr.code
            if not expr.within(0, (1 << width) - 1):
                code = f"({code} & {(1 << width) - 1})"
            parts.append(f"({code} << {shift})" if shift else code)
        w.line(f"k = {' | '.join(parts)}")
        for t in state.transitions:
            kind = t.get("type")
            if kind == "default":
                # Cases after a default are unreachable, as in BMv2 (default ends the search).
                w.line(f"return {target(t)}, o")
                return
            if kind == "parse_vset":
                contains, contains_masked = value_sets[t["value"]]
                test = (f"{contains}(k)" if t.get("mask") is None
                        else f"{contains_masked}(k, {parse_hexstr(t['mask'])})")
                with w.block(f"if {test}:"):
                    w.line(f"return {target(t)}, o")
                continue
            if kind != "hexstr":
                raise UnsupportedProgram(f"{where}: transition of type '{kind}' is not supported")
            value = parse_hexstr(t["value"])
            if t.get("mask") is None:
                with w.block(f"if k == {value}:"):
                    w.line(f"return {target(t)}, o")
            else:
                mask = parse_hexstr(t["mask"])
                with w.block(f"if k & {mask} == {value & mask}:"):
                    w.line(f"return {target(t)}, o")
    w.line(f"return {target(default) if default else 'None'}, o")


def _key_width(exprs: ExpressionCompiler, key: dict, where: str) -> int:
    kind = key.get("type")
    program = exprs.program
    if kind == "field":
        header, name = key["value"]
        return program.field_spec(header, name).width
    if kind == "stack_field":
        stack, name = key["value"]
        if stack not in program.stacks:
            raise InvalidArgument(f"{where}: unknown header stack '{stack}'")
        return program.field_spec(program.stacks[stack].elements[0], name).width
    if kind == "union_stack_field":
        stack, member, name = key["value"]
        if stack not in program.union_stacks:
            raise InvalidArgument(f"{where}: unknown header union stack '{stack}'")
        union = program.union_stacks[stack].elements[0]
        header = program.unions[union].members[program.union_member(union, member)][1]
        return program.field_spec(header, name).width
    if kind == "lookahead":
        return int(key["value"][1])
    raise UnsupportedProgram(f"{where}: select key of type '{kind}' is not supported")
