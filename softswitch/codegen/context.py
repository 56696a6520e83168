"""What every generator needs: the program, the PHV layout, the namespace of the generated module, and the
stateful objects generated code refers to."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from ..phv import PhvLayout
from ..program import Program
from ..state import CounterArrayState, RegisterArrayState
from .source import Namespace

program_log = logging.getLogger("omnireduce.softswitch.p4")


class ParserException(Exception):
    """Raised by generated parser code: `code` is the P4 error value, `offset` the bytes parsed so far."""

    __slots__ = ("code", "offset")

    def __init__(self, code: int, offset: int) -> None:
        super().__init__(code, offset)
        self.code = code
        self.offset = offset


class PipelineAssertion(Exception):
    """A P4 assert()/assume() failed (BMv2 aborts the process; this target drops the packet and counts it)."""


class StackOutOfBounds(Exception):
    """A control indexed a header stack out of its bounds (BMv2's std::vector::at throws and simple_switch
    ends; this target drops the packet and counts it as drop:error:StackOutOfBounds)."""


def stack_index(index: int, size: int) -> int:
    """A stack index computed in a control, checked (generated code calls it as _ix)."""
    if 0 <= index < size:
        return index
    raise StackOutOfBounds(f"index {index} of a stack of {size}")


def parser_stack_index_fn(code: int):
    """_pix: a stack index computed in the parser, checked; out of bounds is the StackOutOfBounds parser error."""

    def parser_stack_index(index: int, size: int, offset: int) -> int:
        if 0 <= index < size:
            return index
        raise ParserException(code, offset)

    return parser_stack_index


def log_msg(fmt: str, values: list[int]) -> None:
    """v1model log_msg(): substitute `{}` in order, `\\{` and `\\}` are literal braces (as BMv2 does)."""
    if not program_log.isEnabledFor(logging.INFO):
        return
    out = []
    i = 0
    it = iter(values)
    while i < len(fmt):
        if fmt.startswith("\\{", i) or fmt.startswith("\\}", i):
            out.append(fmt[i + 1])
            i += 2
        elif fmt.startswith("{}", i):
            out.append(str(int(next(it, 0))))
            i += 2
        else:
            out.append(fmt[i])
            i += 1
    program_log.info("%s", "".join(out))


def random_between(lo: int, hi: int) -> int | None:
    return random.randint(lo, hi) if lo <= hi else None


@dataclass(slots=True)
class CompileContext:
    program: Program
    layout: PhvLayout
    ns: Namespace
    registers: dict[str, RegisterArrayState]
    counters: dict[str, CounterArrayState]
    calc_names: dict[str, str] = field(default_factory=dict)  # calculation name -> generated function name
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ns.set("ParserException", ParserException)
        self.ns.set("PipelineAssertion", PipelineAssertion)
        self.ns.set("_log_msg", log_msg)
        self.ns.set("_random_between", random_between)
        self.ns.set("_ix", stack_index)
        self.ns.set("_pix", parser_stack_index_fn(self.program.errors["StackOutOfBounds"]))
