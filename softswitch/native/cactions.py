"""Action bodies (BMv2 primitives) -> C statements; the structured-jump walk is the Python emitter's
(PrimitiveCompiler._region, shared through the writer's if_/else_), each primitive is lowered to C here.

A Python exception inside generated code drops the packet and is counted as `error:<ExceptionName>`; the C
code reaches the same outcome with ss_fail(st, REASON), which unwinds to the engine (longjmp) and is counted
under the same name (ZeroDivisionError, ValueError), so the two backends count drops alike.
"""

from __future__ import annotations

from typing import Any

from ..codegen.actions import IDX, BodyInfo, PrimitiveCompiler
from ..codegen.expressions import slot_code
from ..errors import InvalidArgument
from ..phv import DROP_PORT, H_CLONE, H_DIGEST, H_EXIT, H_INGLEN, H_PKTLEN, H_RECIRC, H_RESUBMIT, H_TRUNC
from ..program import Action
from .ccalc import calculation_function
from .cexpr import CExpr, CExpressionCompiler, const_cexpr, store_c
from .context import CCodeWriter, CContext
from .support import NativeUnsupported

Json = dict[str, Any]
REQUEST_FLAG = "0x8000000000000000ULL"  # set in H_CLONE/H_RESUBMIT/H_RECIRC when the request was made


class CPrimitiveCompiler(PrimitiveCompiler):
    def __init__(self, ctx: CContext, exprs: CExpressionCompiler, w: CCodeWriter, where: str) -> None:
        super().__init__(ctx, exprs, w, where)  # type: ignore[arg-type]

    def _indexed(self, node: Json, size: int, what: str, lines: list[str]) -> None:
        """Emit `lines` (IDX stands for the index) so that an out-of-range index makes them a no-op (BMv2)."""
        idx = self.exprs.compile_data(node)
        if idx.const is not None:
            if not 0 <= idx.const < size:
                self.ctx.warnings.append(f"{self.where}: constant index {idx.const} is out of range for {what}")
                return
            self.w.extend([line.replace(IDX, str(idx.const)) for line in lines])
            return
        self.exprs._window(idx)
        with self.w.block(""):
            var = self.w.temp("i")
            self.w.line(f"W {var} = {idx.code};")
            test = f"{var} < {size}" if idx.lo is not None and idx.lo >= 0 else f"(SW){var} >= 0 && {var} < {size}"
            if idx.within(0, size - 1):
                test = "1"
            with self.w.if_(test):
                self.w.extend([line.replace(IDX, f"(size_t){var}") for line in lines])

    # -- primitives ---------------------------------------------------------------------------------------
    def primitive(self, prim: Json) -> None:
        op = prim.get("op")
        handler = getattr(self, f"_p_{op}", None)
        if handler is None:
            raise NativeUnsupported(f"{self.where}: primitive '{op}'")
        handler(prim)

    def _p_assign(self, prim: Json) -> None:
        slot, width, signed = self._field_lvalue(self._param(prim, 0))
        src = self.exprs.compile_data(self._param(prim, 1))
        self.w.line(f"F[{slot}] = {store_c(src, width, signed)};")

    _p_modify_field = _p_assign

    # -- statement hooks of PrimitiveCompiler (headers, stacks, unions, varbits) ------------------------------
    TRUE, FALSE = "1", "0"

    def _declare(self, var: str, code: str) -> None:
        self.w.line(f"u64 {var} = (u64)({code});")

    def _stmt(self, text: str) -> None:
        self.w.line(f"{text};")

    def _not(self, code: str) -> str:
        return f"!{code}"

    def _copy(self, dst, src, offset: int, count: int) -> None:
        self.w.line(f"memmove(&F[{slot_code(dst, offset)}], &F[{slot_code(src, offset)}], {count} * sizeof(u64));")

    def _zero(self, header, offset: int, count: int) -> None:
        self.w.line(f"memset(&F[{slot_code(header, offset)}], 0, {count} * sizeof(u64));")

    def _zero_limbs(self, header, shape) -> None:
        self._zero(header, shape.varbit_width + 1, shape.varbit_limbs - 1)

    def _swap(self, a: int, b: int, count: int) -> None:
        self.w.line(f"ss_swap(&F[{a}], &F[{b}], {count});")

    def _add_capped(self, value: str, count: int, cap: int) -> str:
        return f"({value} + {count} < {cap} ? {value} + {count} : {cap})"

    def _sub_floored(self, value: str, count: int) -> str:
        return f"({value} > {count} ? {value} - {count} : 0)"

    def _copy_varbit(self, dst, src) -> None:
        for i, limb in enumerate(dst[1]):
            self._stmt(self._set(limb, f"F[{src[1][i]}]" if i < len(src[1]) else "0"))
        self._stmt(self._set(dst[0], f"F[{src[0]}]"))

    def _p_mark_to_drop(self, prim: Json) -> None:
        std = self.ctx.layout.std
        self.w.line(f"F[{std.egress_spec}] = {DROP_PORT};")
        if std.mcast_grp is not None:
            self.w.line(f"F[{std.mcast_grp}] = 0;")

    _p_drop = _p_mark_to_drop

    def _register(self, node: Json) -> tuple[str, int, int]:
        if node.get("type") != "register_array":
            raise InvalidArgument(f"{self.where}: expected a register array, got {node.get('type')}")
        reg = self.ctx.program.registers.get(node["value"])
        if reg is None:
            raise InvalidArgument(f"{self.where}: unknown register '{node['value']}'")
        return f"st->regs[{self.ctx.register_index[reg.name]}]", reg.size, reg.width

    def _p_register_read(self, prim: Json) -> None:
        slot, width, signed = self._field_lvalue(self._param(prim, 0))
        cells, size, reg_width = self._register(self._param(prim, 1))
        value = CExpr(f"((W){cells}[{IDX}])", "data", 0, (1 << reg_width) - 1)
        line = f"F[{slot}] = {store_c(value, width, signed)};"
        self._indexed(self._param(prim, 2), size, f"register {self._param(prim, 1)['value']}", [line])

    def _p_register_write(self, prim: Json) -> None:
        cells, size, reg_width = self._register(self._param(prim, 0))
        value = self.exprs.compile_data(self._param(prim, 2))
        line = f"{cells}[{IDX}] = {store_c(value, reg_width, False)};"
        self._indexed(self._param(prim, 1), size, f"register {self._param(prim, 0)['value']}", [line])

    def _p_count(self, prim: Json) -> None:
        node = self._param(prim, 0)
        if node.get("type") != "counter_array":
            raise InvalidArgument(f"{self.where}: count() of a {node.get('type')}")
        k = self.ctx.counter_index.get(node["value"])
        if k is None:
            raise InvalidArgument(f"{self.where}: unknown (or direct) counter '{node['value']}'")
        size = self.ctx.program.counters[node["value"]].size
        lines = [f"st->cpk[{k}][{IDX}] += 1;", f"st->cby[{k}][{IDX}] += F[{H_INGLEN}];"]
        self._indexed(self._param(prim, 1), size, f"counter {node['value']}", lines)

    def _p_execute_meter(self, prim: Json) -> None:
        spec = self._meter(self._param(prim, 0))
        slot, width, signed = self._field_lvalue(self._param(prim, 2))
        amount = f"F[{H_INGLEN}]" if spec.unit == "bytes" else "1"
        color = CExpr(f"((W)ss_meter_execute(st, &st->meters[{self.ctx.meter_index[spec.name]}], {IDX}, {amount}))",
                      "data", 0, 2)
        self._indexed(self._param(prim, 1), spec.size, f"meter {spec.name}",
                      [f"F[{slot}] = {store_c(color, width, signed)};"])

    def _p_modify_field_with_hash_based_offset(self, prim: Json) -> None:
        slot, width, signed = self._field_lvalue(self._param(prim, 0))
        base = self.exprs.compile_data(self._param(prim, 1))
        calc_node = self._param(prim, 2)
        if calc_node.get("type") != "calculation":
            raise InvalidArgument(f"{self.where}: hash of a {calc_node.get('type')}")
        fn = calculation_function(self.ctx, calc_node["value"])
        size = self.exprs.compile_data(self._param(prim, 3))
        if size.const is not None:
            size = const_cexpr(size.const or 1)
        else:
            self.exprs._window(size)
            size = CExpr(f"ss_or1({size.code})", "data", size.lo, size.hi)
        signed_mod = int(size.lo is None or size.lo < 0)
        value = CExpr(f"(ss_mod(st, (W){fn}(st, F, 0, 0), {size.code}, {signed_mod}) + {base.code})", "data")
        self.w.line(f"F[{slot}] = {store_c(value, width, signed)};")

    def _request(self, slot: int, value: str) -> None:
        self.w.line(f"F[{slot}] = {REQUEST_FLAG} | (u64)({value});")

    def _clone(self, prim: Json) -> None:
        session = self.exprs.compile_data(self._param(prim, 0))
        params = prim.get("parameters", [])
        field_list = self.exprs.compile_data(params[1]) if len(params) > 1 else const_cexpr(0)
        self._request(H_CLONE, f"(((u64)({session.code}) & 0xffff) << 32) | ((u64)({field_list.code}) & 0xffffffffULL)")

    _p_clone_ingress_pkt_to_egress = _clone
    _p_clone_egress_pkt_to_egress = _clone

    def _field_list_request(self, prim: Json, slot: int) -> None:
        params = prim.get("parameters", [])
        field_list = self.exprs.compile_data(params[0]) if params else const_cexpr(0)
        self._request(slot, f"(u64)({field_list.code}) & 0xffffffffULL")

    def _p_resubmit(self, prim: Json) -> None:
        self._field_list_request(prim, H_RESUBMIT)

    def _p_recirculate(self, prim: Json) -> None:
        self._field_list_request(prim, H_RECIRC)

    def _p_generate_digest(self, prim: Json) -> None:
        self.w.line(f"F[{H_DIGEST}] = {self._learn_list_id(prim)}ULL;")

    def _p_truncate(self, prim: Json) -> None:
        length = self.exprs.compile_data(self._param(prim, 0))
        self.w.line(f"F[{H_TRUNC}] = (u64)({length.code});")

    def _p_exit(self, prim: Json) -> None:
        self.w.line(f"F[{H_EXIT}] = 1;")
        self.info.may_exit = True

    def _p_no_op(self, prim: Json) -> None:
        self.w.line(";")

    def _p_log_msg(self, prim: Json) -> None:
        compiled, items = self._log_values(prim)
        if compiled.error is not None:
            self.w.line("ss_fail(st, R_LOG_MSG_ERROR);")
            return
        values = [self.exprs.compile_data(item) for item in items]
        self.exprs._window(*values)
        msg_id = len(self.ctx.log_formats)
        self.ctx.log_formats.append(compiled)
        with self.w.if_("st->log_enabled"):
            parts = ", ".join(f"(u64){v.code}, (u64)({v.code} >> 64)" for v in values) or "0"
            self.w.line(f"u64 _lv[] = {{{parts}}};")
            signed = sum(1 << i for i, v in enumerate(values) if v.lo is None or v.lo < 0)
            self.w.line(f"ss_py_log_msg(st->ud, {msg_id}, _lv, {len(values)}, {signed}ULL);")

    def _assert(self, prim: Json) -> None:
        cond = self.exprs.compile(self._param(prim, 0))
        code = cond.code if cond.kind == "bool" else f"({cond.code} != 0)"
        with self.w.if_(f"!({code})"):
            self.w.line("ss_fail(st, R_ASSERT_FAILED);")

    _p_assert = _assert
    _p_assume = _assert

    def _p_modify_field_rng_uniform(self, prim: Json) -> None:
        slot, width, signed = self._field_lvalue(self._param(prim, 0))
        lo = self.exprs.compile_data(self._param(prim, 1))
        hi = self.exprs.compile_data(self._param(prim, 2))
        self.exprs._window(lo, hi)
        with self.w.block(""):
            self.w.line(f"W _lo = {lo.code}, _hi = {hi.code};")
            with self.w.if_("(SW)_lo <= (SW)_hi"):
                value = CExpr("ss_random_between(st, _lo, _hi)", "data")
                self.w.line(f"F[{slot}] = {store_c(value, width, signed)};")


def action_params(action: Action) -> list[CExpr]:
    return [CExpr(f"((W)P[{i}])", "data", 0, (1 << p.width) - 1) for i, p in enumerate(action.params)]


def constant_params(values: tuple[int, ...]) -> list[CExpr]:
    return [const_cexpr(v) for v in values]


def compile_action_body(
    ctx: CContext, action: Action, w: CCodeWriter, params: list[CExpr], where: str | None = None
) -> BodyInfo:
    where = where or f"action {action.name}"
    exprs = CExpressionCompiler(ctx.program, ctx.layout, params=params, where=where)
    return CPrimitiveCompiler(ctx, exprs, w, where).body(action.primitives)


def compile_action_function(ctx: CContext, action: Action) -> tuple[str, BodyInfo]:
    """Generate `A_<id>(st, F, P)` for a table-invoked action; returns its name and what the body may do."""
    name = f"A_{action.id}"
    w = CCodeWriter()
    prototype = f"static void {name}(St *st, u64 *F, const u64 *P)"
    with w.block(prototype):
        w.line("(void)st; (void)P;")
        info = compile_action_body(ctx, action, w, action_params(action))
    ctx.add_function(prototype, w)
    return name, info

