"""Action bodies (lists of BMv2 primitive calls) -> straight-line Python.

`_jump`/`_jump_if_zero`, which p4c emits for if-statements inside actions, are turned back into structured
if/else blocks (p4c only emits forward jumps in nested regions); anything else is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgument, UnsupportedProgram
from ..phv import DROP_PORT, H_CLONE, H_DIGEST, H_EXIT, H_INGLEN, H_PKTLEN, H_RECIRC, H_RESUBMIT, H_TRUNC
from ..program import Action
from .calculations import calculation_function
from .context import CompileContext, LogFormat, compile_log_format
from .expressions import Expr, ExpressionCompiler, slot_code, store_code
from .source import CodeWriter

Json = dict[str, Any]

IDX = "\x00IDX\x00"  # placeholder for an index expression in lines given to _indexed


@dataclass(slots=True)
class BodyInfo:
    may_exit: bool = False


@dataclass(frozen=True, slots=True)
class HeaderShape:
    """What operations on a header need of its block, as offsets from its validity slot (the same for every
    header of its type, and for every union member at the same place in unions of one type)."""

    nfields: int
    span: int  # slots after the validity slot (phv.PhvLayout.span)
    metadata: bool
    fixed_bytes: int
    varbit_width: int | None  # offset of a varbit's width slot (bits), if the header has a varbit field
    varbit_limbs: int  # the varbit's 64-bit limbs in the native layout (they follow the width slot), or 0
    siblings: tuple[int, ...]  # offsets of the other members of its union (invalidated when it becomes valid)

    @staticmethod
    def of(header: str, ctx: CompileContext) -> HeaderShape:
        program, layout = ctx.program, ctx.layout
        h = program.headers[header]
        base = layout.valid_slot(header)
        width, limbs = None, 0
        if h.type.varbit is not None:
            width = layout.varbit_slots(header)[1] - base
            limbs = len(layout.varbit_slots(header)[2])
        siblings: tuple[int, ...] = ()
        if header in program.union_of:
            union, index = program.union_of[header]
            offsets = layout.union_offsets(union)
            siblings = tuple(o - offsets[index] for i, o in enumerate(offsets) if i != index)
        return HeaderShape(len(h.type.fields), layout.span(header), h.metadata, h.type.bit_width // 8, width,
                           limbs, siblings)


class PrimitiveCompiler:
    """Compiles the primitives of one action (or parser `primitive` op) into `w`."""

    def __init__(self, ctx: CompileContext, exprs: ExpressionCompiler, w: CodeWriter, where: str) -> None:
        self.ctx = ctx
        self.exprs = exprs
        self.w = w
        self.where = where
        self.info = BodyInfo()

    # -- structured jumps ---------------------------------------------------------------------------------
    def body(self, primitives: tuple[Json, ...] | list[Json]) -> BodyInfo:
        self._region(list(primitives), 0, len(primitives))
        return self.info

    def _jump_target(self, prim: Json, index: int) -> int:
        target = self.exprs.compile_data(prim["parameters"][index])
        if target.const is None:
            raise UnsupportedProgram(f"{self.where}: jump to a computed offset")
        return target.const

    def _region(self, prims: list[Json], start: int, end: int) -> None:
        i = start
        while i < end:
            prim = prims[i]
            op = prim.get("op")
            if op == "_jump_if_zero":
                cond = self.exprs.compile(prim["parameters"][0])
                target = self._jump_target(prim, 1)
                if not i < target <= end:
                    raise UnsupportedProgram(f"{self.where}: jump from {i} to {target} leaves its block")
                last = prims[target - 1] if target - 1 > i else None
                if last is not None and last.get("op") == "_jump":
                    after = self._jump_target(last, 0)
                    if not target <= after <= end:
                        raise UnsupportedProgram(f"{self.where}: jump from {target - 1} to {after} leaves its block")
                    with self.w.if_(cond.code):
                        self._region(prims, i + 1, target - 1)
                    if after > target:
                        with self.w.else_():
                            self._region(prims, target, after)
                    i = after
                else:
                    with self.w.if_(cond.code):
                        self._region(prims, i + 1, target)
                    i = target
                continue
            if op == "_jump":
                target = self._jump_target(prim, 0)
                if target == end and i == end - 1:
                    i += 1
                    continue
                raise UnsupportedProgram(f"{self.where}: unstructured jump from {i} to {target}")
            self.primitive(prim)
            i += 1

    # -- helpers ------------------------------------------------------------------------------------------
    def _param(self, prim: Json, index: int) -> Json:
        params = prim.get("parameters", [])
        if index >= len(params):
            raise InvalidArgument(f"{self.where}: primitive '{prim.get('op')}' lacks parameter {index}")
        return params[index]

    def _field_lvalue(self, node: Json) -> tuple[str, int, bool]:
        """(PHV slot code, width, signed) of an assignable field: a `field`, a stack's `last` field
        (`stack_field`), or an `access_field` expression over a computed header."""
        while node.get("type") == "expression" and isinstance(node.get("value"), dict) and "op" not in node["value"]:
            node = node["value"]  # p4c wraps an expression operand in one more {"type": "expression"}
        kind = node.get("type")
        exprs = self.exprs
        if kind == "field":
            header, name = node["value"]
            if name == "$valid$":
                raise InvalidArgument(f"{self.where}: '{header}.$valid$' is read-only")
            spec = self.ctx.program.field_spec(header, name)
            slot = str(self.ctx.layout.slot(header, name))
        elif kind == "stack_field":
            stack, name = node["value"]
            if stack not in self.ctx.program.stacks:
                raise InvalidArgument(f"{self.where}: unknown header stack '{stack}'")
            slot, spec = self._slot_of(exprs._last(stack), name)
        elif kind == "expression" and isinstance(node.get("value"), dict) and node["value"].get("op") == "access_field":
            inner = node["value"]
            header = exprs.compile(inner.get("left"))
            fields = self.ctx.program.headers[header.header].type.fields if header.kind == "header" else ()
            if not isinstance(inner.get("right"), int) or not 0 <= inner["right"] < len(fields):
                raise InvalidArgument(f"{self.where}: cannot assign to field {inner.get('right')!r} of a {header.kind}")
            slot, spec = self._slot_of(header, fields[inner["right"]].name)
        else:
            raise InvalidArgument(f"{self.where}: cannot assign to a {kind}")
        if spec.varbit:
            raise UnsupportedProgram(f"{self.where}: a plain assignment to varbit field '{spec.name}' (assign_VL)")
        return slot, spec.width, spec.signed

    def _slot_of(self, header: Expr, name: str):
        layout = self.ctx.layout
        spec = self.ctx.program.field_spec(header.header, name)
        return slot_code(header, layout.slot(header.header, name) - layout.valid_slot(header.header)), spec

    def _header(self, node: Json, kind: str = "header") -> Expr:
        """A header operand (`header`, or an `expression` computing one: a stack element, a union member, a ?:),
        or with `kind` "union" a union operand; the base slot is bound to a temporary when it is computed."""
        expr = self.exprs.compile(node)
        if expr.kind != kind:
            raise InvalidArgument(f"{self.where}: a {expr.kind} where a {kind} was expected")
        if expr.const is not None:
            return expr
        var = self.w.temp("b")
        self._declare(var, expr.code)
        return self.exprs._make(var, kind, header=expr.header)

    # -- statement hooks: Python here, C in native/cactions.py ------------------------------------------------
    TRUE, FALSE = "True", "False"

    def _declare(self, var: str, code: str) -> None:
        self.w.line(f"{var} = {code}")

    def _stmt(self, text: str) -> None:
        self.w.line(text)

    def _not(self, code: str) -> str:
        return f"not {code}"

    def _copy(self, dst: Expr, src: Expr, offset: int, count: int) -> None:
        """Slots [offset, offset + count) of header/union block `src` into the same slots of `dst`."""
        a, b = slot_code(dst, offset), slot_code(src, offset)
        a_end = str(dst.const + offset + count) if dst.const is not None else f"{a} + {count}"
        b_end = str(src.const + offset + count) if src.const is not None else f"{b} + {count}"
        self.w.line(f"F[{a}:{a_end}] = F[{b}:{b_end}]")

    def _zero(self, header: Expr, offset: int, count: int) -> None:
        a = slot_code(header, offset)
        a_end = str(header.const + offset + count) if header.const is not None else f"{a} + {count}"
        self.w.line(f"F[{a}:{a_end}] = {[0] * count!r}")

    def _zero_limbs(self, header: Expr, shape: HeaderShape) -> None:
        """The varbit's further limbs: the Python pipeline keeps the whole value in the field's slot."""

    def _swap(self, a: int, b: int, count: int) -> None:
        self.w.line(f"F[{a}:{a + count}], F[{b}:{b + count}] = F[{b}:{b + count}], F[{a}:{a + count}]")

    def _indexed(self, node: Json, size: int, what: str, lines: list[str]) -> None:
        """Emit `lines` (which use IDX for the index) guarded so an out-of-range index makes them a no-op,
        as BMv2 does. A nonnegative index is left to Python's own bounds check (IndexError costs nothing
        when not raised), which is cheaper than comparing first."""
        idx = self.exprs.compile_data(node)
        if idx.const is not None:
            if not 0 <= idx.const < size:
                self.ctx.warnings.append(f"{self.where}: constant index {idx.const} is out of range for {what}")
                return
            self.w.extend([line.replace(IDX, str(idx.const)) for line in lines])
            return
        if idx.within(0, size - 1):
            self.w.extend([line.replace(IDX, idx.code) for line in lines])
            return
        if idx.lo is not None and idx.lo >= 0:
            with self.w.block("try:"):
                self.w.extend([line.replace(IDX, idx.code) for line in lines])
            with self.w.block("except IndexError:"):
                self.w.line("pass")
            return
        var = self.w.temp("i")
        self.w.line(f"{var} = {idx.code}")
        with self.w.block(f"if 0 <= {var} < {size}:"):
            self.w.extend([line.replace(IDX, var) for line in lines])

    # -- primitives ---------------------------------------------------------------------------------------
    def primitive(self, prim: Json) -> None:
        op = prim.get("op")
        handler = getattr(self, f"_p_{op}", None)
        if handler is None:
            raise UnsupportedProgram(f"{self.where}: primitive '{op}' is not supported")
        handler(prim)

    def _p_assign(self, prim: Json) -> None:
        slot, width, signed = self._field_lvalue(self._param(prim, 0))
        src = self.exprs.compile_data(self._param(prim, 1))
        self.w.line(f"F[{slot}] = {store_code(src, width, signed)}")

    _p_modify_field = _p_assign

    def _p_assign_header(self, prim: Json) -> None:
        self._assign_header(self._header(self._param(prim, 0)), self._header(self._param(prim, 1)))

    _p_copy_header = _p_assign_header

    def _assign_header(self, dst: Expr, src: Expr) -> None:
        """BMv2's assign_header: dst becomes a copy of src, valid or not (a varbit's width and limbs included)."""
        program = self.ctx.program
        hd, hs = program.headers[dst.header], program.headers[src.header]
        if hd.type.name != hs.type.name:
            raise InvalidArgument(f"{self.where}: assign_header from '{src.header}' to '{dst.header}' of another type")
        sd = HeaderShape.of(dst.header, self.ctx)
        if hs.metadata:
            self._copy(dst, src, 1, sd.span)
            if not hd.metadata:
                self._make_valid(dst, sd)
            return
        with self.w.if_(f"F[{slot_code(src, 0)}]"):
            if not hd.metadata:
                self._make_valid(dst, sd)
            self._copy(dst, src, 1, sd.span)
        if not hd.metadata:
            with self.w.else_():
                self._stmt(self._set(slot_code(dst, 0), self.FALSE))

    def _set(self, slot: str, value: str) -> str:
        return f"F[{slot}] = {value}"

    def _make_valid(self, header: Expr, shape: HeaderShape) -> None:
        """mark_valid: the header, and (BMv2's unions) no other member of its union."""
        self._stmt(self._set(slot_code(header, 0), self.TRUE))
        for offset in shape.siblings:
            self._stmt(self._set(slot_code(header, offset), self.FALSE))

    def _length_change(self, header: Expr, shape: HeaderShape, sign: str) -> None:
        amount = str(shape.fixed_bytes)
        if shape.varbit_width is not None:
            amount = f"{shape.fixed_bytes} + (F[{slot_code(header, shape.varbit_width)}] >> 3)"
        self._stmt(f"F[{H_PKTLEN}] {sign}= {amount}")

    def _p_add_header(self, prim: Json) -> None:
        header = self._header(self._param(prim, 0))
        shape = HeaderShape.of(header.header, self.ctx)
        if shape.metadata:
            return
        with self.w.if_(self._not(f"F[{slot_code(header, 0)}]")):
            self._make_valid(header, shape)
            self._zero(header, 1, shape.nfields)
            if shape.varbit_limbs > 1:
                self._zero_limbs(header, shape)
            self._length_change(header, shape, "+")

    def _p_remove_header(self, prim: Json) -> None:
        header = self._header(self._param(prim, 0))
        shape = HeaderShape.of(header.header, self.ctx)
        if shape.metadata:
            return
        with self.w.if_(f"F[{slot_code(header, 0)}]"):
            self._stmt(self._set(slot_code(header, 0), self.FALSE))
            self._length_change(header, shape, "-")

    # -- stacks and unions ---------------------------------------------------------------------------------
    def _stack(self, node: Json) -> str:
        expr = self.exprs._stack_name(node)
        return expr.header

    def _count(self, prim: Json) -> int:
        count = self.exprs.compile_data(self._param(prim, 1))
        if count.const is None or count.const < 0:
            raise UnsupportedProgram(f"{self.where}: {prim.get('op')} by a count that is not a constant")
        return count.const

    def _element_valid_slots(self, stack: str, i: int) -> list[int]:
        """Validity slots of element i: one header, or nothing for a union stack (BMv2 does not mark unions)."""
        layout = self.ctx.layout
        if stack in self.ctx.program.stacks:
            return [layout.stack_base(stack) + i * layout.stack_stride(stack)]
        return []

    def _p_push(self, prim: Json) -> None:
        """push_front(n), as BMv2's P4_16 stacks do it: shift by swapping, the first n invalid, next += n."""
        stack, count = self._stack(self._param(prim, 0)), self._count(prim)
        if count == 0:
            return
        layout = self.ctx.layout
        size, stride, base, nxt = (layout.stack_size(stack), layout.stack_stride(stack), layout.stack_base(stack),
                                   layout.stack_next_slot(stack))
        self._stmt(self._set(str(nxt), self._add_capped(f"F[{nxt}]", count, size)))
        for i in range(size - 1, count - 1, -1):
            self._swap(base + i * stride, base + (i - count) * stride, stride)
        for i in range(min(size, count)):
            for slot in self._element_valid_slots(stack, i):
                self._stmt(self._set(str(slot), self.FALSE))

    _p_push_front = _p_push

    def _p_pop(self, prim: Json) -> None:
        """pop_front(n), as BMv2's P4_16 stacks do it: shift by swapping, the last n invalid, next -= n."""
        stack, count = self._stack(self._param(prim, 0)), self._count(prim)
        if count == 0:
            return
        layout = self.ctx.layout
        size, stride, base, nxt = (layout.stack_size(stack), layout.stack_stride(stack), layout.stack_base(stack),
                                   layout.stack_next_slot(stack))
        self._stmt(self._set(str(nxt), self._sub_floored(f"F[{nxt}]", count)))
        first_invalid = 0
        if count < size:
            for i in range(size - count):
                self._swap(base + i * stride, base + (i + count) * stride, stride)
            first_invalid = size - count
        for i in range(first_invalid, size):
            for slot in self._element_valid_slots(stack, i):
                self._stmt(self._set(str(slot), self.FALSE))

    _p_pop_front = _p_pop

    def _add_capped(self, value: str, count: int, cap: int) -> str:
        return f"min({value} + {count}, {cap})"

    def _sub_floored(self, value: str, count: int) -> str:
        return f"max({value} - {count}, 0)"

    def _p_assign_header_stack(self, prim: Json) -> None:
        dst, src = self._stack(self._param(prim, 0)), self._stack(self._param(prim, 1))
        program, layout = self.ctx.program, self.ctx.layout
        if dst not in program.stacks or src not in program.stacks:
            raise InvalidArgument(f"{self.where}: assign_header_stack of something that is not a header stack")
        if layout.stack_size(dst) != layout.stack_size(src):
            raise InvalidArgument(f"{self.where}: assign_header_stack between stacks of different sizes")
        self._stmt(self._set(str(layout.stack_next_slot(dst)), f"F[{layout.stack_next_slot(src)}]"))
        for d, s in zip(program.stacks[dst].elements, program.stacks[src].elements):
            self._assign_header(self.exprs._header_expr(d), self.exprs._header_expr(s))

    def _p_assign_union(self, prim: Json) -> None:
        self._assign_union(self._header(self._param(prim, 0), "union"), self._header(self._param(prim, 1), "union"))

    def _assign_union(self, dst: Expr, src: Expr) -> None:
        unions = self.ctx.program.unions
        if unions[dst.header].type_name != unions[src.header].type_name:
            raise InvalidArgument(f"{self.where}: assign_union between unions of different types")
        for i in range(len(unions[dst.header].members)):
            self._assign_header(self.exprs._union_member(dst, i), self.exprs._union_member(src, i))

    def _p_assign_union_stack(self, prim: Json) -> None:
        dst, src = self._stack(self._param(prim, 0)), self._stack(self._param(prim, 1))
        program, layout = self.ctx.program, self.ctx.layout
        if dst not in program.union_stacks or src not in program.union_stacks:
            raise InvalidArgument(f"{self.where}: assign_union_stack of something that is not a union stack")
        if layout.stack_size(dst) != layout.stack_size(src):
            raise InvalidArgument(f"{self.where}: assign_union_stack between stacks of different sizes")
        self._stmt(self._set(str(layout.stack_next_slot(dst)), f"F[{layout.stack_next_slot(src)}]"))
        for d, s in zip(program.union_stacks[dst].elements, program.union_stacks[src].elements):
            self._assign_union(self.exprs.compile({"type": "header_union", "value": d}),
                               self.exprs.compile({"type": "header_union", "value": s}))

    def _p_assign_VL(self, prim: Json) -> None:
        """A varbit field's value and width from another varbit field (BMv2's assign_VL)."""
        dst, src = (self._varbit_operand(self._param(prim, i)) for i in (0, 1))
        self._copy_varbit(dst, src)

    def _varbit_operand(self, node: Json) -> tuple[str, tuple[str, ...]]:
        """(width slot, limb slots) of a varbit field operand."""
        if node.get("type") != "field":
            raise UnsupportedProgram(f"{self.where}: assign_VL of a {node.get('type')}")
        header, name = node["value"]
        if not self.ctx.program.field_spec(header, name).varbit:
            raise InvalidArgument(f"{self.where}: assign_VL of '{header}.{name}', which is not a varbit field")
        _, width, limbs = self.ctx.layout.varbit_slots(header)
        return str(width), tuple(map(str, limbs))

    def _copy_varbit(self, dst: tuple[str, tuple[str, ...]], src: tuple[str, tuple[str, ...]]) -> None:
        # The Python pipeline holds the whole value in the first limb's slot.
        self._stmt(self._set(dst[1][0], f"F[{src[1][0]}]"))
        self._stmt(self._set(dst[0], f"F[{src[0]}]"))

    def _p_mark_to_drop(self, prim: Json) -> None:
        std = self.ctx.layout.std
        self.w.line(f"F[{std.egress_spec}] = {DROP_PORT}")
        if std.mcast_grp is not None:
            self.w.line(f"F[{std.mcast_grp}] = 0")

    _p_drop = _p_mark_to_drop

    def _register(self, node: Json) -> tuple[str, int, int]:
        if node.get("type") != "register_array":
            raise InvalidArgument(f"{self.where}: expected a register array, got {node.get('type')}")
        reg = self.ctx.registers.get(node["value"])
        if reg is None:
            raise InvalidArgument(f"{self.where}: unknown register '{node['value']}'")
        return self.ctx.ns.bind(reg.cells, "R"), reg.size, reg.width

    def _p_register_read(self, prim: Json) -> None:
        slot, width, signed = self._field_lvalue(self._param(prim, 0))
        cells, size, reg_width = self._register(self._param(prim, 1))
        value = Expr(f"{cells}[{IDX}]", "data", 0, (1 << reg_width) - 1)
        line = f"F[{slot}] = {store_code(value, width, signed)}"
        self._indexed(self._param(prim, 2), size, f"register {self._param(prim, 1)['value']}", [line])

    def _p_register_write(self, prim: Json) -> None:
        cells, size, reg_width = self._register(self._param(prim, 0))
        value = self.exprs.compile_data(self._param(prim, 2))
        # The value is computed before indexing so the try block holds nothing but the store.
        code = store_code(value, reg_width, False)
        if value.const is None and not _is_simple(code):
            var = self.w.temp("v")
            self.w.line(f"{var} = {code}")
            code = var
        line = f"{cells}[{IDX}] = {code}"
        self._indexed(self._param(prim, 1), size, f"register {self._param(prim, 0)['value']}", [line])

    def _p_count(self, prim: Json) -> None:
        node = self._param(prim, 0)
        if node.get("type") != "counter_array":
            raise InvalidArgument(f"{self.where}: count() of a {node.get('type')}")
        ctr = self.ctx.counters.get(node["value"])
        if ctr is None:
            raise InvalidArgument(f"{self.where}: unknown (or direct) counter '{node['value']}'")
        pk, by = self.ctx.ns.bind(ctr.packets, "CP"), self.ctx.ns.bind(ctr.bytes, "CB")
        self._indexed(self._param(prim, 1), ctr.size, f"counter {ctr.name}", [f"{pk}[{IDX}] += 1", f"{by}[{IDX}] += F[{H_INGLEN}]"])

    def _meter(self, node: Json):
        if node.get("type") != "meter_array":
            raise InvalidArgument(f"{self.where}: execute_meter of a {node.get('type')}")
        spec = self.ctx.program.meters.get(node["value"])
        if spec is None or spec.is_direct:
            raise InvalidArgument(f"{self.where}: unknown (or direct) meter '{node['value']}'")
        return spec

    def _p_execute_meter(self, prim: Json) -> None:
        spec = self._meter(self._param(prim, 0))
        slot, width, signed = self._field_lvalue(self._param(prim, 2))
        meter = self.ctx.ns.bind(self.ctx.meters[spec.name], "M")
        amount = f"F[{H_INGLEN}]" if spec.unit == "bytes" else "1"
        # An index past the end leaves the destination as it was and the meters alone (BMv2).
        color = Expr(f"{meter}.execute({IDX}, {amount}, _now())", "data", 0, 2)
        self._indexed(self._param(prim, 1), spec.size, f"meter {spec.name}",
                      [f"F[{slot}] = {store_code(color, width, signed)}"])

    def _p_modify_field_with_hash_based_offset(self, prim: Json) -> None:
        slot, width, signed = self._field_lvalue(self._param(prim, 0))
        base = self.exprs.compile_data(self._param(prim, 1))
        calc_node = self._param(prim, 2)
        if calc_node.get("type") != "calculation":
            raise InvalidArgument(f"{self.where}: hash of a {calc_node.get('type')}")
        fn = calculation_function(self.ctx, calc_node["value"])
        size = self.exprs.compile_data(self._param(prim, 3))
        size_code = size.code if size.const is None else str(size.const or 1)
        if size.const is None:
            size_code = f"({size.code} or 1)"
        value = Expr(f"(({fn}(F, b'') % {size_code}) + {base.code})", "data")
        self.w.line(f"F[{slot}] = {store_code(value, width, signed)}")

    def _clone(self, prim: Json) -> None:
        session = self.exprs.compile_data(self._param(prim, 0))
        params = prim.get("parameters", [])
        field_list = self.exprs.compile_data(params[1]).code if len(params) > 1 else "0"
        self.w.line(f"F[{H_CLONE}] = (({session.code}) & 65535, {field_list})")

    _p_clone_ingress_pkt_to_egress = _clone
    _p_clone_egress_pkt_to_egress = _clone

    def _p_resubmit(self, prim: Json) -> None:
        params = prim.get("parameters", [])
        field_list = self.exprs.compile_data(params[0]).code if params else "0"
        self.w.line(f"F[{H_RESUBMIT}] = {field_list}")

    def _p_recirculate(self, prim: Json) -> None:
        params = prim.get("parameters", [])
        field_list = self.exprs.compile_data(params[0]).code if params else "0"
        self.w.line(f"F[{H_RECIRC}] = {field_list}")

    def _learn_list_id(self, prim: Json) -> int:
        learn_id = self.exprs.compile_data(self._param(prim, 1))
        if learn_id.const is None:
            raise UnsupportedProgram(f"{self.where}: generate_digest of a computed learn list")
        if learn_id.const not in self.ctx.program.learn_lists:
            raise InvalidArgument(f"{self.where}: generate_digest of unknown learn list {learn_id.const}")
        return learn_id.const

    def _p_generate_digest(self, prim: Json) -> None:
        # The receiver (parameter 0) is ignored, as BMv2 does; the last digest a packet asks for is the one sent,
        # with the list's fields as they are at the end of ingress.
        self.w.line(f"F[{H_DIGEST}] = {self._learn_list_id(prim)}")

    def _p_truncate(self, prim: Json) -> None:
        length = self.exprs.compile_data(self._param(prim, 0))
        self.w.line(f"F[{H_TRUNC}] = {length.code}")

    def _p_exit(self, prim: Json) -> None:
        self.w.line(f"F[{H_EXIT}] = True")
        self.info.may_exit = True

    def _p_no_op(self, prim: Json) -> None:
        self.w.line("pass")

    def _log_values(self, prim: Json) -> tuple[LogFormat, list[Json]]:
        """The call's format, expanded the way BMv2 does it, and its value expressions."""
        fmt = self._param(prim, 0)
        if fmt.get("type") != "string":
            raise InvalidArgument(f"{self.where}: log_msg format is not a string")
        params = prim.get("parameters", [])
        items: list[Json] = []
        if len(params) > 1:
            vec = params[1]
            # p4c writes an empty vector as {} and a single value may come bare.
            items = list(vec.get("value") or []) if vec.get("type") == "parameters_vector" else [vec]
        compiled = compile_log_format(fmt["value"], len(items))
        if compiled.error is not None:
            self.ctx.warnings.append(f"{self.where}: log_msg({fmt['value']!r}) with {len(items)} value(s): "
                                     f"{compiled.error}; BMv2 exits when it runs this, here the packet is dropped")
        return compiled, items

    def _p_log_msg(self, prim: Json) -> None:
        compiled, items = self._log_values(prim)
        name = self.ctx.ns.bind(compiled, "LOGFMT")
        if compiled.error is not None:
            self.w.line(f"_log_msg_failed({name})")
            return
        values = [self.exprs.compile_data(item).code for item in items]
        self.w.line(f"_log_msg({name}, [{', '.join(values)}])")

    def _assert(self, prim: Json) -> None:
        cond = self.exprs.compile(self._param(prim, 0))
        code = cond.code if cond.kind == "bool" else f"({cond.code} != 0)"
        with self.w.block(f"if not {code}:"):
            self.w.line(f"raise PipelineAssertion({prim.get('op', 'assert') + ' failed in ' + self.where!r})")

    _p_assert = _assert
    _p_assume = _assert

    def _p_modify_field_rng_uniform(self, prim: Json) -> None:
        slot, width, signed = self._field_lvalue(self._param(prim, 0))
        lo = self.exprs.compile_data(self._param(prim, 1))
        hi = self.exprs.compile_data(self._param(prim, 2))
        var = self.w.temp("r")
        self.w.line(f"{var} = _random_between({lo.code}, {hi.code})")
        with self.w.block(f"if {var} is not None:"):
            self.w.line(f"F[{slot}] = {store_code(Expr(var, 'data'), width, signed)}")


def _is_simple(code: str) -> bool:
    return code.startswith("F[") and code.endswith("]") and code[2:-1].isdigit()


def action_params(action: Action) -> list[Expr]:
    """Expressions for the parameters of a table-invoked action: locals p0, p1, ... unpacked from P."""
    return [Expr(f"p{i}", "data", 0, (1 << p.width) - 1) for i, p in enumerate(action.params)]


def constant_params(action: Action, values: tuple[int, ...]) -> list[Expr]:
    return [Expr(str(v), "data", v, v, const=v) for v in values]


def compile_action_body(
    ctx: CompileContext, action: Action, w: CodeWriter, params: list[Expr], where: str | None = None
) -> BodyInfo:
    exprs = ExpressionCompiler(ctx.program, ctx.layout, params=params, where=where or f"action {action.name}")
    return PrimitiveCompiler(ctx, exprs, w, where or f"action {action.name}").body(action.primitives)


def compile_action_function(ctx: CompileContext, action: Action) -> tuple[str, BodyInfo]:
    """Generate `def A_<id>(F, P)` for a table-invoked action; returns its name and what the body may do."""
    name = f"A_{action.id}"
    w = CodeWriter()
    with w.block(f"def {name}(F, P):"):
        if action.params:
            names = ", ".join(f"p{i}" for i in range(len(action.params)))
            w.line(f"{names}, = P")
        info = compile_action_body(ctx, action, w, action_params(action))
    ctx.ns.exec(w.source(), f"<action {action.name}>")
    return name, info
