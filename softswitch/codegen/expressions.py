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
from ..program import FieldSpec, Program, parse_hexstr

# Shifts by more than this are treated as shifting everything out (p4c masks every shift result to the
# type width, which is far smaller): it keeps a hostile shift amount from building a gigantic int.
MAX_SHIFT = 1024


@dataclass(frozen=True, slots=True)
class Expr:
    """A compiled expression. For kind "data"/"bool", `code` computes the value; for the kinds that name
    headers ("header", "union") it computes the header's (the union's first member's) validity slot in the PHV,
    and `header` is a header (union) of the right type that it may be; "stack"/"union_stack" name a stack."""

    code: str
    kind: str  # "data" | "bool" | "header" | "union" | "stack" | "union_stack"
    lo: int | None = None  # inclusive bounds of the value; None when unknown
    hi: int | None = None
    header: str | None = None  # for the header, union and stack kinds: which (or, if computed, one like it)
    const: int | None = None  # compile-time value (the base slot, for headers and unions), when known
    varbit: tuple[str, ...] | None = None  # a varbit field's value: the slots of its limbs (native layout)

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


def slot_code(base: Expr, offset: int) -> str:
    """The PHV slot `offset` past a header's (or union's) base slot: a constant when the base is one."""
    if base.const is not None:
        return str(base.const + offset)
    return f"{base.code} + {offset}" if offset else base.code


class ExpressionCompiler:
    """Compiles JSON expressions in one context (an action with its parameters, a parser state, a control).

    In a parser (`in_parser`), a stack index out of range is the StackOutOfBounds parser error, as BMv2's
    extract into a full stack is; in a control it drops the packet (BMv2 has no error for it: its
    std::vector::at throws, which ends simple_switch)."""

    def __init__(
        self,
        program: Program,
        layout: PhvLayout,
        params: list[Expr] | None = None,
        lookahead: Callable[[int, int], Expr] | None = None,
        where: str = "",
        in_parser: bool = False,
    ) -> None:
        self.program = program
        self.layout = layout
        self.params = params or []
        self.lookahead = lookahead
        self.where = where
        self.in_parser = in_parser

    # -- target hooks: how the leaves read the PHV (the C emitter overrides these) ---------------------------
    def _make(self, code: str, kind: str, lo: int | None = None, hi: int | None = None, header: str | None = None,
              const: int | None = None, varbit: tuple[str, ...] | None = None) -> Expr:
        return Expr(code, kind, lo, hi, header, const, varbit)

    def _load(self, slot: str, spec: FieldSpec) -> Expr:
        """The value of the field `spec` held at PHV slot `slot` (a constant, or code for a computed slot)."""
        if spec.signed:
            half = 1 << (spec.width - 1)
            return Expr(f"F[{slot}]", "data", -half, half - 1)
        return Expr(f"F[{slot}]", "data", 0, (1 << spec.width) - 1)

    def _load_valid(self, slot: str) -> Expr:
        return Expr(f"F[{slot}]", "bool")

    def _index(self, index: Expr, size: int) -> str:
        """Code for `index`, checked to lie in [0, size)."""
        if index.const is not None and 0 <= index.const < size:
            return str(index.const)
        if self.in_parser:
            return f"_pix({index.code}, {size}, o)"
        return f"_ix({index.code}, {size})"

    def _select_code(self, cond: str, a: str, b: str) -> str:
        return f"({a} if {cond} else {b})"

    # -- leaves -------------------------------------------------------------------------------------------
    def field(self, header: str, name: str) -> Expr:
        if header not in self.program.headers:
            raise InvalidArgument(f"{self.where}: unknown header '{header}'")
        slot = self.layout.slot(header, name)
        if name == "$valid$":
            return self._load(str(slot), FieldSpec("$valid$", 1, False))
        return self._field_at(self._header_expr(header), name)

    def _header_expr(self, header: str) -> Expr:
        base = self.layout.valid_slot(header)
        return self._make(str(base), "header", header=header, const=base)

    def _field_at(self, header: Expr, name: str) -> Expr:
        """Field `name` of the header whose base slot `header` computes."""
        spec = self.program.field_spec(header.header, name)
        offset = self.layout.slot(header.header, name) - self.layout.valid_slot(header.header)
        value = self._load(slot_code(header, offset), spec)
        if spec.varbit:
            _, _, limbs = self.layout.varbit_slots(header.header)
            base = self.layout.valid_slot(header.header)
            value = self._make(value.code, value.kind, value.lo, value.hi, varbit=tuple(
                slot_code(header, limb - base) for limb in limbs))
        return value

    def _stack_element(self, stack: str, index: Expr) -> Expr:
        """Element `index` of a header stack (a header) or of a union stack (a union)."""
        layout = self.layout
        size, stride, base = layout.stack_size(stack), layout.stack_stride(stack), layout.stack_base(stack)
        if stack in self.program.stacks:
            kind, like = "header", self.program.stacks[stack].elements[0]
        else:
            kind, like = "union", self.program.union_stacks[stack].elements[0]
        checked = self._index(index, size)
        if checked.isdigit():
            slot = base + int(checked) * stride
            return self._make(str(slot), kind, header=like, const=slot)
        return self._make(f"{base} + {checked} * {stride}" if stride != 1 else f"{base} + {checked}", kind,
                          header=like)

    def _last(self, stack: str) -> Expr:
        """The stack's last element (next - 1), as BMv2's `last`: out of bounds when the stack is empty."""
        next_slot = self.layout.stack_next_slot(stack)
        size = self.layout.stack_size(stack)
        return self._stack_element(stack, self._make(f"F[{next_slot}] - 1", "data", -1, size - 1))

    def _union_member(self, union: Expr, member: str | int) -> Expr:
        """Member `member` (a name, or its index in the union type) of the union whose base `union` computes."""
        index = member if isinstance(member, int) else self.program.union_member(union.header, member)
        members = self.program.unions[union.header].members
        if not 0 <= index < len(members):
            raise InvalidArgument(f"{self.where}: header union '{union.header}' has no member {index}")
        offset = self.layout.union_offsets(union.header)[index]
        like = members[index][1]
        if union.const is not None:
            return self._make(str(union.const + offset), "header", header=like, const=union.const + offset)
        return self._make(slot_code(union, offset), "header", header=like)

    def _valid_union(self, union: Expr) -> Expr:
        tests = [self._load_valid(slot_code(union, offset)).code for offset in self.layout.union_offsets(union.header)]
        return self._make(self._any(tests), "bool")

    def _any(self, tests: list[str]) -> str:
        return "(" + " or ".join(tests) + ")"

    def _all(self, tests: list[str]) -> str:
        return "(" + " and ".join(tests) + ")"

    def _same_shape(self, a: Expr, b: Expr) -> None:
        """Both sides of a `?:` over headers (unions) must be laid out alike, so one base serves either."""
        if a.kind == "header":
            ta, tb = self.program.headers[a.header].type.name, self.program.headers[b.header].type.name
            same = ta == tb and self._union_siblings(a.header) == self._union_siblings(b.header)
        else:
            same = self.program.unions[a.header].type_name == self.program.unions[b.header].type_name
        if not same:
            raise UnsupportedProgram(f"{self.where}: a ?: between '{a.header}' and '{b.header}', which are not "
                                     "laid out alike (different types or union memberships)")

    def _union_siblings(self, header: str) -> tuple[int, ...]:
        """Offsets from `header`'s base slot to the base slots of the other members of its union."""
        if header not in self.program.union_of:
            return ()
        union, index = self.program.union_of[header]
        offsets = self.layout.union_offsets(union)
        return tuple(o - offsets[index] for i, o in enumerate(offsets) if i != index)

    def _structural_op(self, op: str, node: dict) -> Expr | None:
        """Operators over headers, unions and stacks, shared by both emitters (None: not one of them)."""
        left, right = node.get("left"), node.get("right")
        if op in ("dereference_header_stack", "dereference_stack", "dereference_union_stack"):
            stack = self._stack_name(left, ("stack",) if op != "dereference_union_stack" else ("union_stack",))
            return self._stack_element(stack.header, self.compile_data(right))
        if op == "access_field":
            header = self.compile(left)
            if header.kind != "header":
                raise InvalidArgument(f"{self.where}: access_field of a {header.kind}")
            fields = self.program.headers[header.header].type.fields
            if not isinstance(right, int) or not 0 <= right < len(fields):
                raise InvalidArgument(f"{self.where}: access_field to field {right!r} of '{header.header}'")
            return self._field_at(header, fields[right].name)
        if op == "access_union_header":
            union = self.compile(left)
            if union.kind != "union":
                raise InvalidArgument(f"{self.where}: access_union_header of a {union.kind}")
            if not isinstance(right, int):
                raise InvalidArgument(f"{self.where}: access_union_header to member {right!r}")
            return self._union_member(union, right)
        if op in ("last_stack_index", "size_stack"):
            stack = self._stack_name(right if right is not None else left)
            size = self.layout.stack_size(stack.header)
            count = self._load(str(self.layout.stack_next_slot(stack.header)), FieldSpec("next", 32, False))
            count = self._make(count.code, "data", 0, size)
            if op == "size_stack":
                return count
            # BMv2: get_count() - 1 in a size_t, so an empty stack's last index is 2**64 - 1.
            return self._arith("&", self._arith("-", count, self._const(1)), self._const((1 << 64) - 1))
        if op == "valid_union":
            union = self.compile(right)
            if union.kind != "union":
                raise InvalidArgument(f"{self.where}: valid_union of a {union.kind}")
            return self._valid_union(union)
        return None

    def _header_select(self, cond: str, a: Expr, b: Expr) -> Expr | None:
        """`cond ? a : b` over headers or unions (None: over values)."""
        if a.kind not in ("header", "union") and b.kind not in ("header", "union"):
            return None
        if a.kind != b.kind:
            raise InvalidArgument(f"{self.where}: ?: between a {a.kind} and a {b.kind}")
        self._same_shape(a, b)
        return self._make(self._select_code(cond, a.code, b.code), a.kind, header=a.header)

    def _const(self, value: int) -> Expr:
        return const_expr(value)

    def _stack_name(self, node: Any, kinds: tuple[str, ...] = ("stack", "union_stack")) -> Expr:
        expr = self.compile(node)
        if expr.kind not in kinds:
            raise InvalidArgument(f"{self.where}: expected a header stack, got a {expr.kind}")
        return expr

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
            return self._header_expr(value)
        if kind == "header_stack":
            if value not in self.program.stacks:
                raise InvalidArgument(f"{self.where}: unknown header stack '{value}'")
            return self._make("", "stack", header=value)
        if kind == "header_union_stack":
            if value not in self.program.union_stacks:
                raise InvalidArgument(f"{self.where}: unknown header union stack '{value}'")
            return self._make("", "union_stack", header=value)
        if kind == "header_union":
            if value not in self.program.unions:
                raise InvalidArgument(f"{self.where}: unknown header union '{value}'")
            base = self.layout.union_base(value)
            return self._make(str(base), "union", header=value, const=base)
        if kind == "stack_field":
            stack, name = value
            if stack not in self.program.stacks:
                raise InvalidArgument(f"{self.where}: unknown header stack '{stack}'")
            return self._field_at(self._last(stack), name)
        if kind == "union_stack_field":
            stack, member, name = value
            if stack not in self.program.union_stacks:
                raise InvalidArgument(f"{self.where}: unknown header union stack '{stack}'")
            return self._field_at(self._union_member(self._last(stack), member), name)
        if kind == "lookahead":
            if self.lookahead is None:
                raise InvalidArgument(f"{self.where}: lookahead outside a parser")
            return self.lookahead(int(value[0]), int(value[1]))
        if kind == "expression":
            if isinstance(value, dict) and "op" in value:
                return self._op(value)
            return self.compile(value)
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
        raise InvalidArgument(f"{self.where}: a {expr.kind} is not a condition")

    def compile_data(self, node: Any) -> Expr:
        expr = self.compile(node)
        if expr.kind == "bool":
            return Expr(f"(1 if {expr.code} else 0)", "data", 0, 1)
        if expr.kind != "data":
            raise InvalidArgument(f"{self.where}: a {expr.kind} where a value was expected")
        return expr

    # -- operators ----------------------------------------------------------------------------------------
    def _op(self, node: dict) -> Expr:
        op = node["op"]
        left = node.get("left")
        right = node.get("right")
        structural = self._structural_op(op, node)
        if structural is not None:
            return structural
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
            if h.kind == "union":
                return self._valid_union(h)
            if h.kind != "header":
                raise InvalidArgument(f"{self.where}: valid() of something that is not a header")
            if self.program.headers[h.header].metadata:
                return Expr("True", "bool", const=1)
            return Expr(f"F[{slot_code(h, 0)}]", "bool")
        if op == "?":
            cond = self.compile_bool(node.get("cond"))
            a, b = self.compile(left), self.compile(right)
            selected = self._header_select(cond, a, b)
            if selected is not None:
                return selected
            if a.kind == "bool" and b.kind == "bool":
                return Expr(f"({a.code} if {cond} else {b.code})", "bool")
            a, b = self._as_data(a), self._as_data(b)
            lo = min(a.lo, b.lo) if a.lo is not None and b.lo is not None else None
            hi = max(a.hi, b.hi) if a.hi is not None and b.hi is not None else None
            return Expr(f"({a.code} if {cond} else {b.code})", "data", lo, hi)
        if op in ("==", "!="):
            a, b = self.compile(left), self.compile(right)
            if a.kind in ("header", "union") and b.kind == a.kind:
                eq = self._header_eq(a, b) if a.kind == "header" else self._union_eq(a, b)
                return Expr(f"(not {eq})" if op == "!=" else eq, "bool")
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
        if e.kind != "data":
            raise InvalidArgument(f"{self.where}: a {e.kind} where a value was expected")
        return e

    def _header_eq(self, a: Expr, b: Expr) -> str:
        """BMv2's header ==: same type, both valid, equal field values (a varbit's width is not compared)."""
        ha, hb = self.program.headers[a.header], self.program.headers[b.header]
        if ha.type.name != hb.type.name:
            raise InvalidArgument(f"{self.where}: comparing headers '{a.header}' and '{b.header}' of different types")
        n = len(ha.type.fields)
        va, vb = slot_code(a, 0), slot_code(b, 0)
        fa, fb = slot_code(a, 1), slot_code(b, 1)
        ea = f"{a.const + 1 + n}" if a.const is not None else f"{fa} + {n}"
        eb = f"{b.const + 1 + n}" if b.const is not None else f"{fb} + {n}"
        return f"(F[{va}] and F[{vb}] and F[{fa}:{ea}] == F[{fb}:{eb}])"

    def _union_eq(self, a: Expr, b: Expr) -> str:
        """BMv2's union ==: both valid, the same member valid in both, and that member == in both."""
        if self.program.unions[a.header].type_name != self.program.unions[b.header].type_name:
            raise InvalidArgument(f"{self.where}: comparing unions '{a.header}' and '{b.header}' of different types")
        arms = []
        for i in range(len(self.program.unions[a.header].members)):
            ma, mb = self._union_member(a, i), self._union_member(b, i)
            arms.append(self._all([self._load_valid(slot_code(ma, 0)).code, self._header_eq(ma, mb)]))
        return self._any(arms)

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
