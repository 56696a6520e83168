"""Assemble the C source of one program: its constants, runtime.h, the generated functions, engine.c.

The walk over the program is the Python emitter's (shared traversals in codegen/, the typed Program model and
the PHV layout); cexpr/cactions/ccontrol/cparser/ccalc lower what it visits to C."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from ..codegen.context import LogFormat
from ..phv import PhvLayout
from ..program import Program
from .cactions import compile_action_function
from .ccontrol import CPipelineCompiler
from .cparser import compile_checksums, compile_deparser, compile_parser
from .context import CCodeWriter, CContext
from .support import NativeUnsupported, check_widths

# Bump when the generated C or the runtime changes meaning in a way the sources' hash would not show.
GENERATOR_VERSION = "1"


@dataclass(frozen=True, slots=True)
class CProgram:
    source: str
    register_index: dict[str, int]
    counter_index: dict[str, int]
    table_index: dict[str, int]
    value_set_index: dict[str, int]
    meter_index: dict[str, int]
    profile_index: dict[str, int]
    max_params: int
    log_formats: tuple[LogFormat, ...]
    warnings: tuple[str, ...]

    @property
    def digest(self) -> str:
        """What the compiled module is cached under: the complete C source (which includes the runtime)."""
        return hashlib.sha256((GENERATOR_VERSION + "\0" + self.source).encode()).hexdigest()[:24]


def _runtime(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text()


def generate(program: Program, layout: PhvLayout) -> CProgram:
    """The C source for `program`; raises NativeUnsupported for what the C emitter does not lower."""
    check_widths(program)
    for value_set in program.value_sets.values():
        if len(value_set.widths) > 8:
            raise NativeUnsupported(f"value set {value_set.name} has {len(value_set.widths)} fields (native: <= 8)")
    registers = {name: i for i, name in enumerate(program.registers)}
    counters = {name: i for i, name in enumerate(n for n, c in program.counters.items() if not c.is_direct)}
    tables = {name: i for i, name in enumerate(program.tables)}
    value_sets = {name: i for i, name in enumerate(program.value_sets)}
    meters = {name: i for i, name in enumerate(program.meters)}
    profiles = {name: i for i, name in enumerate(program.action_profiles)}
    ctx = CContext(program, layout, registers, counters, tables, value_sets, meters, profiles)

    compile_parser(ctx)
    may_exit: dict[int, bool] = {}
    for action in {a.id: a for t in program.tables.values() for a in t.action_map.values()}.values():
        _, info = compile_action_function(ctx, action)
        may_exit[action.id] = info.may_exit
    CPipelineCompiler(ctx, program.ingress, may_exit).compile()
    CPipelineCompiler(ctx, program.egress, may_exit).compile()
    compile_checksums(ctx)
    max_header_bytes = compile_deparser(ctx)

    max_params = max([len(a.params) for a in program.actions.values()] + [1])
    std = layout.std

    def slot(value: int | None) -> int:
        return -1 if value is None else value

    defines = [
        f"#define NSLOTS {layout.size}",
        f"#define NREGS {max(len(registers), 1)}",
        f"#define NCTRS {max(len(counters), 1)}",
        f"#define NTABLES {max(len(tables), 1)}",
        f"#define NVSETS {max(len(value_sets), 1)}",
        f"#define NMETERS {max(len(meters), 1)}",
        f"#define NPROFILES {max(len(profiles), 1)}",
        f"#define MAX_PARAMS {max_params}",
        f"#define MAX_HEADER_BYTES {max_header_bytes}",
        f"#define HAS_CHECKSUMS {1 if program.checksums else 0}",
        f"#define STD_INGRESS_PORT {std.ingress_port}",
        f"#define STD_EGRESS_SPEC {std.egress_spec}",
        f"#define STD_EGRESS_PORT {slot(std.egress_port)}",
        f"#define STD_INSTANCE_TYPE {slot(std.instance_type)}",
        f"#define STD_PACKET_LENGTH {slot(std.packet_length)}",
        f"#define STD_MCAST_GRP {slot(std.mcast_grp)}",
        f"#define STD_EGRESS_RID {slot(std.egress_rid)}",
        f"#define STD_CHECKSUM_ERROR {slot(std.checksum_error)}",
        f"#define STD_PARSER_ERROR {slot(std.parser_error)}",
        f"#define STD_INGRESS_TS {slot(std.ingress_global_timestamp)}",
        f"#define STD_EGRESS_TS {slot(std.egress_global_timestamp)}",
    ]
    initial = ", ".join("1" if value is True else "0" for value in layout.initial)
    metadata = ", ".join(str(s) for s in layout.metadata_slots) or "0"
    reg_sizes = ", ".join(str(r.size) for r in program.registers.values()) or "0"
    ctr_sizes = ", ".join(str(program.counters[n].size) for n in counters) or "0"
    meter_sizes = ", ".join(str(m.size if not m.is_direct else program.tables[m.binding].size)
                            for m in program.meters.values()) or "0"
    nkeys = ", ".join(str(len(t.keys)) for t in program.tables.values()) or "0"
    exact = ", ".join(
        "1" if all(k.match_type in ("exact", "valid") for k in t.keys) else "0" for t in program.tables.values()
    ) or "0"
    constants = [
        f"static const u64 SS_INITIAL[NSLOTS] = {{{initial}}};",
        f"static const u32 SS_METADATA_SLOTS[] = {{{metadata}}};",
        f"#define N_METADATA {len(layout.metadata_slots)}",
        f"static const u32 SS_REG_SIZE[NREGS] = {{{reg_sizes}}};",
        f"static const u32 SS_CTR_SIZE[NCTRS] = {{{ctr_sizes}}};",
        f"static const u32 SS_METER_SIZE[NMETERS] = {{{meter_sizes}}};",
        f"static const int SS_TABLE_NKEYS[NTABLES] = {{{nkeys}}};",
        f"static const int SS_TABLE_EXACT[NTABLES] = {{{exact}}};",
    ]
    parts = [
        "/* Generated by omnireduce.softswitch.native from a BMv2 JSON program: do not edit. */",
        "\n".join(defines),
        _runtime("runtime.h"),
        "\n".join(constants),
        _field_lists(program, layout),
        _learn_lists(program, layout),
        "\n".join(ctx.prototypes),
        "\n".join(ctx.functions),
        _runtime("engine.c"),
    ]
    return CProgram(
        source="\n\n".join(parts),
        register_index=registers,
        counter_index=counters,
        table_index=tables,
        value_set_index=value_sets,
        meter_index=meters,
        profile_index=profiles,
        max_params=max_params,
        log_formats=tuple(ctx.log_formats),
        warnings=tuple(ctx.warnings),
    )


def _learn_lists(program: Program, layout: PhvLayout) -> str:
    """`ss_learn(st, F, id)`: push the digest of learn list `id` (its fields, masked to their widths)."""
    w = CCodeWriter()
    w.line("static void ss_digest_push(St *st, u64 id, const u64 *values, u32 n);")
    with w.block("static void ss_learn(St *st, const u64 *F, u64 id)"):
        with w.block("switch (id)"):
            for learn in program.learn_lists.values():
                values = ", ".join(
                    f"F[{layout.slot(h, f)}] & {(1 << program.field_spec(h, f).width) - 1:#x}ULL" for h, f in learn.fields)
                w.line(f"case {learn.id}ULL: {{ u64 v[] = {{{values or '0'}}}; "
                       f"ss_digest_push(st, id, v, {len(learn.fields)}); break; }}")
            w.line("default: (void)st; (void)F; break;")
    return w.source()


def _field_lists(program: Program, layout: PhvLayout) -> str:
    w = CCodeWriter()
    with w.block("static void ss_copy_field_list(u64 *dst, const u64 *src, u64 id)"):
        with w.block("switch (id)"):
            for fl_id, fl in program.field_lists.items():
                copies = " ".join(f"dst[{layout.slot(h, f)}] = src[{layout.slot(h, f)}];" for h, f in fl.fields)
                w.line(f"case {fl_id}ULL: {copies} break;")
            w.line("default: (void)dst; (void)src; break;")
    return w.source()
