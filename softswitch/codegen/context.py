"""What every generator needs: the program, the PHV layout, the namespace of the generated module, and the
stateful objects generated code refers to."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from ..phv import PhvLayout
from ..program import Program
from ..meters import MeterArrayState, TargetClock
from ..state import CounterArrayState, RegisterArrayState
from ..valuesets import ValueSetRuntime
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


class LogMsgError(Exception):
    """A log_msg() whose format BMv2 cannot expand (it exits the whole process); this target drops the packet."""


_VALUE = "\ue000"  # stands for one substituted value while a format is being expanded


@dataclass(frozen=True, slots=True)
class LogFormat:
    """A log_msg() format as BMv2 expands it (bm_sim/core/primitives.cpp, log_msg::operator()), worked out once
    per call site: literal text and value positions (`pieces`), or why BMv2 would stop the switch (`error`).

    BMv2's expansion has quirks this reproduces exactly: the search for `{` starts at the format's second
    character (a format starting with `{}` never substitutes it), anything between braces is a placeholder (`{x}`
    too), the character right after a substituted value is not searched (`{}{}` substitutes only the first),
    `\\{` and `\\}` are literal braces. A format whose placeholders do not match the values, or with an
    unmatched `{`, makes BMv2 exit(1) when it runs."""

    text: str
    pieces: tuple[str | int, ...]
    error: str | None

    def expand(self, values: list[int]) -> str:
        return "".join(piece if isinstance(piece, str) else str(int(values[piece])) for piece in self.pieces)


def compile_log_format(fmt: str, nvalues: int) -> LogFormat:
    s = fmt
    position = 0
    counter = 0
    while True:
        position = s.find("{", position + 1)
        if position < 0:
            break
        if s[position - 1] == "\\":
            continue
        search = position
        while True:
            end = s.find("}", search)
            if end >= 0 and s[end - 1] == "\\":
                search = end + 1
                continue
            break
        if end < 0:
            return LogFormat(fmt, (fmt,), 'No matching "}" in call to log_msg()')
        if counter < nvalues:
            s = s[:position] + _VALUE + s[end + 1:]
            position += len(_VALUE)
        else:
            position += end - position
        counter += 1
    if counter != nvalues:
        return LogFormat(fmt, (fmt,), f"Not enough arguments for format string in call to log_msg(). Format string "
                                      f"expected ({counter}) argument(s) but go ({nvalues})")
    s = s.replace("\\{", "{").replace("\\}", "}")
    pieces: list[str | int] = []
    for i, literal in enumerate(s.split(_VALUE)):
        if i:
            pieces.append(i - 1)
        if literal:
            pieces.append(literal)
    return LogFormat(fmt, tuple(pieces), None)


def log_msg(fmt: LogFormat, values: list[int]) -> None:
    """v1model log_msg(), logged at INFO on the `omnireduce.softswitch.p4` logger as BMv2 logs it (bm::Logger info)."""
    if program_log.isEnabledFor(logging.INFO):
        program_log.info("%s", fmt.expand(values))


def log_msg_failed(fmt: LogFormat) -> None:
    """A log_msg() BMv2 would exit on: the packet is dropped (counted as drop:log_msg_error)."""
    raise LogMsgError(f"{fmt.error}: {fmt.text!r}")


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
    value_sets: dict[str, ValueSetRuntime] = field(default_factory=dict)
    meters: dict[str, MeterArrayState] = field(default_factory=dict)
    clock: TargetClock = field(default_factory=TargetClock)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ns.set("ParserException", ParserException)
        self.ns.set("PipelineAssertion", PipelineAssertion)
        self.ns.set("_log_msg", log_msg)
        self.ns.set("_log_msg_failed", log_msg_failed)
        self.ns.set("_random_between", random_between)
        self.ns.set("_ix", stack_index)
        self.ns.set("_pix", parser_stack_index_fn(self.program.errors["StackOutOfBounds"]))
