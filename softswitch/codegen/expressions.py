"""BMv2 JSON expressions -> Python expressions over the PHV list `F`.

BMv2 evaluates expressions with infinite precision and truncates only when a value is stored into a field or
register; p4c inserts the masks (`& 0xff..`) and `two_comp_mod` that give P4 its fixed-width semantics. Python
ints are infinite precision too, so each operator maps onto its Python counterpart. Every generated expression
carries the range its value provably lies in, so stores skip the truncation mask when it cannot change the value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgument, UnsupportedProgram
from ..phv import PhvLayout
from ..program import Program, parse_hexstr

# Shifts by more than this are treated as shifting everything out (p4c masks every shift result to the
# type width, which is far smaller): it keeps a hostile shift amount from building a gigantic int.
MAX_SHIFT = 1024


@dataclass(frozen=True, slots=True)
class Expr:
    code: str
    kind: str  # "data" | "bool" | "header"
    lo: int | None = None  # inclusive bounds of the value; None when unknown
    hi: int | None = None
    header: str | None = None  # for kind == "header"
    const: int | None = None  # compile-time value, when known

    def within(self, lo: int, hi: int) -> bool:
        return self.lo is not None and self.hi is not None and lo <= self.lo and self.hi <= hi


def const_expr(value: int) -> Expr:
    return Expr(str(value), "data", value, value, const=value)


def unsigned_bounds(width: int) -> tuple[int, int]:
    return 0, (1 << width) - 1


def truncate_code(code: str, width: int, signed: bool) -> str:
    """Python code for BMv2's store into a `width`-bit field: wrap to width (two's complement if signed)."""
    if signed:
        half = 1 << (width - 1)
        return f"((({code}) + {half} & {(1 << width) - 1}) - {half})"
    return f"(({code}) & {(1 << width) - 1})"


def store_code(expr: Expr, width: int, signed: bool) -> str:
    """The value to store into a field of `width` bits: `expr`, truncated unless provably in range."""
    if signed:
        half = 1 << (width - 1)
        if expr.within(-half, half - 1):
            return expr.code
        if expr.const is not None:
            return str(((expr.const + half) & ((1 << width) - 1)) - half)
        return truncate_code(expr.code, width, True)
    if expr.within(0, (1 << width) - 1):
        return expr.code
    if expr.const is not None:
        return str(expr.const & ((1 << width) - 1))
    return truncate_code(expr.code, width, False)


class ExpressionCompiler:
    """Compiles JSON expressions in one context (an action with its parameters, a parser state, a control)."""

    def __init__(
        self,
        program: Program,
        layout: PhvLayout,
        params: list[Expr] | None = None,
        lookahead: Callable[[int, int], Expr] | None = None,
        where: str = "",
    ) -> None:
        self.program = program
        self.layout = layout
        self.params = params or []
        self.lookahead = lookahead
        self.where = where

    # -- leaves -------------------------------------------------------------------------------------------
    def field(self, header: str, name: str) -> Expr:
        if header not in self.program.headers:
            raise InvalidArgument(f"{self.where}: unknown header '{header}'")
        slot = self.layout.slot(header, name)
        if name == "$valid$":
            return Expr(f"F[{slot}]", "data", 0, 1)
        spec = self.program.field_spec(header, name)
        if spec.signed:
            half = 1 << (spec.width - 1)
            return Expr(f"F[{slot}]", "data", -half, half - 1)
        return Expr(f"F[{slot}]", "data", 0, (1 << spec.width) - 1)

    def param(self, index: int) -> Expr:
        if not isinstance(index, int) or not 0 <= index < len(self.params):
            raise InvalidArgument(f"{self.where}: reference to action parameter {index!r}, which does not exist")
        return self.params[index]

    # -- entry point --------------------------------------------------------------------------------------
    def compile(self, node: Any) -> Expr:
        if not isinstance(node, dict) or "type" not in node:
            raise InvalidArgument(f"{self.where}: malformed expression {node!r}")
        kind = node["type"]
        value = node.get("value")
        if kind == "field":
            return self.field(value[0], value[1])
        if kind == "hexstr":
            return const_expr(parse_hexstr(value))
        if kind == "bool":
            return Expr("True" if value else "False", "bool", const=1 if value else 0)
        if kind in ("local", "runtime_data"):
            return self.param(value)
        if kind == "header":
            if value not in self.program.headers:
                raise InvalidArgument(f"{self.where}: unknown header '{value}'")
            return Expr(f"F[{self.layout.valid_slot(value)}]", "header", header=value)
        if kind == "lookahead":
            if self.lookahead is None:
                raise InvalidArgument(f"{self.where}: lookahead outside a parser")
            return self.lookahead(int(value[0]), int(value[1]))
        if kind == "expression":
            if isinstance(value, dict) and "op" in value:
                return self._op(value)
            return self.compile(value)
        if kind in ("header_stack", "stack_field", "union_stack_field", "header_union", "header_union_stack"):
            raise UnsupportedProgram(f"{self.where}: {kind} references are not supported (header stacks/unions)")
        if kind == "register":
            raise UnsupportedProgram(f"{self.where}: register references inside expressions are not supported")
        raise UnsupportedProgram(f"{self.where}: expression operand of type '{kind}' is not supported")

    def compile_bool(self, node: Any) -> str:
        expr = self.compile(node)
        if expr.kind == "bool":
            return expr.code
        if expr.kind == "data":
            # BMv2 refuses implicit conversions, but accept data where a condition is expected, as != 0.
            return f"({expr.code} != 0)"
        raise InvalidArgument(f"{self.where}: a header is not a condition")

    def compile_data(self, node: Any) -> Expr:
        expr = self.compile(node)
        if expr.kind == "bool":
            return Expr(f"(1 if {expr.code} else 0)", "data", 0, 1)
        if expr.kind == "header":
            raise InvalidArgument(f"{self.where}: a header where a value was expected")
        return expr

    # -- operators ----------------------------------------------------------------------------------------
    def _op(self, node: dict) -> Expr:
        op = node["op"]
        left = node.get("left")
        right = node.get("right")
        if op in ("and", "or"):
            a, b = self.compile_bool(left), self.compile_bool(right)
            return Expr(f"({a} {op} {b})", "bool")
        if op == "not":
            return Expr(f"(not {self.compile_bool(right)})", "bool")
        if op == "d2b":
            d = self.compile_data(right)
            if d.const is not None:
                return Expr("True" if d.const else "False", "bool", const=1 if d.const else 0)
            if d.within(0, 1):
                # A 0/1 value (a $valid$ bit, a bool local) already has the right truthiness; every consumer
                # of a bool uses truthiness (==/!= between bools wrap both sides in bool()).
                return Expr(d.code, "bool")
            return Expr(f"({d.code} != 0)", "bool")
        if op == "b2d":
            c = self.compile(right)
            if c.const is not None:
                return const_expr(1 if c.const else 0)
            if c.kind == "data":
                return Expr(f"(1 if {c.code} else 0)", "data", 0, 1)
            return Expr(f"(1 if {c.code} else 0)", "data", 0, 1)
        if op == "valid":
            h = self.compile(right)
            if h.kind != "header":
                raise InvalidArgument(f"{self.where}: valid() of something that is not a header")
            if self.program.headers[h.header].metadata:
                return Expr("True", "bool", const=1)
            return Expr(f"F[{self.layout.valid_slot(h.header)}]", "bool")
        if op == "?":
            cond = self.compile_bool(node.get("cond"))
            a, b = self.compile(left), self.compile(right)
            if a.kind == "bool" and b.kind == "bool":
                return Expr(f"({a.code} if {cond} else {b.code})", "bool")
            a, b = self._as_data(a), self._as_data(b)
            lo = min(a.lo, b.lo) if a.lo is not None and b.lo is not None else None
            hi = max(a.hi, b.hi) if a.hi is not None and b.hi is not None else None
            return Expr(f"({a.code} if {cond} else {b.code})", "data", lo, hi)
        if op in ("==", "!="):
            a, b = self.compile(left), self.compile(right)
            if a.kind == "header" and b.kind == "header":
                return self._header_eq(a.header, b.header, op == "!=")
            if a.kind == "bool" and b.kind == "bool":
                return Expr(f"(bool({a.code}) {op} bool({b.code}))", "bool")
            a, b = self._as_data(a), self._as_data(b)
            return Expr(f"({a.code} {op} {b.code})", "bool")
        if op in ("<", ">", "<=", ">="):
            a, b = self.compile_data(left), self.compile_data(right)
            return Expr(f"({a.code} {op} {b.code})", "bool")
        if op == "~":
            a = self.compile_data(right)
            if a.const is not None:
                return const_expr(~a.const)
            lo = -a.hi - 1 if a.hi is not None else None
            hi = -a.lo - 1 if a.lo is not None else None
            return Expr(f"(~{a.code})", "data", lo, hi)
        if op in ("+", "-", "*", "&", "|", "^", "<<", ">>", "/", "%"):
            return self._arith(op, self.compile_data(left), self.compile_data(right))
        if op == "two_comp_mod":
            src, width = self.compile_data(left), self.compile_data(right)
            if width.const is None or width.const <= 0:
                raise UnsupportedProgram(f"{self.where}: two_comp_mod with a non-constant width")
            w = width.const
            half = 1 << (w - 1) if w > 0 else 0
            if src.const is not None:
                return const_expr(((src.const + half) & ((1 << w) - 1)) - half)
            if src.within(-half, half - 1):
                return src
            return Expr(truncate_code(src.code, w, True), "data", -half, half - 1)
        if op in ("sat_cast", "usat_cast"):
            src, width = self.compile_data(left), self.compile_data(right)
            if width.const is None or width.const <= 0:
                raise UnsupportedProgram(f"{self.where}: {op} with a non-constant width")
            w = width.const
            lo, hi = ((-(1 << (w - 1)), (1 << (w - 1)) - 1) if op == "sat_cast" else (0, (1 << w) - 1))
            if src.within(lo, hi):
                return src
            return Expr(f"min(max({src.code}, {lo}), {hi})", "data", lo, hi)
        raise UnsupportedProgram(f"{self.where}: expression operator '{op}' is not supported")

    def _as_data(self, e: Expr) -> Expr:
        if e.kind == "bool":
            return Expr(f"(1 if {e.code} else 0)", "data", 0, 1)
        if e.kind == "header":
            raise InvalidArgument(f"{self.where}: a header where a value was expected")
        return e

    def _header_eq(self, a: str, b: str, negate: bool) -> Expr:
        ha, hb = self.program.headers[a], self.program.headers[b]
        if ha.type.name != hb.type.name:
            raise InvalidArgument(f"{self.where}: comparing headers '{a}' and '{b}' of different types")
        n = len(ha.type.fields)
        fa, fb = self.layout.first_field_slot(a), self.layout.first_field_slot(b)
        va, vb = self.layout.valid_slot(a), self.layout.valid_slot(b)
        eq = f"((not F[{va}] and not F[{vb}]) or (F[{va}] and F[{vb}] and F[{fa}:{fa + n}] == F[{fb}:{fb + n}]))"
        return Expr(f"(not {eq})" if negate else eq, "bool")

    def _arith(self, op: str, a: Expr, b: Expr) -> Expr:
        if a.const is not None and b.const is not None:
            return const_expr(_fold(op, a.const, b.const, self.where))
        # Identities p4c leaves in (`base + 0`, masks of values already in range): drop the no-op.
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
                if a.lo is not None and a.hi is not None:
                    lo, hi = a.lo << b.const, a.hi << b.const
            else:
                code = f"(({a.code} << {b.code}) if {b.code} < {MAX_SHIFT} else 0)"
        elif op == ">>":
            if a.lo is not None and a.lo >= 0 and a.hi is not None:
                lo, hi = 0, a.hi
            if b.const is None:
                code = f"(({a.code} >> {b.code}) if {b.code} < {MAX_SHIFT} else ({a.code} >> {MAX_SHIFT}))"
        elif op in ("/", "%"):
            op_py = "//" if op == "/" else "%"
            code = f"({a.code} {op_py} {b.code})"
            if a.lo is not None and a.lo >= 0 and b.lo is not None and b.lo > 0:
                lo, hi = 0, a.hi if op == "/" else b.hi - 1
        return Expr(code, "data", lo, hi)


def _fold(op: str, a: int, b: int, where: str) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "&":
        return a & b
    if op == "|":
        return a | b
    if op == "^":
        return a ^ b
    if op in ("<<", ">>"):
        if b < 0:
            raise InvalidArgument(f"{where}: negative shift amount {b}")
        if op == "<<":
            return a << b if b < MAX_SHIFT else 0
        return a >> b
    if b == 0:
        raise InvalidArgument(f"{where}: division by zero in a constant expression")
    return a // b if op == "/" else a % b
