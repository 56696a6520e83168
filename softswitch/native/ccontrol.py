"""A control pipeline -> one C function. The graph walk (post-dominators, if/else structuring, keyless tables
inlined, dispatch on hit/miss or on the action run) is codegen/control.py's PipelineCompiler; this subclass
emits C for the parts that differ: the lookup, the action call, conditions and exit checks.

Exact-only tables are looked up in the native hash table (runtime.h); other match kinds scan the entries
in the precedence order the Python TableRuntime defines (tables.py), which the loader hands over."""

from __future__ import annotations

from ..codegen.control import END, PipelineCompiler
from ..phv import H_EXIT, H_INGLEN
from ..program import Action, Pipeline, Table
from .cactions import compile_action_body, constant_params
from .ccalc import calculation_function
from .cexpr import CExpr, CExpressionCompiler, store_c
from .context import CCodeWriter, CContext


class CPipelineCompiler(PipelineCompiler):
    def __init__(self, ctx: CContext, pipeline: Pipeline, action_may_exit: dict[int, bool]) -> None:
        super().__init__(ctx, pipeline, {}, action_may_exit)  # type: ignore[arg-type]
        self.w = CCodeWriter()

    def compile(self) -> str:  # type: ignore[override]
        self._analyse()
        fname = f"PIPE_{self.pipeline.name}"
        prototype = f"static void {fname}(St *st, u64 *F)"
        with self.w.block(prototype):
            self.w.line("(void)st;")
            if self.pipeline.init_table is not None:
                self._gen(self.pipeline.init_table, END)
        self.ctx.add_function(prototype, self.w)
        return fname

    def _inline_action(self, action: Action, params: tuple[int, ...], where: str) -> bool:
        with self.w.block(""):
            info = compile_action_body(self.ctx, action, self.w, constant_params(params), where=where)
        return info.may_exit

    def _exit_check(self) -> None:
        self.w.line(f"if (F[{H_EXIT}]) return;")

    def _expressions(self, where: str) -> CExpressionCompiler:
        return CExpressionCompiler(self.ctx.program, self.ctx.layout, where=where)

    def _table(self, t: Table) -> str:
        # _e, _h and _a live in a block of their own that also holds the dispatch after the lookup.
        with self.w.block(""):
            return super()._table(t)

    def _hit_test(self) -> str:
        return "_h"

    def _dispatch_ids(self, t: Table) -> dict[str, int]:
        """The id the table's entries carry for each of its actions: the action's own, except in tables of an
        action profile, where members carry the ids of the profile's first table (p4c gives each table its own
        copy of an action, under its own id)."""
        if t.action_profile is None:
            return {name: action.id for name, action in t.action_map.items()}
        first = self.ctx.program.tables[self.ctx.program.action_profiles[t.action_profile].tables[0]]
        return {name: first.action_map[name].id for name in t.action_map}

    def _action_test(self, t: Table, actions: list[str | None]) -> str:
        ids = self._dispatch_ids(t)
        return " || ".join(f"_a == {-1 if a is None else ids[a]}" for a in actions)

    def _lookup_and_run(self, t: Table) -> None:
        w = self.w
        k = self.ctx.table_index[t.name]
        if t.keys:
            w.line(f"u64 _key[{len(t.keys)}] = {{{', '.join(self._key_parts(t))}}};")
            w.line(f"const SsEntry *_e = ss_table_lookup(&st->tables[{k}], _key);")
            w.line("int _h = _e != 0;")
            if t.with_counters:
                w.line(f"if (_e) {{ _e->counter[0] += 1; _e->counter[1] += F[{H_INGLEN}]; }}")
            if t.direct_meter is not None:
                spec = self.ctx.program.meters[t.direct_meter]
                field = self.ctx.program.field_spec(*spec.result_target)
                amount = f"F[{H_INGLEN}]" if spec.unit == "bytes" else "1"
                color = CExpr(f"((W)ss_meter_execute(st, &st->meters[{self.ctx.meter_index[spec.name]}], _e->meter, "
                              f"{amount}))", "data", 0, 2)
                w.line(f"if (_e) F[{self.ctx.layout.slot(*spec.result_target)}] = "
                       f"{store_c(color, field.width, field.signed)};")
            w.line(f"if (!_e) _e = st->tables[{k}].deflt;")
        else:
            w.line(f"const SsEntry *_e = st->tables[{k}].deflt;")
            w.line("int _h = 0;")
        profile = t.action_profile
        if profile is not None:
            # The entry points at a member or a group, which picks the entry whose action runs (0: empty group).
            k = self.ctx.profile_index[profile]
            selector = self.ctx.program.action_profiles[profile].selector
            pick = "0"
            if selector is not None:
                fn = calculation_function(self.ctx, selector.name)
                pick = f"ss_group_pick(&st->profiles[{k}], _e, {fn}(st, F, 0, 0))"
            w.line(f"if (_e) _e = _e->action == SS_MEMBER ? ss_profile_member(&st->profiles[{k}], _e) : {pick};")
        w.line("int _a = _e ? (int)_e->action : -1;")
        w.line("(void)_h; (void)_a;")
        if t.action_map:
            ids = self._dispatch_ids(t)
            with w.block("if (_e) switch (_e->action)"):
                for name, action in {ids[n]: (n, a) for n, a in t.action_map.items()}.values():
                    w.line(f"case {ids[name]}: A_{action.id}(st, F, _e->params); break;")
                w.line("default: break;")
        if any(self.action_may_exit.get(a.id, False) for a in t.action_map.values()):
            self._exit_check()

    def _key_parts(self, t: Table) -> list[str]:
        layout, program = self.ctx.layout, self.ctx.program
        parts = []
        for key in t.keys:
            if key.match_type == "valid" or isinstance(key.target, str):
                header = key.target if isinstance(key.target, str) else key.target[0]
                code = "1" if program.headers[header].metadata else f"(F[{layout.valid_slot(header)}] != 0)"
            else:
                header, fname = key.target
                code = f"F[{layout.slot(header, fname)}]"
                spec = program.field_spec(header, fname)
                if spec.signed and spec.width < 64:
                    code = f"({code} & {(1 << spec.width) - 1:#x}ULL)"
            if key.mask is not None:
                code = f"({code} & {key.mask % (1 << 64):#x}ULL)"
            parts.append(f"(u64){code}")
        return parts
