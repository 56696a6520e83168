"""A control pipeline (graph of tables and conditionals) -> one generated Python function.

p4c lowers structured P4 control code into a graph; this module structures it again: each branch point
(a conditional, or a table whose next node depends on the action run or on hit/miss) becomes an if/elif
block whose arms run up to the branch point's immediate post-dominator, where the code continues. Calls
of actions from apply blocks reach us as keyless tables with a constant default action (p4c's "dummy
tables"); their bodies are inlined with the constant arguments folded in, so an apply block of register
reads/writes and ifs becomes straight-line Python.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import UnsupportedProgram
from ..phv import H_EXIT, H_INGLEN
from ..program import Action, Pipeline, Table
from ..tables import TableRuntime
from .actions import compile_action_body, constant_params
from .context import CompileContext
from .expressions import Expr, ExpressionCompiler, store_code
from .source import CodeWriter

END = "$END"
# Upper bound on generated lines for one pipeline; reached only by pathological unstructured graphs.
MAX_LINES = 200_000


class PipelineCompiler:
    def __init__(
        self,
        ctx: CompileContext,
        pipeline: Pipeline,
        tables: dict[str, TableRuntime],
        action_may_exit: dict[int, bool],
    ) -> None:
        self.ctx = ctx
        self.pipeline = pipeline
        self.tables = tables
        self.action_may_exit = action_may_exit
        self.w = CodeWriter()
        self.succ: dict[str, list[str]] = {}
        self.ipdom: dict[str, str] = {}

    # -- graph --------------------------------------------------------------------------------------------
    def _successors(self, node: str) -> list[str]:
        p = self.pipeline

        def nxt(name: str | None) -> str:
            return END if name is None else name

        if node in p.tables:
            t = p.tables[node]
            if t.hit_miss_next:
                out = [nxt(t.next_tables.get("__HIT__")), nxt(t.next_tables.get("__MISS__"))]
            else:
                out = [nxt(t.next_tables.get(a)) for a in t.actions]
                if t.default_entry is None:
                    out.append(nxt(t.base_default_next))
            return list(dict.fromkeys(out))
        if node in p.conditionals:
            c = p.conditionals[node]
            return list(dict.fromkeys([nxt(c.true_next), nxt(c.false_next)]))
        return [nxt(p.action_calls[node].next_node)]

    def _analyse(self) -> None:
        start = self.pipeline.init_table
        order: list[str] = []
        state: dict[str, int] = {}
        stack: list[tuple[str, int]] = []
        if start is not None:
            stack.append((start, 0))
        # Iterative DFS producing a post-order, rejecting cycles.
        while stack:
            node, i = stack.pop()
            if i == 0:
                if state.get(node) == 2:
                    continue
                state[node] = 1
                self.succ[node] = [s for s in self._successors(node)]
            succs = [s for s in self.succ[node] if s != END]
            if i < len(succs):
                stack.append((node, i + 1))
                s = succs[i]
                if state.get(s) == 1:
                    raise UnsupportedProgram(f"pipeline {self.pipeline.name}: control flow loops through '{s}'")
                if state.get(s) != 2:
                    stack.append((s, 0))
            else:
                state[node] = 2
                order.append(node)
        pdom: dict[str, frozenset[str]] = {END: frozenset([END])}
        for node in order:  # post-order: successors first
            sets = [pdom[s] for s in self.succ[node]]
            common = frozenset.intersection(*sets) if sets else frozenset([END])
            pdom[node] = common | {node}
        for node in order:
            strict = pdom[node] - {node}
            self.ipdom[node] = max(strict, key=lambda d: len(pdom[d]))

    # -- code ---------------------------------------------------------------------------------------------
    def compile(self) -> Callable[[list], None]:
        self._analyse()
        fname = f"PIPE_{self.pipeline.name}"
        with self.w.block(f"def {fname}(F):"):
            if self.pipeline.init_table is not None:
                self._gen(self.pipeline.init_table, END)
            self.w.line("return")
        self.ctx.ns.exec(self.w.source(), f"<pipeline {self.pipeline.name}>")
        return self.ctx.ns.globals[fname]

    def _gen(self, node: str, stop: str) -> None:
        while node != END and node != stop:
            if len(self.w.lines) > MAX_LINES:
                raise UnsupportedProgram(f"pipeline {self.pipeline.name}: control flow too unstructured to compile")
            p = self.pipeline
            if node in p.conditionals:
                node = self._conditional(node)
            elif node in p.tables:
                node = self._table(p.tables[node])
            else:
                call = p.action_calls[node]
                action = self.ctx.program.actions[call.action]
                if self._inline_action(action, (), f"action call {call.name}"):
                    self._exit_check()
                node = END if call.next_node is None else call.next_node

    def _inline_action(self, action: Action, params: tuple[int, ...], where: str) -> bool:
        """Emit `action`'s body with constant `params` in place; True when it may execute `exit`."""
        info = compile_action_body(self.ctx, action, self.w, constant_params(action, params), where=where)
        return info.may_exit

    def _exit_check(self) -> None:
        with self.w.block(f"if F[{H_EXIT}]:"):
            self.w.line("return")

    def _condition_code(self, name: str) -> str:
        cond = self.pipeline.conditionals[name]
        return self._expressions(f"conditional {name}").compile_bool(cond.expression)

    def _expressions(self, where: str) -> ExpressionCompiler:
        return ExpressionCompiler(self.ctx.program, self.ctx.layout, where=where)

    def _conditional(self, node: str) -> str:
        join = self.ipdom[node]
        opener = self.w.if_
        current = node
        while True:
            cond = self.pipeline.conditionals[current]
            t_next = END if cond.true_next is None else cond.true_next
            f_next = END if cond.false_next is None else cond.false_next
            with opener(self._condition_code(current)):
                self._gen(t_next, join)
            # Flatten `else if` chains into elif, which keeps the nesting (and Python's indent limit) flat.
            if f_next in self.pipeline.conditionals and self.ipdom.get(f_next) == join and f_next != join:
                opener = self.w.elif_
                current = f_next
                continue
            if f_next != join:
                with self.w.else_():
                    self._gen(f_next, join)
            return join

    def _table(self, t: Table) -> str:
        join = self.ipdom[t.name]
        w = self.w
        de = t.default_entry
        if not t.keys and de is not None and de.entry_const:
            # A keyless table always misses: with a constant default entry, inline its action.
            action = t.action_map[de.action]
            if self._inline_action(action, de.params, f"table {t.name} ({action.name})"):
                self._exit_check()
            if t.hit_miss_next:
                nxt = t.next_tables.get("__MISS__")
            else:
                nxt = t.next_tables.get(de.action)
            return END if nxt is None else nxt
        self._lookup_and_run(t)
        # Dispatch on hit/miss or on the action that ran.
        if t.hit_miss_next:
            hit = t.next_tables.get("__HIT__")
            miss = t.next_tables.get("__MISS__")
            hit = END if hit is None else hit
            miss = END if miss is None else miss
            if hit == miss:
                return hit
            with w.if_(self._hit_test()):
                self._gen(hit, join)
            with w.else_():
                self._gen(miss, join)
            return join
        groups: dict[str, list[str | None]] = {}
        for a in t.actions:
            nxt = t.next_tables.get(a)
            groups.setdefault(END if nxt is None else nxt, []).append(a)
        if de is None:
            nxt = END if t.base_default_next is None else t.base_default_next
            groups.setdefault(nxt, []).append(None)
        if len(groups) == 1:
            return next(iter(groups))
        items = list(groups.items())
        for i, (nxt, actions) in enumerate(items):
            if i == len(items) - 1:
                opener = w.else_()
            else:
                test = self._action_test(t, actions)
                opener = w.if_(test) if i == 0 else w.elif_(test)
            with opener:
                self._gen(nxt, join)
        return join

    # -- target-specific parts of a table application -----------------------------------------------------
    def _hit_test(self) -> str:
        return "_h"

    def _action_test(self, t: Table, actions: list[str | None]) -> str:
        """A condition: the action that ran (`None`: no action, the table had no default) is one of `actions`."""
        return " or ".join("_a is None" if a is None else f"_a == {a!r}" for a in actions)

    def _lookup_and_run(self, t: Table) -> None:
        """Look the key up, count a hit, run the entry's (or the default) action; leave _h and _a set."""
        rt = self.tables[t.name]
        w = self.w
        table_name = self.ctx.ns.bind(rt, "T")
        may_exit = any(self.action_may_exit.get(a.id, False) for a in t.action_map.values())
        if t.keys:
            key = self._key_code(t)
            if rt.exact_only:
                exact = self.ctx.ns.bind(rt.exact, "X")
                w.line(f"_e = {exact}.get({key})")
            else:
                w.line(f"_e = {table_name}.lookup({key})")
            with w.block("if _e is not None:"):
                if t.with_counters:
                    w.line("_c = _e[3]")
                    w.line("_c[0] += 1")
                    w.line(f"_c[1] += F[{H_INGLEN}]")
                self._direct_meter(t)
                w.line("_h = True")
            with w.block("else:"):
                w.line(f"_e = {table_name}.default")
                w.line("_h = False")
        else:
            w.line(f"_e = {table_name}.default")
            w.line("_h = False")
        if rt.profile is not None:
            # The entry points at a member or a group, which picks the action (None: an empty group).
            with w.block("if _h:"):
                w.line("_e = _e[0].pick(F)")
        with w.block("if _e is not None:"):
            w.line("_e[0](F, _e[1])")
            w.line("_a = _e[2]")
        with w.block("else:"):
            w.line("_a = None")
        if may_exit:
            self._exit_check()

    def _direct_meter(self, t: Table) -> None:
        """On a hit, before the action: the entry's cell of the table's direct meter colors the packet (BMv2)."""
        if t.direct_meter is None:
            return
        spec = self.ctx.program.meters[t.direct_meter]
        slot = self.ctx.layout.slot(*spec.result_target)
        field = self.ctx.program.field_spec(*spec.result_target)
        meter = self.ctx.ns.bind(self.ctx.meters[spec.name], "M")
        amount = f"F[{H_INGLEN}]" if spec.unit == "bytes" else "1"
        color = Expr(f"{meter}.execute(_e[4], {amount}, _now())", "data", 0, 2)
        self.w.line(f"F[{slot}] = {store_code(color, field.width, field.signed)}")

    def _key_code(self, t: Table) -> str:
        layout, program = self.ctx.layout, self.ctx.program
        parts = []
        for k in t.keys:
            if k.match_type == "valid" or isinstance(k.target, str):
                header = k.target if isinstance(k.target, str) else k.target[0]
                code = "True" if program.headers[header].metadata else f"F[{layout.valid_slot(header)}]"
            else:
                header, fname = k.target
                code = f"F[{layout.slot(header, fname)}]"
                spec = program.field_spec(header, fname)
                if spec.signed:
                    code = f"({code} & {(1 << spec.width) - 1})"
            if k.mask is not None:
                code = f"({code} & {k.mask})"
            parts.append(code)
        if len(parts) == 1:
            return parts[0]
        return "(" + ", ".join(parts) + ")"
