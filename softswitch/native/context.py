"""What every C generator needs: the program, the PHV layout, and the index of each stateful object in the
native state (`st->regs[k]`, `st->cpk[k]`, `st->tables[k]`), plus the C writer."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from ..codegen.context import LogFormat
from ..codegen.source import CodeWriter
from ..phv import PhvLayout
from ..program import Program


class CCodeWriter(CodeWriter):
    """CodeWriter for C: blocks are braces, branches are C's."""

    @contextlib.contextmanager
    def block(self, header: str):  # type: ignore[override]
        self.line(f"{header} {{")
        self.level += 1
        try:
            yield
        finally:
            self.level -= 1
            self.line("}")

    def if_(self, cond: str):  # type: ignore[override]
        return self.block(f"if ({cond})")

    def elif_(self, cond: str):  # type: ignore[override]
        return self.block(f"else if ({cond})")

    def else_(self):  # type: ignore[override]
        return self.block("else")


@dataclass(slots=True)
class CContext:
    program: Program
    layout: PhvLayout
    register_index: dict[str, int]
    counter_index: dict[str, int]  # indirect counters
    table_index: dict[str, int]
    value_set_index: dict[str, int] = field(default_factory=dict)
    meter_index: dict[str, int] = field(default_factory=dict)  # indirect and direct meter arrays
    profile_index: dict[str, int] = field(default_factory=dict)  # action profiles and selectors
    functions: list[str] = field(default_factory=list)  # generated C functions, in definition order
    prototypes: list[str] = field(default_factory=list)
    calc_names: dict[str, str] = field(default_factory=dict)
    log_formats: list[LogFormat] = field(default_factory=list)  # log_msg formats, by the id C passes back
    warnings: list[str] = field(default_factory=list)

    def add_function(self, prototype: str, w: CodeWriter) -> None:
        self.prototypes.append(prototype + ";")
        self.functions.append(w.source())
