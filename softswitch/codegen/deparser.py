"""Deparser and checksum verification/update -> generated functions.

BMv2 verifies checksums right after parsing (a mismatch sets checksum_error; a checksum whose target header
is invalid or whose condition is false is skipped) and updates them at the start of deparsing (when the
condition holds), then emits the valid headers in the deparser's order in front of the payload.
"""

from __future__ import annotations

from collections.abc import Callable

from .calculations import calculation_function
from .context import CompileContext
from .expressions import Expr, ExpressionCompiler, store_code
from .headers import HeaderCodec, VarbitCodec
from .source import CodeWriter


def compile_deparser(ctx: CompileContext, codecs: dict[str, HeaderCodec | VarbitCodec]) -> Callable[[list], bytes]:
    w = CodeWriter()
    with w.block("def deparse(F):"):
        w.line("out = []")
        for name in ctx.program.deparser.order:
            codec = codecs[name]
            if ctx.program.headers[name].metadata:
                w.line(f"out.append({codec.emit_expr(w)})")
                continue
            with w.block(f"if F[{codec.valid_slot}]:"):
                w.line(f"out.append({codec.emit_expr(w)})")
        w.line("return b''.join(out)")
    ctx.ns.exec(w.source(), "<deparser>")
    return ctx.ns.globals["deparse"]


def _checksum_target(ctx: CompileContext, ck):
    """What verifying and updating checksum `ck` both need: its calculation function, the target field's spec and
    PHV slot, and an expression compiler for its condition."""
    header, fname = ck.target
    return (calculation_function(ctx, ck.calculation), ctx.program.field_spec(header, fname),
            ctx.layout.slot(header, fname), ExpressionCompiler(ctx.program, ctx.layout, where=f"checksum {ck.name}"))


def compile_checksums(ctx: CompileContext) -> tuple[Callable[[list, bytes], int], Callable[[list, bytes], None]]:
    """(verify(F, payload) -> 1 if any verified checksum is wrong else 0, update(F, payload))."""
    program, layout = ctx.program, ctx.layout
    w = CodeWriter()
    with w.block("def verify_checksums(F, PL):"):
        w.line("bad = 0")
        for ck in program.checksums:
            if not ck.verify:
                continue
            fn, spec, slot, exprs = _checksum_target(ctx, ck)
            tests = []
            header = ck.target[0]
            if not program.headers[header].metadata:
                tests.append(f"F[{layout.valid_slot(header)}]")
            if ck.if_cond is not None:
                tests.append(exprs.compile_bool(ck.if_cond))
            actual = f"(F[{slot}] & {(1 << spec.width) - 1})" if spec.signed else f"F[{slot}]"
            with w.block(f"if {' and '.join(tests) or 'True'}:"):
                with w.block(f"if {fn}(F, PL) != {actual}:"):
                    w.line("bad = 1")
        w.line("return bad")
    with w.block("def update_checksums(F, PL):"):
        for ck in program.checksums:
            if not ck.update:
                continue
            fn, spec, slot, exprs = _checksum_target(ctx, ck)
            value = store_code(Expr(f"{fn}(F, PL)", "data"), spec.width, spec.signed)
            if ck.if_cond is not None:
                with w.block(f"if {exprs.compile_bool(ck.if_cond)}:"):
                    w.line(f"F[{slot}] = {value}")
            else:
                w.line(f"F[{slot}] = {value}")
        w.line("return")
    ctx.ns.exec(w.source(), "<checksums>")
    return ctx.ns.globals["verify_checksums"], ctx.ns.globals["update_checksums"]
