"""BMv2 JSON expressions -> C expressions over the native PHV `F` (an array of uint64_t slots).

The same walk as codegen/expressions.py (it is a subclass: the leaf dispatch of `compile` and the constant
folding are shared), lowered to C instead of Python. Python ints are unbounded; here every data value is an
`unsigned __int128` (`W`) holding the exact value modulo 2**128. That is exact for everything BMv2 computes:

- +, -, *, &, |, ^, ~ and << are compatible with arithmetic modulo 2**128, and every value is truncated to a
  field of at most 64 bits (programs with wider fields, registers, parameters or keys run on the Python
  pipeline instead), so the wrap-around never shows;
- comparisons, >>, /, %, saturating casts and table/register indexes need the true value: they are emitted
  only when the operands' value ranges (tracked as in the Python emitter) provably lie in the signed 128-bit
  window [-2**127, 2**127), where the residue is the value. Otherwise the construct is refused with
  NativeUnsupported and the whole program falls back to the Python pipeline.

Where the Python emitter skips a mask because a value is provably in range, this one skips it too, so the two
backends agree even on values the target writes outside a field's width (egress_spec = 512 in egress).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..codegen.expressions import ExpressionCompiler, _fold, slot_code
from ..errors import InvalidArgument
from ..phv import PhvLayout
from ..program import FieldSpec, Program, parse_hexstr
from .support import NativeUnsupported

WINDOW_LO = -(1 << 127)
WINDOW_HI = (1 << 127) - 1
MOD = 1 << 128


@dataclass(frozen=True, slots=True)
class CExpr:
    code: str  # a C expression: of type W for "data", a C truth value for "bool"
    kind: str  # "data" | "bool" | "header"
    lo: int | None = None
    hi: int | None = None
    header: str | None = None
    const: int | None = None
    varbit: tuple[str, ...] | None = None

    def within(self, lo: int, hi: int) -> bool:
        return self.lo is not None and self.hi is not None and lo <= self.lo and self.hi <= hi


def w_literal(value: int) -> str:
    """A C constant of type W holding `value` modulo 2**128."""
    value %= MOD
    low, high = value & ((1 << 64) - 1), value >> 64
    if high == 0:
        return f"((W){low:#x}ULL)"
    return f"((((W){high:#x}ULL) << 64) | (W){low:#x}ULL)"


def u64_literal(value: int) -> str:
    return f"{value % (1 << 64):#x}ULL"


def const_cexpr(value: int) -> CExpr:
    return CExpr(w_literal(value), "data", value, value, const=value)


def store_c(expr: CExpr, width: int, signed: bool) -> str:
    """A uint64_t C expression: `expr` stored into a `width`-bit field (two's complement, sign-extended to 64
    bits when signed), truncated unless provably in range (the same rule as codegen.expressions.store_code)."""
    if width > 64:
        raise NativeUnsupported(f"a store into {width} bits")
    if signed:
        half = 1 << (width - 1)
        if expr.within(-half, half - 1):
            return f"((u64)({expr.code}))"
        if expr.const is not None:
            return u64_literal(((expr.const + half) & ((1 << width) - 1)) - half)
        return f"ss_sext64((u64)({expr.code}), {width})"
    if expr.within(0, (1 << width) - 1):
        return f"((u64)({expr.code}))"
    if expr.const is not None:
        return u64_literal(expr.const & ((1 << width) - 1))
    if width == 64:
        return f"((u64)({expr.code}))"
    return f"((u64)({expr.code}) & {u64_literal((1 << width) - 1)})"


class CExpressionCompiler(ExpressionCompiler):
    """Compiles JSON expressions to C in one context (an action with its parameters, a parser state, a control)."""

    def __init__(
        self,
        program: Program,
        layout: PhvLayout,
        params: list[CExpr] | None = None,
        lookahead: Callable[[int, int], CExpr] | None = None,
        where: str = "",
        in_parser: bool = False,
    ) -> None:
        super().__init__(program, layout, params, lookahead, where, in_parser)  # type: ignore[arg-type]
        self.parser_index_used = False

    # -- target hooks (see ExpressionCompiler) -------------------------------------------------------------
    def _make(self, code: str, kind: str, lo: int | None = None, hi: int | None = None,  # type: ignore[override]
              header: str | None = None, const: int | None = None,
              varbit: tuple[str, ...] | None = None) -> CExpr:
        return CExpr(code, kind, lo, hi, header, const, varbit)

    def _load(self, slot: str, spec: FieldSpec) -> CExpr:  # type: ignore[override]
        if spec.varbit and spec.width > 64:
            # The slot holds the value's low 64 bits (the other limbs follow the width slot): exact for whatever
            # is then stored into a field of at most 64 bits; comparisons and shifts need the range, which is
            # left unknown, so _window refuses them (== over two varbits compares every limb instead).
            return CExpr(f"((W)F[{slot}])", "data")
        if spec.width > 64:
            raise NativeUnsupported(f"{self.where}: field {spec.name} is {spec.width} bits")
        if spec.signed:
            half = 1 << (spec.width - 1)
            return CExpr(f"((W)(SW)(int64_t)F[{slot}])", "data", -half, half - 1)
        return CExpr(f"((W)F[{slot}])", "data", 0, (1 << spec.width) - 1)

    def _load_valid(self, slot: str) -> CExpr:  # type: ignore[override]
        return CExpr(f"(F[{slot}] != 0)", "bool")

    def _index(self, index: CExpr, size: int) -> str:  # type: ignore[override]
        if index.const is not None and 0 <= index.const < size:
            return str(index.const)
        self._window(index)
        if self.in_parser:
            # ss_pix longjmps to the parser's error exit, which ss_parse then sets up (cparser.py).
            self.parser_index_used = True
            return f"ss_pix(st, {index.code}, {size}, o, {self.program.errors['StackOutOfBounds']})"
        return f"ss_ix(st, {index.code}, {size})"

    def _select_code(self, cond: str, a: str, b: str) -> str:
        return f"(({cond}) ? ({a}) : ({b}))"

    def _any(self, tests: list[str]) -> str:
        return "(" + " || ".join(tests) + ")"

    def _all(self, tests: list[str]) -> str:
        return "(" + " && ".join(tests) + ")"

    def _const(self, value: int) -> CExpr:  # type: ignore[override]
        return const_cexpr(value)

    def compile(self, node: Any) -> CExpr:  # type: ignore[override]
        if isinstance(node, dict) and node.get("type") == "hexstr":
            return const_cexpr(parse_hexstr(node.get("value")))
        if isinstance(node, dict) and node.get("type") == "bool":
            value = 1 if node.get("value") else 0
            return CExpr(str(value), "bool", const=value)
        return super().compile(node)  # type: ignore[return-value]

    def compile_bool(self, node: Any) -> str:
        expr = self.compile(node)
        if expr.kind == "bool":
            return expr.code
        if expr.kind == "data":
            return f"({expr.code} != 0)"
        raise InvalidArgument(f"{self.where}: a {expr.kind} is not a condition")

    def compile_data(self, node: Any) -> CExpr:  # type: ignore[override]
        return self._as_data(self.compile(node))

    def _as_data(self, e: CExpr) -> CExpr:  # type: ignore[override]
        if e.kind == "bool":
            if e.const is not None:
                return const_cexpr(e.const)
            return CExpr(f"((W)(({e.code}) ? 1 : 0))", "data", 0, 1)
        if e.kind != "data":
            raise InvalidArgument(f"{self.where}: a {e.kind} where a value was expected")
        return e

    def _window(self, *exprs: CExpr) -> None:
        for e in exprs:
            if not e.within(WINDOW_LO, WINDOW_HI):
                raise NativeUnsupported(f"{self.where}: a comparison, shift, division or index over a value "
                                        "whose range is not provably within 128 bits")

    @staticmethod
    def _signed(*exprs: CExpr) -> bool:
        return any(e.lo is None or e.lo < 0 for e in exprs)

    # -- operators ----------------------------------------------------------------------------------------
    def _op(self, node: dict) -> CExpr:  # type: ignore[override]
        op = node["op"]
        left = node.get("left")
        right = node.get("right")
        structural = self._structural_op(op, node)
        if structural is not None:
            return structural  # type: ignore[return-value]
        if op in ("and", "or"):
            a, b = self.compile_bool(left), self.compile_bool(right)
            return CExpr(f"({a} {'&&' if op == 'and' else '||'} {b})", "bool")
        if op == "not":
            return CExpr(f"(!{self.compile_bool(right)})", "bool")
        if op == "d2b":
            d = self.compile_data(right)
            if d.const is not None:
                return CExpr("1" if d.const else "0", "bool", const=1 if d.const else 0)
            return CExpr(f"({d.code} != 0)", "bool")
        if op == "b2d":
            c = self.compile(right)
            if c.const is not None:
                return const_cexpr(1 if c.const else 0)
            return CExpr(f"((W)(({c.code}) ? 1 : 0))", "data", 0, 1)
        if op == "valid":
            h = self.compile(right)
            if h.kind == "union":
                return self._valid_union(h)  # type: ignore[return-value]
            if h.kind != "header":
                raise InvalidArgument(f"{self.where}: valid() of something that is not a header")
            if self.program.headers[h.header].metadata:
                return CExpr("1", "bool", const=1)
            return CExpr(f"(F[{slot_code(h, 0)}] != 0)", "bool")  # type: ignore[arg-type]
        if op == "?":
            cond = self.compile_bool(node.get("cond"))
            a, b = self.compile(left), self.compile(right)
            selected = self._header_select(cond, a, b)  # type: ignore[arg-type]
            if selected is not None:
                return selected  # type: ignore[return-value]
            if a.kind == "bool" and b.kind == "bool":
                return CExpr(f"(({cond}) ? ({a.code}) : ({b.code}))", "bool")
            a, b = self._as_data(a), self._as_data(b)
            lo = min(a.lo, b.lo) if a.lo is not None and b.lo is not None else None
            hi = max(a.hi, b.hi) if a.hi is not None and b.hi is not None else None
            return CExpr(f"(({cond}) ? {a.code} : {b.code})", "data", lo, hi)
        if op in ("==", "!="):
            a, b = self.compile(left), self.compile(right)
            if a.kind in ("header", "union") and b.kind == a.kind:
                eq = self._header_eq(a, b) if a.kind == "header" else self._union_eq(a, b)  # type: ignore[arg-type]
                return CExpr(f"(!{eq})" if op == "!=" else eq, "bool")
            if a.kind == "bool" and b.kind == "bool":
                return CExpr(f"((!!({a.code})) {op} (!!({b.code})))", "bool")
            a, b = self._as_data(a), self._as_data(b)
            if a.varbit is not None and b.varbit is not None and (len(a.varbit) > 1 or len(b.varbit) > 1):
                eq = self._varbit_eq(a.varbit, b.varbit)
                return CExpr(f"(!{eq})" if op == "!=" else eq, "bool")
            self._window(a, b)
            return CExpr(f"({a.code} {op} {b.code})", "bool")
        if op in ("<", ">", "<=", ">="):
            a, b = self.compile_data(left), self.compile_data(right)
            self._window(a, b)
            if self._signed(a, b):
                return CExpr(f"((SW){a.code} {op} (SW){b.code})", "bool")
            return CExpr(f"({a.code} {op} {b.code})", "bool")
        if op == "~":
            a = self.compile_data(right)
            if a.const is not None:
                return const_cexpr(~a.const)
            lo = -a.hi - 1 if a.hi is not None else None
            hi = -a.lo - 1 if a.lo is not None else None
            return CExpr(f"(~{a.code})", "data", lo, hi)
        if op in ("+", "-", "*", "&", "|", "^", "<<", ">>", "/", "%"):
            return self._arith(op, self.compile_data(left), self.compile_data(right))
        if op == "two_comp_mod":
            src, width = self.compile_data(left), self.compile_data(right)
            if width.const is None or width.const <= 0:
                raise NativeUnsupported(f"{self.where}: two_comp_mod with a non-constant width")
            w = width.const
            if w > 128:
                raise NativeUnsupported(f"{self.where}: two_comp_mod to {w} bits")
            half = 1 << (w - 1)
            if src.const is not None:
                return const_cexpr(((src.const + half) & ((1 << w) - 1)) - half)
            if src.within(-half, half - 1):
                return src
            return CExpr(f"ss_sext128({src.code}, {w})", "data", -half, half - 1)
        if op in ("sat_cast", "usat_cast"):
            src, width = self.compile_data(left), self.compile_data(right)
            if width.const is None or width.const <= 0:
                raise NativeUnsupported(f"{self.where}: {op} with a non-constant width")
            w = width.const
            lo, hi = ((-(1 << (w - 1)), (1 << (w - 1)) - 1) if op == "sat_cast" else (0, (1 << w) - 1))
            if src.within(lo, hi):
                return src
            self._window(src, const_cexpr(lo), const_cexpr(hi))
            return CExpr(f"ss_clamp({src.code}, {w_literal(lo)}, {w_literal(hi)})", "data", lo, hi)
        raise NativeUnsupported(f"{self.where}: expression operator '{op}'")

    def _header_eq(self, a: CExpr, b: CExpr) -> str:  # type: ignore[override]
        """BMv2's header ==: same type, both valid, equal field values (a varbit's width is not compared)."""
        ha, hb = self.program.headers[a.header], self.program.headers[b.header]
        if ha.type.name != hb.type.name:
            raise InvalidArgument(f"{self.where}: comparing headers '{a.header}' and '{b.header}' of different types")
        n = len(ha.type.fields)
        test = (f"(F[{slot_code(a, 0)}] && F[{slot_code(b, 0)}] && "
                f"memcmp(&F[{slot_code(a, 1)}], &F[{slot_code(b, 1)}], {n} * sizeof(u64)) == 0")
        if ha.type.varbit is not None:
            _, width, limbs = self.layout.varbit_slots(a.header)
            if len(limbs) > 1:
                extra = limbs[1] - self.layout.valid_slot(a.header)
                test += (f" && memcmp(&F[{slot_code(a, extra)}], &F[{slot_code(b, extra)}], "
                         f"{len(limbs) - 1} * sizeof(u64)) == 0")
        return test + ")"

    def _varbit_eq(self, a: tuple[str, ...], b: tuple[str, ...]) -> str:
        """Two varbit values, limb by limb (a limb one side lacks must be zero on the other)."""
        tests = []
        for i in range(max(len(a), len(b))):
            left = f"F[{a[i]}]" if i < len(a) else "0"
            right = f"F[{b[i]}]" if i < len(b) else "0"
            tests.append(f"{left} == {right}")
        return "(" + " && ".join(tests) + ")"

    def _arith(self, op: str, a: CExpr, b: CExpr) -> CExpr:  # type: ignore[override]
        if a.const is not None and b.const is not None:
            return const_cexpr(_fold(op, a.const, b.const, self.where))
        # The same identities as the Python emitter drops, so both keep the same values.
        if b.const == 0 and op in ("+", "-", "|", "^", "<<", ">>"):
            return a
        if a.const == 0 and op in ("+", "|", "^"):
            return b
        if op == "&":
            for x, m in ((a, b), (b, a)):
                if m.const is not None and m.const >= 0 and (m.const + 1) & m.const == 0 and x.within(0, m.const):
                    return x
        lo = hi = None
        known = a.lo is not None and a.hi is not None and b.lo is not None and b.hi is not None
        code = f"({a.code} {op} {b.code})"
        if op == "+" and known:
            lo, hi = a.lo + b.lo, a.hi + b.hi
        elif op == "-" and known:
            lo, hi = a.lo - b.hi, a.hi - b.lo
        elif op == "*" and known:
            corners = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
            lo, hi = min(corners), max(corners)
        elif op == "&":
            nonneg = [e.hi for e in (a, b) if e.lo is not None and e.lo >= 0 and e.hi is not None]
            if nonneg:
                lo, hi = 0, min(nonneg)
        elif op in ("|", "^"):
            if known and a.lo >= 0 and b.lo >= 0:
                lo, hi = 0, (1 << max(a.hi.bit_length(), b.hi.bit_length())) - 1
        elif op == "<<":
            if b.const is not None:
                if b.const < 0:
                    raise InvalidArgument(f"{self.where}: negative shift amount {b.const}")
                code = f"({a.code} << {b.const})" if b.const < 128 else "((W)0)"
                if a.lo is not None and a.hi is not None:
                    lo, hi = a.lo << b.const, a.hi << b.const
            else:
                self._window(b)
                code = f"ss_shl(st, {a.code}, {b.code}, {int(self._signed(b))})"
        elif op == ">>":
            self._window(a, b)
            if a.lo is not None and a.lo >= 0 and a.hi is not None:
                lo, hi = 0, a.hi
            code = f"ss_shr(st, {a.code}, {b.code}, {int(self._signed(a))}, {int(self._signed(b))})"
        elif op in ("/", "%"):
            self._window(a, b)
            fn = "ss_div" if op == "/" else "ss_mod"
            code = f"{fn}(st, {a.code}, {b.code}, {int(self._signed(a, b))})"
            if a.lo is not None and a.lo >= 0 and b.lo is not None and b.lo > 0:
                lo, hi = 0, a.hi if op == "/" else b.hi - 1
        return CExpr(code, "data", lo, hi)
