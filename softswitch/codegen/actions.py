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
from .expressions import Expr, ExpressionCompiler, store_code
from .source import CodeWriter

Json = dict[str, Any]

IDX = "\x00IDX\x00"  # placeholder for an index expression in lines given to _indexed


@dataclass(slots=True)
class BodyInfo:
    may_exit: bool = False


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

    def _field_lvalue(self, node: Json) -> tuple[int, int, bool]:
        if node.get("type") != "field":
            if node.get("type") in ("expression", "stack_field"):
                raise UnsupportedProgram(f"{self.where}: assignment to a computed location (header stacks)")
            raise InvalidArgument(f"{self.where}: cannot assign to a {node.get('type')}")
        header, name = node["value"]
        if name == "$valid$":
            raise InvalidArgument(f"{self.where}: '{header}.$valid$' is read-only")
        spec = self.ctx.program.field_spec(header, name)
        return self.ctx.layout.slot(header, name), spec.width, spec.signed

    def _header(self, node: Json) -> str:
        if node.get("type") != "header":
            raise UnsupportedProgram(f"{self.where}: header operand of type '{node.get('type')}' (stacks/unions)")
        name = node["value"]
        if name not in self.ctx.program.headers:
            raise InvalidArgument(f"{self.where}: unknown header '{name}'")
        return name

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
        dst, src = self._header(self._param(prim, 0)), self._header(self._param(prim, 1))
        program, layout = self.ctx.program, self.ctx.layout
        hd, hs = program.headers[dst], program.headers[src]
        if hd.type.name != hs.type.name:
            raise InvalidArgument(f"{self.where}: assign_header from '{src}' to '{dst}' of another type")
        n = len(hd.type.fields)
        d0, s0 = layout.first_field_slot(dst), layout.first_field_slot(src)
        copy = f"F[{d0}:{d0 + n}] = F[{s0}:{s0 + n}]"
        if hs.metadata:
            self.w.line(copy)
            if not hd.metadata:
                self.w.line(f"F[{layout.valid_slot(dst)}] = True")
            return
        with self.w.block(f"if F[{layout.valid_slot(src)}]:"):
            if not hd.metadata:
                self.w.line(f"F[{layout.valid_slot(dst)}] = True")
            self.w.line(copy)
        if not hd.metadata:
            with self.w.block("else:"):
                self.w.line(f"F[{layout.valid_slot(dst)}] = False")

    _p_copy_header = _p_assign_header

    def _p_add_header(self, prim: Json) -> None:
        name = self._header(self._param(prim, 0))
        header = self.ctx.program.headers[name]
        if header.metadata:
            return
        layout = self.ctx.layout
        v, f0, n = layout.valid_slot(name), layout.first_field_slot(name), len(header.type.fields)
        with self.w.block(f"if not F[{v}]:"):
            self.w.line(f"F[{v}] = True")
            self.w.line(f"F[{f0}:{f0 + n}] = {[0] * n!r}")
            self.w.line(f"F[{H_PKTLEN}] += {header.type.bit_width // 8}")

    def _p_remove_header(self, prim: Json) -> None:
        name = self._header(self._param(prim, 0))
        header = self.ctx.program.headers[name]
        if header.metadata:
            return
        v = self.ctx.layout.valid_slot(name)
        with self.w.block(f"if F[{v}]:"):
            self.w.line(f"F[{v}] = False")
            self.w.line(f"F[{H_PKTLEN}] -= {header.type.bit_width // 8}")

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
