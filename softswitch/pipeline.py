"""Compile a BMv2 JSON (v1model) into the functions and state objects the Device runs packets through."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .codegen.actions import compile_action_function
from .codegen.calculations import calculation_function
from .codegen.context import CompileContext
from .codegen.control import PipelineCompiler
from .codegen.deparser import compile_checksums, compile_deparser
from .codegen.headers import HeaderCodec, VarbitCodec
from .codegen.parser import compile_parser
from .codegen.source import Namespace
from .errors import InvalidArgument
from .meters import MeterArrayState, TargetClock
from .profiles import ActionProfileRuntime
from .phv import PhvLayout
from .program import Program, load_program
from .state import CounterArrayState, RegisterArrayState
from .tables import TableRuntime
from .valuesets import ValueSetRuntime

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CompiledPipeline:
    program: Program
    layout: PhvLayout
    namespace: Namespace
    registers: dict[str, RegisterArrayState]
    counters: dict[str, CounterArrayState]  # indirect counter arrays
    direct_counters: dict[str, str]  # direct counter name -> table name
    tables: dict[str, TableRuntime]
    parse: Callable[[list, bytes], tuple[int, int]]
    verify_checksums: Callable[[list, bytes], int]
    update_checksums: Callable[[list, bytes], None]
    ingress: Callable[[list], None]
    egress: Callable[[list], None]
    deparse: Callable[[list], bytes]
    field_list_slots: dict[int, tuple[int, ...]]
    warnings: list[str]
    # learn list id -> (name, PHV slots of its fields, their masks): what a digest sends.
    learn_lists: dict[int, tuple[str, tuple[int, ...], tuple[int, ...]]] = dataclasses.field(default_factory=dict)
    value_sets: dict[str, ValueSetRuntime] = dataclasses.field(default_factory=dict)
    # Meter arrays by name; a direct meter's array has a cell per entry slot of its table.
    meters: dict[str, MeterArrayState] = dataclasses.field(default_factory=dict)
    clock: TargetClock = dataclasses.field(default_factory=TargetClock)
    profiles: dict[str, ActionProfileRuntime] = dataclasses.field(default_factory=dict)

    def reset_state(self) -> None:
        """Clear tables (back to JSON defaults and const entries), registers and counters."""
        for reg in self.registers.values():
            reg.reset()
        for ctr in self.counters.values():
            ctr.reset()
        for rt in self.tables.values():
            install_initial_entries(rt)
        for profile in self.profiles.values():
            profile.reset()
        for value_set in self.value_sets.values():
            value_set.clear()
        for meter in self.meters.values():
            meter.reset()


def install_initial_entries(rt: TableRuntime) -> None:
    rt.clear()
    spec = rt.spec
    if spec.default_entry is not None:
        de = spec.default_entry
        rt.set_default(rt.make_runtime(de.action, de.params, None), None)
    else:
        rt.set_default(None, None)
    for const in spec.const_entries:
        entry = rt.entry_from_json(const)
        rt.insert(entry, [0, 0] if spec.with_counters else None, const=True)


def compile_program(source: bytes | str | dict) -> CompiledPipeline:
    started = time.perf_counter()
    program = load_program(source)
    layout = PhvLayout(program)
    ns = Namespace()
    registers = {name: RegisterArrayState(name, r.size, r.width) for name, r in program.registers.items()}
    counters = {
        name: CounterArrayState(name, c.size) for name, c in program.counters.items() if not c.is_direct
    }
    direct_counters = {name: c.binding for name, c in program.counters.items() if c.is_direct and c.binding}
    ctx = CompileContext(program, layout, ns, registers, counters)
    ctx.value_sets = {name: ValueSetRuntime(spec) for name, spec in program.value_sets.items()}
    ctx.meters = {name: MeterArrayState(name, m.size if not m.is_direct else program.tables[m.binding].size, m.unit)
                  for name, m in program.meters.items()}
    ctx.ns.set("_now", ctx.clock.now_us)

    codecs: dict[str, HeaderCodec | VarbitCodec] = {}
    for name, header in program.headers.items():
        if not header.metadata or name in program.deparser.order:
            codec = VarbitCodec if header.type.varbit is not None else HeaderCodec
            codecs[name] = codec(header, layout, ns)

    parse = compile_parser(ctx, codecs)

    action_fns: dict[int, Callable] = {}
    may_exit: dict[int, bool] = {}
    tables: dict[str, TableRuntime] = {}
    profiles: dict[str, ActionProfileRuntime] = {}
    for table in program.tables.values():
        fns, widths = {}, {}
        for name, action in table.action_map.items():
            if action.id not in action_fns:
                fn_name, info = compile_action_function(ctx, action)
                action_fns[action.id] = ns.globals[fn_name]
                may_exit[action.id] = info.may_exit
            fns[name] = action_fns[action.id]
            widths[name] = tuple(p.width for p in action.params)
        profile = None
        if table.action_profile is not None:
            profile = profiles.get(table.action_profile)
            if profile is None:   # the first table of the profile: its actions are the profile's
                spec = program.action_profiles[table.action_profile]
                profile = profiles[spec.name] = ActionProfileRuntime(spec, fns, widths)
                if spec.selector is not None:
                    profile.hash_fn = ns.globals[calculation_function(ctx, spec.selector.name)]
        rt = TableRuntime(table, fns, widths, ctx.meters.get(table.direct_meter or ""), profile)
        counter_name = next((c for c, t in direct_counters.items() if t == table.name), None)
        if table.with_counters or counter_name:
            rt.info = dataclasses.replace(rt.info, has_direct_counter=counter_name or f"{table.name}$counter")
        install_initial_entries(rt)
        tables[table.name] = rt

    for spec in program.action_profiles.values():   # profiles no table uses hold members of no action
        profiles.setdefault(spec.name, ActionProfileRuntime(spec, {}, {}))

    ingress = PipelineCompiler(ctx, program.ingress, tables, may_exit).compile()
    egress = PipelineCompiler(ctx, program.egress, tables, may_exit).compile()
    verify, update = compile_checksums(ctx)
    deparse = compile_deparser(ctx, codecs)

    field_list_slots = {}
    for fl_id, fl in program.field_lists.items():
        slots = []
        for header, fname in fl.fields:
            if header not in program.headers:
                raise InvalidArgument(f"field list '{fl.name}' names unknown header '{header}'")
            slots.append(layout.slot(header, fname))
        field_list_slots[fl_id] = tuple(slots)

    learn_lists = {}
    for learn in program.learn_lists.values():
        slots = tuple(layout.slot(h, f) for h, f in learn.fields)
        masks = tuple((1 << program.field_spec(h, f).width) - 1 for h, f in learn.fields)
        learn_lists[learn.id] = (learn.name, slots, masks)

    for warning in ctx.warnings:
        log.warning("%s", warning)
    log.info(
        "compiled pipeline: %d headers, %d tables, %d actions, %d registers in %.0f ms",
        len(program.headers),
        len(tables),
        len(action_fns),
        len(registers),
        (time.perf_counter() - started) * 1000,
    )
    return CompiledPipeline(
        program=program,
        layout=layout,
        namespace=ns,
        registers=registers,
        counters=counters,
        direct_counters=direct_counters,
        tables=tables,
        parse=parse,
        verify_checksums=verify,
        update_checksums=update,
        ingress=ingress,
        egress=egress,
        deparse=deparse,
        field_list_slots=field_list_slots,
        warnings=ctx.warnings,
        value_sets=ctx.value_sets,
        meters=ctx.meters,
        clock=ctx.clock,
        profiles=profiles,
        learn_lists=learn_lists,
    )
