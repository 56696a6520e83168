"""Why a program cannot run on the native pipeline (it then runs on the Python one)."""

from __future__ import annotations

from ..program import Program

# Fields, registers, action parameters and table keys are uint64_t slots natively; anything wider (the
# omnireduce program's bit<256> registers, say) runs the whole program on the Python pipeline.
MAX_NATIVE_WIDTH = 64


class NativeUnsupported(Exception):
    """A construct the C emitter does not lower; the loader falls back to the Python pipeline for the program."""


def check_widths(program: Program) -> None:
    """Refuse, naming the first one, anything wider than the native slots."""
    for header in program.headers.values():
        for spec in header.type.fields:
            # A varbit field is kept in as many 64-bit limbs as it needs (phv.varbit_limbs).
            if spec.width > MAX_NATIVE_WIDTH and not spec.varbit:
                raise NativeUnsupported(f"field {header.name}.{spec.name} is {spec.width} bits (native: <= 64)")
    for reg in program.registers.values():
        if reg.width > MAX_NATIVE_WIDTH:
            raise NativeUnsupported(f"register {reg.name} is {reg.width} bits wide (native: <= 64)")
    for action in program.actions.values():
        for param in action.params:
            if param.width > MAX_NATIVE_WIDTH:
                raise NativeUnsupported(f"action {action.name} parameter {param.name} is {param.width} bits")
    for table in program.tables.values():
        for key in table.keys:
            if key.width > MAX_NATIVE_WIDTH:
                raise NativeUnsupported(f"table {table.name} key {key.name} is {key.width} bits")
